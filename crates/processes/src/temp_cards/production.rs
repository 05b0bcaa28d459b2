//! Production stations at work on the batch order queue: claim an item, print it, record the
//! outcome. Each step is its own transaction, so no transaction is open while a card is in the
//! printer, and a crash leaves an item `producing` that recovery marks failed.

use std::sync::Arc;

use cardwright_cardsdk::{layout, CardArtwork, CardFace, PrintJob, Printer};
use cardwright_domain::batch_order::settle;
use cardwright_domain::{Card, CardState, ItemStatus, OrderState, ProcessName};
use cardwright_storage::batch_orders::{self, Claim};
use cardwright_storage::Store;

use super::issue_multiple::order_event;
use super::{load_for_update, save_transition};
use crate::{Actor, Context, ProcessError};

const PROCESS: ProcessName = ProcessName::TempCardsBoProcIssueMultiple;

/// The failure reason of an item whose station stopped while it was in the printer.
pub const INTERRUPTED: &str = "production interrupted";

/// A printer (and later an encoder) that produces one card at a time.
#[derive(Debug, Clone)]
pub struct Station {
    pub name: String,
    pub printer: Arc<dyn Printer>,
}

/// Takes the next queued item for `station`, if any.
pub async fn claim(ctx: &Context, station: &str) -> Result<Option<Claim>, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let claim = batch_orders::claim_next(&mut tx, ctx.store.dialect(), station, ctx.now()).await?;
    Store::commit(tx).await?;
    Ok(claim)
}

/// Records how an attempt ended: the item, the card's state and the audit event, and the order
/// becomes produced when nothing is left to do. A claim that is no longer current (recovered as
/// interrupted meanwhile) changes nothing, so no card is ever counted produced twice.
pub async fn finish(
    ctx: &Context,
    claim: &Claim,
    outcome: Result<(), String>,
) -> Result<bool, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let order = batch_orders::lock(&mut tx, ctx.store.dialect(), claim.order)
        .await?
        .ok_or_else(|| ProcessError::Internal(format!("batch order {} vanished", claim.order)))?;
    let (status, error) = match &outcome {
        Ok(()) => (ItemStatus::Produced, None),
        Err(reason) => (ItemStatus::Failed, Some(reason.as_str())),
    };
    if !batch_orders::finish(&mut tx, claim, status, error, now).await? {
        return Ok(false);
    }
    let before = load_for_update(&mut tx, ctx, claim.card).await?;
    let actor = Actor::System("production");
    if PROCESS.def().from.contains(&before.state) {
        let after = Card {
            state: if status == ItemStatus::Produced {
                PROCESS.transition(before.state)?
            } else {
                CardState::Failed
            },
            // A card whose order was cancelled while it was in the printer leaves the order now.
            batch_order: if order.state.is_closed() {
                None
            } else {
                before.batch_order
            },
            updated_at: now,
            ..before.clone()
        };
        save_transition(
            &mut tx,
            &actor,
            PROCESS,
            &before,
            &after,
            serde_json::json!({
                "action": "produce",
                "station": claim.station,
                "attempt": claim.attempt,
                "outcome": status.as_str(),
                "error": error,
            }),
        )
        .await?;
    } else {
        // Orders keep their cards from other processes, so this means the data was changed
        // behind Cardwright's back: the item ends failed and the card is left as it is.
        tracing::error!(card = %before.serial, state = %before.state, "card in production is not requested or failed");
        batch_orders::finish_anyway(
            &mut tx,
            claim,
            &format!("card is {}; not produced", before.state),
        )
        .await?;
    }
    let unfinished = batch_orders::unfinished(&mut tx, claim.order).await?;
    let settled = settle(order.state, unfinished);
    if settled != order.state
        && batch_orders::set_state(&mut tx, claim.order, order.state, settled, now).await?
    {
        let counts = batch_orders::get(&mut tx, claim.order)
            .await?
            .map(|r| r.counts)
            .unwrap_or_default();
        order_event(
            &mut tx,
            ctx,
            &actor,
            claim.order,
            Some(OrderState::Producing),
            settled,
            serde_json::json!({ "action": "produced", "produced": counts.produced, "failed": counts.failed }),
        )
        .await?;
    }
    Store::commit(tx).await?;
    Ok(true)
}

/// Claims, prints and records one card. Returns false when the queue was empty.
pub async fn produce_one(ctx: &Context, station: &Station) -> Result<bool, ProcessError> {
    let Some(claim) = claim(ctx, &station.name).await? else {
        return Ok(false);
    };
    let face = CardFace {
        serial: claim.serial.clone(),
        template: claim.template.clone(),
        issue_date: ctx.now().format("%Y-%m-%d").to_string(),
        ..CardFace::default()
    };
    let artwork = CardArtwork::new(
        claim
            .front_layout
            .as_deref()
            .unwrap_or(layout::TEMPORARY_FRONT),
        claim
            .back_layout
            .as_deref()
            .unwrap_or(layout::TEMPORARY_BACK),
        face,
    );
    let job = PrintJob {
        card_id: claim.card.to_string(),
        serial: claim.serial.clone(),
        template: claim.template.clone(),
        order_id: claim.order.to_string(),
        attempt: claim.attempt,
        station: station.name.clone(),
        artwork,
    };
    let outcome = station.printer.print(&job).await.map_err(|e| e.to_string());
    if let Err(reason) = &outcome {
        tracing::warn!(station = %station.name, serial = %claim.serial, %reason, "production failed");
    }
    finish(ctx, &claim, outcome).await?;
    Ok(true)
}

/// Marks items left in a printer as failed ("production interrupted"): those of this station
/// (after a restart) and those of any station that has held one longer than `stale_after`.
pub async fn recover(
    ctx: &Context,
    station: &str,
    stale_after: chrono::Duration,
) -> Result<u64, ProcessError> {
    let found = {
        let mut conn = ctx.store.reader().await?;
        batch_orders::interrupted(&mut conn, station, ctx.now() - stale_after).await?
    };
    let mut recovered = 0;
    for claim in &found {
        if finish(ctx, claim, Err(INTERRUPTED.to_owned())).await? {
            recovered += 1;
        }
    }
    Ok(recovered)
}
