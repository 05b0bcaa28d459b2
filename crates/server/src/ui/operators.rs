//! Operators (policy-admin): add, change roles, disable and enable, reset a password, lift a
//! lockout; and every operator's own password.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cardwright_domain::Role;
use cardwright_processes::operators::{self, Change, OperatorAccount};
use cardwright_processes::{Actor, ProcessError};
use serde::Deserialize;

use super::form::{Form, Posted};
use super::page::{
    explain, forbidden, process_error, render, render_with, when, Layout, Reply, Section,
};
use super::session::{see_other, UiSession};
use crate::state::AppState;

struct RoleBox {
    name: &'static str,
    checked: bool,
}

struct OperatorRow {
    username: String,
    roles: Vec<RoleBox>,
    enabled: bool,
    state: String,
    locked: bool,
    single_sign_on: bool,
}

fn role_boxes(has: impl Fn(Role) -> bool) -> Vec<RoleBox> {
    Role::ALL
        .into_iter()
        .map(|r| RoleBox {
            name: r.as_str(),
            checked: has(r),
        })
        .collect()
}

impl From<OperatorAccount> for OperatorRow {
    fn from(a: OperatorAccount) -> Self {
        let mut state = Vec::new();
        state.push(if a.enabled {
            "enabled".to_owned()
        } else {
            "disabled".to_owned()
        });
        if a.must_change_password {
            state.push("one-time password".to_owned());
        }
        if a.single_sign_on {
            state.push("single sign-on".to_owned());
        }
        if let Some(until) = a.locked_until {
            state.push(format!("locked out until {}", when(until)));
        }
        Self {
            username: a.operator.username.as_str().to_owned(),
            roles: role_boxes(|r| a.operator.roles.contains(r)),
            enabled: a.enabled,
            locked: a.locked_until.is_some(),
            single_sign_on: a.single_sign_on,
            state: state.join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "operators.html")]
struct OperatorsPage {
    layout: Layout,
    operators: Vec<OperatorRow>,
    new_roles: Vec<RoleBox>,
    new_username: String,
    /// A message after an action: (is it an error, text).
    notice: Option<(bool, String)>,
    /// A one-time password to hand over: (username, password).
    one_time: Option<(String, String)>,
}

#[derive(Deserialize)]
pub(crate) struct OperatorsQuery {
    done: Option<String>,
}

async fn page(
    state: &AppState,
    session: &UiSession,
    notice: Option<(bool, String)>,
    one_time: Option<(String, String)>,
    status: StatusCode,
) -> Reply {
    let list = operators::list(&state.ctx, &Actor::Operator(session.operator.clone()))
        .await
        .map_err(|e| process_error(session, e))?;
    let page = OperatorsPage {
        layout: Layout::new(session, Section::Operators, "Operators"),
        operators: list.into_iter().map(OperatorRow::from).collect(),
        new_roles: role_boxes(|_| false),
        new_username: String::new(),
        notice,
        one_time,
    };
    if status.is_success() {
        Ok(render_with(status, &page))
    } else {
        Err(render_with(status, &page))
    }
}

fn check(session: &UiSession) -> Result<(), axum::response::Response> {
    if Section::Operators.open_to(&session.operator.roles) {
        Ok(())
    } else {
        Err(forbidden(session, Section::Operators))
    }
}

/// GET /admin/operators: every operator, with the forms to change them.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OperatorsQuery>,
) -> Reply {
    check(&session)?;
    let notice = q.done.map(|d| (false, d));
    page(&state, &session, notice, None, StatusCode::OK).await
}

fn roles_of(form: &Form) -> Vec<String> {
    form.all("roles")
}

/// The page again with an input error shown, or the error page for anything else.
async fn refused(state: &AppState, session: &UiSession, e: ProcessError) -> Reply {
    match e {
        ProcessError::Invalid(_) | ProcessError::Conflict(_) | ProcessError::NotFound(_) => {
            let (status, message) = explain(e);
            page(state, session, Some((true, message)), None, status).await
        }
        e => Err(process_error(session, e)),
    }
}

/// POST /admin/operators: adds an operator with a one-time password, shown once.
pub(crate) async fn create(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    check(&session)?;
    let actor = Actor::Operator(session.operator.clone());
    let username = form.get("username").unwrap_or_default().to_owned();
    match operators::create(&state.ctx, &actor, &username, &roles_of(&form), None).await {
        Ok((account, Some(password))) => {
            let name = account.operator.username.as_str().to_owned();
            let notice = format!("{name} added.");
            page(
                &state,
                &session,
                Some((false, notice)),
                Some((name, password)),
                StatusCode::CREATED,
            )
            .await
        }
        Ok((account, None)) => Ok(see_other(&format!(
            "/admin/operators?done={} added.",
            account.operator.username
        ))),
        Err(e) => refused(&state, &session, e).await,
    }
}

/// POST /admin/operators/{username}: one of the row's actions (`action` = roles, disable,
/// enable, reset, unlock).
pub(crate) async fn act(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    check(&session)?;
    let actor = Actor::Operator(session.operator.clone());
    let ctx = &state.ctx;
    let done = match form.get("action").unwrap_or_default() {
        "roles" => {
            let change = Change {
                roles: Some(roles_of(&form)),
                enabled: None,
            };
            operators::update(ctx, &actor, &username, change)
                .await
                .map(|a| format!("The roles of {} are saved.", a.operator.username))
        }
        "disable" | "enable" => {
            let enabled = form.get("action") == Some("enable");
            let change = Change {
                roles: None,
                enabled: Some(enabled),
            };
            operators::update(ctx, &actor, &username, change)
                .await
                .map(|a| {
                    format!(
                        "{} is {}.",
                        a.operator.username,
                        if enabled {
                            "enabled"
                        } else {
                            "disabled; its sessions ended"
                        }
                    )
                })
        }
        "unlock" => operators::unlock(ctx, &actor, &username)
            .await
            .map(|a| format!("{} may log in again.", a.operator.username)),
        "reset" => {
            return match operators::reset_password(ctx, &actor, &username).await {
                Ok((account, password)) => {
                    let name = account.operator.username.as_str().to_owned();
                    let notice = format!("The password of {name} is reset; its sessions ended.");
                    page(
                        &state,
                        &session,
                        Some((false, notice)),
                        Some((name, password)),
                        StatusCode::OK,
                    )
                    .await
                }
                Err(e) => refused(&state, &session, e).await,
            };
        }
        other => Err(ProcessError::Invalid(format!(
            "action: unknown action '{other}'"
        ))),
    };
    match done {
        Ok(message) => Ok(see_other(&format!(
            "/admin/operators?{}",
            serde_urlencoded::to_string([("done", message)]).unwrap_or_default()
        ))),
        Err(e) => refused(&state, &session, e).await,
    }
}

#[derive(Template)]
#[template(path = "account_password.html")]
struct PasswordPage {
    layout: Layout,
    first: bool,
    error: Option<String>,
    changed: bool,
    /// A new API token (shown once) and until when it is valid.
    token: Option<(String, String)>,
}

#[derive(Deserialize)]
pub(crate) struct PasswordQuery {
    first: Option<String>,
    changed: Option<String>,
}

/// GET /account/password: the form to change one's own password.
pub(crate) async fn password_form(session: UiSession, Query(q): Query<PasswordQuery>) -> Reply {
    Ok(render(&PasswordPage {
        layout: Layout::new(&session, Section::Home, "Change password"),
        first: q.first.is_some(),
        error: None,
        changed: q.changed.is_some(),
        token: None,
    }))
}

/// POST /account/token: a new API bearer token for the operator, shown once (for operators who
/// sign in through the identity provider and have no password to log in to the API with).
pub(crate) async fn api_token(State(state): State<AppState>, posted: Posted) -> Reply {
    let session = posted.session;
    let issued = cardwright_processes::auth::issue_token(&state.ctx, &session.token)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(render(&PasswordPage {
        layout: Layout::new(&session, Section::Home, "Account"),
        first: false,
        error: None,
        changed: false,
        token: Some((issued.token, super::page::when(issued.expires_at))),
    }))
}

/// POST /account/password: changes it; the current password is required.
pub(crate) async fn change_password(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    let old = form.get("old_password").unwrap_or_default();
    let new = form.get("new_password").unwrap_or_default();
    let again = form.get("repeat_password").unwrap_or_default();
    let result = if new == again {
        operators::change_own_password(&state.ctx, &session.token, old, new)
            .await
            .map(|_| ())
    } else {
        Err(ProcessError::Invalid(
            "repeat_password: the two new passwords differ".into(),
        ))
    };
    match result {
        Ok(()) => Ok(see_other("/account/password?changed=1")),
        Err(
            e @ (ProcessError::Invalid(_)
            | ProcessError::Unprocessable(_)
            | ProcessError::Forbidden(_)
            | ProcessError::Throttled(_)),
        ) => {
            let (status, message) = explain(e);
            Err(render_with(
                status,
                &PasswordPage {
                    layout: Layout::new(&session, Section::Home, "Change password"),
                    first: false,
                    error: Some(message),
                    changed: false,
                    token: None,
                },
            ))
        }
        Err(e) => Err(process_error(&session, e)),
    }
}
