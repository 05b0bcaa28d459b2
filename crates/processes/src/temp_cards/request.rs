//! TempCardsProcRequest: order N new temporary cards of a template.

use cardwright_domain::temp_cards::{processes, states};
use cardwright_domain::temp_cards::{Amount, Card, Serial};
use cardwright_domain::{CardId, Operator, TemplateKind};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::cards::{self, CardRecord};
use cardwright_storage::{templates, Store};

use crate::{require_process_role, Context, ProcessError};

/// Creates `amount` cards in state requested, each with the next serial of the template.
pub async fn request(
    ctx: &Context,
    operator: &Operator,
    template: &str,
    amount: i64,
) -> Result<Vec<CardRecord>, ProcessError> {
    let process = processes::REQUEST;
    require_process_role(operator, process)?;
    let amount = Amount::parse(amount)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let template = templates::resolve(&mut tx, template)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("card template '{template}' not found")))?;
    if template.kind != TemplateKind::Temporary {
        return Err(ProcessError::Invalid(format!(
            "template '{}' does not make temporary cards",
            template.name.as_str()
        )));
    }
    let first = templates::reserve_serial_numbers(&mut tx, template.id, amount.get()).await?;
    let mut created = Vec::with_capacity(amount.get() as usize);
    let mut events = Vec::with_capacity(amount.get() as usize);
    // Ids sort by creation time, but not within one millisecond: sorting them first makes
    // id order (the order lists use) follow serial order.
    let mut ids: Vec<CardId> = (0..amount.get())
        .map(|_| {
            let (millis, random) = ctx.id_parts();
            CardId::new(millis, random)
        })
        .collect();
    ids.sort_unstable();
    for (id, number) in ids.into_iter().zip(first..) {
        let card = Card {
            id,
            serial: Serial::compose(&template.serial_prefix, number),
            template: template.id,
            state: states::REQUESTED,
            holder: None,
            valid_until: None,
            encoded: false,
            batch_order: None,
            created_at: now,
            updated_at: now,
        };
        cards::insert(&mut tx, &card).await.map_err(|e| {
            if e.is_unique_violation() {
                ProcessError::Conflict(format!(
                    "serial {} exists already; check the serial prefix of template '{}'",
                    card.serial,
                    template.name.as_str()
                ))
            } else {
                e.into()
            }
        })?;
        events.push(NewEvent {
            at: now,
            operator: operator.username.as_str().to_owned(),
            process: process.as_str().to_owned(),
            card: Some(card.id.to_string()),
            order: None,
            old_state: None,
            new_state: Some(states::REQUESTED.as_str().to_owned()),
            details: serde_json::json!({
                "serial": card.serial.as_str(),
                "template": template.name.as_str(),
            }),
        });
        created.push(CardRecord {
            card,
            template_name: template.name.as_str().to_owned(),
            holder: None,
        });
    }
    audit::append_all(&mut tx, &ctx.audit_key, events).await?;
    Store::commit(tx).await?;
    Ok(created)
}
