//! Batch orders: the list of orders and the first steps of the "Issue multiple temporary cards"
//! wizard of the operator's guide. Search lists cards in state requested (and failed), and the
//! ticked cards become an open order, shown by [`super::order`].

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use cardwright_domain::temp_cards::processes;
use cardwright_domain::temp_cards::ProcessName;
use cardwright_processes::temp_cards::cards::{self, CardQuery};
use cardwright_processes::temp_cards::issue_multiple;
use cardwright_processes::MAX_PAGE;
use cardwright_processes::{templates, ProcessError};
use serde::Deserialize;

use crate::state::AppState;
use crate::ui::form::Posted;
use crate::ui::page::{
    choices, explain, forbidden, process_error, render, render_with, when, Choice, Layout, Reply,
    Section,
};
use crate::ui::session::{see_other, UiSession};

pub(super) const PROCESS: ProcessName = processes::ISSUE_MULTIPLE;

/// Refuses operators whose roles do not run batch orders.
pub(super) fn allowed(session: &UiSession) -> Result<(), Response> {
    if Section::BatchOrders.open_to(&session.operator.roles) {
        Ok(())
    } else {
        Err(forbidden(session, Section::BatchOrders))
    }
}

/// Answers with `page` as it is, or as an error page when `status` is not 200.
pub(super) fn reply(status: StatusCode, page: &impl Template) -> Reply {
    if status == StatusCode::OK {
        Ok(render(page))
    } else {
        Err(render_with(status, page))
    }
}

struct OrderRow {
    id: String,
    state: &'static str,
    operator: String,
    created: String,
    total: u64,
    produced: u64,
    failed: u64,
}

#[derive(Template)]
#[template(path = "batch_orders.html")]
struct ListPage {
    layout: Layout,
    title: &'static str,
    orders: Vec<OrderRow>,
    next_href: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
}

/// GET /batch-orders: the processes to start and the latest orders.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Reply {
    allowed(&session)?;
    let (page, next) = issue_multiple::list(&state.ctx, None, q.cursor.as_deref(), Some(20))
        .await
        .map_err(|e| process_error(&session, e))?;
    let orders = page
        .into_iter()
        .map(|r| {
            let c = r.counts;
            OrderRow {
                id: r.order.id.to_string(),
                state: r.order.state.as_str(),
                operator: r.operator_name,
                created: when(r.order.created_at),
                total: c.selected + c.queued + c.producing + c.produced + c.failed,
                produced: c.produced,
                failed: c.failed,
            }
        })
        .collect();
    Ok(render(&ListPage {
        layout: Layout::new(&session, Section::BatchOrders, "Batch orders"),
        title: PROCESS.def().title,
        orders,
        next_href: next.map(|c| format!("/batch-orders?cursor={c}")),
    }))
}

/// A card the search found, with whether it is ticked.
struct Candidate {
    id: String,
    serial: String,
    template: String,
    state: &'static str,
    created: String,
    /// The open order that holds the card already, if any.
    order: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "issue_multiple.html")]
struct SearchPage {
    layout: Layout,
    title: &'static str,
    states: String,
    templates: Vec<Choice>,
    template: String,
    searched: bool,
    cards: Vec<Candidate>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    search: Option<String>,
    template: Option<String>,
    all: Option<String>,
}

/// The search step, with the cards found and the ticked ones checked.
async fn search_page(
    state: &AppState,
    session: &UiSession,
    template: Option<String>,
    searched: bool,
    ticked: &(dyn Fn(&str) -> bool + Sync),
    error: Option<(StatusCode, String)>,
) -> Reply {
    let fail = |e: ProcessError| process_error(session, e);
    let from = PROCESS.def().from;
    let mut cards = Vec::new();
    if searched {
        for card_state in from {
            let query = CardQuery {
                state: Some(card_state.as_str().to_owned()),
                template: template.clone(),
                limit: Some(i64::from(MAX_PAGE)),
                ..CardQuery::default()
            };
            let (page, _) = cards::search(&state.ctx, &query).await.map_err(fail)?;
            cards.extend(page.into_iter().map(|r| {
                let id = r.card.id.to_string();
                Candidate {
                    checked: r.card.batch_order.is_none() && ticked(&id),
                    id,
                    serial: r.card.serial.to_string(),
                    template: r.template_name,
                    state: r.card.state.as_str(),
                    created: when(r.card.created_at),
                    order: r
                        .card
                        .batch_order
                        .map(|o| o.to_string())
                        .unwrap_or_default(),
                }
            }));
        }
    }
    let names: Vec<String> = templates::list(&state.ctx)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|t| t.name.as_str().to_owned())
        .collect();
    let templates = choices(&names, template.as_deref().unwrap_or_default());
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    reply(
        status,
        &SearchPage {
            layout: Layout::new(session, Section::BatchOrders, PROCESS.def().title),
            title: PROCESS.def().title,
            states: from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            templates,
            template: template.unwrap_or_default(),
            searched,
            cards,
            error,
        },
    )
}

/// GET /batch-orders/issue-multiple: Search, then tick the cards to issue.
pub(crate) async fn search(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<SearchQuery>,
) -> Reply {
    allowed(&session)?;
    let all = q.all.is_some();
    let template = q.template.filter(|t| !t.is_empty());
    search_page(
        &state,
        &session,
        template,
        q.search.is_some(),
        &|_| all,
        None,
    )
    .await
}

/// POST /batch-orders: "Issue multiple temporary cards" makes an open order of the ticked
/// cards and shows it.
pub(crate) async fn create(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    allowed(&session)?;
    let chosen = form.all("cards");
    let refused = if chosen.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            "Tick at least one card to issue.".to_owned(),
        )
    } else {
        let created = match issue_multiple::parse_cards(&chosen) {
            Ok(cards) => {
                issue_multiple::create(&state.ctx, &session.operator, PROCESS.as_str(), &cards)
                    .await
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(view) => {
                return Ok(see_other(&format!(
                    "/batch-orders/{}",
                    view.record.order.id
                )))
            }
            Err(e) => explain(e),
        }
    };
    let template = form.text("template");
    let ticked = |id: &str| chosen.iter().any(|c| c == id);
    search_page(&state, &session, template, true, &ticked, Some(refused)).await
}
