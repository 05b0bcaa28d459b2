//! Mails to send, the reminders due, and the message texts an admin changed.
//!
//! A mail is written once per event: its `dedupe_key` is unique, so a second server deciding the
//! same mail writes nothing. Senders claim mails with a lease, as webhook deliveries are claimed.

use cardwright_domain::{CardId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::opt_from_micros;
use crate::{from_micros, to_micros, Conn, Dialect, StoreError};

/// A mail to write.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: String,
    pub dedupe_key: String,
    pub kind: String,
    pub card: Option<CardId>,
    pub recipients: Vec<String>,
    pub copy_to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub created_at: Timestamp,
    pub give_up_at: Timestamp,
    /// Why the mail is not sent (nobody to send it to); it is kept, so it is decided once.
    pub skipped: Option<String>,
}

/// Writes a mail unless one with its key exists; true when written.
pub async fn insert(conn: &mut Conn, mail: &NewMail) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO mails (id, dedupe_key, kind, card_id, recipients, copy_to, subject, body, \
         state, attempts, created_at, next_attempt_at, give_up_at, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11, 0, $9, $9, $10, $12) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&mail.id)
    .bind(&mail.dedupe_key)
    .bind(&mail.kind)
    .bind(mail.card.map(|c| c.to_string()))
    .bind(mail.recipients.join(", "))
    .bind((!mail.copy_to.is_empty()).then(|| mail.copy_to.join(", ")))
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(to_micros(mail.created_at))
    .bind(to_micros(mail.give_up_at))
    .bind(if mail.skipped.is_some() {
        "skipped"
    } else {
        "pending"
    })
    .bind(mail.skipped.clone())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A stored mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: String,
    pub dedupe_key: String,
    pub kind: String,
    pub card: Option<String>,
    pub recipients: Vec<String>,
    pub copy_to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// `pending`, `sent`, `dead` (given up) or `skipped` (nobody to send it to).
    pub state: String,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub give_up_at: Timestamp,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
}

fn addresses(list: Option<String>) -> Vec<String> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn mail(row: &AnyRow) -> Result<Mail, StoreError> {
    Ok(Mail {
        id: row.try_get("id")?,
        dedupe_key: row.try_get("dedupe_key")?,
        kind: row.try_get("kind")?,
        card: row.try_get("card_id")?,
        recipients: addresses(row.try_get("recipients")?),
        copy_to: addresses(row.try_get("copy_to")?),
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        next_attempt_at: from_micros(row.try_get("next_attempt_at")?)?,
        give_up_at: from_micros(row.try_get("give_up_at")?)?,
        last_error: row.try_get("last_error")?,
        sent_at: opt_from_micros(row.try_get("sent_at")?)?,
    })
}

const COLUMNS: &str = "id, dedupe_key, kind, card_id, recipients, copy_to, subject, body, state, \
    attempts, created_at, next_attempt_at, give_up_at, last_error, sent_at";

/// Claims up to `limit` due mails for `claimer` until `lease_until`, oldest first.
pub async fn claim(
    conn: &mut Conn,
    dialect: Dialect,
    now: Timestamp,
    lease_until: Timestamp,
    claimer: &str,
    limit: i64,
) -> Result<Vec<Mail>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let free =
        "state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)";
    let rows = sqlx::query(&format!(
        "UPDATE mails SET lease_until = $1, claimed_by = $2 WHERE {free} AND id IN \
         (SELECT id FROM mails WHERE {free} ORDER BY next_attempt_at, id LIMIT $4{lock}) \
         RETURNING {COLUMNS}"
    ))
    .bind(to_micros(lease_until))
    .bind(claimer)
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let mut taken = rows.iter().map(mail).collect::<Result<Vec<_>, _>>()?;
    taken.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    Ok(taken)
}

/// Records a mail the SMTP server accepted; false when this claim was no longer the mail's.
pub async fn mark_sent(
    conn: &mut Conn,
    id: &str,
    claimer: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE mails SET state = 'sent', sent_at = $1, attempts = attempts + 1, last_error = NULL, \
         lease_until = NULL, claimed_by = NULL WHERE id = $2 AND claimed_by = $3 AND state = 'pending'",
    )
    .bind(to_micros(now))
    .bind(id)
    .bind(claimer)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records a failed attempt: tried again at `retry_at`, or dead when `None`.
pub async fn mark_failed(
    conn: &mut Conn,
    id: &str,
    claimer: &str,
    error: &str,
    retry_at: Option<Timestamp>,
) -> Result<(), StoreError> {
    let (state, next) = match retry_at {
        Some(at) => ("pending", Some(to_micros(at))),
        None => ("dead", None),
    };
    sqlx::query(
        "UPDATE mails SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
         attempts = attempts + 1, last_error = $3, lease_until = NULL, claimed_by = NULL \
         WHERE id = $4 AND claimed_by = $5 AND state = 'pending'",
    )
    .bind(state)
    .bind(next)
    .bind(error)
    .bind(id)
    .bind(claimer)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives back every claim of `claimer` (a server starting again after it died).
pub async fn release_all(conn: &mut Conn, claimer: &str) -> Result<u64, StoreError> {
    let done =
        sqlx::query("UPDATE mails SET lease_until = NULL, claimed_by = NULL WHERE claimed_by = $1")
            .bind(claimer)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// The newest mails first, at most `limit`.
pub async fn recent(conn: &mut Conn, limit: i64) -> Result<Vec<Mail>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mails ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(mail).collect()
}

/// An assigned card whose reminder is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReminder {
    pub card: CardId,
    pub serial: String,
    pub valid_until: Timestamp,
    pub given_name: String,
    pub family_name: String,
    pub email: Option<String>,
}

/// The key of the reminder for a card's validity: a new validity (an extension) gets a new one.
pub fn reminder_key(card: CardId, valid_until: Timestamp) -> String {
    format!("reminder:{card}:{}", to_micros(valid_until))
}

/// Assigned cards of template `template` whose validity ends after `now` and at or before
/// `until`, with no reminder written for that validity yet, soonest first, at most `limit`.
pub async fn reminders_due(
    conn: &mut Conn,
    template: &str,
    now: Timestamp,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<DueReminder>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, c.serial, c.valid_until, p.given_name, p.family_name, p.email \
         FROM cards c JOIN persons p ON p.id = c.holder_id \
         WHERE c.state = 'assigned' AND c.template_id = $1 AND c.valid_until > $2 \
         AND c.valid_until <= $3 AND NOT EXISTS (SELECT 1 FROM mails m \
           WHERE m.dedupe_key = 'reminder:' || c.id || ':' || CAST(c.valid_until AS TEXT)) \
         ORDER BY c.valid_until LIMIT $4",
    )
    .bind(template)
    .bind(to_micros(now))
    .bind(to_micros(until))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            Ok(DueReminder {
                card: CardId::parse(&id)?,
                serial: r.try_get("serial")?,
                valid_until: from_micros(r.try_get("valid_until")?)?,
                given_name: r.try_get("given_name")?,
                family_name: r.try_get("family_name")?,
                email: r.try_get("email")?,
            })
        })
        .collect()
}

/// A message text an admin changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub kind: String,
    pub language: String,
    pub subject: String,
    pub body: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

pub async fn templates(conn: &mut Conn) -> Result<Vec<StoredTemplate>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, language, subject, body, updated_at, updated_by FROM mail_templates \
         ORDER BY kind, language",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredTemplate {
                kind: r.try_get("kind")?,
                language: r.try_get("language")?,
                subject: r.try_get("subject")?,
                body: r.try_get("body")?,
                updated_at: from_micros(r.try_get("updated_at")?)?,
                updated_by: r.try_get("updated_by")?,
            })
        })
        .collect()
}

pub async fn put_template(conn: &mut Conn, t: &StoredTemplate) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mail_templates (kind, language, subject, body, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, language) DO UPDATE SET \
         subject = excluded.subject, body = excluded.body, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    )
    .bind(&t.kind)
    .bind(&t.language)
    .bind(&t.subject)
    .bind(&t.body)
    .bind(to_micros(t.updated_at))
    .bind(&t.updated_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes an admin's text; false when there was none.
pub async fn delete_template(
    conn: &mut Conn,
    kind: &str,
    language: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM mail_templates WHERE kind = $1 AND language = $2")
        .bind(kind)
        .bind(language)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
