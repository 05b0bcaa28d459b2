//! Persons from a CSV file.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use cardwright_processes::persons_import::{self, ImportOptions, ImportReport};
use cardwright_processes::ProcessError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, Auth};
use super::openapi::NeedsLogin;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Only report what would happen (default false).
    pub dry_run: Option<bool>,
    /// Import the good rows even when some are bad (default false: a bad row stops the import).
    pub skip_bad_rows: Option<bool>,
    /// Deactivate active persons the file does not name: the file is the whole directory
    /// (default false).
    pub deactivate_missing: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct BadRowView {
    /// The line in the file (1 is the header).
    pub line: u64,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct CardActionView {
    pub serial: String,
    /// `withdrawn`, `locked` or `kept` (the option `on_person_deactivated`), or why not.
    pub outcome: String,
}

/// What an import did, or would do.
#[derive(Serialize, ToSchema)]
pub struct ImportReportView {
    pub dry_run: bool,
    /// Whether anything was written: false for a dry run, and when bad rows stopped the import.
    pub applied: bool,
    /// Employee numbers of the persons created.
    pub created: Vec<String>,
    pub updated: Vec<String>,
    /// Deactivated (never deleted): state `inactive` in the file, or missing from it with
    /// `deactivate_missing`.
    pub deactivated: Vec<String>,
    pub unchanged: usize,
    pub bad_rows: Vec<BadRowView>,
    /// The assigned temporary cards of deactivated persons and what became of them.
    pub cards: Vec<CardActionView>,
    /// Employee numbers of persons whose photo the directory set or changed (a CSV file
    /// carries no photos).
    pub photos_set: Vec<String>,
    /// Employee numbers of persons whose directory photo is gone.
    pub photos_removed: Vec<String>,
}

impl From<ImportReport> for ImportReportView {
    fn from(r: ImportReport) -> Self {
        Self {
            dry_run: r.dry_run,
            applied: r.applied,
            created: r.created,
            updated: r.updated,
            deactivated: r.deactivated,
            unchanged: r.unchanged,
            photos_set: r.photos_set,
            photos_removed: r.photos_removed,
            bad_rows: r
                .bad_rows
                .into_iter()
                .map(|b| BadRowView {
                    line: b.line,
                    message: b.message,
                })
                .collect(),
            cards: r
                .cards
                .into_iter()
                .map(|c| CardActionView {
                    serial: c.serial,
                    outcome: c.outcome,
                })
                .collect(),
        }
    }
}

/// Import persons from CSV (UTF-8, a header row naming `employee_number`, `given_name`,
/// `family_name` and optionally `email` and `state`; the directory's `employeeNumber`,
/// `givenName`, `sn` and `mail` are understood too). Persons are matched by employee number.
#[utoipa::path(post, path = "/persons/import", tag = "persons", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, at most 2 MiB and 50,000 rows."),
    security(("bearer" = [])),
    responses((status = 200, description = "What was done, or would be (dry run, or stopped by bad rows).", body = ImportReportView),
        (status = 400, description = "A query value breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB.", body = ErrorBody),
        (status = 415, description = "The body is not sent as text/csv.", body = ErrorBody),
        (status = 422, description = "The file is not UTF-8, its header lacks a needed column, or it has more than 50,000 rows.", body = ErrorBody)))]
pub async fn import_persons(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportReportView>, ApiError> {
    let media = super::extract::media_type(&headers);
    if media.as_deref() != Some("text/csv") {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "send the file with Content-Type: text/csv".into(),
            position: None,
            retry_after: None,
        });
    }
    let text = persons_import::decode(&body)
        .map_err(|e| ApiError::from(ProcessError::Unprocessable(e.to_string())))?;
    let options = ImportOptions {
        dry_run: q.dry_run.unwrap_or(false),
        skip_bad_rows: q.skip_bad_rows.unwrap_or(false),
        deactivate_missing: q.deactivate_missing.unwrap_or(false),
    };
    let report = persons_import::import(&state.ctx, &op, text, options)
        .await
        .map_err(|e| match e {
            ProcessError::Invalid(m) => ApiError::from(ProcessError::Unprocessable(m)),
            other => ApiError::from(other),
        })?;
    Ok(Json(report.into()))
}
