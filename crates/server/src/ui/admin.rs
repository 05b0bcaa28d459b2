//! Administration lists: operators with their roles, and the audit log with its filters.

use askama::Template;
use axum::extract::{Query, State};
use cardwright_processes::audit;
use cardwright_storage::audit::Event;
use serde::Deserialize;

use super::page::{explain, forbidden, render, Layout, Reply, Section};
use super::session::UiSession;
use crate::state::AppState;

/// An audit event as the card profile and the audit log show it.
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: String,
    pub operator: String,
    pub process: String,
    pub card: String,
    pub order: String,
    pub change: String,
    pub details: String,
}

impl From<Event> for EventRow {
    fn from(e: Event) -> Self {
        let change = match (&e.old_state, &e.new_state) {
            (Some(old), Some(new)) => format!("{old} → {new}"),
            (None, Some(new)) => format!("→ {new}"),
            (Some(old), None) => format!("{old} →"),
            (None, None) => String::new(),
        };
        Self {
            seq: e.seq,
            at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            operator: e.operator,
            process: e.process,
            card: e.card.unwrap_or_default(),
            order: e.order.unwrap_or_default(),
            change,
            details: e.details,
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    card: String,
    order: String,
    events: Vec<EventRow>,
    next_href: Option<String>,
    error: Option<String>,
    can_see_orders: bool,
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    card: Option<String>,
    order: Option<String>,
    cursor: Option<String>,
}

/// GET /admin/audit: audit events, oldest first, filtered by card and/or batch order.
pub(crate) async fn audit(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<AuditQuery>,
) -> Reply {
    if !Section::Audit.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Audit));
    }
    let card = q.card.unwrap_or_default().trim().to_owned();
    let order = q.order.unwrap_or_default().trim().to_owned();
    let (events, next_href, error) = match audit::events(
        &state.ctx,
        &session.operator,
        Some(card.clone()),
        Some(order.clone()),
        q.cursor.as_deref(),
        Some(50),
    )
    .await
    {
        Ok((page, next)) => {
            let href = next.map(|cursor| {
                format!(
                    "/admin/audit?{}",
                    serde_urlencoded::to_string([
                        ("card", card.as_str()),
                        ("order", order.as_str()),
                        ("cursor", cursor.as_str()),
                    ])
                    .unwrap_or_default()
                )
            });
            (page.into_iter().map(EventRow::from).collect(), href, None)
        }
        Err(e) => (Vec::new(), None, Some(explain(e).1)),
    };
    Ok(render(&AuditPage {
        layout: Layout::new(&session, Section::Audit, "Audit log"),
        can_see_orders: Section::BatchOrders.open_to(&session.operator.roles),
        card,
        order,
        events,
        next_href,
        error,
    }))
}
