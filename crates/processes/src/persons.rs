//! Persons: the employees who hold cards (registration officers' master data).

use cardwright_domain::{
    Email, EmployeeNumber, Operator, Person, PersonId, PersonName, PersonState, Role,
};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::{persons, Store};

use crate::paging::bad_cursor;
use crate::{require_any, Context, ProcessError};

/// The fields of a new person, as received.
#[derive(Debug, Clone, Default)]
pub struct NewPerson {
    pub employee_number: String,
    pub given_name: String,
    pub family_name: String,
    pub email: Option<String>,
    pub state: Option<String>,
}

pub async fn create(
    ctx: &Context,
    operator: &Operator,
    new: NewPerson,
) -> Result<Person, ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Creating persons")?;
    let (millis, random) = ctx.id_parts();
    let person = Person {
        id: PersonId::new(millis, random),
        employee_number: EmployeeNumber::parse(&new.employee_number)?,
        given_name: PersonName::parse("given_name", &new.given_name)?,
        family_name: PersonName::parse("family_name", &new.family_name)?,
        email: new
            .email
            .as_deref()
            .map(Email::parse_optional)
            .transpose()?
            .flatten(),
        state: new
            .state
            .as_deref()
            .map_or(Ok(PersonState::Active), str::parse)?,
    };
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    persons::insert(&mut tx, &person, now).await.map_err(|e| {
        if e.is_unique_violation() {
            ProcessError::Conflict(format!(
                "a person with employee number {} exists already",
                person.employee_number.as_str()
            ))
        } else {
            e.into()
        }
    })?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent {
            new_state: Some(person.state.as_str().to_owned()),
            ..NewEvent::admin(
                now,
                operator.username.as_str().to_owned(),
                "PersonCreate",
                serde_json::json!({
                    "person": person.id.to_string(),
                    "employee_number": person.employee_number.as_str(),
                }),
            )
        },
    )
    .await?;
    Store::commit(tx).await?;
    Ok(person)
}

pub async fn get(ctx: &Context, operator: &Operator, id: PersonId) -> Result<Person, ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Reading persons")?;
    let mut conn = ctx.store.reader().await?;
    persons::get(&mut conn, id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("person {id} not found")))
}

/// A page of persons matching `query`, and the cursor of the next page.
pub async fn search(
    ctx: &Context,
    operator: &Operator,
    query: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<Person>, Option<String>), ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Reading persons")?;
    let after = cursor
        .map(PersonId::parse)
        .transpose()
        .map_err(|_| bad_cursor())?;
    // No person's data has a NUL character, and PostgreSQL refuses one in a text argument.
    if query.is_some_and(|q| q.contains('\0')) {
        return Ok((Vec::new(), None));
    }
    let mut conn = ctx.store.reader().await?;
    let mut page = persons::list(&mut conn, query, after, limit + 1).await?;
    let next = crate::paging::next_cursor(&mut page, limit, |p| p.id.to_string());
    Ok((page, next))
}
