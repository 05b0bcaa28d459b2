//! The home page: shortcuts for the operator's roles and a quick search for cards (serial,
//! state) and persons.

use askama::Template;
use axum::extract::{Query, State};
use cardwright_processes::persons;
use cardwright_processes::temp_cards::cards::{self, CardQuery};
use serde::Deserialize;

use super::page::{choices, explain, render, Choice, Layout, Reply, Section};
use super::persons::PersonRow;
use super::session::UiSession;
use super::temp_cards::{state_names, CardRow};
use crate::state::AppState;

/// A link to a frequent task.
struct Shortcut {
    href: &'static str,
    title: &'static str,
    text: &'static str,
}

/// The shortcuts shown to an operator: those their roles open.
fn shortcuts(session: &UiSession) -> Vec<Shortcut> {
    [
        (
            Section::BatchOrders,
            Shortcut {
                href: "/batch-orders/issue-multiple",
                title: "Issue multiple temporary cards",
                text: "Produce requested cards in a batch order.",
            },
        ),
        (
            Section::RequestCards,
            Shortcut {
                href: "/cards/request",
                title: "Request temporary cards",
                text: "Order new cards of a template.",
            },
        ),
        (
            Section::Persons,
            Shortcut {
                href: "/persons",
                title: "Persons",
                text: "Find a card holder and their cards.",
            },
        ),
        (
            Section::Script,
            Shortcut {
                href: "/admin/script",
                title: "Option script",
                text: "PIN and PUK length, encoding, validity.",
            },
        ),
        (
            Section::Audit,
            Shortcut {
                href: "/admin/audit",
                title: "Audit log",
                text: "Every change, hash-chained.",
            },
        ),
    ]
    .into_iter()
    .filter(|(section, _)| section.open_to(&session.operator.roles))
    .map(|(_, shortcut)| shortcut)
    .collect()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    shortcuts: Vec<Shortcut>,
    states: Vec<Choice>,
    serial: String,
    /// `None` until a card search ran.
    cards: Option<Vec<CardRow>>,
    next_href: Option<String>,
    can_search_persons: bool,
    person: String,
    persons: Option<Vec<PersonRow>>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct HomeQuery {
    serial: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    person: Option<String>,
}

/// GET /: the home page, with search results when a search was sent.
pub(crate) async fn home(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<HomeQuery>,
) -> Reply {
    let mut error = None;
    let serial = q.serial.clone().unwrap_or_default();
    let card_state = q.state.clone().unwrap_or_default();
    let mut next_href = None;
    let cards = if q.serial.is_some() || q.state.is_some() {
        let query = CardQuery {
            serial: q.serial.clone(),
            state: q.state.clone(),
            cursor: q.cursor.clone(),
            ..CardQuery::default()
        };
        match cards::search(&state.ctx, &query).await {
            Ok((page, next)) => {
                next_href = next.map(|cursor| {
                    format!(
                        "/?{}",
                        serde_urlencoded::to_string([
                            ("serial", serial.as_str()),
                            ("state", card_state.as_str()),
                            ("cursor", cursor.as_str()),
                        ])
                        .unwrap_or_default()
                    )
                });
                Some(page.into_iter().map(CardRow::from).collect())
            }
            Err(e) => {
                error = Some(explain(e).1);
                None
            }
        }
    } else {
        None
    };
    let can_search_persons = Section::Persons.open_to(&session.operator.roles);
    let person = q.person.clone().unwrap_or_default();
    let persons = match q.person.as_deref().map(str::trim) {
        Some(text) if can_search_persons => {
            let text = Some(text).filter(|t| !t.is_empty());
            match persons::search(&state.ctx, &session.operator, text, None, 20).await {
                Ok((page, _)) => Some(page.into_iter().map(PersonRow::from).collect()),
                Err(e) => {
                    error = Some(explain(e).1);
                    None
                }
            }
        }
        _ => None,
    };
    Ok(render(&HomePage {
        layout: Layout::new(&session, Section::Home, "Home"),
        shortcuts: shortcuts(&session),
        states: choices(state_names(), &card_state),
        serial,
        cards,
        next_href,
        can_search_persons,
        person,
        persons,
        error,
    }))
}
