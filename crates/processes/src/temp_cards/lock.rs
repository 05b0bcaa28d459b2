//! TempCardsProcLock: a card that must never be used again (lost, stolen, broken).

use cardwright_domain::temp_cards::processes;
use cardwright_domain::temp_cards::Reason;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;
use cardwright_storage::certificates;

use crate::card_process::{run_card_process, with_reason};
use crate::{Context, ProcessError};

pub async fn lock(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
    reason: Option<&Reason>,
) -> Result<CardRecord, ProcessError> {
    let reason = reason.cloned();
    run_card_process(ctx, operator, processes::LOCK, id, |_, _, conn, card| {
        let reason = reason.clone();
        Box::pin(async move {
            // Every certificate of the card stops working: they all go on the revocation list.
            let revoked = certificates::revoke(conn, card.id, None, card.updated_at).await?;
            Ok(with_reason(
                serde_json::json!({
                    "holder": card.holder.map(|h| h.to_string()),
                    "revoked_certificates": revoked,
                }),
                reason.as_ref(),
            )
            .into())
        })
    })
    .await
}
