//! TempCardsProcAbort: a requested card that will not be produced.

use cardwright_domain::temp_cards::processes;
use cardwright_domain::{CardId, Operator};
use cardwright_storage::cards::CardRecord;

use crate::card_process::run_card_process;
use crate::{Context, ProcessError};

pub async fn abort(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardRecord, ProcessError> {
    run_card_process(ctx, operator, processes::ABORT, id, |_, _, _, _| {
        Box::pin(async { Ok(serde_json::json!({}).into()) })
    })
    .await
}
