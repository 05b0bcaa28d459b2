//! TempCardsBoProcIssueMultiple: the batch order wizard. Choose requested (or failed) cards,
//! Next queues them for the production stations, then Complete order, Repeat production for
//! chosen items, or Cancel.

use cardwright_domain::batch_order::check_selection;
use cardwright_domain::temp_cards::{processes, states};
use cardwright_domain::temp_cards::{
    BatchOrder, Card, ItemStatus, OrderAction, OrderState, ProcessName,
};
use cardwright_domain::{BatchOrderId, CardId, Operator};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::batch_orders::{self, ItemRecord, OrderRecord};
use cardwright_storage::{cards, Conn, Store};

use crate::card_process::save_transition;
use crate::paging::bad_cursor;
use crate::paging::{next_cursor, page_limit};
use crate::{require_process_role, Actor, Context, ProcessError};

const PROCESS: ProcessName = processes::ISSUE_MULTIPLE;

/// An order with its items, as the wizard shows it.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub record: OrderRecord,
    pub items: Vec<ItemRecord>,
}

/// Appends an event about the order itself (not one of its cards).
pub(crate) async fn order_event(
    conn: &mut Conn,
    ctx: &Context,
    actor: &Actor,
    order: BatchOrderId,
    old: Option<OrderState>,
    new: OrderState,
    details: serde_json::Value,
) -> Result<(), ProcessError> {
    audit::append(
        conn,
        &ctx.audit_key,
        NewEvent {
            at: ctx.now(),
            operator: actor.audit_name(),
            process: PROCESS.as_str().to_owned(),
            card: None,
            order: Some(order.to_string()),
            old_state: old.map(|s| s.as_str().to_owned()),
            new_state: Some(new.as_str().to_owned()),
            details,
        },
    )
    .await?;
    Ok(())
}

/// The options in force for producing the order's cards, per template, as recorded with Next
/// and Repeat production (PIN and PUK length, encoding, certificates).
async fn production_options(
    conn: &mut Conn,
    ctx: &Context,
    order: BatchOrderId,
    operator: &Operator,
) -> Result<serde_json::Value, ProcessError> {
    let mut per_template = serde_json::Map::new();
    for template in batch_orders::template_names(&mut *conn, order).await? {
        let run = ctx
            .scripts
            .for_run(
                &mut *conn,
                &template,
                PROCESS.as_str(),
                operator.username.as_str(),
            )
            .await?;
        per_template.insert(template, run.to_json());
    }
    Ok(serde_json::Value::Object(per_template))
}

pub(crate) async fn view(conn: &mut Conn, id: BatchOrderId) -> Result<OrderView, ProcessError> {
    let record = batch_orders::get(&mut *conn, id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("batch order {id} not found")))?;
    let items = batch_orders::items(conn, id).await?;
    Ok(OrderView { record, items })
}

/// Card ids as given (a form's or a request body's list), parsed.
pub fn parse_cards(cards: &[String]) -> Result<Vec<CardId>, ProcessError> {
    cards
        .iter()
        .map(|c| CardId::parse(c).map_err(ProcessError::from))
        .collect()
}

/// Locks an order and checks that `action` is allowed in its state.
async fn lock_for(
    conn: &mut Conn,
    ctx: &Context,
    id: BatchOrderId,
    action: OrderAction,
) -> Result<BatchOrder, ProcessError> {
    let order = batch_orders::lock(conn, ctx.store.dialect(), id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("batch order {id} not found")))?;
    action.check(order.state)?;
    Ok(order)
}

/// "Issue multiple temporary cards": a new open order of the chosen cards. A card already in
/// another open order, or not in state requested or failed, refuses the whole order (409, naming
/// the cards).
pub async fn create(
    ctx: &Context,
    operator: &Operator,
    process: &str,
    card_ids: &[CardId],
) -> Result<OrderView, ProcessError> {
    require_process_role(operator, PROCESS)?;
    if process != PROCESS.as_str() {
        return Err(ProcessError::Invalid(format!(
            "process: batch orders run {PROCESS}, not '{process}'"
        )));
    }
    check_selection(card_ids)?;
    let now = ctx.now();
    let (millis, random) = ctx.id_parts();
    let order = BatchOrder {
        id: BatchOrderId::new(millis, random),
        state: OrderState::Open,
        operator: operator.id,
        created_at: now,
        updated_at: now,
    };
    let mut tx = ctx.store.begin().await?;
    batch_orders::insert(&mut tx, &order, PROCESS.as_str()).await?;
    let mut refused = Vec::new();
    let taken = batch_orders::take_cards(&mut tx, order.id, card_ids, now).await?;
    if taken != card_ids.len() as u64 {
        for card in card_ids {
            match cards::get(&mut tx, *card).await? {
                None => refused.push(format!("{card} (no such card)")),
                Some(r) if r.card.batch_order == Some(order.id) => {}
                Some(r) if r.card.batch_order.is_some() => {
                    refused.push(format!("{} (in another open batch order)", r.card.serial));
                }
                Some(r) => refused.push(format!("{} (state {})", r.card.serial, r.card.state)),
            }
        }
    }
    if !refused.is_empty() {
        return Err(ProcessError::Conflict(format!(
            "these cards cannot be ordered: {}; only requested or failed cards outside other open orders can",
            refused.join(", ")
        )));
    }
    batch_orders::insert_items(&mut tx, order.id, card_ids).await?;
    let view = view(&mut tx, order.id).await?;
    let serials: Vec<&str> = view.items.iter().map(|i| i.serial.as_str()).collect();
    let actor = Actor::Operator(operator.clone());
    order_event(
        &mut tx,
        ctx,
        &actor,
        order.id,
        None,
        OrderState::Open,
        serde_json::json!({
            "action": "create",
            "cards": serials,
        }),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(view)
}

/// Next: every chosen card goes into the production queue.
pub async fn next(
    ctx: &Context,
    operator: &Operator,
    id: BatchOrderId,
    station: Option<&str>,
) -> Result<OrderView, ProcessError> {
    require_process_role(operator, PROCESS)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    lock_for(&mut tx, ctx, id, OrderAction::Next).await?;
    if let Some(name) = station {
        crate::stations::check_name(name)?;
        let known = ctx.stations.local.iter().any(|local| local == name)
            || cardwright_storage::stations::get(&mut tx, name, now)
                .await?
                .is_some();
        if !known {
            return Err(ProcessError::Unprocessable(format!(
                "station: no station '{name}' (see the Stations page)"
            )));
        }
    }
    batch_orders::set_station(&mut tx, id, station).await?;
    let queued =
        batch_orders::move_items(&mut tx, id, ItemStatus::Selected, ItemStatus::Queued, now)
            .await?;
    batch_orders::set_state(&mut tx, id, OrderState::Open, OrderState::Producing, now).await?;
    let actor = Actor::Operator(operator.clone());
    let options = production_options(&mut tx, ctx, id, operator).await?;
    order_event(
        &mut tx,
        ctx,
        &actor,
        id,
        Some(OrderState::Open),
        OrderState::Producing,
        serde_json::json!({
            "action": "next",
            "queued": queued,
            "station": station,
            "options": options,
        }),
    )
    .await?;
    let view = view(&mut tx, id).await?;
    Store::commit(tx).await?;
    Ok(view)
}

/// Repeat production of chosen items: failed ones, or produced ones the operator rejects as
/// misprinted (their card goes to failed first). Every attempt stays recorded.
pub async fn repeat(
    ctx: &Context,
    operator: &Operator,
    id: BatchOrderId,
    chosen: &[CardId],
) -> Result<OrderView, ProcessError> {
    require_process_role(operator, PROCESS)?;
    check_selection(chosen)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let order = lock_for(&mut tx, ctx, id, OrderAction::Repeat).await?;
    let items = batch_orders::items(&mut tx, id).await?;
    let actor = Actor::Operator(operator.clone());
    let mut refused = Vec::new();
    let mut repeated = Vec::new();
    for card_id in chosen {
        let Some(item) = items.iter().find(|i| i.item.card == *card_id) else {
            refused.push(format!("{card_id} (not in this order)"));
            continue;
        };
        if !item.item.status.can_repeat() {
            refused.push(format!("{} ({})", item.serial, item.item.status));
            continue;
        }
        if item.item.status == ItemStatus::Produced {
            let before = crate::card_process::load_for_update(&mut tx, ctx, *card_id).await?;
            if before.state != states::UNASSIGNED {
                refused.push(format!("{} (card is {} now)", item.serial, before.state));
                continue;
            }
            let after = Card {
                state: states::FAILED,
                updated_at: now,
                ..before.clone()
            };
            // The misprinted card's chip credentials must not outlive it.
            let revoked =
                cardwright_storage::certificates::revoke(&mut tx, *card_id, None, now).await?;
            save_transition(
                &mut tx,
                ctx,
                &actor,
                PROCESS,
                &before,
                &after,
                serde_json::json!({
                    "action": "reject",
                    "reason": "rejected by the operator for repeat production",
                    "revoked_certificates": revoked,
                }),
            )
            .await?;
        }
        batch_orders::requeue(&mut tx, id, *card_id, item.item.status, now).await?;
        repeated.push(item.serial.clone());
    }
    if !refused.is_empty() {
        return Err(ProcessError::Conflict(format!(
            "these cards cannot be produced again: {}; repeat takes failed or produced items of this order",
            refused.join(", ")
        )));
    }
    if order.state == OrderState::Produced {
        batch_orders::set_state(
            &mut tx,
            id,
            OrderState::Produced,
            OrderState::Producing,
            now,
        )
        .await?;
    }
    let options = production_options(&mut tx, ctx, id, operator).await?;
    order_event(
        &mut tx,
        ctx,
        &actor,
        id,
        Some(order.state),
        OrderState::Producing,
        serde_json::json!({
            "action": "repeat",
            "cards": repeated,
            "options": options,
        }),
    )
    .await?;
    let view = view(&mut tx, id).await?;
    Store::commit(tx).await?;
    Ok(view)
}

/// Complete order: the operator confirms the results; the cards are free for other work.
pub async fn complete(
    ctx: &Context,
    operator: &Operator,
    id: BatchOrderId,
) -> Result<OrderView, ProcessError> {
    close(ctx, operator, id, OrderAction::Complete).await
}

/// Cancel: cards not yet produced go back to the state they had; produced cards stay
/// unassigned. A card in a printer right now is finished and then kept as its outcome says.
pub async fn cancel(
    ctx: &Context,
    operator: &Operator,
    id: BatchOrderId,
) -> Result<OrderView, ProcessError> {
    close(ctx, operator, id, OrderAction::Cancel).await
}

async fn close(
    ctx: &Context,
    operator: &Operator,
    id: BatchOrderId,
    action: OrderAction,
) -> Result<OrderView, ProcessError> {
    require_process_role(operator, PROCESS)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let order = lock_for(&mut tx, ctx, id, action).await?;
    let (end, keep) = if action == OrderAction::Complete {
        (OrderState::Completed, None)
    } else {
        // Queued cards were never touched: they simply leave the queue.
        batch_orders::move_items(&mut tx, id, ItemStatus::Queued, ItemStatus::Selected, now)
            .await?;
        (OrderState::Cancelled, Some(ItemStatus::Producing))
    };
    batch_orders::release_cards(&mut tx, id, keep).await?;
    batch_orders::set_state(&mut tx, id, order.state, end, now).await?;
    let counts = batch_orders::get(&mut tx, id)
        .await?
        .map(|r| r.counts)
        .unwrap_or_default();
    order_event(
        &mut tx,
        ctx,
        &Actor::Operator(operator.clone()),
        id,
        Some(order.state),
        end,
        serde_json::json!({
            "action": if end == OrderState::Completed { "complete" } else { "cancel" },
            "produced": counts.produced,
            "failed": counts.failed,
            "not_produced": counts.selected + counts.queued,
        }),
    )
    .await?;
    let view = view(&mut tx, id).await?;
    Store::commit(tx).await?;
    Ok(view)
}

/// One order with its items. Any logged-in operator may read orders.
pub async fn get(ctx: &Context, id: BatchOrderId) -> Result<OrderView, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    view(&mut conn, id).await
}

/// Orders, newest first, a page at a time.
pub async fn list(
    ctx: &Context,
    state: Option<&str>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<OrderRecord>, Option<String>), ProcessError> {
    let limit = page_limit(limit)?;
    let state = state
        .filter(|s| !s.is_empty())
        .map(str::parse::<OrderState>)
        .transpose()?;
    let before = cursor
        .filter(|c| !c.is_empty())
        .map(BatchOrderId::parse)
        .transpose()
        .map_err(|_| bad_cursor())?;
    let mut conn = ctx.store.reader().await?;
    let mut page = batch_orders::list(&mut conn, state, before, limit + 1).await?;
    let next = next_cursor(&mut page, limit, |r| r.order.id.to_string());
    Ok((page, next))
}

/// Every production attempt of an order.
pub async fn attempts(
    ctx: &Context,
    id: BatchOrderId,
) -> Result<Vec<batch_orders::Attempt>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(batch_orders::attempts(&mut conn, id).await?)
}
