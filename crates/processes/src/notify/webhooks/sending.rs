//! What the senders do with a subscription's deliveries: sign them, claim them, record how
//! each went, and disable a subscription whose receiver is gone.

use base64::Engine as _;
use cardwright_domain::{DeliveryId, Timestamp, WebhookId};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::webhooks::{self as rows, Delivery, Webhook};
use cardwright_storage::Store;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SECRET_PREFIX;
use crate::{Context, ProcessError};

/// The signing key of a subscription, opened from its sealed secret.
pub async fn signing_key(ctx: &Context, webhook: &Webhook) -> Result<Vec<u8>, ProcessError> {
    let pki = ctx.pki.as_ref().ok_or_else(|| {
        ProcessError::Conflict("webhooks need the installation's keys, which are not open".into())
    })?;
    let mut conn = ctx.store.reader().await?;
    let secret = pki
        .open_puk(&mut conn, &webhook.secret_sealed)
        .await?
        .ok_or_else(|| {
            ProcessError::Conflict(format!(
                "the secret of webhook {} does not open",
                webhook.id
            ))
        })?;
    secret_key(&secret)
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, ProcessError> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| ProcessError::Invalid("a webhook secret is whsec_ and base64".into()))
}

/// The `webhook-signature` header of a delivery: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` under the key.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Claims due deliveries of one subscription for `claimer`, in event order.
pub async fn claim(
    ctx: &Context,
    webhook: WebhookId,
    claimer: &str,
    limit: i64,
) -> Result<Vec<Delivery>, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let taken = rows::claim(
        &mut tx,
        ctx.store.dialect(),
        webhook,
        now,
        ctx.notify.lease_until(now),
        claimer,
        limit,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(taken)
}

/// What became of one delivery attempt.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It answered otherwise, or not at all.
    Failed { status: Option<u16>, error: String },
    /// It answered 410 Gone: the subscription is disabled, and this delivery waits with the rest.
    Gone,
    /// It may not be sent at all (its URL is no longer allowed): dead at once.
    Refused { error: String },
    /// It was not tried (the run stopped first).
    NotTried,
}

/// What a receiver's 410 Gone is recorded as, on the delivery and on the subscription.
pub const GONE: &str = "the receiver answered 410 Gone";

/// Records the attempts of claimed deliveries in one transaction: delivered ones are done,
/// failed ones wait for their retry (or are dead after the last), untried ones are given back.
/// A 410 Gone disables the subscription, audited as done by `system`.
pub async fn record(
    ctx: &Context,
    claimer: &str,
    attempts: &[(&Delivery, Attempt)],
) -> Result<(), ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let delivered: Vec<(DeliveryId, i64)> = attempts
        .iter()
        .filter_map(|(d, a)| match a {
            Attempt::Delivered { status } => Some((d.id, i64::from(*status))),
            _ => None,
        })
        .collect();
    rows::mark_delivered(&mut tx, &delivered, claimer, now).await?;
    let untried: Vec<DeliveryId> = attempts
        .iter()
        .filter(|(_, a)| matches!(a, Attempt::NotTried))
        .map(|(d, _)| d.id)
        .collect();
    rows::release(&mut tx, &untried, claimer).await?;
    for (d, attempt) in attempts {
        match attempt {
            Attempt::Failed { status, error } => {
                let retry = ctx.notify.retry_at(now, d.attempts + 1, d.give_up_at);
                rows::mark_failed(&mut tx, d.id, claimer, status.map(i64::from), error, retry)
                    .await?;
            }
            Attempt::Gone => {
                let retry = ctx.notify.retry_at(now, d.attempts + 1, d.give_up_at);
                let error =
                    format!("{GONE}; the subscription is disabled until a policy-admin enables it");
                rows::mark_failed(&mut tx, d.id, claimer, Some(410), &error, retry).await?;
                disable(ctx, &mut tx, d.webhook, now).await?;
            }
            Attempt::Refused { error } => {
                rows::mark_failed(&mut tx, d.id, claimer, None, error, None).await?;
            }
            Attempt::Delivered { .. } | Attempt::NotTried => {}
        }
    }
    Store::commit(tx).await?;
    Ok(())
}

/// Disables a subscription whose receiver answered 410 Gone, with its audit event; a
/// subscription another server disabled first is left as it is.
async fn disable(
    ctx: &Context,
    conn: &mut cardwright_storage::Conn,
    id: WebhookId,
    now: Timestamp,
) -> Result<(), ProcessError> {
    let Some(webhook) = rows::get(&mut *conn, id).await? else {
        return Ok(());
    };
    if rows::disable(&mut *conn, id, now, GONE).await? {
        audit::append(
            conn,
            &ctx.audit_key,
            NewEvent::admin(
                now,
                "system".to_owned(),
                "WebhookDisable",
                serde_json::json!({
                    "webhook": id.to_string(),
                    "url": webhook.url,
                    "answer": "410 Gone",
                }),
            ),
        )
        .await?;
    }
    Ok(())
}
