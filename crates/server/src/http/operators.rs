//! Operator administration (policy-admin) and an operator's own password.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use cardwright_processes::operators::{self, Change, OperatorAccount};
use cardwright_processes::Actor;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{bearer, ApiJson, Auth};
use super::openapi::{JsonBody, NeedsLogin};
use super::schema::{RoleText, UsernameText};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// An operator as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorView {
    pub username: String,
    #[schema(value_type = Vec<RoleText>)]
    pub roles: Vec<String>,
    /// A disabled operator cannot log in; its sessions ended when it was disabled.
    pub enabled: bool,
    /// Its password is a one-time password it must change at its next login.
    pub must_change_password: bool,
    /// Failed logins lock the username out until then.
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// It signs in through the organisation's OpenID provider (no Cardwright password); its
    /// roles follow the provider's claim at every sign-in.
    pub single_sign_on: bool,
}

impl From<OperatorAccount> for OperatorView {
    fn from(a: OperatorAccount) -> Self {
        Self {
            username: a.operator.username.as_str().to_owned(),
            roles: a
                .operator
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            enabled: a.enabled,
            must_change_password: a.must_change_password,
            locked_until: a.locked_until,
            created_at: a.created_at,
            single_sign_on: a.single_sign_on,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorList {
    /// By username.
    pub operators: Vec<OperatorView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperatorBody {
    #[schema(value_type = UsernameText)]
    pub username: String,
    /// At least one.
    #[schema(value_type = Vec<RoleText>, min_items = 1)]
    pub roles: Vec<String>,
    /// 8 to 256 characters. Without it, a one-time password is made and answered: the
    /// operator must change it at the first login.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
}

/// A new operator, with its one-time password when none was given (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOperator {
    #[serde(flatten)]
    pub operator: OperatorView,
    pub one_time_password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorChangeBody {
    /// The operator's roles from now on (at least one).
    #[schema(value_type = Option<Vec<RoleText>>, min_items = 1)]
    pub roles: Option<Vec<String>>,
    /// False disables the operator: it cannot log in and its sessions end.
    pub enabled: Option<bool>,
}

/// A reset password, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordReset {
    #[serde(flatten)]
    pub operator: OperatorView,
    /// The operator logs in with it and must change it first.
    pub one_time_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeBody {
    #[schema(max_length = 256)]
    pub old_password: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// Every operator with its roles and state.
#[utoipa::path(get, path = "/operators", tag = "operators", security(("bearer" = [])),
    responses((status = 200, description = "The operators.", body = OperatorList), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody)))]
pub async fn list_operators(
    State(state): State<AppState>,
    Auth(op): Auth,
) -> Result<Json<OperatorList>, ApiError> {
    let list = operators::list(&state.ctx, &Actor::Operator(op)).await?;
    Ok(Json(OperatorList {
        operators: list.into_iter().map(OperatorView::from).collect(),
    }))
}

/// Add an operator.
#[utoipa::path(post, path = "/operators", tag = "operators", request_body = NewOperatorBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Added; with a one-time password when none was given.", body = CreatedOperator),
        (status = 400, description = "A bad username, an unknown role, no role, or a password too short or too long.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 409, description = "The username is taken.", body = ErrorBody)))]
pub async fn create_operator(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<NewOperatorBody>,
) -> Result<(StatusCode, Json<CreatedOperator>), ApiError> {
    let (account, one_time_password) = operators::create(
        &state.ctx,
        &Actor::Operator(op),
        &body.username,
        &body.roles,
        body.password.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperator {
            operator: account.into(),
            one_time_password,
        }),
    ))
}

/// One operator.
#[utoipa::path(get, path = "/operators/{username}", tag = "operators",
    params(("username" = UsernameText, Path, description = "the operator's username")), security(("bearer" = [])),
    responses((status = 200, description = "The operator.", body = OperatorView), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such operator.", body = ErrorBody)))]
pub async fn get_operator(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(username): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    Ok(Json(
        operators::get(&state.ctx, &Actor::Operator(op), &username)
            .await?
            .into(),
    ))
}

/// Change an operator's roles or disable and enable it. The last enabled policy-admin can
/// neither be disabled nor lose that role (409).
#[utoipa::path(patch, path = "/operators/{username}", tag = "operators",
    params(("username" = UsernameText, Path, description = "the operator's username")),
    request_body = OperatorChangeBody, security(("bearer" = [])),
    responses((status = 200, description = "The operator as it is now.", body = OperatorView),
        (status = 400, description = "An unknown role, or no role.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such operator.", body = ErrorBody),
        (status = 409, description = "The change would leave no enabled policy-admin, or disables or changes the roles of the caller's own account.", body = ErrorBody)))]
pub async fn update_operator(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<OperatorChangeBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let change = Change {
        roles: body.roles,
        enabled: body.enabled,
    };
    Ok(Json(
        operators::update(&state.ctx, &Actor::Operator(op), &username, change)
            .await?
            .into(),
    ))
}

/// Reset an operator's password to a one-time password (answered once); its sessions end and
/// any lockout is lifted. The operator must change it at the next login.
#[utoipa::path(post, path = "/operators/{username}/reset-password", tag = "operators",
    params(("username" = UsernameText, Path, description = "the operator's username")), security(("bearer" = [])),
    responses((status = 200, description = "The one-time password.", body = PasswordReset), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such operator.", body = ErrorBody),
        (status = 409, description = "It is the caller's own account: their password has `POST /auth/password`.", body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(username): Path<String>,
) -> Result<Json<PasswordReset>, ApiError> {
    let (account, one_time_password) =
        operators::reset_password(&state.ctx, &Actor::Operator(op), &username).await?;
    Ok(Json(PasswordReset {
        operator: account.into(),
        one_time_password,
    }))
}

/// Lift a lockout after failed logins.
#[utoipa::path(post, path = "/operators/{username}/unlock", tag = "operators",
    params(("username" = UsernameText, Path, description = "the operator's username")), security(("bearer" = [])),
    responses((status = 200, description = "The operator, no longer locked out.", body = OperatorView), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such operator.", body = ErrorBody)))]
pub async fn unlock_operator(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(username): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    Ok(Json(
        operators::unlock(&state.ctx, &Actor::Operator(op), &username)
            .await?
            .into(),
    ))
}

/// Change your own password; the current one is required. Also the way out of a one-time
/// password. Your other sessions end.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordChangeBody,
    security(("bearer" = [])),
    responses((status = 204, description = "Changed."),
        (status = 400, description = "The new password is too short or too long.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "The current password is wrong (it counts as a failed login).", body = ErrorBody),
        (status = 422, description = "The new password is the current one.", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords for this username; try again later.", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    parts: Parts,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> Result<StatusCode, ApiError> {
    let token = bearer(&parts).ok_or_else(|| ApiError::unauthorized("no bearer token sent"))?;
    operators::change_own_password(&state.ctx, token, &body.old_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
