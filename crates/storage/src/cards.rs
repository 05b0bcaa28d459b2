//! Cards.

use cardwright_domain::temp_cards::states;
use cardwright_domain::temp_cards::{Card, CardState, Serial};
use cardwright_domain::{BatchOrderId, CardId, PersonId, TemplateId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{like_escape, opt_from_micros, Arg, QueryBuilder};
use crate::{from_micros, to_micros, Conn, Dialect, StoreError};

/// The holder of a card, as shown with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderSummary {
    pub id: PersonId,
    pub employee_number: String,
    pub name: String,
}

/// A card with the names a reader needs beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub card: Card,
    pub template_name: String,
    pub holder: Option<HolderSummary>,
}

/// Filters for listing cards. All given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct CardFilter {
    pub state: Option<CardState>,
    pub template: Option<TemplateId>,
    /// Serials containing this text (any case).
    pub serial_contains: Option<String>,
    pub holder: Option<PersonId>,
    /// Only cards with an id after this one (the cursor of the previous page).
    pub after: Option<CardId>,
}

const SELECT: &str = "SELECT c.id, c.serial, c.template_id, c.state, c.holder_id, c.valid_until, \
    c.encoded, c.batch_order_id, c.created_at, c.updated_at, t.name AS template_name, \
    p.employee_number, p.given_name, p.family_name \
    FROM cards c JOIN card_templates t ON t.id = c.template_id \
    LEFT JOIN persons p ON p.id = c.holder_id";

fn record(row: &AnyRow) -> Result<CardRecord, StoreError> {
    let holder_id: Option<String> = row.try_get("holder_id")?;
    let holder = match holder_id {
        Some(id) => Some(HolderSummary {
            id: PersonId::parse(&id)?,
            employee_number: row.try_get("employee_number")?,
            name: format!(
                "{} {}",
                row.try_get::<String, _>("given_name")?,
                row.try_get::<String, _>("family_name")?
            ),
        }),
        None => None,
    };
    let batch_order: Option<String> = row.try_get("batch_order_id")?;
    let card = Card {
        id: CardId::parse(&row.try_get::<String, _>("id")?)?,
        serial: Serial::parse(&row.try_get::<String, _>("serial")?)?,
        template: TemplateId::parse(&row.try_get::<String, _>("template_id")?)?,
        state: row.try_get::<String, _>("state")?.parse()?,
        holder: holder.as_ref().map(|h| h.id),
        valid_until: opt_from_micros(row.try_get("valid_until")?)?,
        encoded: row.try_get::<i64, _>("encoded")? != 0,
        batch_order: batch_order
            .as_deref()
            .map(BatchOrderId::parse)
            .transpose()?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    };
    Ok(CardRecord {
        card,
        template_name: row.try_get("template_name")?,
        holder,
    })
}

/// Stores a new card.
pub async fn insert(conn: &mut Conn, card: &Card) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cards (id, serial, template_id, state, holder_id, valid_until, encoded, \
         batch_order_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(card.id.to_string())
    .bind(card.serial.as_str())
    .bind(card.template.to_string())
    .bind(card.state.as_str())
    .bind(card.holder.map(|h| h.to_string()))
    .bind(card.valid_until.map(to_micros))
    .bind(i64::from(card.encoded))
    .bind(card.batch_order.map(|o| o.to_string()))
    .bind(to_micros(card.created_at))
    .bind(to_micros(card.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// One card with its names.
pub async fn get(conn: &mut Conn, id: CardId) -> Result<Option<CardRecord>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE c.id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(record).transpose()
}

/// One card, locked against concurrent changes until the transaction ends.
pub async fn get_for_update(
    conn: &mut Conn,
    dialect: Dialect,
    id: CardId,
) -> Result<Option<Card>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE OF c",
        Dialect::Sqlite => "",
    };
    let row = sqlx::query(&format!("{SELECT} WHERE c.id = $1{lock}"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(record).transpose()?.map(|r| r.card))
}

/// Writes a card's new state and fields, but only if its state is still `expected`. Returns
/// false when another transaction changed the card first.
pub async fn update_if_state(
    conn: &mut Conn,
    card: &Card,
    expected: CardState,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE cards SET state = $1, holder_id = $2, valid_until = $3, encoded = $4, \
         batch_order_id = $5, updated_at = $6 WHERE id = $7 AND state = $8",
    )
    .bind(card.state.as_str())
    .bind(card.holder.map(|h| h.to_string()))
    .bind(card.valid_until.map(to_micros))
    .bind(i64::from(card.encoded))
    .bind(card.batch_order.map(|o| o.to_string()))
    .bind(to_micros(card.updated_at))
    .bind(card.id.to_string())
    .bind(expected.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Cards matching `filter`, in id (creation) order, at most `limit`.
pub async fn list(
    conn: &mut Conn,
    filter: &CardFilter,
    limit: u32,
) -> Result<Vec<CardRecord>, StoreError> {
    let mut q = QueryBuilder::new(SELECT);
    let mut clauses = Vec::new();
    if let Some(state) = filter.state {
        clauses.push(format!(
            "c.state = {}",
            q.arg(Arg::Text(state.as_str().into()))
        ));
    }
    if let Some(template) = filter.template {
        clauses.push(format!(
            "c.template_id = {}",
            q.arg(Arg::Text(template.to_string()))
        ));
    }
    if let Some(text) = &filter.serial_contains {
        let pattern = format!("%{}%", like_escape(&text.to_uppercase()));
        clauses.push(format!(
            "UPPER(c.serial) LIKE {} ESCAPE '\\'",
            q.arg(Arg::Text(pattern))
        ));
    }
    if let Some(holder) = filter.holder {
        clauses.push(format!(
            "c.holder_id = {}",
            q.arg(Arg::Text(holder.to_string()))
        ));
    }
    if let Some(after) = filter.after {
        clauses.push(format!("c.id > {}", q.arg(Arg::Text(after.to_string()))));
    }
    if !clauses.is_empty() {
        q.push(" WHERE ");
        q.push(&clauses.join(" AND "));
    }
    let limit = q.arg(Arg::Int(i64::from(limit)));
    q.push(&format!(" ORDER BY c.id LIMIT {limit}"));
    let rows = q.query().fetch_all(conn).await?;
    rows.iter().map(record).collect()
}

/// How many cards a person holds in state assigned.
pub async fn count_assigned_to(conn: &mut Conn, person: PersonId) -> Result<u64, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE holder_id = $1 AND state = $2")
            .bind(person.to_string())
            .bind(states::ASSIGNED.as_str())
            .fetch_one(conn)
            .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Assigned cards whose validity ended at or before `now`, oldest first, at most `limit`.
pub async fn due_for_expiry(
    conn: &mut Conn,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<CardId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM cards WHERE state = $1 AND valid_until <= $2 ORDER BY valid_until LIMIT $3",
    )
    .bind(states::ASSIGNED.as_str())
    .bind(to_micros(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    ids.iter()
        .map(|id| CardId::parse(id).map_err(StoreError::from))
        .collect()
}

/// Number of cards per state, for metrics.
pub async fn count_by_state(conn: &mut Conn) -> Result<Vec<(CardState, u64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM cards GROUP BY state")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            Ok((state.parse()?, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// Stores many cards at once, in statements of a few hundred rows (for seeding and benchmarks).
pub async fn insert_many(conn: &mut Conn, cards: &[Card]) -> Result<(), StoreError> {
    for chunk in cards.chunks(500) {
        let mut q = QueryBuilder::new(
            "INSERT INTO cards (id, serial, template_id, state, holder_id, valid_until, encoded, \
             batch_order_id, created_at, updated_at) VALUES ",
        );
        let mut rows = Vec::with_capacity(chunk.len());
        for card in chunk {
            let values = [
                q.arg(Arg::Text(card.id.to_string())),
                q.arg(Arg::Text(card.serial.to_string())),
                q.arg(Arg::Text(card.template.to_string())),
                q.arg(Arg::Text(card.state.as_str().to_owned())),
                "NULL".to_owned(),
                "NULL".to_owned(),
                q.arg(Arg::Int(i64::from(card.encoded))),
                "NULL".to_owned(),
                q.arg(Arg::Int(to_micros(card.created_at))),
                q.arg(Arg::Int(to_micros(card.updated_at))),
            ];
            rows.push(format!("({})", values.join(", ")));
        }
        q.push(&rows.join(", "));
        q.query().execute(&mut *conn).await?;
    }
    Ok(())
}
