//! The head of the log, its signing when the log is empty or taken over from before signing, and
//! every check of the chain: `audit verify` and the published checkpoints.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::key::Signed;
use super::{list, AuditKey, Event, EventFilter, GENESIS};
use crate::{Conn, StoreError};

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
