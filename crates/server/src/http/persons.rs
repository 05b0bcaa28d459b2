//! Persons.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cardwright_domain::PersonId;
use cardwright_processes::persons::{self, NewPerson};
use cardwright_processes::photos;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery, Auth, IdPath};
use super::openapi::{BadId, JsonBody, NeedsLogin};
use super::schema::{optional_whole_number, Id, JpegImage, PngImage};
use super::views::{CardView, NewPersonBody, PersonDetail, PersonList, PersonView};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PersonSearch {
    /// Text found in the employee number, a name or the email (any case).
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Id>,
}

/// Search persons.
#[utoipa::path(get, path = "/persons", tag = "persons", params(PersonSearch), security(("bearer" = [])),
    responses((status = 200, description = "A page of persons.", body = PersonList),
        (status = 400, description = "A query value breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody)))]
pub async fn list_persons(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiQuery(q): ApiQuery<PersonSearch>,
) -> Result<Json<PersonList>, ApiError> {
    let limit = cardwright_processes::page_limit(q.limit)?;
    let (page, next_cursor) = persons::search(
        &state.ctx,
        &op,
        q.q.as_deref(),
        q.cursor.as_ref().map(|c| c.0.as_str()),
        limit,
    )
    .await?;
    Ok(Json(PersonList {
        persons: page.into_iter().map(PersonView::from).collect(),
        next_cursor,
    }))
}

/// Create a person.
#[utoipa::path(post, path = "/persons", tag = "persons", request_body = NewPersonBody, security(("bearer" = [])),
    responses((status = 201, description = "The new person.", body = PersonView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 409, description = "The employee number is taken.", body = ErrorBody),
        (status = 422, description = "A name has a control or invisible formatting character; the message names the field.", body = ErrorBody)))]
pub async fn create_person(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<NewPersonBody>,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    let person = persons::create(
        &state.ctx,
        &op,
        NewPerson {
            employee_number: body.employee_number,
            given_name: body.given_name,
            family_name: body.family_name,
            email: body.email,
            state: body.state,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(person.into())))
}

/// One person with their temporary cards.
#[utoipa::path(get, path = "/persons/{id}", tag = "persons", params(("id" = Id, Path, description = "person id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The person.", body = PersonDetail), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such person.", body = ErrorBody)))]
pub async fn get_person(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<PersonId>,
) -> Result<Json<PersonDetail>, ApiError> {
    let person = persons::get(&state.ctx, &op, id).await?;
    let cards = cardwright_processes::temp_cards::cards::of_person(&state.ctx, person.id).await?;
    let has_photo = photos::exists(&state.ctx, person.id).await?;
    Ok(Json(PersonDetail {
        person: person.into(),
        has_photo,
        cards: cards.into_iter().map(CardView::from).collect(),
    }))
}

/// A person's photo: the JPEG Cardwright re-encoded from the upload or the directory.
#[utoipa::path(get, path = "/persons/{id}/photo", tag = "persons", operation_id = "get_person_photo",
    params(("id" = Id, Path, description = "person id")), security(("bearer" = [])),
    responses((status = 200, description = "The photo.", content_type = "image/jpeg", body = inline(JpegImage)),
        BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such person, or the person has no photo.", body = ErrorBody)))]
pub async fn get_photo(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<PersonId>,
) -> Result<impl IntoResponse, ApiError> {
    let jpeg = photos::get(&state.ctx, &op, id).await?;
    Ok(([(CONTENT_TYPE, "image/jpeg")], jpeg))
}

/// Set a person's photo: a JPEG or PNG image of at most 8 MiB and 8,000 pixels a side, sent as
/// the body with its media type. It is re-encoded as a JPEG of at most 600 × 800 pixels; nothing
/// else of the file is kept. A photo set here stays when the directory is synced.
#[utoipa::path(put, path = "/persons/{id}/photo", tag = "persons", operation_id = "put_person_photo",
    params(("id" = Id, Path, description = "person id")), security(("bearer" = [])),
    request_body(content(
        (inline(JpegImage) = "image/jpeg"),
        (inline(PngImage) = "image/png"),
    ), description = "The photo's bytes."),
    responses((status = 204, description = "The photo is set."), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such person.", body = ErrorBody),
        (status = 413, description = "The body is larger than 8 MiB.", body = ErrorBody),
        (status = 415, description = "The body is not sent as image/jpeg or image/png.", body = ErrorBody),
        (status = 422, description = "The image cannot be read, is neither JPEG nor PNG, or is too large; the message says which.", body = ErrorBody)))]
pub async fn put_photo(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<PersonId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let media = super::extract::media_type(&headers);
    if !matches!(media.as_deref(), Some("image/jpeg" | "image/png")) {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "send the photo with Content-Type: image/jpeg or image/png".into(),
            position: None,
            retry_after: None,
        });
    }
    photos::upload(&state.ctx, &op, id, body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a person's photo.
#[utoipa::path(delete, path = "/persons/{id}/photo", tag = "persons", operation_id = "delete_person_photo",
    params(("id" = Id, Path, description = "person id")), security(("bearer" = [])),
    responses((status = 204, description = "The photo is removed."), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such person, or the person has no photo.", body = ErrorBody)))]
pub async fn delete_photo(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<PersonId>,
) -> Result<StatusCode, ApiError> {
    photos::remove(&state.ctx, &op, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
