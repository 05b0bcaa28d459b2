//! Persons.

use cardwright_domain::{Email, EmployeeNumber, Person, PersonId, PersonName, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{like_escape, Arg, QueryBuilder};
use crate::{to_micros, Conn, Dialect, StoreError};

const SELECT: &str =
    "SELECT id, employee_number, given_name, family_name, email, state FROM persons";

fn person(row: &AnyRow) -> Result<Person, StoreError> {
    let email: Option<String> = row.try_get("email")?;
    Ok(Person {
        id: PersonId::parse(&row.try_get::<String, _>("id")?)?,
        employee_number: EmployeeNumber::parse(&row.try_get::<String, _>("employee_number")?)?,
        given_name: PersonName::parse("given_name", &row.try_get::<String, _>("given_name")?)?,
        family_name: PersonName::parse("family_name", &row.try_get::<String, _>("family_name")?)?,
        email: email.as_deref().map(Email::parse).transpose()?,
        state: row.try_get::<String, _>("state")?.parse()?,
    })
}

/// Stores a new person; a taken employee number is a unique violation.
pub async fn insert(conn: &mut Conn, person: &Person, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO persons (id, employee_number, given_name, family_name, email, state, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(person.id.to_string())
    .bind(person.employee_number.as_str())
    .bind(person.given_name.as_str())
    .bind(person.family_name.as_str())
    .bind(person.email.as_ref().map(|e| e.as_str().to_owned()))
    .bind(person.state.as_str())
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Every person, by employee number (for an import to compare against).
pub async fn all(conn: &mut Conn) -> Result<Vec<Person>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY employee_number"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(person).collect()
}

/// Writes a person's names, email and state.
pub async fn update(conn: &mut Conn, person: &Person, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE persons SET given_name = $1, family_name = $2, email = $3, state = $4, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(person.given_name.as_str())
    .bind(person.family_name.as_str())
    .bind(person.email.as_ref().map(|e| e.as_str().to_owned()))
    .bind(person.state.as_str())
    .bind(to_micros(now))
    .bind(person.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: PersonId) -> Result<Option<Person>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(person).transpose()
}

/// One person, locked until the transaction ends, so card-per-person limits hold under races.
pub async fn get_for_update(
    conn: &mut Conn,
    dialect: Dialect,
    id: PersonId,
) -> Result<Option<Person>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1{}", dialect.for_update()))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(person).transpose()
}

/// Persons whose employee number, names (each, or given and family name together in either
/// order) or email contain `query` (any case), in id order.
pub async fn list(
    conn: &mut Conn,
    query: Option<&str>,
    after: Option<PersonId>,
    limit: u32,
) -> Result<Vec<Person>, StoreError> {
    let mut q = QueryBuilder::new(SELECT);
    let mut clauses = Vec::new();
    if let Some(text) = query.filter(|t| !t.trim().is_empty()) {
        // Spaces between words count once, so "grace  hopper" finds Grace Hopper.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let pattern = q.arg(Arg::Text(format!(
            "%{}%",
            like_escape(&words.to_lowercase())
        )));
        clauses.push(format!(
            "(LOWER(employee_number) LIKE {pattern} ESCAPE '\\' OR LOWER(given_name) LIKE {pattern} ESCAPE '\\' \
             OR LOWER(family_name) LIKE {pattern} ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE {pattern} ESCAPE '\\' \
             OR LOWER(given_name || ' ' || family_name) LIKE {pattern} ESCAPE '\\' \
             OR LOWER(family_name || ' ' || given_name) LIKE {pattern} ESCAPE '\\')"
        ));
    }
    if let Some(after) = after {
        clauses.push(format!("id > {}", q.arg(Arg::Text(after.to_string()))));
    }
    if !clauses.is_empty() {
        q.push(" WHERE ");
        q.push(&clauses.join(" AND "));
    }
    let limit = q.arg(Arg::Int(i64::from(limit)));
    q.push(&format!(" ORDER BY id LIMIT {limit}"));
    let rows = q.query().fetch_all(conn).await?;
    rows.iter().map(person).collect()
}
