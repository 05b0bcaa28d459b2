//! Running a card's process, whatever its area: the one entry point [`run`] (behind
//! `POST /api/v1/cards/{id}/<action>`, the card page's buttons and the command line), and the
//! shape every single-card process shares ([`run_card_process`]): role check, lock, transition
//! rule, the area's own change, save with its audit event, commit.

use std::future::Future;
use std::pin::Pin;

use cardwright_domain::reason::Reason;
use cardwright_domain::{
    Area, Card, CardId, Input, Operator, Person, PersonId, ProcessName, ProcessScope,
};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::cards::{self as card_rows, CardRecord};
use cardwright_storage::certificates;
use cardwright_storage::{Conn, Store};

use crate::holder_certificates;
use crate::{require_process_role, Actor, Context, ProcessError};

/// The future of an area's card process.
pub type CardFuture<'a> =
    Pin<Box<dyn Future<Output = Result<CardRecord, ProcessError>> + Send + 'a>>;

/// A card area's processes: what the engine calls to run one of its card-scoped processes.
pub struct AreaProcesses {
    pub area: &'static Area,
    /// Runs the card-scoped process `process` of the area's catalog on `card`, its input already
    /// checked against the catalog row.
    pub run_card:
        for<'a> fn(&'a Context, &'a Operator, ProcessName, CardId, ProcessInput) -> CardFuture<'a>,
}

/// Every card area's processes, one per area of [`cardwright_domain::area::AREAS`].
pub static AREAS: &[&AreaProcesses] = &[&crate::temp_cards::PROCESSES];

/// The processes of `area`.
pub fn processes_of(area: &'static Area) -> &'static AreaProcesses {
    AREAS
        .iter()
        .copied()
        .find(|p| std::ptr::eq(p.area, area))
        .expect("every area has its processes")
}

/// What a card's process was given besides the card; the catalog row's `input` says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessInput {
    None,
    /// The person who receives the card.
    Person(PersonId),
    /// Why the card is withdrawn or locked.
    Reason(Reason),
}

/// An event's details with the reason (and its comment) the operator gave, if any.
pub(crate) fn with_reason(
    mut details: serde_json::Value,
    reason: Option<&Reason>,
) -> serde_json::Value {
    if let (Some(reason), Some(map)) = (reason, details.as_object_mut()) {
        map.insert("reason".into(), reason.kind.as_str().into());
        if let Some(comment) = &reason.comment {
            map.insert("comment".into(), comment.clone().into());
        }
    }
    details
}

/// Runs the card-scoped process `process` on `card` for `operator`: the one entry point behind
/// `POST /api/v1/cards/{id}/<action>`, the card page's buttons and the command line. The input
/// is checked against the process's catalog row, then the process's area runs it.
pub async fn run(
    ctx: &Context,
    operator: &Operator,
    process: ProcessName,
    card: CardId,
    input: ProcessInput,
) -> Result<CardRecord, ProcessError> {
    let def = process.def();
    if def.scope != ProcessScope::Card {
        return Err(ProcessError::Invalid(format!(
            "{process} is not started on one card"
        )));
    }
    let input = match (def.input, input) {
        (Input::None | Input::Reason, ProcessInput::None) => ProcessInput::None,
        (Input::Person, given @ ProcessInput::Person(_))
        | (Input::Reason, given @ ProcessInput::Reason(_)) => given,
        (Input::None | Input::Reason, given) => {
            return Err(ProcessError::Invalid(format!(
                "{process} takes no {given:?} besides the card"
            )))
        }
        (Input::Person, _) => {
            return Err(ProcessError::Invalid(format!(
                "person: {process} needs the person who receives the card"
            )))
        }
    };
    (processes_of(process.area()).run_card)(ctx, operator, process, card, input).await
}

/// Runs the card process named by `action` in its API path on `card`: the process of that name
/// in the card's own area.
pub async fn run_action(
    ctx: &Context,
    operator: &Operator,
    action: &str,
    card: CardId,
    input: ProcessInput,
) -> Result<CardRecord, ProcessError> {
    let area = {
        let mut conn = ctx.store.reader().await?;
        area_of_card(&mut conn, card).await?
    };
    let def = area.card_action(action).ok_or_else(|| {
        ProcessError::Conflict(format!(
            "{} have no process '{action}'",
            area.title.to_lowercase()
        ))
    })?;
    run(ctx, operator, def.name, card, input).await
}

/// The area of a card: its template's kind.
pub async fn area_of_card(conn: &mut Conn, card: CardId) -> Result<&'static Area, ProcessError> {
    let card = card_rows::get(&mut *conn, card)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("card {card} not found")))?;
    let template = cardwright_storage::templates::get(&mut *conn, card.card.template)
        .await?
        .ok_or_else(|| {
            ProcessError::Internal(format!("template of card {} vanished", card.card.serial))
        })?;
    area_of_kind(template.kind.as_str())
}

/// The area of template kind `kind`.
pub fn area_of_kind(kind: &str) -> Result<&'static Area, ProcessError> {
    Area::of_kind(kind)
        .ok_or_else(|| ProcessError::Internal(format!("no card area makes cards of kind {kind}")))
}

/// The options in force for running `process` on `card`, from the option script.
pub(crate) async fn options_for(
    ctx: &Context,
    conn: &mut Conn,
    card: &Card,
    process: ProcessName,
    operator: &Operator,
) -> Result<crate::services::scripts::RunOptions, ProcessError> {
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
    card_rows::get_for_update(conn, ctx.store.dialect(), id)
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
    if !card_rows::update_if_state(&mut *conn, after, before.state).await? {
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

/// What a card process's own change gives: the audit details and, when the card's keys are to be
/// certified in a holder's name (assign, extend of an encoded card), that holder.
pub(crate) struct Change {
    pub details: serde_json::Value,
    pub certify_holder: Option<Person>,
}

/// The future of a card process's own change.
pub(crate) type StepFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Change, ProcessError>> + Send + 'c>>;

impl From<serde_json::Value> for Change {
    fn from(details: serde_json::Value) -> Self {
        Self {
            details,
            certify_holder: None,
        }
    }
}

/// The checks every card process makes before its own change: the card is not held by a batch
/// order, and the catalog allows the step in its state. Moves `after` to the end state.
fn start_step(
    ctx: &Context,
    process: ProcessName,
    before: &Card,
    after: &mut Card,
) -> Result<(), ProcessError> {
    let in_production = process
        .area()
        .process_of_scope(ProcessScope::BatchOrder)
        .is_some_and(|def| def.from.contains(&before.state));
    if let (Some(order), true) = (before.batch_order, in_production) {
        return Err(ProcessError::Conflict(format!(
            "card {} is in batch order {order}; cancel that order first",
            before.serial
        )));
    }
    after.state = process.transition(before.state)?;
    after.updated_at = ctx.now();
    Ok(())
}

/// The shape every single-card process shares: role check, lock, transition rule, the
/// process's own change, save with audit, commit. `change` gets the card already moved to the
/// end state and returns the audit details.
///
/// A change that certifies a holder runs twice: first to issue the certificates (then the
/// transaction is rolled back and the chip is written, outside any transaction), then for real,
/// recording the certificates with the card's change. The card must be as it was at the first
/// run; otherwise the certificates are recorded revoked and the step is refused.
pub(crate) async fn run_card_process<F>(
    ctx: &Context,
    operator: &Operator,
    process: ProcessName,
    id: CardId,
    change: F,
) -> Result<CardRecord, ProcessError>
where
    F: for<'c> Fn(&'c Context, &'c Operator, &'c mut Conn, &'c mut Card) -> StepFuture<'c>,
{
    require_process_role(operator, process)?;
    let mut written: Option<(Card, holder_certificates::Issued)> = None;
    loop {
        let mut tx = ctx.store.begin().await?;
        let before = load_for_update(&mut tx, ctx, id).await?;
        let mut after = before.clone();
        let step = match start_step(ctx, process, &before, &mut after) {
            Ok(()) => change(ctx, operator, &mut tx, &mut after).await,
            Err(e) => Err(e),
        };
        let mut step = match step {
            Ok(step) => step,
            Err(e) => {
                drop(tx);
                if let Some((_, issued)) = &written {
                    holder_certificates::record_revoked(ctx, issued).await?;
                }
                return Err(e);
            }
        };
        if let (Some(holder), true, None) = (&step.certify_holder, after.encoded, &written) {
            let issued = holder_certificates::issue(ctx, &mut tx, &after, holder).await?;
            // Nothing of this run is kept: the chip is written with no transaction open.
            drop(tx);
            holder_certificates::write(ctx, &after, &issued).await?;
            written = Some((before, issued));
            continue;
        }
        if let Some((first, issued)) = &written {
            if first.updated_at != before.updated_at || first.state != before.state {
                drop(tx);
                holder_certificates::record_revoked(ctx, issued).await?;
                return Err(ProcessError::Conflict(format!(
                    "card {} was changed while its chip was written; the new certificates are revoked, try again",
                    before.serial
                )));
            }
            let mut serials = Vec::new();
            for record in &issued.records {
                certificates::insert(&mut tx, record).await?;
                serials.push(serde_json::Value::String(record.serial.clone()));
            }
            if let Some(details) = step.details.as_object_mut() {
                details.insert("certificates".into(), serials.into());
            }
        }
        let saved = async {
            save_transition(
                &mut tx,
                ctx,
                &Actor::Operator(operator.clone()),
                process,
                &before,
                &after,
                step.details,
            )
            .await?;
            let record = card_rows::get(&mut tx, id)
                .await?
                .ok_or_else(|| ProcessError::Internal(format!("card {id} vanished")))?;
            Store::commit(tx).await?;
            Ok(record)
        }
        .await;
        if saved.is_err() {
            if let Some((_, issued)) = &written {
                holder_certificates::record_revoked(ctx, issued).await?;
            }
        }
        return saved;
    }
}
