//! Persons from a CSV file: paste it (or pick the file, which the page's script reads into the
//! text area), see what a dry run would do, then import.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use cardwright_processes::persons_import::{self, ImportOptions, ImportReport};
use cardwright_processes::ProcessError;

use super::form::Posted;
use super::page::{explain, forbidden, process_error, render, render_with, Layout, Reply, Section};
use super::session::UiSession;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "persons_import.html")]
struct ImportPage {
    layout: Layout,
    csv: String,
    skip_bad_rows: bool,
    deactivate_missing: bool,
    report: Option<ImportReport>,
    error: Option<String>,
}

fn page(session: &UiSession) -> ImportPage {
    ImportPage {
        layout: Layout::new(session, Section::Persons, "Import persons"),
        csv: String::new(),
        skip_bad_rows: false,
        deactivate_missing: false,
        report: None,
        error: None,
    }
}

/// GET /persons/import: the form.
pub(crate) async fn form(session: UiSession) -> Reply {
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    Ok(render(&page(&session)))
}

/// POST /persons/import: a dry run (`action=check`) or the import (`action=import`).
pub(crate) async fn import(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let csv = form.get("csv").unwrap_or_default().replace("\r\n", "\n");
    let options = ImportOptions {
        dry_run: form.get("action") != Some("import"),
        skip_bad_rows: form.get("skip_bad_rows").is_some(),
        deactivate_missing: form.get("deactivate_missing").is_some(),
    };
    let mut shown = ImportPage {
        skip_bad_rows: options.skip_bad_rows,
        deactivate_missing: options.deactivate_missing,
        ..page(&session)
    };
    match persons_import::import(&state.ctx, &session.operator, &csv, options).await {
        Ok(report) => {
            // After an import the text goes, so a second click does not import it again.
            if !report.applied {
                shown.csv = csv;
            }
            shown.report = Some(report);
            Ok(render(&shown))
        }
        Err(e @ ProcessError::Invalid(_)) => {
            let (_, message) = explain(e);
            shown.csv = csv;
            shown.error = Some(message);
            Err(render_with(StatusCode::UNPROCESSABLE_ENTITY, &shown))
        }
        Err(e) => Err(process_error(&session, e)),
    }
}
