//! Checkpoints of the audit log, delivered to the subscriptions that list `audit.checkpoint`.

use cardwright_domain::temp_cards::EventType;
use cardwright_domain::{DeliveryId, Timestamp};
use cardwright_storage::webhooks::{self as rows, NewDelivery};
use cardwright_storage::Store;

use crate::{Context, ProcessError};

/// A signed checkpoint of the audit log: its head's sequence number and hash, the signature
/// over them, and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
    pub at: Timestamp,
}

/// The event type of checkpoints.
const CHECKPOINT: EventType = EventType::AuditCheckpoint;

/// Queues a delivery of `checkpoint` for each enabled subscription that lists
/// `audit.checkpoint`, signed and retried like every delivery; returns how many were queued. A
/// checkpoint of a sequence number published before is not queued again. Publishing is no change
/// of the installation: nothing is written to the audit log it vouches for.
pub async fn publish_checkpoint(
    ctx: &Context,
    checkpoint: &AuditCheckpoint,
) -> Result<usize, ProcessError> {
    let time = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let payload = serde_json::json!({
        "type": CHECKPOINT.as_str(),
        "timestamp": time(checkpoint.at),
        "data": {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "signature": checkpoint.signature,
            "at": time(checkpoint.at),
        }
    })
    .to_string();
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let deliveries: Vec<NewDelivery> = rows::list_enabled(&mut tx)
        .await?
        .into_iter()
        .filter(|w| w.events.iter().any(|e| e == CHECKPOINT.as_str()))
        .map(|w| {
            let (millis, random) = ctx.id_parts();
            NewDelivery {
                id: DeliveryId::new(millis, random),
                webhook: w.id,
                source: format!("checkpoint:{}", checkpoint.seq),
                event_seq: checkpoint.seq,
                event_type: CHECKPOINT.as_str().to_owned(),
                // Checkpoints arrive in order among themselves, whatever else waits.
                ordering_key: CHECKPOINT.as_str().to_owned(),
                payload: payload.clone(),
                created_at: now,
                give_up_at: ctx.notify.give_up_at(now),
            }
        })
        .collect();
    let written = rows::insert_deliveries(&mut tx, &deliveries).await?;
    Store::commit(tx).await?;
    Ok(usize::try_from(written).unwrap_or(usize::MAX))
}
