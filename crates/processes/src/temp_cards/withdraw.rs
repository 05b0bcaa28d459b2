//! TempCardsProcWithdraw: the card comes back to the desk and can be handed out again.

use cardwright_domain::temp_cards::processes;
use cardwright_domain::temp_cards::Reason;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;
use cardwright_storage::certificates::{self, CertificateKind};

use crate::card_process::{run_card_process, with_reason};
use crate::{Context, ProcessError};

pub async fn withdraw(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
    reason: Option<&Reason>,
) -> Result<CardRecord, ProcessError> {
    let reason = reason.cloned();
    run_card_process(
        ctx,
        operator,
        processes::WITHDRAW,
        id,
        |_, _, conn, card| {
            let reason = reason.clone();
            Box::pin(async move {
                let revoked = certificates::revoke(
                    conn,
                    card.id,
                    Some(CertificateKind::Holder),
                    card.updated_at,
                )
                .await?;
                let details = with_reason(
                    serde_json::json!({
                        "holder": card.holder.map(|h| h.to_string()),
                        "revoked_certificates": revoked,
                    }),
                    reason.as_ref(),
                );
                card.holder = None;
                card.valid_until = None;
                Ok(details.into())
            })
        },
    )
    .await
}
