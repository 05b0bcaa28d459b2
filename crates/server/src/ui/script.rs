//! The option script editor (TempCardsScriptOptions): edit and save, with a refused script's
//! message shown at the line and column it names; the version history with restore.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cardwright_domain::temp_cards::OPTION_SCRIPT as SCRIPT_NAME;
use cardwright_processes::{scripts, ProcessError};
use serde::Deserialize;

use super::form::Posted;
use super::page::Section;
use super::page::{explain, forbidden, process_error, render, render_with, when, Layout, Reply};
use super::session::{see_other, UiSession};
use crate::state::AppState;

/// One line of the excerpt shown around a refused line.
struct ExcerptLine {
    number: usize,
    text: String,
    marked: bool,
}

/// Why the script was refused, and where.
struct Problem {
    message: String,
    line: Option<usize>,
    column: Option<usize>,
    excerpt: Vec<ExcerptLine>,
    /// Spaces up to the refused column, then a caret.
    caret: String,
}

impl Problem {
    fn new(source: &str, message: String, position: Option<(usize, usize)>) -> Self {
        let lines: Vec<&str> = source.lines().collect();
        let (excerpt, caret) = match position {
            Some((line, column)) if line >= 1 && line <= lines.len().max(1) => {
                let first = line.saturating_sub(2).max(1);
                let last = (line + 1).min(lines.len());
                let excerpt = (first..=last)
                    .map(|n| ExcerptLine {
                        number: n,
                        text: lines.get(n - 1).copied().unwrap_or_default().to_owned(),
                        marked: n == line,
                    })
                    .collect();
                let marked: String = lines
                    .get(line - 1)
                    .copied()
                    .unwrap_or_default()
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                (excerpt, format!("{marked}^"))
            }
            _ => (Vec::new(), String::new()),
        };
        // The position is shown apart, so the message need not repeat it.
        let message = match position {
            Some((line, column)) => message
                .strip_prefix(&format!("line {line}, column {column}: "))
                .map_or_else(|| message.clone(), str::to_owned),
            None => message,
        };
        Self {
            message,
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            excerpt,
            caret,
        }
    }
}

struct VersionRow {
    version: i64,
    saved_at: String,
    saved_by: String,
    current: bool,
}

/// A line number beside the editor.
struct GutterLine {
    number: usize,
    marked: bool,
}

#[derive(Template)]
#[template(path = "script.html")]
struct ScriptPage {
    layout: Layout,
    name: &'static str,
    version: i64,
    saved_at: String,
    saved_by: String,
    source: String,
    rows: usize,
    gutter: Vec<GutterLine>,
    problem: Option<Problem>,
    saved: Option<i64>,
    versions: Vec<VersionRow>,
}

#[derive(Deserialize)]
pub(crate) struct EditorQuery {
    saved: Option<i64>,
}

/// The editor with `source` in it (the version in force when `None`).
async fn editor_page(
    state: &AppState,
    session: &UiSession,
    source: Option<String>,
    problem: Option<Problem>,
    saved: Option<i64>,
    status: StatusCode,
) -> Reply {
    if !Section::Script.open_to(&session.operator.roles) {
        return Err(forbidden(session, Section::Script));
    }
    let fail = |e: ProcessError| process_error(session, e);
    let current = scripts::get(&state.ctx, &session.operator, SCRIPT_NAME)
        .await
        .map_err(fail)?;
    let versions = scripts::versions(&state.ctx, &session.operator, SCRIPT_NAME)
        .await
        .map_err(fail)?;
    let source = source.unwrap_or_else(|| current.source.clone());
    let lines = source.lines().count().max(1);
    let rows = (lines + 1).max(12);
    let marked = problem.as_ref().and_then(|p| p.line);
    let page = ScriptPage {
        layout: Layout::new(session, Section::Script, "Option script"),
        name: SCRIPT_NAME,
        version: current.version,
        saved_at: when(current.saved_at),
        saved_by: current.saved_by.clone(),
        gutter: (1..=rows)
            .map(|number| GutterLine {
                number,
                marked: Some(number) == marked,
            })
            .collect(),
        rows,
        source,
        problem,
        saved,
        versions: versions
            .into_iter()
            .map(|v| VersionRow {
                current: v.version == current.version,
                version: v.version,
                saved_at: when(v.saved_at),
                saved_by: v.saved_by,
            })
            .collect(),
    };
    if status == StatusCode::OK {
        Ok(render(&page))
    } else {
        Err(render_with(status, &page))
    }
}

/// GET /admin/script: the editor.
pub(crate) async fn editor(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<EditorQuery>,
) -> Reply {
    editor_page(&state, &session, None, None, q.saved, StatusCode::OK).await
}

/// POST /admin/script: saves a new version, or shows why it was refused.
pub(crate) async fn save(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    if !Section::Script.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Script));
    }
    // Browsers send a text area's line breaks as CRLF.
    let source = form.get("source").unwrap_or_default().replace("\r\n", "\n");
    match scripts::save(&state.ctx, &session.operator, SCRIPT_NAME, &source).await {
        Ok(saved) => Ok(see_other(&format!("/admin/script?saved={}", saved.version))),
        Err(ProcessError::Script(e)) => {
            let problem = Problem::new(&source, e.to_string(), e.position());
            editor_page(
                &state,
                &session,
                Some(source),
                Some(problem),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => {
            let (status, message) = explain(e);
            let problem = Problem::new(&source, message, None);
            editor_page(&state, &session, Some(source), Some(problem), None, status).await
        }
    }
}

/// POST /admin/script/restore: saves an earlier version again as the newest.
pub(crate) async fn restore(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    if !Section::Script.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Script));
    }
    let Some(version) = form.text("version").and_then(|v| v.parse::<i64>().ok()) else {
        return Err(super::page::error_page(
            &session,
            StatusCode::BAD_REQUEST,
            "Choose a version to restore.",
        ));
    };
    match scripts::restore(&state.ctx, &session.operator, SCRIPT_NAME, version).await {
        Ok(saved) => Ok(see_other(&format!("/admin/script?saved={}", saved.version))),
        Err(ProcessError::Script(e)) => {
            let problem = Problem::new("", e.to_string(), None);
            editor_page(
                &state,
                &session,
                None,
                Some(problem),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(process_error(&session, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn the_caret_points_at_the_column() {
        let p = Problem::new(
            "a = 1;\nb = 2;\npin_length = \"six\";\nc = 3;\nd = 4;",
            "bad".into(),
            Some((3, 14)),
        );
        let numbers: Vec<usize> = p.excerpt.iter().map(|l| l.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert!(p.excerpt[2].marked);
        assert_eq!(p.caret, format!("{}^", " ".repeat(13)));
    }
}
