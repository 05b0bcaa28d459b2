//! Stations elsewhere: the agents at operators' desks that produce cards. Production-admins and
//! registration officers see every station with its state and what it is doing; production-admins
//! also register stations, disable and enable them and give a station a new enrolment code. An
//! enrolment code is shown once, in the answer to the form that made it: it is a secret, so it
//! never travels in a redirect's address.

use askama::Template;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use cardwright_domain::Role;
use cardwright_processes::stations::{self, EnrollmentCode, StationView, CODE_VALID_MINUTES};
use cardwright_processes::ProcessError;
use serde::Deserialize;

use super::form::Posted;
use super::page::{
    error_page, explain, forbidden, process_error, render_with, when, Layout, Reply, Section,
};
use super::session::{see_other, UiSession};
use crate::state::AppState;
use crate::tls::Peer;

/// One station as the table shows it.
struct StationRow {
    name: String,
    description: String,
    state: &'static str,
    disabled: bool,
    /// Until when its enrolment code works, while it waits for its agent.
    code_until: Option<String>,
    last_seen: String,
    version: String,
    /// When its client certificate ends.
    certificate_until: Option<String>,
    current_card: Option<String>,
    produced_today: u64,
    printer: String,
    encoder: String,
}

impl From<StationView> for StationRow {
    fn from(v: StationView) -> Self {
        let r = v.record;
        let or_dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "—".into());
        Self {
            state: v.state.as_str(),
            disabled: r.disabled,
            code_until: r
                .code_expires_at
                .filter(|_| v.state == stations::StationState::Enrolling)
                .map(when),
            last_seen: r.last_seen.map_or_else(|| "never".into(), when),
            version: or_dash(r.version),
            certificate_until: r.cert_not_after.map(crate::ui::page::day),
            current_card: r.current_card,
            produced_today: r.produced_today,
            printer: or_dash(r.printer_kind),
            encoder: or_dash(r.encoder_kind),
            name: r.name,
            description: r.description,
        }
    }
}

#[derive(Template)]
#[template(path = "stations.html")]
struct StationsPage {
    layout: Layout,
    rows: Vec<StationRow>,
    /// The server's own stations (its configuration).
    local: Vec<String>,
    /// Whether the operator registers and changes stations (production-admin).
    can_manage: bool,
    /// The register form's values, kept when it was refused.
    name: String,
    description: String,
    notice: Option<String>,
    error: Option<String>,
}

/// A new enrolment code, shown once.
#[derive(Template)]
#[template(path = "station_code.html")]
struct CodePage {
    layout: Layout,
    station: String,
    /// "registered" or "given a new enrolment code".
    what: &'static str,
    code: String,
    expires: String,
    minutes: i64,
    ca_fingerprint: String,
    /// `cardwright station enroll ...` as it is typed at the desk.
    command: String,
    /// Whether this page came over plain HTTP: agents talk HTTPS only.
    plain_http: bool,
}

fn check(session: &UiSession) -> Result<(), Response> {
    if Section::Stations.open_to(&session.operator.roles) {
        Ok(())
    } else {
        Err(forbidden(session, Section::Stations))
    }
}

fn can_manage(session: &UiSession) -> bool {
    session
        .operator
        .roles
        .contains_any(&[Role::ProductionAdmin])
}

/// Refuses a change by an operator who may only look.
fn check_manage(session: &UiSession, what: &str) -> Result<(), Response> {
    check(session)?;
    if can_manage(session) {
        Ok(())
    } else {
        Err(error_page(
            session,
            StatusCode::FORBIDDEN,
            format!(
                "{what} needs the role {}; you are logged in as {}.",
                Role::ProductionAdmin.as_str(),
                session.operator.username.as_str()
            ),
        ))
    }
}

/// What the list page shows besides the stations.
#[derive(Default)]
struct Extra {
    name: String,
    description: String,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
}

async fn list_page(state: &AppState, session: &UiSession, extra: Extra) -> Reply {
    let list = stations::list(&state.ctx, &session.operator)
        .await
        .map_err(|e| process_error(session, e))?;
    let (status, error) = match extra.error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = StationsPage {
        layout: Layout::new(session, Section::Stations, "Stations"),
        rows: list.into_iter().map(StationRow::from).collect(),
        local: state.ctx.stations.local.clone(),
        can_manage: can_manage(session),
        name: extra.name,
        description: extra.description,
        notice: extra.notice,
        error,
    };
    if status.is_success() {
        Ok(render_with(status, &page))
    } else {
        Err(render_with(status, &page))
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// `disabled` or `enabled`, after the button of that name.
    done: Option<String>,
    station: Option<String>,
}

/// GET /stations: every station with its state; for production-admins the register form and
/// each station's buttons.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Reply {
    check(&session)?;
    let notice = match (q.done.as_deref(), q.station) {
        (Some(done @ ("disabled" | "enabled")), Some(name))
            if stations::check_name(&name).is_ok() =>
        {
            Some(format!("Station {name} is {done} now."))
        }
        _ => None,
    };
    list_page(
        &state,
        &session,
        Extra {
            notice,
            ..Extra::default()
        },
    )
    .await
}

/// The server as a station at the desk reaches it: the browser's `Host`, when it is a plain
/// host name or address with an optional port.
fn server_address(headers: &HeaderMap) -> String {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 260
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("HOST:PORT")
        .to_owned()
}

/// The page that shows a new enrolment code, once.
fn code_page(
    session: &UiSession,
    code: EnrollmentCode,
    what: &'static str,
    host: &str,
    plain_http: bool,
    status: StatusCode,
) -> Response {
    let command = format!(
        "cardwright station enroll --server https://{host} --code {} --dir station-{}",
        code.code, code.station
    );
    let page = CodePage {
        layout: Layout::new(session, Section::Stations, "Enrolment code"),
        what,
        expires: when(code.expires_at),
        minutes: CODE_VALID_MINUTES,
        ca_fingerprint: code.ca_fingerprint,
        command,
        plain_http,
        station: code.station,
        code: code.code,
    };
    let mut res = render_with(status, &page);
    // The code is a secret: no cache keeps the page.
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Whether the request came over plain HTTP (the agent needs HTTPS).
fn plain_http(peer: Option<&Extension<ConnectInfo<Peer>>>) -> bool {
    peer.is_some_and(|Extension(ConnectInfo(peer))| !peer.tls)
}

/// POST /stations: registers a station and shows its enrolment code once (a reload does not
/// show it again).
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    check_manage(&session, "Registering a station")?;
    let name = form.text("name").unwrap_or_default();
    let description = form.text("description").unwrap_or_default();
    match stations::register(&state.ctx, &session.operator, &name, &description).await {
        Ok(code) => Ok(code_page(
            &session,
            code,
            "registered",
            &server_address(&headers),
            plain_http(peer.as_ref()),
            StatusCode::CREATED,
        )),
        Err(
            e @ (ProcessError::Invalid(_)
            | ProcessError::Unprocessable(_)
            | ProcessError::Conflict(_)),
        ) => {
            let extra = Extra {
                name,
                description,
                error: Some(explain(e)),
                ..Extra::default()
            };
            list_page(&state, &session, extra).await
        }
        Err(e) => Err(process_error(&session, e)),
    }
}

/// A station's refused change, shown on the list.
async fn refused(state: &AppState, session: &UiSession, e: ProcessError) -> Reply {
    match e {
        e @ (ProcessError::Invalid(_)
        | ProcessError::NotFound(_)
        | ProcessError::Conflict(_)
        | ProcessError::Unprocessable(_)) => {
            let extra = Extra {
                error: Some(explain(e)),
                ..Extra::default()
            };
            list_page(state, session, extra).await
        }
        e => Err(process_error(session, e)),
    }
}

async fn set_disabled(state: &AppState, name: &str, posted: Posted, disabled: bool) -> Reply {
    let session = posted.session;
    check_manage(
        &session,
        if disabled {
            "Disabling a station"
        } else {
            "Enabling a station"
        },
    )?;
    let done = match stations::check_name(name) {
        Ok(()) => stations::set_disabled(&state.ctx, &session.operator, name, disabled).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => Ok(see_other(&format!(
            "/stations?done={}&station={name}#station-{name}",
            if disabled { "disabled" } else { "enabled" }
        ))),
        Err(e) => refused(state, &session, e).await,
    }
}

/// POST /stations/{name}/disable: the station's next call is refused and its certificate is put
/// on hold.
pub(crate) async fn disable(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted,
) -> Reply {
    set_disabled(&state, &name, posted, true).await
}

/// POST /stations/{name}/enable: the station may call again.
pub(crate) async fn enable(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted,
) -> Reply {
    set_disabled(&state, &name, posted, false).await
}

/// POST /stations/{name}/enrollment: a new enrolment code for the station, shown once.
pub(crate) async fn enrollment(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    posted: Posted,
) -> Reply {
    let session = posted.session;
    check_manage(&session, "A station's enrolment code")?;
    let renewed = match stations::check_name(&name) {
        Ok(()) => stations::renew_code(&state.ctx, &session.operator, &name).await,
        Err(e) => Err(e),
    };
    match renewed {
        Ok(code) => Ok(code_page(
            &session,
            code,
            "given a new enrolment code",
            &server_address(&headers),
            plain_http(peer.as_ref()),
            StatusCode::OK,
        )),
        Err(e) => refused(&state, &session, e).await,
    }
}
