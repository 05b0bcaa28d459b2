//! TempCardsProcAssign: an unassigned card is handed to an active person.

use cardwright_domain::temp_cards::processes;
use cardwright_domain::{CardId, Operator, PersonId, PersonState};
use cardwright_storage::cards::{self, CardRecord};
use cardwright_storage::persons;

use crate::card_process::{options_for, run_card_process, Change};
use crate::{Context, ProcessError};

pub async fn assign(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
    person_id: PersonId,
) -> Result<CardRecord, ProcessError> {
    let dialect = ctx.store.dialect();
    let process = processes::ASSIGN;
    run_card_process(ctx, operator, process, id, |ctx, operator, conn, card| {
        Box::pin(async move {
            let run = options_for(ctx, conn, card, process, operator).await?;
            let options = run.options.temp_card_options();
            // Locking the person makes concurrent assignments to one person take turns, so the
            // per-person limit below holds on every database.
            let person = persons::get_for_update(&mut *conn, dialect, person_id)
                .await?
                .ok_or_else(|| ProcessError::NotFound(format!("person {person_id} not found")))?;
            if person.state != PersonState::Active {
                return Err(ProcessError::Conflict(format!(
                    "{} ({}) is inactive and cannot be given a card",
                    person.display_name(),
                    person.employee_number.as_str()
                )));
            }
            options.check_holder_limit(cards::count_assigned_to(&mut *conn, person_id).await?)?;
            card.holder = Some(person_id);
            card.valid_until = Some(options.valid_until_from(card.updated_at));
            let details = serde_json::json!({
                "holder": person_id.to_string(),
                "employee_number": person.employee_number.as_str(),
                "valid_until": card.valid_until.map(|t| t.to_rfc3339()),
                "options": run.to_json(),
                "certificates": [],
            });
            Ok(Change {
                details,
                certify_holder: Some(person),
            })
        })
    })
    .await
}
