//! TempCardsProcExtend: the holder keeps the card for another validity period.

use cardwright_domain::{CardId, Operator, ProcessName};
use cardwright_storage::cards::CardRecord;

use super::run_card_process;
use crate::{Context, ProcessError};

pub async fn extend(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardRecord, ProcessError> {
    let options = ctx.settings.options;
    run_card_process(
        ctx,
        operator,
        ProcessName::TempCardsProcExtend,
        id,
        async |_, card| {
            let from = card.valid_until.unwrap_or(card.updated_at);
            let until = options.valid_until_from(from);
            card.valid_until = Some(until);
            Ok(serde_json::json!({
                "previous_valid_until": from.to_rfc3339(),
                "valid_until": until.to_rfc3339(),
                "validity_days": options.validity_days,
            }))
        },
    )
    .await
}
