//! What every page shares: the menu by role, the layout around the content, rendering, and the
//! error page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use cardwright_domain::temp_cards::processes;
use cardwright_domain::temp_cards::ProcessName;
use cardwright_domain::{DomainError, Role};
use cardwright_processes::ProcessError;

use super::session::UiSession;
use crate::error::ApiError;

/// A page handler's answer: the page, or an error page (or redirect) to show instead.
pub(crate) type Reply = Result<Response, Response>;

/// The parts of the UI, each with the roles that may open it; the menu shows an operator only
/// the parts their roles open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Home,
    BatchOrders,
    Stations,
    RequestCards,
    Persons,
    Script,
    Templates,
    Operators,
    Webhooks,
    Mail,
    Audit,
}

impl Section {
    /// The menu, in order.
    const MENU: [Section; 11] = [
        Section::Home,
        Section::BatchOrders,
        Section::Stations,
        Section::RequestCards,
        Section::Persons,
        Section::Script,
        Section::Templates,
        Section::Operators,
        Section::Webhooks,
        Section::Mail,
        Section::Audit,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Home => "Home",
            Section::BatchOrders => "Batch orders",
            Section::Stations => "Stations",
            Section::RequestCards => "Request cards",
            Section::Persons => "Persons",
            Section::Script => "Option script",
            Section::Templates => "Card templates",
            Section::Operators => "Operators",
            Section::Webhooks => "Webhooks",
            Section::Mail => "Mail",
            Section::Audit => "Audit log",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Section::Home => "/",
            Section::BatchOrders => "/batch-orders",
            Section::Stations => "/stations",
            Section::RequestCards => "/cards/request",
            Section::Persons => "/persons",
            Section::Script => "/admin/script",
            Section::Templates => "/admin/templates",
            Section::Operators => "/admin/operators",
            Section::Webhooks => "/admin/webhooks",
            Section::Mail => "/admin/mail",
            Section::Audit => "/admin/audit",
        }
    }

    /// Whether the section belongs under "Administration" in the menu.
    fn is_admin(self) -> bool {
        matches!(
            self,
            Section::Script
                | Section::Templates
                | Section::Operators
                | Section::Webhooks
                | Section::Mail
                | Section::Audit
        )
    }

    /// Roles that open the section (any of them); empty for every logged-in operator. Process
    /// sections take their role from the process catalog.
    fn roles(self) -> Vec<Role> {
        let of = |process: ProcessName| process.def().role.into_iter().collect();
        match self {
            Section::Home => Vec::new(),
            Section::BatchOrders => of(processes::ISSUE_MULTIPLE),
            Section::RequestCards => of(processes::REQUEST),
            Section::Persons => vec![Role::RegistrationOfficer],
            Section::Stations => vec![Role::ProductionAdmin, Role::RegistrationOfficer],
            Section::Script
            | Section::Templates
            | Section::Operators
            | Section::Webhooks
            | Section::Mail => vec![Role::PolicyAdmin],
            Section::Audit => vec![Role::ServiceAdmin, Role::PolicyAdmin],
        }
    }

    /// Whether an operator with `roles` may open the section.
    pub(crate) fn open_to(self, roles: &cardwright_domain::Roles) -> bool {
        let needed = self.roles();
        needed.is_empty() || roles.contains_any(&needed)
    }
}

/// One entry of the menu.
pub(crate) struct MenuEntry {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
    pub admin: bool,
}

/// The frame around every page of a logged-in operator.
pub(crate) struct Layout {
    pub title: String,
    pub operator: String,
    pub roles: String,
    pub menu: Vec<MenuEntry>,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// Whether any administration entry is in the menu.
    pub has_admin: bool,
}

impl Layout {
    pub(crate) fn new(session: &UiSession, section: Section, title: impl Into<String>) -> Self {
        let roles = &session.operator.roles;
        let menu: Vec<MenuEntry> = Section::MENU
            .into_iter()
            .filter(|s| s.open_to(roles))
            .map(|s| MenuEntry {
                label: s.label(),
                href: s.href(),
                current: s == section,
                admin: s.is_admin(),
            })
            .collect();
        Self {
            title: title.into(),
            operator: session.operator.username.as_str().to_owned(),
            roles: roles
                .iter()
                .map(Role::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            has_admin: menu.iter().any(|m| m.admin),
            menu,
            csrf: session.csrf(),
        }
    }
}

/// One option of a select box.
pub(crate) struct Choice {
    pub value: String,
    pub selected: bool,
}

/// The options of a select box with `selected` chosen.
pub(crate) fn choices<S: AsRef<str>>(
    values: impl IntoIterator<Item = S>,
    selected: &str,
) -> Vec<Choice> {
    values
        .into_iter()
        .map(|v| Choice {
            selected: v.as_ref() == selected,
            value: v.as_ref().to_owned(),
        })
        .collect()
}

/// Renders a page with status 200.
pub(crate) fn render(page: &impl Template) -> Response {
    render_with(StatusCode::OK, page)
}

/// Renders a page with the given status.
pub(crate) fn render_with(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

/// The heading an error page shows for a status.
fn heading(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "Check the input",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Busy",
        _ => "Something went wrong",
    }
}

/// A process error's status and message as the operator sees them (internal causes go to
/// the log only).
pub(crate) fn explain(e: ProcessError) -> (StatusCode, String) {
    let api = ApiError::from(e);
    (api.status, api.message)
}

/// An error page within the operator's layout.
pub(crate) fn error_page(
    session: &UiSession,
    status: StatusCode,
    message: impl Into<String>,
) -> Response {
    let page = ErrorPage {
        layout: Layout::new(session, Section::Home, heading(status)),
        heading: heading(status),
        message: message.into(),
    };
    render_with(status, &page)
}

/// The error page for a refused process, with `Retry-After` when the refusal says when to ask
/// again.
pub(crate) fn process_error(session: &UiSession, e: ProcessError) -> Response {
    let api = ApiError::from(e);
    let retry_after = api.retry_after_secs();
    let mut page = error_page(session, api.status, api.message);
    if let Some(secs) = retry_after {
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    page
}

/// The "not allowed" page (403) for a section the operator's roles do not open.
pub(crate) fn forbidden(session: &UiSession, section: Section) -> Response {
    let roles: Vec<&str> = section.roles().iter().map(|r| r.as_str()).collect();
    error_page(
        session,
        StatusCode::FORBIDDEN,
        format!(
            "{} needs the role {}; you are logged in as {} ({}).",
            section.label(),
            roles.join(" or "),
            session.operator.username.as_str(),
            session
                .operator
                .roles
                .iter()
                .map(Role::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// The id a page's path names, read with its type's parser (`CardId`, `PersonId`,
/// `BatchOrderId`); a value that is not such an id gets the error page (400) with the parser's
/// message.
pub(crate) fn path_id<T: std::str::FromStr<Err = DomainError>>(
    session: &UiSession,
    id: &str,
) -> Result<T, Response> {
    id.parse()
        .map_err(|e: DomainError| process_error(session, e.into()))
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    path: String,
}

/// The answer of the operator's UI to a path that names no page: the 404 page within the
/// layout for a logged-in operator, else a page of its own with the way to the login.
pub(crate) async fn no_such_page(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    mut parts: axum::http::request::Parts,
) -> Response {
    use axum::extract::FromRequestParts as _;
    let path: String = parts.uri.path().chars().take(200).collect();
    let message = format!("There is no page at {path}.");
    if let Ok(session) = UiSession::from_request_parts(&mut parts, &state).await {
        return error_page(&session, StatusCode::NOT_FOUND, message);
    }
    render_with(StatusCode::NOT_FOUND, &NotFoundPage { path })
}

/// A 404 page for a path segment that names nothing.
pub(crate) fn not_found(session: &UiSession) -> Response {
    error_page(session, StatusCode::NOT_FOUND, "There is no such page.")
}

/// A timestamp as operators read it.
pub(crate) fn when(t: cardwright_domain::Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A date as operators read it.
pub(crate) fn day(t: cardwright_domain::Timestamp) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// `?side=front|back` of the preview pages.
#[derive(serde::Deserialize)]
pub(crate) struct PreviewQuery {
    pub side: Option<String>,
}

/// A PNG preview, never stored by a cache: it may show a card holder.
pub(crate) fn png_reply(png: Vec<u8>) -> axum::response::Response {
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
    use axum::response::IntoResponse as _;
    (
        [(CONTENT_TYPE, "image/png"), (CACHE_CONTROL, "no-store")],
        png,
    )
        .into_response()
}
