//! TempCardsSysExpire: the system ends assignments whose validity has passed.

use cardwright_domain::temp_cards::{processes, states};
use cardwright_domain::CardId;
use cardwright_storage::{cards, Store};

use crate::card_process::{load_for_update, save_transition};
use crate::{Actor, Context, ProcessError};

/// Cards expired per transaction round.
const BATCH: u32 = 200;

/// Expires every assigned card whose `valid_until` is not after now; returns how many. Several
/// servers may run this at once: each card is expired by exactly one of them.
pub async fn expire_due(ctx: &Context) -> Result<u64, ProcessError> {
    let mut expired = 0;
    loop {
        let now = ctx.now();
        let due = {
            let mut conn = ctx.store.reader().await?;
            cards::due_for_expiry(&mut conn, now, BATCH).await?
        };
        let mut this_round = 0;
        for id in &due {
            if expire_one(ctx, *id).await? {
                this_round += 1;
            }
        }
        expired += this_round;
        if due.len() < BATCH as usize || this_round == 0 {
            return Ok(expired);
        }
    }
}

async fn expire_one(ctx: &Context, id: CardId) -> Result<bool, ProcessError> {
    let process = processes::EXPIRE;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let before = load_for_update(&mut tx, ctx, id).await?;
    // Another server or an operator may have acted since the card was found due.
    let still_due =
        before.state == states::ASSIGNED && before.valid_until.is_some_and(|t| t <= now);
    if !still_due {
        return Ok(false);
    }
    let mut after = before.clone();
    after.state = process.transition(before.state)?;
    after.updated_at = now;
    let details = serde_json::json!({
        "valid_until": before.valid_until.map(|t| t.to_rfc3339()),
    });
    save_transition(
        &mut tx,
        ctx,
        &Actor::System("system"),
        process,
        &before,
        &after,
        details,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(true)
}
