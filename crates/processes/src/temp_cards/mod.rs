//! The temporary card processes, one module each.

pub mod abort;
pub mod assign;
pub mod expire;
pub mod extend;
pub mod issue_multiple;
pub mod lock;
pub mod production;
pub mod request;
pub mod withdraw;

use cardwright_domain::{Card, CardId, CardState, Operator, ProcessName};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::cards::{self, CardRecord};
use cardwright_storage::{Conn, Store};

use crate::{require_process_role, Actor, Context, ProcessError};

/// The options in force for running `process` on `card`, from the option script.
pub(crate) async fn options_for(
    ctx: &Context,
    conn: &mut Conn,
    card: &Card,
    process: ProcessName,
    operator: &Operator,
) -> Result<crate::options::RunOptions, ProcessError> {
    let template = cardwright_storage::templates::get(&mut *conn, card.template)
        .await?
        .ok_or_else(|| {
            ProcessError::Internal(format!("template of card {} vanished", card.serial))
        })?;
    ctx.scripts
        .for_run(
            conn,
            template.name.as_str(),
            process.as_str(),
            operator.username.as_str(),
        )
        .await
}

/// Loads a card and locks it for the rest of the transaction.
pub(crate) async fn load_for_update(
    conn: &mut Conn,
    ctx: &Context,
    id: CardId,
) -> Result<Card, ProcessError> {
    cards::get_for_update(conn, ctx.store.dialect(), id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("card {id} not found")))
}

/// Writes `after` over `before` (only if nobody changed the card meanwhile) and the audit event
/// of the step, in the caller's transaction.
pub(crate) async fn save_transition(
    conn: &mut Conn,
    ctx: &Context,
    actor: &Actor,
    process: ProcessName,
    before: &Card,
    after: &Card,
    details: serde_json::Value,
) -> Result<(), ProcessError> {
    if !cards::update_if_state(&mut *conn, after, before.state).await? {
        return Err(ProcessError::Conflict(format!(
            "card {} was changed by someone else; reload it and try again",
            before.serial
        )));
    }
    audit::append(
        conn,
        &ctx.audit_key,
        NewEvent {
            at: after.updated_at,
            operator: actor.audit_name(),
            process: process.as_str().to_owned(),
            card: Some(before.id.to_string()),
            order: after.batch_order.map(|o| o.to_string()),
            old_state: Some(before.state.as_str().to_owned()),
            new_state: Some(after.state.as_str().to_owned()),
            details,
        },
    )
    .await?;
    Ok(())
}

/// The shape every single-card process shares: role check, lock, transition rule, the
/// process's own change, save with audit, commit. `change` gets the card already moved to the
/// end state and returns the audit details.
pub(crate) async fn run_card_process<F>(
    ctx: &Context,
    operator: &Operator,
    process: ProcessName,
    id: CardId,
    change: F,
) -> Result<CardRecord, ProcessError>
where
    F: AsyncFnOnce(&mut Conn, &mut Card) -> Result<serde_json::Value, ProcessError>,
{
    require_process_role(operator, process)?;
    let mut tx = ctx.store.begin().await?;
    let before = load_for_update(&mut tx, ctx, id).await?;
    if let (Some(order), CardState::Requested | CardState::Failed) =
        (before.batch_order, before.state)
    {
        return Err(ProcessError::Conflict(format!(
            "card {} is in batch order {order}; cancel that order first",
            before.serial
        )));
    }
    let mut after = before.clone();
    after.state = process.transition(before.state)?;
    after.updated_at = ctx.now();
    let details = change(&mut tx, &mut after).await?;
    save_transition(
        &mut tx,
        ctx,
        &Actor::Operator(operator.clone()),
        process,
        &before,
        &after,
        details,
    )
    .await?;
    let record = cards::get(&mut tx, id)
        .await?
        .ok_or_else(|| ProcessError::Internal(format!("card {id} vanished")))?;
    Store::commit(tx).await?;
    Ok(record)
}
