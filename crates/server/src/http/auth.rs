//! Login and logout.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use cardwright_processes::auth;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{bearer, ApiJson};
use super::openapi::{JsonBody, NeedsLogin};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub username: String,
    pub roles: Vec<String>,
    /// The password was a one-time password: change it (`POST /api/v1/auth/password`) before
    /// anything else.
    pub must_change_password: bool,
}

/// Log in; answers a bearer token. Repeated failures lock the username out for a while (429).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, description = "Logged in.", body = LoginAnswer), JsonBody,
        (status = 401, description = "Unknown username or wrong password.", body = ErrorBody),
        (status = 403, description = "Password login is switched off (`[oidc] password_login = false`): operators sign in through the identity provider and take an API token from their account page.", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this username; try again later.", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let session = auth::login(&state.ctx, &body.username, &body.password).await?;
    Ok(Json(LoginAnswer {
        token: session.token,
        expires_at: session.expires_at,
        username: session.operator.username.as_str().to_owned(),
        roles: session
            .operator
            .roles
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        must_change_password: session.must_change_password,
    }))
}

/// Log out: the token stops working.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out."), NeedsLogin))]
pub async fn logout(State(state): State<AppState>, parts: Parts) -> Result<StatusCode, ApiError> {
    let token = bearer(&parts).ok_or_else(|| ApiError::unauthorized("no bearer token sent"))?;
    // An operator with a one-time password still to change may log out.
    auth::authenticate_session(&state.ctx, token).await?;
    auth::logout(&state.ctx, token).await?;
    Ok(StatusCode::NO_CONTENT)
}
