//! Telling people and systems: webhook deliveries and mails.
//!
//! The audit log is the outbox. Every event is written in the transaction of its change; the
//! fan-out ([`fan_out`]) then turns the events after the cursor into webhook deliveries (one per
//! subscription that wants the event's type) and mails (the assignment notice, the notice of a
//! card that expired unreturned), in one transaction that also moves the cursor. Reminders are
//! decided from the cards ([`mails::queue_reminders`]). Senders claim deliveries and mails with a
//! lease and record each outcome, so each is sent once across restarts and servers, and at least
//! once when a server dies between sending and recording.

pub mod addresses;
pub mod mails;
pub mod webhooks;

use std::collections::HashMap;
use std::time::Duration;

use cardwright_domain::temp_cards::EventType;
use cardwright_domain::{CardId, DeliveryId, Timestamp};
use cardwright_storage::audit::{self, Event, EventFilter};
use cardwright_storage::webhooks::{self as rows, NewDelivery};
use cardwright_storage::{cards, outbox, Conn, Store};

use crate::{Context, ProcessError};

/// How notifications are sent.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Whether mails are written at all (an SMTP server is configured).
    pub mail: bool,
    /// URL prefixes a webhook may point at, inside the network too; empty: any URL whose host
    /// is not inside the network.
    pub allowed_urls: Vec<String>,
    /// The wait before the first retry; each further retry waits twice as long...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// How long after the event a delivery or mail is tried before it is given up (dead).
    pub give_up_after: Duration,
    /// How long a claimed delivery or mail stays with its sender before another may take it.
    pub lease: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            mail: false,
            allowed_urls: Vec::new(),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_hours(1),
            give_up_after: Duration::from_hours(24),
            lease: Duration::from_mins(2),
        }
    }
}

impl NotifySettings {
    /// When to try again after `attempts` failed attempts (counting the one just made), or `None`
    /// when that would be after `give_up_at`.
    pub fn retry_at(
        &self,
        now: Timestamp,
        attempts: i64,
        give_up_at: Timestamp,
    ) -> Option<Timestamp> {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let wait = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.retry_max);
        let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
        (at <= give_up_at).then_some(at)
    }

    pub(crate) fn give_up_at(&self, from: Timestamp) -> Timestamp {
        from + chrono::Duration::from_std(self.give_up_after).unwrap_or(chrono::Duration::days(1))
    }

    pub(crate) fn lease_until(&self, now: Timestamp) -> Timestamp {
        now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(2))
    }
}

/// Gives back the deliveries and mails `claimer` held when it stopped (a server that died and
/// starts again under the same name sends them at once instead of after their lease). Returns
/// how many.
pub async fn release_claims(ctx: &Context, claimer: &str) -> Result<u64, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let released = rows::release_all(&mut tx, claimer).await?
        + cardwright_storage::mails::release_all(&mut tx, claimer).await?;
    Store::commit(tx).await?;
    Ok(released)
}

/// Events fanned out per transaction.
pub const FAN_OUT_BATCH: u32 = 500;

/// Turns the audit events after the cursor (at most `limit`) into deliveries and mails and moves
/// the cursor past them, in one transaction. Returns how many events it read: fewer than `limit`
/// means it caught up.
pub async fn fan_out(ctx: &Context, limit: u32) -> Result<usize, ProcessError> {
    if !outbox::behind(&mut *ctx.store.reader().await?).await? {
        return Ok(0);
    }
    let mut tx = ctx.store.begin().await?;
    let cursor = outbox::lock_cursor(&mut tx).await?;
    let filter = EventFilter {
        after: Some(cursor),
        ..EventFilter::default()
    };
    let events = audit::list(&mut tx, &filter, limit).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(0);
    };
    // A disabled subscription hears of nothing while it is disabled.
    let subscriptions = rows::list_enabled(&mut tx).await?;
    let announced: Vec<(&Event, EventType)> = events
        .iter()
        .filter_map(|e| {
            EventType::of_audit_event(&e.process, e.card.is_some(), e.new_state.as_deref())
                .map(|t| (e, t))
        })
        .collect();
    let serials = serials(&mut tx, &announced).await?;
    let mut deliveries = Vec::new();
    let mut mails = mails::Composer::new(ctx);
    for (event, kind) in &announced {
        let subscribed: Vec<_> = subscriptions
            .iter()
            .filter(|w| w.since_seq < event.seq && w.events.iter().any(|e| e == kind.as_str()))
            .collect();
        if !subscribed.is_empty() {
            let serial = event.card.as_ref().and_then(|c| serials.get(c));
            let payload = payload(event, *kind, serial).to_string();
            let ordering_key = match (&event.card, &event.order) {
                (Some(card), _) => card.clone(),
                (None, Some(order)) => format!("order:{order}"),
                (None, None) => String::new(),
            };
            for w in subscribed {
                let (millis, random) = ctx.id_parts();
                deliveries.push(NewDelivery {
                    id: DeliveryId::new(millis, random),
                    webhook: w.id,
                    source: format!("event:{}", event.seq),
                    event_seq: event.seq,
                    event_type: kind.as_str().to_owned(),
                    ordering_key: ordering_key.clone(),
                    payload: payload.clone(),
                    created_at: ctx.now(),
                    give_up_at: ctx.notify.give_up_at(ctx.now()),
                });
            }
        }
        if ctx.notify.mail {
            mails.for_event(&mut tx, event, *kind).await?;
        }
    }
    rows::insert_deliveries(&mut tx, &deliveries).await?;
    outbox::set_cursor(&mut tx, last).await?;
    Store::commit(tx).await?;
    Ok(events.len())
}

/// The serial numbers of the cards the events are about.
async fn serials(
    conn: &mut Conn,
    events: &[(&Event, EventType)],
) -> Result<HashMap<String, String>, ProcessError> {
    let mut serials = HashMap::new();
    for (event, _) in events {
        let Some(card) = &event.card else { continue };
        if serials.contains_key(card) {
            continue;
        }
        if let Some(record) = cards::get(&mut *conn, CardId::parse(card)?).await? {
            serials.insert(card.clone(), record.card.serial.as_str().to_owned());
        }
    }
    Ok(serials)
}

/// The JSON body a webhook receives: `type`, `timestamp` and `data`, as the Standard Webhooks
/// convention has it.
fn payload(event: &Event, kind: EventType, serial: Option<&String>) -> serde_json::Value {
    let mut details: serde_json::Value =
        serde_json::from_str(&event.details).unwrap_or(serde_json::Value::Null);
    // The options a process ran with and its certificates are the audit log's business.
    if let Some(map) = details.as_object_mut() {
        map.remove("options");
        map.remove("certificates");
    }
    serde_json::json!({
        "type": kind.as_str(),
        "timestamp": event.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {
            "seq": event.seq,
            "card_id": event.card,
            "serial": serial,
            "batch_order_id": event.order,
            "old_state": event.old_state,
            "new_state": event.new_state,
            "operator": event.operator,
            "details": details,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_most_and_stop_at_the_end() {
        let s = NotifySettings {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_mins(1),
            ..NotifySettings::default()
        };
        let now = chrono::Utc::now();
        let end = now + chrono::Duration::hours(1);
        let wait = |attempts| (s.retry_at(now, attempts, end).unwrap() - now).num_seconds();
        assert_eq!(
            [wait(1), wait(2), wait(3), wait(4), wait(5), wait(40)],
            [5, 10, 20, 40, 60, 60]
        );
        assert_eq!(s.retry_at(now, 1, now + chrono::Duration::seconds(4)), None);
    }
}
