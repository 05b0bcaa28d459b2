//! TempCardsProcWithdraw: the card comes back to the desk and can be handed out again.

use cardwright_domain::temp_cards::ProcessName;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;
use cardwright_storage::certificates::{self, CertificateKind};

use super::run_card_process;
use crate::{Context, ProcessError};

pub async fn withdraw(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardRecord, ProcessError> {
    run_card_process(
        ctx,
        operator,
        ProcessName::TempCardsProcWithdraw,
        id,
        |_, _, conn, card| {
            Box::pin(async move {
                let revoked = certificates::revoke(
                    conn,
                    card.id,
                    Some(CertificateKind::Holder),
                    card.updated_at,
                )
                .await?;
                let details = serde_json::json!({
                    "holder": card.holder.map(|h| h.to_string()),
                    "revoked_certificates": revoked,
                });
                card.holder = None;
                card.valid_until = None;
                Ok(details.into())
            })
        },
    )
    .await
}
