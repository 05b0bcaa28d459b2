//! One batch order of "Issue multiple temporary cards": the chosen cards with Next (at any
//! station or a named one), production followed live (the page polls `/progress`), and the
//! results with Repeat production for ticked cards, Complete order and Cancel, the closing steps
//! behind a confirmation page.

use cardwright_domain::temp_cards::states;
use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use cardwright_domain::temp_cards::{ItemStatus, OrderAction, OrderState};
use cardwright_domain::BatchOrderId;
use cardwright_processes::stations::{self, StationState};
use cardwright_processes::temp_cards::issue_multiple::{self, OrderView};
use cardwright_processes::ProcessError;
use serde::Serialize;

use super::batch_orders::{allowed, reply, PROCESS};
use crate::state::AppState;
use crate::ui::form::Posted;
use crate::ui::page::{explain, not_found, path_id, process_error, when, Layout, Reply, Section};
use crate::ui::session::{see_other, UiSession};

struct ItemRow {
    card: String,
    serial: String,
    status: &'static str,
    card_state: &'static str,
    error: String,
    attempts: u32,
    can_repeat: bool,
    /// Ticked for Repeat production at first: failed items.
    checked: bool,
}

/// One choice of the Next step's "Station" box.
struct StationChoice {
    name: String,
    label: String,
    selected: bool,
    /// A disabled station is listed but cannot be chosen: it produces nothing.
    unavailable: bool,
}

struct AttemptRow {
    serial: String,
    attempt: u32,
    station: String,
    outcome: String,
    error: String,
    started: String,
}

// Each flag says whether one of the wizard's buttons shows.
#[allow(clippy::struct_excessive_bools)]
#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    layout: Layout,
    title: &'static str,
    id: String,
    state: &'static str,
    operator: String,
    created: String,
    /// The station named to produce the order (`None`: any station).
    station: Option<String>,
    /// The stations Next may name, when Next is possible.
    stations: Vec<StationChoice>,
    /// Where the order stands in the wizard: 2 chosen, 3 production, 4 results, 5 closed.
    step: u8,
    items: Vec<ItemRow>,
    total: u64,
    done: u64,
    produced: u64,
    failed: u64,
    attempts: Vec<AttemptRow>,
    can_next: bool,
    can_repeat: bool,
    can_complete: bool,
    can_cancel: bool,
    error: Option<String>,
}

/// The stations a batch order may be produced at: the server's own ones, then the stations at
/// the desk the operator may see (with their state), `chosen` selected.
async fn station_choices(
    state: &AppState,
    session: &UiSession,
    chosen: &str,
) -> Result<Vec<StationChoice>, ProcessError> {
    let mut out: Vec<StationChoice> = state
        .ctx
        .stations
        .local
        .iter()
        .map(|name| StationChoice {
            label: format!("{name} (this server)"),
            selected: name == chosen,
            unavailable: false,
            name: name.clone(),
        })
        .collect();
    let elsewhere = match stations::list(&state.ctx, &session.operator).await {
        Ok(list) => list,
        // An operator who may not see the stations chooses among the server's own.
        Err(ProcessError::Forbidden(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    out.extend(elsewhere.into_iter().map(|v| StationChoice {
        label: format!("{} ({})", v.record.name, v.state.as_str()),
        selected: v.record.name == chosen,
        unavailable: v.state == StationState::Disabled,
        name: v.record.name,
    }));
    Ok(out)
}

async fn order_page(
    state: &AppState,
    session: &UiSession,
    id: BatchOrderId,
    error: Option<(StatusCode, String)>,
    chosen_station: &str,
) -> Reply {
    let fail = |e: ProcessError| process_error(session, e);
    let view = issue_multiple::get(&state.ctx, id).await.map_err(fail)?;
    let attempts = issue_multiple::attempts(&state.ctx, id)
        .await
        .map_err(fail)?;
    let OrderView { record, items } = view;
    let order_state = record.order.state;
    let counts = record.counts;
    let stations = if OrderAction::Next.allowed_in().contains(&order_state) {
        station_choices(state, session, chosen_station)
            .await
            .map_err(fail)?
    } else {
        Vec::new()
    };
    let serials: HashMap<String, String> = items
        .iter()
        .map(|i| (i.item.card.to_string(), i.serial.clone()))
        .collect();
    let may = |action: OrderAction| action.allowed_in().contains(&order_state);
    let items: Vec<ItemRow> = items
        .into_iter()
        .map(|i| ItemRow {
            card: i.item.card.to_string(),
            serial: i.serial,
            status: i.item.status.as_str(),
            card_state: i.card_state.as_str(),
            error: i.item.error.unwrap_or_default(),
            attempts: i.item.attempts,
            can_repeat: i.item.status.can_repeat(),
            checked: i.item.status == ItemStatus::Failed,
        })
        .collect();
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = OrderPage {
        layout: Layout::new(session, Section::BatchOrders, PROCESS.def().title),
        title: PROCESS.def().title,
        id: record.order.id.to_string(),
        state: order_state.as_str(),
        operator: record.operator_name,
        created: when(record.order.created_at),
        station: record.station,
        stations,
        step: match order_state {
            OrderState::Open => 2,
            OrderState::Producing => 3,
            OrderState::Produced => 4,
            OrderState::Completed | OrderState::Cancelled => 5,
        },
        total: items.len() as u64,
        done: counts.produced + counts.failed,
        produced: counts.produced,
        failed: counts.failed,
        can_next: may(OrderAction::Next),
        can_repeat: may(OrderAction::Repeat)
            && order_state != OrderState::Producing
            && items.iter().any(|i| i.can_repeat),
        can_complete: may(OrderAction::Complete),
        can_cancel: may(OrderAction::Cancel),
        items,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptRow {
                serial: serials
                    .get(&a.card.to_string())
                    .cloned()
                    .unwrap_or_else(|| a.card.to_string()),
                attempt: a.attempt,
                station: a.station,
                outcome: a.outcome,
                error: a.error.unwrap_or_default(),
                started: a.started_at.format("%H:%M:%S").to_string(),
            })
            .collect(),
        error,
    };
    reply(status, &page)
}

/// GET /batch-orders/{id}: the chosen cards (with Next), live production, or the results.
pub(crate) async fn order(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Reply {
    allowed(&session)?;
    let id: BatchOrderId = path_id(&session, &id)?;
    order_page(&state, &session, id, None, "").await
}

#[derive(Serialize)]
struct Progress {
    state: &'static str,
    total: usize,
    done: u64,
    produced: u64,
    failed: u64,
    items: Vec<ProgressItem>,
}

#[derive(Serialize)]
struct ProgressItem {
    card: String,
    status: &'static str,
    card_state: &'static str,
    error: Option<String>,
    attempts: u32,
}

/// GET /batch-orders/{id}/progress: the order's state and each item's status, as JSON for the
/// live progress bar.
pub(crate) async fn progress(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Reply {
    allowed(&session)?;
    let id: BatchOrderId = path_id(&session, &id)?;
    let view = issue_multiple::get(&state.ctx, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    let counts = view.record.counts;
    let body = Progress {
        state: view.record.order.state.as_str(),
        total: view.items.len(),
        done: counts.produced + counts.failed,
        produced: counts.produced,
        failed: counts.failed,
        items: view
            .items
            .into_iter()
            .map(|i| ProgressItem {
                card: i.item.card.to_string(),
                status: i.item.status.as_str(),
                card_state: i.card_state.as_str(),
                error: i.item.error,
                attempts: i.item.attempts,
            })
            .collect(),
    };
    Ok(([(CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// POST /batch-orders/{id}/next: queue the chosen cards for production.
pub(crate) async fn next(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    allowed(&session)?;
    let id: BatchOrderId = path_id(&session, &id)?;
    let station = form.get("station").map(str::trim).filter(|s| !s.is_empty());
    match issue_multiple::next(&state.ctx, &session.operator, id, station).await {
        Ok(_) => Ok(see_other(&format!("/batch-orders/{id}"))),
        Err(e) => {
            order_page(
                &state,
                &session,
                id,
                Some(explain(e)),
                station.unwrap_or(""),
            )
            .await
        }
    }
}

/// POST /batch-orders/{id}/repeat: produce the ticked items again.
pub(crate) async fn repeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    allowed(&session)?;
    let id: BatchOrderId = path_id(&session, &id)?;
    let chosen = form.all("cards");
    let refused = if chosen.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            "Tick the cards to produce again.".to_owned(),
        )
    } else {
        let repeated = match issue_multiple::parse_cards(&chosen) {
            Ok(cards) => issue_multiple::repeat(&state.ctx, &session.operator, id, &cards).await,
            Err(e) => Err(e),
        };
        match repeated {
            Ok(_) => return Ok(see_other(&format!("/batch-orders/{id}"))),
            Err(e) => explain(e),
        }
    };
    order_page(&state, &session, id, Some(refused), "").await
}

/// Complete order or Cancel, as path words.
fn closing(action: &str) -> Option<OrderAction> {
    match action {
        "complete" => Some(OrderAction::Complete),
        "cancel" => Some(OrderAction::Cancel),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "confirm_order.html")]
struct ConfirmPage {
    layout: Layout,
    title: &'static str,
    id: String,
    action: &'static str,
    button: &'static str,
    danger: bool,
    lead: &'static str,
    points: Vec<String>,
    error: Option<String>,
}

async fn confirm_page(
    state: &AppState,
    session: &UiSession,
    id: BatchOrderId,
    action: OrderAction,
    error: Option<(StatusCode, String)>,
) -> Reply {
    let view = issue_multiple::get(&state.ctx, id)
        .await
        .map_err(|e| process_error(session, e))?;
    let c = view.record.counts;
    let waiting = c.selected + c.queued;
    let (path, button, danger, lead, points) = if action == OrderAction::Complete {
        let mut points = vec![format!(
            "{} produced {}: they stay {}, ready to be assigned.",
            c.produced,
            if c.produced == 1 { "card" } else { "cards" },
            states::UNASSIGNED
        )];
        if c.failed > 0 {
            points.push(format!(
                "{} failed {} stay {} and can be issued in a new order.",
                c.failed,
                if c.failed == 1 { "card" } else { "cards" },
                states::FAILED
            ));
        }
        points.push("The order closes and cannot be changed afterwards.".into());
        (
            "complete",
            "Complete order",
            false,
            "Confirm that everything is OK: every produced card came out of the printer right.",
            points,
        )
    } else {
        let points = vec![
            format!("{waiting} cards not yet produced return to the state they had."),
            format!(
                "{} produced cards stay {}: they exist.",
                c.produced,
                states::UNASSIGNED
            ),
            "A card in a printer right now is finished first and kept as it comes out.".into(),
        ];
        (
            "cancel",
            "Cancel order",
            true,
            "Cancel closes the process.",
            points,
        )
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None if !action.allowed_in().contains(&view.record.order.state) => (
            StatusCode::CONFLICT,
            Some(format!(
                "{} is not possible on a batch order that is {}.",
                action.as_str(),
                view.record.order.state
            )),
        ),
        None => (StatusCode::OK, None),
    };
    reply(
        status,
        &ConfirmPage {
            layout: Layout::new(session, Section::BatchOrders, action.as_str()),
            title: PROCESS.def().title,
            id: id.to_string(),
            action: path,
            button,
            danger,
            lead,
            points,
            error,
        },
    )
}

/// GET /batch-orders/{id}/complete and /cancel: the confirmation.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    session: UiSession,
    Path((id, action)): Path<(String, String)>,
) -> Reply {
    allowed(&session)?;
    let Some(action) = closing(&action) else {
        return Err(not_found(&session));
    };
    let id: BatchOrderId = path_id(&session, &id)?;
    confirm_page(&state, &session, id, action, None).await
}

/// POST /batch-orders/{id}/complete and /cancel: close the order, then show it.
pub(crate) async fn close(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    posted: Posted,
) -> Reply {
    let session = posted.session;
    allowed(&session)?;
    let Some(action) = closing(&action) else {
        return Err(not_found(&session));
    };
    let id: BatchOrderId = path_id(&session, &id)?;
    let done = if action == OrderAction::Complete {
        issue_multiple::complete(&state.ctx, &session.operator, id).await
    } else {
        issue_multiple::cancel(&state.ctx, &session.operator, id).await
    };
    match done {
        Ok(_) => Ok(see_other(&format!("/batch-orders/{id}"))),
        Err(e) => confirm_page(&state, &session, id, action, Some(explain(e))).await,
    }
}
