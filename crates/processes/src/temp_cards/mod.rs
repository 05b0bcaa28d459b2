//! The temporary card area's processes, one module each, and [`PROCESSES`], what the engine
//! ([`crate::card_process`]) calls to run one of them on a card.

pub mod abort;
pub mod assign;
pub mod cards;
pub mod expire;
pub mod extend;
pub mod issue_multiple;
pub mod lock;
pub mod production;
pub mod remote;
pub mod request;
pub mod withdraw;

use cardwright_domain::temp_cards::{processes, AREA};
use cardwright_domain::{CardId, Operator, ProcessName};

use crate::card_process::{AreaProcesses, CardFuture};
use crate::{Context, ProcessError};

pub use crate::card_process::{run, ProcessInput};

/// The temporary card area's processes.
pub static PROCESSES: AreaProcesses = AreaProcesses {
    area: &AREA,
    run_card,
};

/// Runs one of the area's card-scoped processes; the engine checked `input` against its row.
fn run_card<'a>(
    ctx: &'a Context,
    operator: &'a Operator,
    process: ProcessName,
    card: CardId,
    input: ProcessInput,
) -> CardFuture<'a> {
    Box::pin(async move {
        let (person, reason) = match input {
            ProcessInput::None => (None, None),
            ProcessInput::Person(person) => (Some(person), None),
            ProcessInput::Reason(reason) => (None, Some(reason)),
        };
        match process {
            processes::ABORT => abort::abort(ctx, operator, card).await,
            processes::ASSIGN => {
                let person = person.ok_or_else(|| {
                    ProcessError::Invalid("person: give the person who receives the card".into())
                })?;
                assign::assign(ctx, operator, card, person).await
            }
            processes::WITHDRAW => withdraw::withdraw(ctx, operator, card, reason.as_ref()).await,
            processes::EXTEND => extend::extend(ctx, operator, card).await,
            processes::LOCK => lock::lock(ctx, operator, card, reason.as_ref()).await,
            other => Err(ProcessError::Invalid(format!(
                "{other} is not one of the temporary card processes started on one card"
            ))),
        }
    })
}

#[cfg(test)]
mod tests {
    use cardwright_domain::ProcessScope;

    use super::*;

    /// Every card-scoped row of the catalog has its arm in [`run_card`]: the arms are the rows.
    #[test]
    fn every_card_process_of_the_catalog_is_dispatched() {
        let dispatched = [
            processes::ABORT,
            processes::ASSIGN,
            processes::WITHDRAW,
            processes::EXTEND,
            processes::LOCK,
        ];
        let card_scoped: Vec<ProcessName> = AREA
            .catalog
            .iter()
            .filter(|def| def.scope == ProcessScope::Card)
            .map(|def| def.name)
            .collect();
        assert_eq!(card_scoped, dispatched);
    }
}
