//! TempCardsProcLock: a card that must never be used again (lost, stolen, broken).

use cardwright_domain::temp_cards::ProcessName;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;
use cardwright_storage::certificates;

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
        |_, _, conn, card| {
            Box::pin(async move {
                // Every certificate of the card stops working: they all go on the revocation list.
                let revoked = certificates::revoke(conn, card.id, None, card.updated_at).await?;
                Ok(serde_json::json!({
                    "holder": card.holder.map(|h| h.to_string()),
                    "revoked_certificates": revoked,
                })
                .into())
            })
        },
    )
    .await
}
