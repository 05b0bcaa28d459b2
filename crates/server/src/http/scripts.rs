//! The option script TempCardsScriptOptions: read, save, history, restore (policy-admin).

use axum::extract::{Path, State};
use axum::Json;
use cardwright_processes::scripts;
use cardwright_storage::scripts::ScriptVersion;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth};
use super::openapi::{JsonBody, NeedsLogin};
use super::schema::{parse_whole_number, ScriptNameText};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// One version of a script.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptView {
    pub name: String,
    /// The Rhai source.
    pub source: String,
    pub version: i64,
    pub saved_at: DateTime<Utc>,
    pub saved_by: String,
}

impl From<ScriptVersion> for ScriptView {
    fn from(v: ScriptVersion) -> Self {
        Self {
            name: v.name,
            source: v.source,
            version: v.version,
            saved_at: v.saved_at,
            saved_by: v.saved_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptVersions {
    /// Newest first.
    pub versions: Vec<ScriptView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptBody {
    /// The new Rhai source; no NUL characters.
    #[schema(pattern = r"^[^\u0000]*$")]
    pub source: String,
}

/// The version in force.
#[utoipa::path(get, path = "/scripts/{name}", tag = "scripts",
    params(("name" = ScriptNameText, Path, description = "the script's name")), security(("bearer" = [])),
    responses((status = 200, description = "The version in force.", body = ScriptView), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No script of that name.", body = ErrorBody)))]
pub async fn get_script(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<ScriptView>, ApiError> {
    Ok(Json(scripts::get(&state.ctx, &op, &name).await?.into()))
}

/// Save a new version. Refused with 422 (and `line`, `column` in the error) when it does not
/// parse, exceeds a limit, sets an unknown option or an invalid value for any template; the
/// version in force stays.
#[utoipa::path(put, path = "/scripts/{name}", tag = "scripts",
    params(("name" = ScriptNameText, Path, description = "the script's name")), request_body = ScriptBody,
    security(("bearer" = [])),
    responses((status = 200, description = "The saved version, now in force.", body = ScriptView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No script of that name.", body = ErrorBody),
        (status = 409, description = "Someone saved the script at the same moment.", body = ErrorBody),
        (status = 422, description = "The script is refused (does not compile, exceeds a limit, sets an unknown option or an invalid value); `line` and `column` say where when known.", body = ErrorBody)))]
pub async fn put_script(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ScriptBody>,
) -> Result<Json<ScriptView>, ApiError> {
    Ok(Json(
        scripts::save(&state.ctx, &op, &name, &body.source)
            .await?
            .into(),
    ))
}

/// Every saved version, newest first.
#[utoipa::path(get, path = "/scripts/{name}/versions", tag = "scripts",
    params(("name" = ScriptNameText, Path, description = "the script's name")), security(("bearer" = [])),
    responses((status = 200, description = "Every version.", body = ScriptVersions), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No script of that name.", body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<ScriptVersions>, ApiError> {
    let versions = scripts::versions(&state.ctx, &op, &name).await?;
    Ok(Json(ScriptVersions {
        versions: versions.into_iter().map(ScriptView::from).collect(),
    }))
}

/// Restore an earlier version: its text is checked again and saved as the newest version.
#[utoipa::path(post, path = "/scripts/{name}/versions/{version}/restore", tag = "scripts",
    params(("name" = ScriptNameText, Path, description = "the script's name"),
        ("version" = i64, Path, minimum = 1, description = "the version to restore")),
    security(("bearer" = [])),
    responses((status = 200, description = "The restored text, saved as the newest version.", body = ScriptView),
        (status = 400, description = "The version is not a number.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No script of that name, or no such version.", body = ErrorBody),
        (status = 409, description = "Someone saved the script at the same moment.", body = ErrorBody),
        (status = 422, description = "The old text is refused today (for example by a template added since).", body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ScriptView>, ApiError> {
    let version = parse_whole_number(&version).ok_or_else(|| {
        ApiError::bad_request(format!("version: '{version}' is not a version number"))
    })?;
    Ok(Json(
        scripts::restore(&state.ctx, &op, &name, version)
            .await?
            .into(),
    ))
}
