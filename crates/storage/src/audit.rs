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

use cardwright_domain::Timestamp;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{Arg, QueryBuilder};
use crate::{from_micros, to_micros, Conn, StoreError};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key that signs the audit log. It must not live readable in the database the log is in:
/// it is kept in the installation's key store (sealed under the key-encryption key, or on a
/// PKCS#11 token), so servers sharing a database sign alike.
#[derive(Clone)]
pub struct AuditKey(KeyMaterial);

#[derive(Clone)]
enum KeyMaterial {
    /// The key's bytes, in this process's memory.
    Local([u8; 32]),
    /// A key that never leaves its token; the token computes each MAC.
    External(std::sync::Arc<dyn ExternalMac>),
}

/// HMAC-SHA-256 computed where the key is kept (a PKCS#11 token).
pub trait ExternalMac: Send + Sync {
    /// The HMAC-SHA-256 of `message`, or why the token could not compute it.
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], String>;
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// What separates the audit key from other keys derived from the same master key.
const KEY_LABEL: &[u8] = b"cardwright audit log v1";

/// What an event's MAC and the head's signature are over; the labels differ so that an event's
/// MAC can never stand in for the head's signature of the same sequence number and hash.
#[derive(Debug, Clone, Copy)]
enum Signed {
    Event,
    Head,
}

impl AuditKey {
    /// The audit key of an installation from before key stores: HMAC-SHA-256(master key,
    /// "cardwright audit log v1"). Moving such an installation into a key store keeps this key,
    /// so its log still verifies.
    pub fn derive(master_key: &[u8; 32]) -> Self {
        Self(KeyMaterial::Local(Self::derived_bytes(master_key)))
    }

    /// The bytes of [`AuditKey::derive`]'s key, to move it into a key store.
    pub fn derived_bytes(master_key: &[u8; 32]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(master_key).expect("HMAC takes 32-byte keys");
        mac.update(KEY_LABEL);
        mac.finalize().into_bytes().into()
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(KeyMaterial::Local(key))
    }

    /// A key kept on a token.
    pub fn external(key: std::sync::Arc<dyn ExternalMac>) -> Self {
        Self(KeyMaterial::External(key))
    }

    /// The MAC of `what` at `seq` with `hash`.
    fn mac(&self, what: Signed, seq: i64, hash: &str) -> Result<[u8; 32], StoreError> {
        let label: &[u8] = match what {
            Signed::Event => b"event\0",
            Signed::Head => b"head\0",
        };
        let message = [label, seq.to_string().as_bytes(), b"\0", hash.as_bytes()].concat();
        match &self.0 {
            KeyMaterial::Local(key) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes 32-byte keys");
                mac.update(&message);
                Ok(mac.finalize().into_bytes().into())
            }
            KeyMaterial::External(key) => key
                .hmac_sha256(&message)
                .map_err(|e| StoreError::Key(format!("signing the audit log: {e}"))),
        }
    }

    /// The hex MAC of an event, or signature of the head, at `seq` with `hash`.
    fn sign(&self, what: Signed, seq: i64, hash: &str) -> Result<String, StoreError> {
        Ok(hex::encode(self.mac(what, seq, hash)?))
    }

    /// Whether `mac` (hex) is the MAC or signature of `seq` and `hash`, compared in constant time.
    fn verifies(&self, what: Signed, seq: i64, hash: &str, mac: &str) -> bool {
        let (Ok(given), Ok(expected)) = (hex::decode(mac), self.mac(what, seq, hash)) else {
            return false;
        };
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

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

/// The head row: the newest event's sequence number and hash, and the signature over both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub signature: Option<String>,
}

impl Head {
    /// Whether the head's signature verifies under `key`.
    pub fn is_signed(&self, key: &AuditKey) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|signature| key.verifies(Signed::Head, self.seq, &self.hash, signature))
    }
}

fn head_of(row: &AnyRow) -> Result<Head, StoreError> {
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        signature: row.try_get("signature")?,
    })
}

/// The head row, or `None` when someone deleted it.
pub async fn head(conn: &mut Conn) -> Result<Option<Head>, StoreError> {
    let row = sqlx::query("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(head_of).transpose()
}

/// Whether `signature` (hex) is the audit key's signature of a head at `seq` with `hash`: a
/// checkpoint published earlier is checked with it.
pub fn head_signature_verifies(key: &AuditKey, seq: i64, hash: &str, signature: &str) -> bool {
    key.verifies(Signed::Head, seq, hash, signature)
}

/// Tables whose rows are only ever made together with an audit event: a log that is empty while
/// one of them holds rows was emptied.
const AUDITED_TABLES: [(&str, &str); 4] = [
    ("card_templates", "card templates"),
    ("operators", "operators"),
    ("persons", "persons"),
    ("cards", "cards"),
];

/// What the database holds that an empty log would have recorded, e.g. "1 card templates, 4
/// operators"; empty when it holds nothing of it.
async fn audited_rows(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for (table, what) in AUDITED_TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
        if count > 0 {
            found.push(format!("{count} {what}"));
        }
    }
    Ok(found)
}

/// Signs the head of an installation's empty log: no event, the genesis hash, no signature, and
/// nothing in the database whose making the log would record. Done when the installation's keys
/// are made (and, for an installation whose keys were made before the empty head was signed,
/// when a server starts), so that from then on every head is signed, the empty log's too.
/// Returns whether it signed.
pub async fn sign_empty(conn: &mut Conn, key: &AuditKey) -> Result<bool, StoreError> {
    let Some(head) = head(&mut *conn).await? else {
        return Ok(false);
    };
    if head.seq != 0 || head.hash != GENESIS || head.signature.is_some() {
        return Ok(false);
    }
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&mut *conn)
        .await?;
    if events > 0 || !audited_rows(&mut *conn).await?.is_empty() {
        return Ok(false);
    }
    let signed = sqlx::query(
        "UPDATE audit_head SET signature = $1 WHERE id = 1 AND seq = 0 AND signature IS NULL",
    )
    .bind(key.sign(Signed::Head, 0, GENESIS)?)
    .execute(conn)
    .await?;
    Ok(signed.rows_affected() == 1)
}

/// What [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The log's `events` events now carry MACs and its head a signature.
    Adopted { events: i64 },
    /// Nothing was signed, for this reason.
    Refused(String),
}

/// Takes over a log written before the log was signed: checks that its chain holds (every event
/// present, linked to its predecessor and hashing to its hash, the head at the last one), then
/// writes every event's MAC and signs the head. Refused when the head or any event is signed:
/// such a log was written with signing, so what lacks a signature lost it. Call it inside a
/// transaction, and record the adoption in the log in the same transaction.
pub async fn adopt(conn: &mut Conn, key: &AuditKey) -> Result<Adoption, StoreError> {
    // A no-op update locks the head until commit, so no append slips in between.
    let Some(row) =
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash, signature")
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(Adoption::Refused(
            "the log's head row is missing, so where the log ends is unknown".into(),
        ));
    };
    let head = head_of(&row)?;
    if head.signature.is_some() {
        return Ok(Adoption::Refused(format!(
            "the log's head (event {}) is signed: the log was written with signing, so there is \
             nothing to adopt; `cardwright audit verify` names what is wrong with it",
            head.seq
        )));
    }
    let signed: Option<i64> =
        sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE mac IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if let Some(seq) = signed {
        return Ok(Adoption::Refused(format!(
            "event {seq} is signed: the log was written with signing, so the signatures missing \
             elsewhere were removed; `cardwright audit verify` names where"
        )));
    }
    let mut chain = Chain::new();
    let mut macs = Vec::new();
    loop {
        let page = list(&mut *conn, &chain.next_page(), PAGE).await?;
        for e in &page {
            if let Err((_, reason)) = chain.link(e) {
                return Ok(Adoption::Refused(reason));
            }
            macs.push((e.seq, key.sign(Signed::Event, e.seq, &e.hash)?));
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    if let Err((_, reason)) = chain.ends_at(&head) {
        return Ok(Adoption::Refused(reason));
    }
    for (seq, mac) in macs {
        sqlx::query("UPDATE audit_events SET mac = $1 WHERE seq = $2")
            .bind(mac)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("UPDATE audit_head SET signature = $1 WHERE id = 1")
        .bind(key.sign(Signed::Head, head.seq, &head.hash)?)
        .execute(conn)
        .await?;
    Ok(Adoption::Adopted { events: head.seq })
}

/// Events read at a time when the whole log is walked.
const PAGE: u32 = 1000;

/// The walk along the chain from the first event: which event comes next and the hash it must
/// link to.
struct Chain {
    next_seq: i64,
    prev_hash: String,
}

impl Chain {
    fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
        }
    }

    /// The filter for the next page of events.
    fn next_page(&self) -> EventFilter {
        EventFilter {
            after: Some(self.next_seq - 1),
            ..EventFilter::default()
        }
    }

    /// Checks that `e` is the next event, linked to the one before it and hashing to its hash,
    /// and moves on; or where and why the chain breaks.
    fn link(&mut self, e: &Event) -> Result<(), (i64, String)> {
        let (seq, expected) = (e.seq, self.next_seq);
        if seq != expected {
            return Err((expected, format!("event {expected} is missing")));
        }
        if e.prev_hash != self.prev_hash {
            return Err((seq, format!("event {seq} does not link to its predecessor")));
        }
        if e.hash != e.expected_hash() {
            return Err((seq, format!("event {seq} was changed after it was written")));
        }
        self.prev_hash.clone_from(&e.hash);
        self.next_seq += 1;
        Ok(())
    }

    /// Checks that the chain walked so far ends where `head` says.
    fn ends_at(&self, head: &Head) -> Result<(), (i64, String)> {
        let last = self.next_seq - 1;
        if head.seq > last {
            let missing = last + 1;
            return Err((
                missing,
                format!(
                    "the log ends at event {last} but {} were written: event {missing} onwards is \
                     missing",
                    head.seq
                ),
            ));
        }
        if head.hash != self.prev_hash {
            return Err((
                head.seq,
                format!("event {} does not match the chain's head", head.seq),
            ));
        }
        Ok(())
    }
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

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events read and checked.
    pub events: u64,
    /// The newest point the key vouches for: the head when all is well, otherwise the last event
    /// whose MAC verified before the first problem. Everything up to it is as it was written.
    pub last_checkpoint: Option<i64>,
    /// The first problem found: the sequence number where the chain breaks and why.
    pub first_bad: Option<(i64, String)>,
}

/// Reads the whole log in order and checks every link of the chain, every event's MAC and the
/// head's signature. Every event and the head must be signed, the empty log's head too: a log
/// without signatures (written before signing, or stripped of them) is reported, and taken over
/// only by an explicit [`adopt`]. Events appended while the walk runs are left for the next one:
/// the head is read first, and the events up to it are checked against it.
pub async fn verify(conn: &mut Conn, key: &AuditKey) -> Result<Verification, StoreError> {
    let head = head(&mut *conn).await?;
    let end = head.as_ref().map_or(i64::MAX, |h| h.seq);
    let (mut outcome, chain) = walk(&mut *conn, key, end).await?;
    if outcome.first_bad.is_none() {
        match check_end(conn, key, head.as_ref(), &chain).await? {
            Some(bad) => outcome.first_bad = Some(bad),
            None => outcome.last_checkpoint = head.filter(|h| h.seq > 0).map(|h| h.seq),
        }
    }
    Ok(outcome)
}

/// Walks the events up to `end`, checking each link, hash and MAC: how far it got, and the
/// first problem.
async fn walk(
    conn: &mut Conn,
    key: &AuditKey,
    end: i64,
) -> Result<(Verification, Chain), StoreError> {
    let mut outcome = Verification {
        events: 0,
        last_checkpoint: None,
        first_bad: None,
    };
    let mut chain = Chain::new();
    loop {
        let page = list(&mut *conn, &chain.next_page(), PAGE).await?;
        for e in page.iter().take_while(|e| e.seq <= end) {
            outcome.events += 1;
            if let Err(bad) = chain.link(e).and_then(|()| check_mac(e, key)) {
                outcome.first_bad = Some(bad);
                return Ok((outcome, chain));
            }
            outcome.last_checkpoint = Some(e.seq);
        }
        if page.len() < PAGE as usize || page.last().is_some_and(|e| e.seq >= end) {
            return Ok((outcome, chain));
        }
    }
}

/// Checks an event's MAC; every event must carry one.
fn check_mac(e: &Event, key: &AuditKey) -> Result<(), (i64, String)> {
    let seq = e.seq;
    match &e.mac {
        Some(mac) if key.verifies(Signed::Event, seq, &e.hash, mac) => Ok(()),
        Some(_) => Err((
            seq,
            format!(
                "event {seq} does not match its signature: it was changed after it was written, \
                 or signed with another key"
            ),
        )),
        None => Err((
            seq,
            format!(
                "event {seq} is not signed: it was written or changed outside Cardwright (a log \
                 written before signing is taken over with `cardwright audit adopt`)"
            ),
        )),
    }
}

/// Checks where the walked chain ends against the head: present, at the chain's last event,
/// signed, with no event past it, and an empty log only in an empty database.
async fn check_end(
    conn: &mut Conn,
    key: &AuditKey,
    head: Option<&Head>,
    chain: &Chain,
) -> Result<Option<(i64, String)>, StoreError> {
    let Some(head) = head else {
        return Ok(Some((
            chain.next_seq,
            "the log's head row is missing: it was deleted outside Cardwright, so whether newer \
             events were removed cannot be told"
                .into(),
        )));
    };
    if let Err(bad) = chain.ends_at(head) {
        return Ok(Some(bad));
    }
    if !head.is_signed(key) {
        let reason = match (&head.signature, head.seq) {
            (None, 0) => "the log is empty and its head is not signed: the log was emptied or \
                          its head reset outside Cardwright"
                .to_owned(),
            (None, seq) => format!(
                "the head of the log at event {seq} is not signed: it was changed outside \
                 Cardwright (a log written before signing is taken over with `cardwright audit \
                 adopt`)"
            ),
            (Some(_), seq) => format!(
                "the head of the log at event {seq} does not match its signature: newer events \
                 were removed, or the log is signed with another key"
            ),
        };
        return Ok(Some((head.seq, reason)));
    }
    // An event past the head: the head was moved back over events that are still there. Events
    // commit together with the head's move, so one read after the other cannot see an event
    // past a head that was not moved back.
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
        .fetch_one(&mut *conn)
        .await?;
    let now = self::head(&mut *conn).await?.map_or(head.seq, |h| h.seq);
    if let Some(newest) = newest.filter(|n| *n > now) {
        return Ok(Some((
            head.seq + 1,
            format!(
                "event {newest} lies past the head of the log at event {now}: the head was moved \
                 back outside Cardwright"
            ),
        )));
    }
    if head.seq == 0 {
        // The rows are read before the head again: a row made since the head was first read
        // committed together with its event, so the head read after it is past the empty log.
        let found = audited_rows(&mut *conn).await?;
        let still_empty = self::head(&mut *conn).await?.is_some_and(|h| h.seq == 0);
        if still_empty && !found.is_empty() {
            return Ok(Some((
                1,
                format!(
                    "the log is empty, but the database holds {} whose making it would record: \
                     the log was emptied outside Cardwright",
                    found.join(", ")
                ),
            )));
        }
    }
    Ok(None)
}

/// A head published outside the database (in the server's log, or to webhook receivers): the
/// log must still hold event `seq` with `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// The head's signature as published; a checkpoint without one is checked against the log
    /// only.
    pub signature: Option<String>,
}

/// Checks that the log still holds each checkpoint's event with the checkpoint's hash, and that
/// each checkpoint's signature is the audit key's: the problem with each that fails, with its
/// index in `checkpoints`.
pub async fn check_checkpoints(
    conn: &mut Conn,
    key: &AuditKey,
    checkpoints: &[Checkpoint],
) -> Result<Vec<(usize, String)>, StoreError> {
    let mut problems = Vec::new();
    for (i, c) in checkpoints.iter().enumerate() {
        if let Some(signature) = &c.signature {
            if !key.verifies(Signed::Head, c.seq, &c.hash, signature) {
                problems.push((
                    i,
                    format!(
                        "the checkpoint at event {} does not carry this installation's signature",
                        c.seq
                    ),
                ));
                continue;
            }
        }
        let held: Option<String> = if c.seq == 0 {
            Some(GENESIS.to_owned())
        } else {
            sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                .bind(c.seq)
                .fetch_optional(&mut *conn)
                .await?
        };
        match held {
            None => problems.push((
                i,
                format!(
                    "event {} of the checkpoint is no longer in the log: the log was cut back \
                     past it",
                    c.seq
                ),
            )),
            Some(hash) if hash != c.hash => problems.push((
                i,
                format!(
                    "event {} no longer has the hash the checkpoint published: the log was \
                     rewritten",
                    c.seq
                ),
            )),
            Some(_) => {}
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::{AuditKey, Signed};

    #[test]
    fn the_key_is_never_printed() {
        let key = AuditKey::derive(&[7; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "AuditKey(..)");
        let super::KeyMaterial::Local(bytes) = key.0 else {
            unreachable!()
        };
        assert!(!shown.contains(&hex::encode(bytes)));
    }

    #[test]
    fn the_key_depends_on_the_master_key() {
        let mac = |key: &AuditKey| key.sign(Signed::Event, 1, super::GENESIS).unwrap();
        let a = AuditKey::derive(&[7; 32]);
        assert_eq!(mac(&a), mac(&AuditKey::derive(&[7; 32])));
        assert_ne!(mac(&a), mac(&AuditKey::derive(&[8; 32])));
        assert_ne!(
            mac(&a),
            mac(&AuditKey::from_bytes([7; 32])),
            "the master key itself is not used"
        );
    }

    #[test]
    fn an_event_mac_is_no_head_signature() {
        let key = AuditKey::derive(&[7; 32]);
        let hash = super::GENESIS;
        let mac = key.sign(Signed::Event, 5, hash).unwrap();
        assert!(key.verifies(Signed::Event, 5, hash, &mac));
        assert!(!key.verifies(Signed::Head, 5, hash, &mac));
        assert!(!key.verifies(Signed::Event, 6, hash, &mac));
        assert!(!AuditKey::derive(&[8; 32]).verifies(Signed::Event, 5, hash, &mac));
        assert!(!key.verifies(Signed::Event, 5, hash, "not hex"));
    }
}
