//! Card templates.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use cardwright_domain::TemplateId;
use cardwright_processes::templates;

use super::extract::{ApiJson, ApiQuery, Auth, IdPath};
use super::openapi::{JsonBody, NeedsLogin, PreviewLimits};
use super::schema::{Id, PngImage, PreviewQuery, Side};
use super::views::{TemplateBody, TemplateList, TemplateView};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// All card templates.
#[utoipa::path(get, path = "/card-templates", tag = "templates", security(("bearer" = [])),
    responses((status = 200, description = "Every template, by name.", body = TemplateList), NeedsLogin))]
pub async fn list_templates(
    State(state): State<AppState>,
    Auth(_op): Auth,
) -> Result<Json<TemplateList>, ApiError> {
    let all = templates::list(&state.ctx).await?;
    Ok(Json(TemplateList {
        templates: all.into_iter().map(TemplateView::from).collect(),
    }))
}

/// Create a card template (policy-admin). A refused layout is 422 with what is wrong.
#[utoipa::path(post, path = "/card-templates", tag = "templates", request_body = TemplateBody, security(("bearer" = [])),
    responses((status = 201, description = "The new template.", body = TemplateView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 409, description = "The name or serial prefix is taken.", body = ErrorBody),
        (status = 422, description = "A layout is refused: not well-formed SVG, too large, with scripts, DTDs or outside links, over a structural limit, or its card takes longer to render than a card may (the message says how long it took); or the name or the description has a control or invisible formatting character. The message says which, naming the field.", body = ErrorBody),
        PreviewLimits))]
pub async fn create_template(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    let t = templates::create(&state.ctx, &op, &body.into()).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// One card template, by name or id.
#[utoipa::path(get, path = "/card-templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "template id or name")), security(("bearer" = [])),
    responses((status = 200, description = "The template.", body = TemplateView), NeedsLogin,
        (status = 404, description = "No such template.", body = ErrorBody)))]
pub async fn get_template(
    State(state): State<AppState>,
    Auth(_op): Auth,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(templates::get(&state.ctx, &id).await?.into()))
}

/// Change a card template's name, serial prefix or description (policy-admin). Cards made
/// before keep their serials.
#[utoipa::path(put, path = "/card-templates/{id}", tag = "templates",
    params(("id" = Id, Path, description = "template id")), request_body = TemplateBody, security(("bearer" = [])),
    responses((status = 200, description = "The template after the change.", body = TemplateView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such template.", body = ErrorBody),
        (status = 409, description = "The name or serial prefix is taken.", body = ErrorBody),
        (status = 422, description = "A layout is refused: not well-formed SVG, too large, with scripts, DTDs or outside links, over a structural limit, or its card takes longer to render than a card may (the message says how long it took); or the name or the description has a control or invisible formatting character. The message says which, naming the field.", body = ErrorBody),
        PreviewLimits))]
pub async fn update_template(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<TemplateId>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(
        templates::update(&state.ctx, &op, id, &body.into())
            .await?
            .into(),
    ))
}

/// A PNG preview of the template filled with sample values. A template version's preview is
/// rendered once and then served from a cache; requests for it while it renders wait for that
/// render. An operator may have four previews rendering at once; more are refused with 429 and
/// `Retry-After`.
#[utoipa::path(get, path = "/card-templates/{id}/preview", tag = "templates", operation_id = "preview_template",
    params(("id" = String, Path, description = "template id or name"), PreviewQuery), security(("bearer" = [])),
    responses((status = 200, description = "The preview.", content_type = "image/png", body = inline(PngImage)),
        (status = 400, description = "`side` is neither front nor back.", body = ErrorBody), NeedsLogin,
        (status = 404, description = "No such template.", body = ErrorBody),
        (status = 422, description = "The layout is over the renderer's limits or budget (for instance one stored before the limits); the message names the limit.", body = ErrorBody),
        PreviewLimits))]
pub async fn preview(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let png = cardwright_processes::templates::template_preview(
        &state.ctx,
        &op,
        &id,
        q.side.unwrap_or(Side::Front).into(),
    )
    .await?;
    Ok(([(CONTENT_TYPE, "image/png")], png))
}
