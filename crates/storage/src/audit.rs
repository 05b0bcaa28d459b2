//! The audit log: a hash chain of events, appended in the transaction of the change it records.
//!
//! Each event's hash covers its own fields and the previous event's hash, so changing or removing
//! any event breaks the chain from there on; the head row remembers the last sequence number and
//! hash, so removing the newest events is caught too.

use cardwright_domain::Timestamp;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{Arg, QueryBuilder};
use crate::{from_micros, to_micros, Conn, StoreError};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: Timestamp,
    /// The operator's username, or `system`.
    pub operator: String,
    /// The process's symbolic name, or the admin change (`OperatorAdd`, `PersonCreate`, ...).
    pub process: String,
    pub card: Option<String>,
    pub order: Option<String>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    pub details: serde_json::Value,
}

impl NewEvent {
    /// An event about master data or administration: no card, order or state.
    pub fn admin(
        at: Timestamp,
        operator: String,
        process: &str,
        details: serde_json::Value,
    ) -> Self {
        Self {
            at,
            operator,
            process: process.to_owned(),
            card: None,
            order: None,
            old_state: None,
            new_state: None,
            details,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub at: Timestamp,
    pub operator: String,
    pub process: String,
    pub card: Option<String>,
    pub order: Option<String>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    /// JSON text.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    /// The hash this event must carry, given its fields and its `prev_hash`.
    pub fn expected_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            to_micros(self.at),
            self.operator,
            self.process,
            self.card,
            self.order,
            self.old_state,
            self.new_state,
            self.details,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

fn event(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        seq: row.try_get("seq")?,
        at: from_micros(row.try_get("at")?)?,
        operator: row.try_get("operator")?,
        process: row.try_get("process")?,
        card: row.try_get("card_id")?,
        order: row.try_get("order_id")?,
        old_state: row.try_get("old_state")?,
        new_state: row.try_get("new_state")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

const SELECT: &str = "SELECT seq, at, operator, process, card_id, order_id, old_state, new_state, \
    details, prev_hash, hash FROM audit_events";

/// Appends an event to the chain; returns its sequence number. Call it inside the transaction
/// of the change it records.
pub async fn append(conn: &mut Conn, new: NewEvent) -> Result<i64, StoreError> {
    // Bumping the head first locks it until commit: appends take turns and never fork the chain.
    // The statement leaves the hash alone, so it returns the previous event's hash.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("hash")?;
    let mut event = Event {
        seq,
        at: new.at,
        operator: new.operator,
        process: new.process,
        card: new.card,
        order: new.order,
        old_state: new.old_state,
        new_state: new.new_state,
        details: new.details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    event.hash = event.expected_hash();
    sqlx::query(
        "INSERT INTO audit_events (seq, at, operator, process, card_id, order_id, old_state, \
         new_state, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(event.seq)
    .bind(to_micros(event.at))
    .bind(&event.operator)
    .bind(&event.process)
    .bind(event.card.clone())
    .bind(event.order.clone())
    .bind(event.old_state.clone())
    .bind(event.new_state.clone())
    .bind(&event.details)
    .bind(&event.prev_hash)
    .bind(&event.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&event.hash)
        .execute(conn)
        .await?;
    Ok(seq)
}

/// Filters for reading the log.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub card: Option<String>,
    pub order: Option<String>,
    /// Only events after this sequence number.
    pub after: Option<i64>,
}

/// Events matching `filter`, oldest first, at most `limit`.
pub async fn list(
    conn: &mut Conn,
    filter: &EventFilter,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let mut q = QueryBuilder::new(SELECT);
    let mut clauses = Vec::new();
    if let Some(card) = &filter.card {
        clauses.push(format!("card_id = {}", q.arg(Arg::Text(card.clone()))));
    }
    if let Some(order) = &filter.order {
        clauses.push(format!("order_id = {}", q.arg(Arg::Text(order.clone()))));
    }
    if let Some(after) = filter.after {
        clauses.push(format!("seq > {}", q.arg(Arg::Int(after))));
    }
    if !clauses.is_empty() {
        q.push(" WHERE ");
        q.push(&clauses.join(" AND "));
    }
    let limit = q.arg(Arg::Int(i64::from(limit)));
    q.push(&format!(" ORDER BY seq LIMIT {limit}"));
    let rows = q.query().fetch_all(conn).await?;
    rows.iter().map(event).collect()
}

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events read.
    pub events: u64,
    /// The first problem found: the sequence number where the chain breaks and why.
    pub first_bad: Option<(i64, String)>,
}

/// Reads the whole log in order and checks every link of the chain and the head.
pub async fn verify(conn: &mut Conn) -> Result<Verification, StoreError> {
    const PAGE: u32 = 1000;
    let mut expected_seq = 1_i64;
    let mut prev_hash = GENESIS.to_owned();
    let mut events = 0_u64;
    loop {
        let filter = EventFilter {
            after: Some(expected_seq - 1),
            ..EventFilter::default()
        };
        let page = list(&mut *conn, &filter, PAGE).await?;
        for e in &page {
            events += 1;
            if e.seq != expected_seq {
                return Ok(Verification {
                    events,
                    first_bad: Some((expected_seq, format!("event {expected_seq} is missing"))),
                });
            }
            if e.prev_hash != prev_hash {
                return Ok(Verification {
                    events,
                    first_bad: Some((
                        e.seq,
                        format!("event {} does not link to its predecessor", e.seq),
                    )),
                });
            }
            if e.hash != e.expected_hash() {
                return Ok(Verification {
                    events,
                    first_bad: Some((
                        e.seq,
                        format!("event {} was changed after it was written", e.seq),
                    )),
                });
            }
            prev_hash.clone_from(&e.hash);
            expected_seq += 1;
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    let first_bad = if head_seq != expected_seq - 1 {
        Some((
            expected_seq,
            format!(
                "the log ends at event {} but {head_seq} were written: event {expected_seq} onwards is missing",
                expected_seq - 1
            ),
        ))
    } else if head_hash != prev_hash {
        Some((
            head_seq,
            format!("event {head_seq} does not match the chain's head"),
        ))
    } else {
        None
    };
    Ok(Verification { events, first_bad })
}
