//! Webhook subscriptions and their deliveries.
//!
//! A subscription is `enabled` or, after its receiver answered 410 Gone, `disabled` until a
//! policy-admin enables it again; only enabled subscriptions get deliveries and have them sent.
//! A delivery is `pending` until it is `delivered` or, after its last attempt, `dead`. Workers
//! claim pending deliveries with a lease (`lease_until`, `claimed_by`); a lease that ran out (its
//! server died) makes the delivery claimable again, so none is lost.

use cardwright_domain::{DeliveryId, Timestamp, WebhookId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::opt_from_micros;
use crate::{from_micros, to_micros, Conn, Dialect, StoreError};

/// Whether a subscription gets deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    Enabled,
    /// Its receiver said it is gone; nothing is sent until it is enabled again.
    Disabled,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Enabled => "enabled",
            WebhookState::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "enabled" => Ok(WebhookState::Enabled),
            "disabled" => Ok(WebhookState::Disabled),
            other => Err(StoreError::Corrupt(format!("webhook state '{other}'"))),
        }
    }
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    /// Event type names.
    pub events: Vec<String>,
    pub secret_sealed: String,
    /// Events after this audit sequence number are announced to it.
    pub since_seq: i64,
    pub created_at: Timestamp,
    pub created_by: String,
    pub state: WebhookState,
    /// When and why it was disabled (disabled subscriptions).
    pub disabled: Option<(Timestamp, String)>,
}

impl Webhook {
    pub fn enabled(&self) -> bool {
        self.state == WebhookState::Enabled
    }
}

fn webhook(row: &AnyRow) -> Result<Webhook, StoreError> {
    let id: String = row.try_get("id")?;
    let events: String = row.try_get("events")?;
    let state: String = row.try_get("state")?;
    let disabled_at = opt_from_micros(row.try_get("disabled_at")?)?;
    let disabled_reason: Option<String> = row.try_get("disabled_reason")?;
    Ok(Webhook {
        id: WebhookId::parse(&id)?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&events)
            .map_err(|e| StoreError::Corrupt(format!("webhook {id} events: {e}")))?,
        secret_sealed: row.try_get("secret_sealed")?,
        since_seq: row.try_get("since_seq")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        state: WebhookState::parse(&state)?,
        disabled: disabled_at.map(|at| (at, disabled_reason.unwrap_or_default())),
    })
}

const SELECT_WEBHOOK: &str = "SELECT id, url, events, secret_sealed, since_seq, created_at, \
    created_by, state, disabled_at, disabled_reason FROM webhooks";

/// Writes a new subscription, enabled.
pub async fn insert(conn: &mut Conn, w: &Webhook) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret_sealed, since_seq, created_at, created_by, \
         state) VALUES ($1, $2, $3, $4, $5, $6, $7, 'enabled')",
    )
    .bind(w.id.to_string())
    .bind(&w.url)
    .bind(serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()))
    .bind(&w.secret_sealed)
    .bind(w.since_seq)
    .bind(to_micros(w.created_at))
    .bind(&w.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every subscription, oldest first.
pub async fn list(conn: &mut Conn) -> Result<Vec<Webhook>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT_WEBHOOK} ORDER BY id"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(webhook).collect()
}

/// The enabled subscriptions, oldest first.
pub async fn list_enabled(conn: &mut Conn) -> Result<Vec<Webhook>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_WEBHOOK} WHERE state = 'enabled' ORDER BY id"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(webhook).collect()
}

pub async fn get(conn: &mut Conn, id: WebhookId) -> Result<Option<Webhook>, StoreError> {
    let row = sqlx::query(&format!("{SELECT_WEBHOOK} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(webhook).transpose()
}

/// Disables an enabled subscription, saying why; false when it was not enabled (another server
/// disabled it first, or it is gone).
pub async fn disable(
    conn: &mut Conn,
    id: WebhookId,
    at: Timestamp,
    reason: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhooks SET state = 'disabled', disabled_at = $1, disabled_reason = $2 \
         WHERE id = $3 AND state = 'enabled'",
    )
    .bind(to_micros(at))
    .bind(reason)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Enables a disabled subscription; its pending deliveries that no worker holds are due at
/// `now`, with `give_up_at` as their new end. False when it was not disabled.
pub async fn enable(
    conn: &mut Conn,
    id: WebhookId,
    now: Timestamp,
    give_up_at: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhooks SET state = 'enabled', disabled_at = NULL, disabled_reason = NULL \
         WHERE id = $1 AND state = 'disabled'",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $1, give_up_at = $2 \
         WHERE webhook_id = $3 AND state = 'pending' AND (lease_until IS NULL OR lease_until < $1)",
    )
    .bind(to_micros(now))
    .bind(to_micros(give_up_at))
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(true)
}

/// Removes a subscription and its deliveries; false when there was none.
pub async fn delete(conn: &mut Conn, id: WebhookId) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A delivery to write.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub webhook: WebhookId,
    /// What it tells of, unique per subscription: `event:<seq>` for an audit event,
    /// `checkpoint:<seq>` for a checkpoint of the audit log.
    pub source: String,
    /// The audit sequence number it is about (the event, or the last event a checkpoint
    /// covers); deliveries go out in this order.
    pub event_seq: i64,
    pub event_type: String,
    pub ordering_key: String,
    /// The JSON body sent.
    pub payload: String,
    pub created_at: Timestamp,
    pub give_up_at: Timestamp,
}

/// Writes deliveries; one that exists already (same subscription and source) is left alone.
/// Returns how many were written.
pub async fn insert_deliveries(
    conn: &mut Conn,
    deliveries: &[NewDelivery],
) -> Result<u64, StoreError> {
    let mut written = 0;
    for d in deliveries {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, source, event_seq, event_type, \
             ordering_key, payload, state, attempts, created_at, next_attempt_at, give_up_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $9) \
             ON CONFLICT (webhook_id, source) DO NOTHING",
        )
        .bind(d.id.to_string())
        .bind(d.webhook.to_string())
        .bind(&d.source)
        .bind(d.event_seq)
        .bind(&d.event_type)
        .bind(&d.ordering_key)
        .bind(&d.payload)
        .bind(to_micros(d.created_at))
        .bind(to_micros(d.give_up_at))
        .execute(&mut *conn)
        .await?;
        written += done.rows_affected();
    }
    Ok(written)
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "dead" => Ok(DeliveryState::Dead),
            other => Err(StoreError::Corrupt(format!("delivery state '{other}'"))),
        }
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook: WebhookId,
    pub event_seq: i64,
    pub event_type: String,
    pub ordering_key: String,
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub give_up_at: Timestamp,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

fn delivery(row: &AnyRow) -> Result<Delivery, StoreError> {
    let id: String = row.try_get("id")?;
    let webhook: String = row.try_get("webhook_id")?;
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        id: DeliveryId::parse(&id)?,
        webhook: WebhookId::parse(&webhook)?,
        event_seq: row.try_get("event_seq")?,
        event_type: row.try_get("event_type")?,
        ordering_key: row.try_get("ordering_key")?,
        payload: row.try_get("payload")?,
        state: DeliveryState::parse(&state)?,
        attempts: row.try_get("attempts")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        next_attempt_at: from_micros(row.try_get("next_attempt_at")?)?,
        give_up_at: from_micros(row.try_get("give_up_at")?)?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at: opt_from_micros(row.try_get("delivered_at")?)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_seq, event_type, ordering_key, payload, \
    state, attempts, created_at, next_attempt_at, give_up_at, last_status, last_error, delivered_at";

/// Claims up to `limit` due deliveries of one enabled subscription for `claimer` until
/// `lease_until`, in event order; a disabled subscription's deliveries wait. A delivery waits
/// while an earlier one with the same ordering key (the same card) is pending, claimed or not, so
/// a card's events arrive in order. The conditions are repeated outside the subquery: on
/// PostgreSQL a row another server claimed meanwhile is re-checked against them and skipped.
pub async fn claim(
    conn: &mut Conn,
    dialect: Dialect,
    webhook: WebhookId,
    now: Timestamp,
    lease_until: Timestamp,
    claimer: &str,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let free =
        "state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)";
    let sql = format!(
        "UPDATE webhook_deliveries SET lease_until = $1, claimed_by = $2 \
         WHERE {free} AND id IN (SELECT d.id FROM webhook_deliveries d \
           WHERE d.webhook_id = $4 AND d.state = 'pending' AND d.next_attempt_at <= $3 \
           AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $4 AND w.state = 'enabled') \
           AND (d.lease_until IS NULL OR d.lease_until < $3) \
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
             AND e.ordering_key = d.ordering_key AND e.state = 'pending' \
             AND e.event_seq < d.event_seq) \
           ORDER BY d.event_seq, d.id LIMIT $5{lock}) \
         RETURNING {DELIVERY_COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(to_micros(lease_until))
        .bind(claimer)
        .bind(to_micros(now))
        .bind(webhook.to_string())
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut taken = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
    taken.sort_by_key(|d| d.event_seq);
    Ok(taken)
}

/// Records deliveries the receiver accepted. Only this claimer's claims count.
pub async fn mark_delivered(
    conn: &mut Conn,
    ids: &[(DeliveryId, i64)],
    claimer: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    for (id, status) in ids {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1, \
             attempts = attempts + 1, last_status = $2, last_error = NULL, lease_until = NULL, \
             claimed_by = NULL WHERE id = $3 AND claimed_by = $4 AND state = 'pending'",
        )
        .bind(to_micros(now))
        .bind(status)
        .bind(id.to_string())
        .bind(claimer)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records a failed attempt: the delivery is tried again at `retry_at`, or is dead when `retry_at`
/// is `None`.
pub async fn mark_failed(
    conn: &mut Conn,
    id: DeliveryId,
    claimer: &str,
    status: Option<i64>,
    error: &str,
    retry_at: Option<Timestamp>,
) -> Result<(), StoreError> {
    let (state, next) = match retry_at {
        Some(at) => ("pending", Some(to_micros(at))),
        None => ("dead", None),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
         attempts = attempts + 1, last_status = $3, last_error = $4, lease_until = NULL, \
         claimed_by = NULL WHERE id = $5 AND claimed_by = $6 AND state = 'pending'",
    )
    .bind(state)
    .bind(next)
    .bind(status)
    .bind(error)
    .bind(id.to_string())
    .bind(claimer)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives back claims not attempted (the run stopped early), so another worker takes them now.
pub async fn release(conn: &mut Conn, ids: &[DeliveryId], claimer: &str) -> Result<(), StoreError> {
    for id in ids {
        sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = NULL, claimed_by = NULL \
             WHERE id = $1 AND claimed_by = $2",
        )
        .bind(id.to_string())
        .bind(claimer)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Gives back every claim of `claimer` (a server starting again after it died).
pub async fn release_all(conn: &mut Conn, claimer: &str) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = NULL, claimed_by = NULL WHERE claimed_by = $1",
    )
    .bind(claimer)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A subscription's newest deliveries first, at most `limit`.
pub async fn recent(
    conn: &mut Conn,
    webhook: WebhookId,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
         ORDER BY event_seq DESC, id DESC LIMIT $2"
    ))
    .bind(webhook.to_string())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery).collect()
}

pub async fn get_delivery(
    conn: &mut Conn,
    webhook: WebhookId,
    id: DeliveryId,
) -> Result<Option<Delivery>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
    ))
    .bind(webhook.to_string())
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(delivery).transpose()
}

/// Makes a delivery pending again, due now, with a new time to give up. A pending one that a
/// worker holds is left to it.
pub async fn resend(
    conn: &mut Conn,
    webhook: WebhookId,
    id: DeliveryId,
    now: Timestamp,
    give_up_at: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, give_up_at = $2, \
         delivered_at = NULL WHERE webhook_id = $3 AND id = $4 \
         AND (state <> 'pending' OR lease_until IS NULL OR lease_until < $1)",
    )
    .bind(to_micros(now))
    .bind(to_micros(give_up_at))
    .bind(webhook.to_string())
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deliveries per state for one subscription.
pub async fn counts(conn: &mut Conn, webhook: WebhookId) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = $1 GROUP BY state",
    )
    .bind(webhook.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}
