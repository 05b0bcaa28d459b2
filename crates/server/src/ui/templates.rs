//! Card templates: the list with front and back previews, and the form to add or change one
//! (name, serial prefix, description, front and back SVG layouts).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cardwright_domain::CardTemplate;
use cardwright_processes::templates::{self, effective_layouts, TemplateInput};
use cardwright_processes::ProcessError;
use serde::Deserialize;

use super::form::{Form, Posted};
use super::page::{explain, forbidden, process_error, render, render_with, Layout, Reply};
use super::page::{png_reply, Section};
use super::session::{see_other, UiSession};
use crate::state::AppState;

fn allowed(session: &UiSession) -> Result<(), axum::response::Response> {
    if Section::Templates.open_to(&session.operator.roles) {
        Ok(())
    } else {
        Err(forbidden(session, Section::Templates))
    }
}

struct TemplateRow {
    id: String,
    name: String,
    kind: &'static str,
    prefix: String,
    description: String,
    custom: bool,
}

#[derive(Template)]
#[template(path = "templates.html")]
struct ListPage {
    layout: Layout,
    templates: Vec<TemplateRow>,
    saved: bool,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    saved: Option<String>,
}

/// GET /admin/templates: every template with its previews.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Reply {
    allowed(&session)?;
    let list = templates::list(&state.ctx)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(render(&ListPage {
        layout: Layout::new(&session, Section::Templates, "Card templates"),
        templates: list
            .into_iter()
            .map(|t| TemplateRow {
                id: t.id.to_string(),
                custom: t.front_layout.is_some() || t.back_layout.is_some(),
                name: t.name.as_str().to_owned(),
                kind: t.kind.as_str(),
                prefix: t.serial_prefix.as_str().to_owned(),
                description: t.description,
            })
            .collect(),
        saved: q.saved.is_some(),
    }))
}

/// What the template form holds.
struct Fields {
    name: String,
    prefix: String,
    description: String,
    front_svg: String,
    back_svg: String,
}

impl Fields {
    fn of(t: &CardTemplate) -> Self {
        let (front, back) = effective_layouts(t);
        Self {
            name: t.name.as_str().to_owned(),
            prefix: t.serial_prefix.as_str().to_owned(),
            description: t.description.clone(),
            front_svg: front.to_owned(),
            back_svg: back.to_owned(),
        }
    }

    fn posted(form: &Form) -> Self {
        let svg = |name| form.get(name).unwrap_or_default().replace("\r\n", "\n");
        Self {
            name: form.text("name").unwrap_or_default(),
            prefix: form.text("serial_prefix").unwrap_or_default(),
            description: form
                .get("description")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            front_svg: svg("front_svg"),
            back_svg: svg("back_svg"),
        }
    }

    /// The process input; a layout equal to the one in use now is left as it is.
    fn input(&self, front_now: &str, back_now: &str) -> TemplateInput {
        let changed =
            |posted: &str, now: &str| (posted.trim() != now.trim()).then(|| posted.to_owned());
        TemplateInput {
            name: self.name.clone(),
            kind: None,
            serial_prefix: self.prefix.clone(),
            description: Some(self.description.clone()),
            front_svg: changed(&self.front_svg, front_now),
            back_svg: changed(&self.back_svg, back_now),
        }
    }
}

#[derive(Template)]
#[template(path = "template_form.html")]
struct FormPage {
    layout: Layout,
    /// `None` for a new template.
    id: Option<String>,
    fields: Fields,
    error: Option<String>,
}

fn form_page(
    session: &UiSession,
    id: Option<String>,
    fields: Fields,
    error: Option<(StatusCode, String)>,
) -> Reply {
    let title = if id.is_some() {
        format!("Card template {}", fields.name)
    } else {
        "New card template".to_owned()
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = FormPage {
        layout: Layout::new(session, Section::Templates, title),
        id,
        fields,
        error,
    };
    if status == StatusCode::OK {
        Ok(render(&page))
    } else {
        Err(render_with(status, &page))
    }
}

/// The shipped layouts, which a new template starts with.
fn shipped() -> (&'static str, &'static str) {
    (
        cardwright_cardsdk::layout::TEMPORARY_FRONT,
        cardwright_cardsdk::layout::TEMPORARY_BACK,
    )
}

/// GET /admin/templates/new: the form for a new template.
pub(crate) async fn new_form(session: UiSession) -> Reply {
    allowed(&session)?;
    let (front, back) = shipped();
    let fields = Fields {
        name: String::new(),
        prefix: String::new(),
        description: String::new(),
        front_svg: front.to_owned(),
        back_svg: back.to_owned(),
    };
    form_page(&session, None, fields, None)
}

/// GET /admin/templates/{id}: the form to change a template.
pub(crate) async fn edit_form(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Reply {
    allowed(&session)?;
    let template = templates::get(&state.ctx, &id)
        .await
        .map_err(|e| process_error(&session, e))?;
    form_page(
        &session,
        Some(template.id.to_string()),
        Fields::of(&template),
        None,
    )
}

/// POST /admin/templates: adds a template.
pub(crate) async fn create(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    allowed(&session)?;
    let fields = Fields::posted(&form);
    let (front, back) = shipped();
    match templates::create(&state.ctx, &session.operator, &fields.input(front, back)).await {
        Ok(_) => Ok(see_other("/admin/templates?saved=1")),
        Err(e) => form_page(&session, None, fields, Some(explain(e))),
    }
}

/// POST /admin/templates/{id}: changes a template.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    allowed(&session)?;
    let existing = templates::get(&state.ctx, &id)
        .await
        .map_err(|e| process_error(&session, e))?;
    let (front, back) = effective_layouts(&existing);
    let fields = Fields::posted(&form);
    let result: Result<_, ProcessError> = templates::update(
        &state.ctx,
        &session.operator,
        existing.id,
        &fields.input(front, back),
    )
    .await;
    match result {
        Ok(_) => Ok(see_other("/admin/templates?saved=1")),
        Err(e) => form_page(&session, Some(id), fields, Some(explain(e))),
    }
}

/// GET /admin/templates/{id}/preview?side=front|back: the template filled with sample values.
/// Previews are limited as in the API: an operator has at most four rendering at once, and one
/// more is refused with 429 and `Retry-After` (the page's script asks again for a picture so
/// refused); a preview rendered before comes from the cache.
pub(crate) async fn preview(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<super::page::PreviewQuery>,
) -> Reply {
    allowed(&session)?;
    let side = cardwright_processes::parse_side(q.side.as_deref().unwrap_or("front"))
        .map_err(|e| process_error(&session, e))?;
    let png = templates::template_preview(&state.ctx, &session.operator, &id, side)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(png_reply(png))
}
