//! TempCardsProcLock: a card that must never be used again (lost, stolen, broken).

use cardwright_domain::{CardId, Operator, ProcessName};
use cardwright_storage::cards::CardRecord;

use super::run_card_process;
use crate::{Context, ProcessError};

pub async fn lock(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardRecord, ProcessError> {
    run_card_process(
        ctx,
        operator,
        ProcessName::TempCardsProcLock,
        id,
        async |_, card| Ok(serde_json::json!({ "holder": card.holder.map(|h| h.to_string()) })),
    )
    .await
}
