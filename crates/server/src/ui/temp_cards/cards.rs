//! Cards: Request temporary cards, the card profile with its preview and history, and the card
//! processes of the catalog allowed now, each behind a confirmation page (with a person search
//! for a process that takes a person).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cardwright_domain::temp_cards::{CardState, Input, ProcessDef, Reason, ReasonKind};
use cardwright_domain::{CardId, PersonId};
use cardwright_processes::card_process::{self, ProcessInput};
use cardwright_processes::temp_cards::cards::{self, CardProfile};
use cardwright_processes::temp_cards::request;
use cardwright_processes::{persons, templates, ProcessError};
use cardwright_storage::cards::CardRecord;
use serde::Deserialize;

use crate::state::AppState;
use crate::ui::admin::EventRow;
use crate::ui::form::Posted;
use crate::ui::page::{
    choices, day, explain, forbidden, not_found, path_id, png_reply, process_error, render,
    render_with, when, Choice, Layout, Reply, Section,
};
use crate::ui::persons::PersonRow;
use crate::ui::session::{see_other, UiSession};

/// A card as lists show it.
pub(crate) struct CardRow {
    pub id: String,
    pub serial: String,
    pub template: String,
    pub state: &'static str,
    pub holder: String,
    pub holder_id: String,
    pub valid_until: String,
    pub created: String,
    /// The open batch order holding the card, if any.
    pub order: String,
}

impl From<CardRecord> for CardRow {
    fn from(r: CardRecord) -> Self {
        let (holder, holder_id) = r
            .holder
            .map(|h| {
                (
                    format!("{} ({})", h.name, h.employee_number),
                    h.id.to_string(),
                )
            })
            .unwrap_or_default();
        Self {
            id: r.card.id.to_string(),
            serial: r.card.serial.to_string(),
            template: r.template_name,
            state: r.card.state.as_str(),
            holder,
            holder_id,
            valid_until: r.card.valid_until.map(day).unwrap_or_default(),
            created: when(r.card.created_at),
            order: r
                .card
                .batch_order
                .map(|o| o.to_string())
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "request_cards.html")]
struct RequestPage {
    layout: Layout,
    templates: Vec<Choice>,
    amount: String,
    error: Option<String>,
    /// After a request: how many cards, and the first and last serial.
    created: Option<(u32, String, String)>,
    can_issue: bool,
}

#[derive(Deserialize)]
pub(crate) struct RequestQuery {
    requested: Option<u32>,
    template: Option<String>,
    first: Option<String>,
    last: Option<String>,
}

async fn template_names(state: &AppState) -> Result<Vec<String>, ProcessError> {
    Ok(templates::list(&state.ctx)
        .await?
        .into_iter()
        .map(|t| t.name.as_str().to_owned())
        .collect())
}

/// GET /cards/request: the Request temporary cards form; after a request, what it made.
pub(crate) async fn request_page(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<RequestQuery>,
) -> Reply {
    if !Section::RequestCards.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::RequestCards));
    }
    let templates = template_names(&state)
        .await
        .map_err(|e| process_error(&session, e))?;
    let chosen = q
        .template
        .filter(|t| templates.contains(t))
        .or_else(|| templates.first().cloned())
        .unwrap_or_default();
    let short = |s: Option<String>| s.unwrap_or_default().chars().take(64).collect::<String>();
    let created = q
        .requested
        .filter(|n| *n > 0)
        .map(|n| (n, short(q.first), short(q.last)));
    Ok(render(&RequestPage {
        layout: Layout::new(&session, Section::RequestCards, "Request temporary cards"),
        templates: choices(&templates, &chosen),
        amount: "10".into(),
        error: None,
        created,
        can_issue: Section::BatchOrders.open_to(&session.operator.roles),
    }))
}

/// POST /cards/request: TempCardsProcRequest; then back to the form, which says what was made
/// (a reload does not request again).
pub(crate) async fn request(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    if !Section::RequestCards.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::RequestCards));
    }
    let template = form.text("template").unwrap_or_default();
    let amount_text = form.text("amount").unwrap_or_default();
    let result = match amount_text.parse::<i64>() {
        Ok(amount) => request::request(&state.ctx, &session.operator, &template, amount)
            .await
            .map_err(explain),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "Amount: enter a whole number of cards.".to_owned(),
        )),
    };
    let templates = template_names(&state)
        .await
        .map_err(|e| process_error(&session, e))?;
    let mut page = RequestPage {
        layout: Layout::new(&session, Section::RequestCards, "Request temporary cards"),
        templates: choices(&templates, &template),
        amount: amount_text,
        error: None,
        created: None,
        can_issue: Section::BatchOrders.open_to(&session.operator.roles),
    };
    match result {
        Ok(created) => {
            let serial =
                |r: Option<&CardRecord>| r.map(|r| r.card.serial.to_string()).unwrap_or_default();
            let query = serde_urlencoded::to_string([
                ("requested", created.len().to_string()),
                ("template", template.clone()),
                ("first", serial(created.first())),
                ("last", serial(created.last())),
            ])
            .unwrap_or_default();
            Ok(see_other(&format!("/cards/request?{query}")))
        }
        Err((status, message)) => {
            page.error = Some(message);
            Err(render_with(status, &page))
        }
    }
}

/// A process the operator may start on the card now.
struct ProcessButton {
    action: &'static str,
    title: &'static str,
    danger: bool,
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    layout: Layout,
    card: CardRow,
    encoded: bool,
    updated: String,
    processes: Vec<ProcessButton>,
    certificates: Vec<CertificateRow>,
    history: Vec<EventRow>,
    done: Option<&'static str>,
    can_see_orders: bool,
    can_see_persons: bool,
}

/// A certificate of the card's chip, as the profile lists it.
struct CertificateRow {
    profile: String,
    kind: &'static str,
    subject: String,
    serial: String,
    status: &'static str,
    not_after: String,
}

/// A card-scoped process of any area's catalog by its action word; the card's own area's row is
/// taken once the card is read.
fn card_process(action: &str) -> Option<&'static ProcessDef> {
    cardwright_domain::area::card_actions()
        .into_iter()
        .find(|d| d.action == action)
}

#[derive(Deserialize)]
pub(crate) struct ProfileQuery {
    done: Option<String>,
}

/// GET /cards/{id}: the card profile.
pub(crate) async fn profile(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Reply {
    let id: CardId = path_id(&session, &id)?;
    let profile = cards::profile(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    let CardProfile {
        record,
        area,
        processes,
        history,
        certificates,
    } = profile;
    let done = q
        .done
        .as_deref()
        .and_then(|action| area.card_action(action))
        .map(|d| d.title);
    let roles = &session.operator.roles;
    Ok(render(&CardPage {
        layout: Layout::new(
            &session,
            Section::Home,
            format!("Card {}", record.card.serial),
        ),
        encoded: record.card.encoded,
        updated: when(record.card.updated_at),
        processes: processes
            .iter()
            .map(|d| ProcessButton {
                action: d.action,
                title: d.title,
                danger: d.name.area().is_final(d.to),
            })
            .collect(),
        history: history.into_iter().map(EventRow::from).collect(),
        certificates: certificates
            .into_iter()
            .map(|c| CertificateRow {
                status: if c.revoked { "revoked" } else { "valid" },
                profile: c.profile,
                kind: c.kind.as_str(),
                subject: c.subject,
                serial: c.serial,
                not_after: day(c.not_after),
            })
            .collect(),
        card: record.into(),
        done,
        can_see_orders: Section::BatchOrders.open_to(roles),
        can_see_persons: Section::Persons.open_to(roles),
    }))
}

/// GET /cards/{id}/preview?side=front|back: the card's PNG as it prints. Limited as the
/// template previews are ([`crate::ui::templates::preview`]).
pub(crate) async fn preview(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<crate::ui::page::PreviewQuery>,
) -> Reply {
    let id = path_id(&session, &id)?;
    let side = cardwright_processes::parse_side(q.side.as_deref().unwrap_or("front"))
        .map_err(|e| process_error(&session, e))?;
    let png = cards::preview(&state.ctx, &session.operator, id, side)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(png_reply(png))
}

#[derive(Template)]
#[template(path = "card_action.html")]
struct ActionPage {
    layout: Layout,
    card: CardRow,
    action: &'static str,
    title: &'static str,
    to_state: &'static str,
    final_state: bool,
    /// Whether the process takes a person, chosen on the page from a search.
    takes_person: bool,
    query: String,
    searched: bool,
    persons: Vec<PersonRow>,
    error: Option<String>,
    /// The reasons to choose from, when the process asks why (with a comment); else empty.
    reasons: Vec<&'static str>,
}

#[derive(Deserialize)]
pub(crate) struct ActionQuery {
    q: Option<String>,
}

/// The confirmation page of a process on a card, with the person search for Assign.
async fn action_page(
    state: &AppState,
    session: &UiSession,
    def: &'static ProcessDef,
    id: CardId,
    query: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Reply {
    let profile = cards::profile(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(session, e))?;
    let def = profile.area.card_action(def.action).unwrap_or(def);
    if error.is_none() && !profile.processes.iter().any(|p| p.name == def.name) {
        let (status, message) = match def.role {
            Some(role) if !session.operator.roles.contains(role) => (
                StatusCode::FORBIDDEN,
                format!("{} needs the role {role}.", def.title),
            ),
            _ => (
                StatusCode::CONFLICT,
                format!(
                    "{} is not possible on a card in state {}; it needs {}.",
                    def.title,
                    profile.record.card.state,
                    def.from
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ),
        };
        return Err(crate::ui::page::error_page(session, status, message));
    }
    let query = query.unwrap_or_default();
    let takes_person = def.input == Input::Person;
    let searched = takes_person && !query.trim().is_empty();
    let persons = if searched {
        persons::search(&state.ctx, &session.operator, Some(query.trim()), None, 20)
            .await
            .map_err(|e| process_error(session, e))?
            .0
            .into_iter()
            .map(PersonRow::from)
            .collect()
    } else {
        Vec::new()
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = ActionPage {
        layout: Layout::new(session, Section::Home, def.title),
        card: profile.record.into(),
        action: def.action,
        title: def.title,
        to_state: def.to.as_str(),
        final_state: def.name.area().is_final(def.to),
        takes_person,
        query,
        searched,
        persons,
        error,
        reasons: if def.input == Input::Reason {
            ReasonKind::ALL.iter().map(|k| k.as_str()).collect()
        } else {
            Vec::new()
        },
    };
    if status == StatusCode::OK {
        Ok(render(&page))
    } else {
        Err(render_with(status, &page))
    }
}

/// GET /cards/{id}/{action}: confirm a process on the card.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    session: UiSession,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<ActionQuery>,
) -> Reply {
    let Some(def) = card_process(&action) else {
        return Err(not_found(&session));
    };
    let id = path_id(&session, &id)?;
    action_page(&state, &session, def, id, q.q, None).await
}

/// POST /cards/{id}/{action}: runs the process, then shows the card.
pub(crate) async fn run(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    let Some(def) = card_process(&action) else {
        return Err(not_found(&session));
    };
    let card = path_id(&session, &id)?;
    let input = match def.input {
        Input::None => Ok(ProcessInput::None),
        Input::Person => match form.text("person") {
            Some(person) => PersonId::parse(&person)
                .map(ProcessInput::Person)
                .map_err(ProcessError::from),
            None => Err(ProcessError::Invalid(
                "Choose the person who gets the card.".into(),
            )),
        },
        Input::Reason => match form.text("reason").filter(|r| !r.is_empty()) {
            Some(kind) => Reason::parse(&kind, form.text("comment").as_deref())
                .map(ProcessInput::Reason)
                .map_err(ProcessError::from),
            None => Err(ProcessError::Invalid(
                "Choose why: lost, stolen, damaged, returned or other.".into(),
            )),
        },
    };
    let result = match input {
        Ok(input) => {
            card_process::run_action(&state.ctx, &session.operator, def.action, card, input).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/cards/{card}?done={}", def.action))),
        Err(e) => {
            let query = form.text("q");
            action_page(&state, &session, def, card, query, Some(explain(e))).await
        }
    }
}

/// Every card state's name, for search forms.
pub(crate) fn state_names() -> Vec<&'static str> {
    CardState::all().iter().map(|s| s.as_str()).collect()
}
