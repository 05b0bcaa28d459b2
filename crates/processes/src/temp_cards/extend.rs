//! TempCardsProcExtend: the holder keeps the card for another validity period.

use cardwright_domain::temp_cards::processes;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;
use cardwright_storage::certificates::{self, CertificateKind};
use cardwright_storage::persons;

use crate::card_process::{options_for, run_card_process, Change};
use crate::{Context, ProcessError};

pub async fn extend(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardRecord, ProcessError> {
    let process = processes::EXTEND;
    run_card_process(ctx, operator, process, id, |ctx, operator, conn, card| {
        Box::pin(async move {
            let run = options_for(ctx, conn, card, process, operator).await?;
            let allowed = run.options.max_extensions;
            let done = cardwright_storage::audit::count_since_last(
                &mut *conn,
                &card.id.to_string(),
                process.as_str(),
                processes::ASSIGN.as_str(),
            )
            .await?;
            if done >= i64::from(allowed) {
                return Err(ProcessError::Conflict(format!(
                    "{} has been extended {done} time(s) since it was assigned; the option \
                     max_extensions allows {allowed}. Withdraw it and assign a new card instead.",
                    card.serial
                )));
            }
            let options = run.options.temp_card_options();
            let from = card.valid_until.unwrap_or(card.updated_at);
            let until = options.valid_until_from(from);
            card.valid_until = Some(until);
            let mut revoked = Vec::new();
            let mut certify_holder = None;
            if let (true, Some(holder)) = (card.encoded, card.holder) {
                let person = persons::get(&mut *conn, holder)
                    .await?
                    .ok_or_else(|| ProcessError::Internal(format!("holder {holder} vanished")))?;
                revoked = certificates::revoke(
                    &mut *conn,
                    card.id,
                    Some(CertificateKind::Holder),
                    card.updated_at,
                )
                .await?;
                certify_holder = Some(person);
            }
            let details = serde_json::json!({
                "extension": done + 1,
                "previous_valid_until": from.to_rfc3339(),
                "valid_until": until.to_rfc3339(),
                "options": run.to_json(),
                "certificates": [],
                "revoked_certificates": revoked,
            });
            Ok(Change {
                details,
                certify_holder,
            })
        })
    })
    .await
}
