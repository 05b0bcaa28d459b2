//! The audit log: a hash chain of events, appended in the transaction of the change it records.
//!
//! Each event's hash covers its own fields and the previous event's hash, so changing or removing
//! any event breaks the chain from there on; the head row remembers the last sequence number and
//! hash, so removing the newest events is caught too.
//!
//! The hashes alone stop nobody who can write to the database: recomputing them is easy. So every
//! event also carries a MAC of its sequence number and hash, and the head a signature of the same,
//! both under an [`AuditKey`] that is kept outside the database. Rewriting an event breaks its MAC;
//! removing the newest events and moving the head back breaks the head's signature.
//!
//! `key` holds the key, `verify` the head, its adoption and every check of the chain.

use cardwright_domain::Timestamp;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{Arg, QueryBuilder};
use crate::{from_micros, to_micros, Conn, StoreError};

mod key;
mod verify;

use key::Signed;
pub use key::{AuditKey, ExternalMac};
pub use verify::{
    adopt, check_checkpoints, head, head_signature_verifies, sign_empty, verify, Adoption,
    Checkpoint, Head, Verification,
};

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
    /// The MAC of `seq` and `hash` under the audit key; `None` for events written before the log
    /// was signed.
    pub mac: Option<String>,
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
        mac: row.try_get("mac")?,
    })
}

const SELECT: &str = "SELECT seq, at, operator, process, card_id, order_id, old_state, new_state, \
    details, prev_hash, hash, mac FROM audit_events";

impl Event {
    /// Event `seq` of `new`, linked to the previous event's hash: its own hash, and its MAC when
    /// the head it follows is trusted.
    fn chained(
        seq: i64,
        new: NewEvent,
        prev_hash: String,
        key: &AuditKey,
        trusted: bool,
    ) -> Result<Self, StoreError> {
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
            mac: None,
        };
        event.hash = event.expected_hash();
        event.mac = if trusted {
            Some(key.sign(Signed::Event, seq, &event.hash)?)
        } else {
            None
        };
        Ok(event)
    }
}

/// Whether the head (event `seq`, hash `hash`) carries a valid signature. The empty log's head
/// is signed when the installation's keys are made, so an unsigned head is never trusted: an
/// append then writes its event without a MAC, so the break stays visible to `verify`.
fn head_trusted(key: &AuditKey, seq: i64, hash: &str, signature: Option<&str>) -> bool {
    let trusted =
        signature.is_some_and(|signature| key.verifies(Signed::Head, seq, hash, signature));
    if !trusted {
        tracing::error!(
            seq,
            "the audit log's head carries no valid signature (changed outside Cardwright, or \
             signed with another key): appending without signing; run `cardwright audit verify`"
        );
    }
    trusted
}

/// The error of an append or adoption that finds no head row: someone deleted it.
fn missing_head() -> StoreError {
    StoreError::Corrupt(
        "the audit log's head row is missing (deleted outside Cardwright); run `cardwright audit \
         verify`"
            .into(),
    )
}

/// Appends several events in one go, as [`append`] would one after the other: one bump of the
/// head for all of them, their rows in a few multi-row INSERTs, the head's new hash once. For a
/// process that changes many cards in one transaction (a request of a thousand cards).
pub async fn append_all(
    conn: &mut Conn,
    key: &AuditKey,
    events: Vec<NewEvent>,
) -> Result<(), StoreError> {
    let Ok(count) = i64::try_from(events.len()) else {
        return Err(StoreError::Corrupt("too many audit events at once".into()));
    };
    if count == 0 {
        return Ok(());
    }
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash, signature",
    )
    .bind(count)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(missing_head)?;
    let last: i64 = head.try_get("seq")?;
    let first = last - count + 1;
    let mut prev_hash: String = head.try_get("hash")?;
    let prev_signature: Option<String> = head.try_get("signature")?;
    let trusted = head_trusted(key, first - 1, &prev_hash, prev_signature.as_deref());
    let mut sealed = Vec::with_capacity(events.len());
    for (seq, new) in (first..).zip(events) {
        let event = Event::chained(seq, new, std::mem::take(&mut prev_hash), key, trusted)?;
        prev_hash.clone_from(&event.hash);
        sealed.push(event);
    }
    // Twelve values a row; 200 rows stay far below either database's limit of parameters.
    for chunk in sealed.chunks(200) {
        let mut q = QueryBuilder::new(
            "INSERT INTO audit_events (seq, at, operator, process, card_id, order_id, old_state, \
             new_state, details, prev_hash, hash, mac) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            let values = [
                q.arg(Arg::Int(e.seq)),
                q.arg(Arg::Int(to_micros(e.at))),
                q.arg(Arg::Text(e.operator.clone())),
                q.arg(Arg::Text(e.process.clone())),
                q.arg(Arg::OptText(e.card.clone())),
                q.arg(Arg::OptText(e.order.clone())),
                q.arg(Arg::OptText(e.old_state.clone())),
                q.arg(Arg::OptText(e.new_state.clone())),
                q.arg(Arg::Text(e.details.clone())),
                q.arg(Arg::Text(e.prev_hash.clone())),
                q.arg(Arg::Text(e.hash.clone())),
                q.arg(Arg::OptText(e.mac.clone())),
            ];
            q.push(if i == 0 { "(" } else { ", (" });
            q.push(&values.join(", "));
            q.push(")");
        }
        q.query().execute(&mut *conn).await?;
    }
    let signature = trusted
        .then(|| key.sign(Signed::Head, last, &prev_hash))
        .transpose()?;
    sqlx::query("UPDATE audit_head SET hash = $1, signature = $2 WHERE id = 1")
        .bind(&prev_hash)
        .bind(signature)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends an event to the chain and signs it and the new head; returns its sequence number.
/// Call it inside the transaction of the change it records.
///
/// The new head is only signed when the previous one verifies: a
/// head moved back by someone without the key, to hide the newest events, must not be signed
/// over. Then the event is written without a MAC and the head stays unsigned, so `verify` keeps
/// reporting the break, and the change itself still happens.
pub async fn append(conn: &mut Conn, key: &AuditKey, new: NewEvent) -> Result<i64, StoreError> {
    // Bumping the head first locks it until commit: appends take turns and never fork the chain.
    // The statement leaves the hash and signature alone, so it returns the previous event's.
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, signature",
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(missing_head)?;
    let seq: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("hash")?;
    let prev_signature: Option<String> = head.try_get("signature")?;
    let trusted = head_trusted(key, seq - 1, &prev_hash, prev_signature.as_deref());
    let event = Event::chained(seq, new, prev_hash, key, trusted)?;
    let signature = trusted
        .then(|| key.sign(Signed::Head, seq, &event.hash))
        .transpose()?;
    // On PostgreSQL the event and the head's new hash go in one statement: the head stays locked
    // until commit, and every round trip while it is held delays every other appender.
    let postgres = conn.backend_name() == "PostgreSQL";
    let insert = "INSERT INTO audit_events (seq, at, operator, process, card_id, order_id, \
                  old_state, new_state, details, prev_hash, hash, mac) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
    let statement = if postgres {
        format!("WITH event AS ({insert}) UPDATE audit_head SET hash = $11, signature = $13 WHERE id = 1")
    } else {
        insert.to_owned()
    };
    let mut query = sqlx::query(&statement)
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
        .bind(event.mac.clone());
    if postgres {
        query = query.bind(signature.clone());
    }
    query.execute(&mut *conn).await?;
    if !postgres {
        sqlx::query("UPDATE audit_head SET hash = $1, signature = $2 WHERE id = 1")
            .bind(&event.hash)
            .bind(signature)
            .execute(conn)
            .await?;
    }
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

/// The newest event of a process (or admin change), if any.
pub async fn last_of(conn: &mut Conn, process: &str) -> Result<Option<Event>, StoreError> {
    let row = sqlx::query(&format!(
        "{SELECT} WHERE process = $1 ORDER BY seq DESC LIMIT 1"
    ))
    .bind(process)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(event).transpose()
}

/// How many `process` events a card had since its last `since` event (all of them if it had
/// none), e.g. the extensions of its current assignment.
pub async fn count_since_last(
    conn: &mut Conn,
    card: &str,
    process: &str,
    since: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE card_id = $1 AND process = $2 AND seq > \
         COALESCE((SELECT MAX(seq) FROM audit_events WHERE card_id = $3 AND process = $4), 0)",
    )
    .bind(card)
    .bind(process)
    .bind(card)
    .bind(since)
    .fetch_one(conn)
    .await?)
}
