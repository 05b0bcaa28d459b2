//! Persons: search, a new person, and a person's profile with their temporary cards.

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cardwright_domain::{Person, PersonId};
use cardwright_processes::persons::{self, NewPerson};
use cardwright_processes::temp_cards::cards as card_process;
use cardwright_processes::{photos, ProcessError};
use serde::Deserialize;

use super::form::Posted;
use super::page::{
    error_page, explain, forbidden, path_id, process_error, render, render_with, Layout, Reply,
    Section,
};
use super::session::{see_other, UiSession};
use super::temp_cards::CardRow;
use crate::state::AppState;

/// A person as lists show it.
pub(crate) struct PersonRow {
    pub id: String,
    pub employee_number: String,
    pub name: String,
    pub email: String,
    pub state: &'static str,
}

impl From<Person> for PersonRow {
    fn from(p: Person) -> Self {
        Self {
            id: p.id.to_string(),
            employee_number: p.employee_number.as_str().to_owned(),
            name: p.display_name(),
            email: p.email.map(|e| e.as_str().to_owned()).unwrap_or_default(),
            state: p.state.as_str(),
        }
    }
}

/// What the new person form holds.
#[derive(Default)]
struct NewPersonFields {
    employee_number: String,
    given_name: String,
    family_name: String,
    email: String,
}

#[derive(Template)]
#[template(path = "persons.html")]
struct PersonsPage {
    layout: Layout,
    query: String,
    persons: Vec<PersonRow>,
    next_href: Option<String>,
    new: NewPersonFields,
    error: Option<String>,
    /// The last directory sync, as a sentence.
    last_sync: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    cursor: Option<String>,
}

/// Page size of person lists.
const PAGE: u32 = 50;

async fn persons_page(
    state: &AppState,
    session: &UiSession,
    q: SearchQuery,
    new: NewPersonFields,
    error: Option<(StatusCode, String)>,
) -> Reply {
    let query = q.q.unwrap_or_default();
    let text = Some(query.trim()).filter(|t| !t.is_empty());
    let (page, next) = persons::search(
        &state.ctx,
        &session.operator,
        text,
        q.cursor.as_deref().filter(|c| !c.is_empty()),
        PAGE,
    )
    .await
    .map_err(|e| process_error(session, e))?;
    let next_href = next.map(|cursor| {
        format!(
            "/persons?{}",
            serde_urlencoded::to_string([("q", query.as_str()), ("cursor", cursor.as_str())])
                .unwrap_or_default()
        )
    });
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let last_sync = cardwright_processes::persons_import::last_sync(&state.ctx)
        .await
        .map_err(|e| process_error(session, e))?
        .map(|(at, c)| {
            format!(
                "Last directory sync {}: {} created, {} updated, {} deactivated, {} unchanged, {} photos set, {} entries not read.",
                super::page::when(at),
                c["created"], c["updated"], c["deactivated"], c["unchanged"],
                c.get("photos_set").cloned().unwrap_or(serde_json::Value::from(0)), c["bad_rows"]
            )
        });
    let page = PersonsPage {
        layout: Layout::new(session, Section::Persons, "Persons"),
        query,
        persons: page.into_iter().map(PersonRow::from).collect(),
        next_href,
        new,
        error,
        last_sync,
    };
    if status == StatusCode::OK {
        Ok(render(&page))
    } else {
        Err(render_with(status, &page))
    }
}

/// GET /persons: search persons.
pub(crate) async fn search(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<SearchQuery>,
) -> Reply {
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    persons_page(&state, &session, q, NewPersonFields::default(), None).await
}

/// POST /persons: adds a person, then shows their profile.
pub(crate) async fn create(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let fields = NewPersonFields {
        employee_number: form.text("employee_number").unwrap_or_default(),
        given_name: form.text("given_name").unwrap_or_default(),
        family_name: form.text("family_name").unwrap_or_default(),
        email: form.text("email").unwrap_or_default(),
    };
    let new = NewPerson {
        employee_number: fields.employee_number.clone(),
        given_name: fields.given_name.clone(),
        family_name: fields.family_name.clone(),
        email: Some(fields.email.clone()).filter(|e| !e.is_empty()),
        state: None,
    };
    match persons::create(&state.ctx, &session.operator, new).await {
        Ok(person) => Ok(see_other(&format!("/persons/{}", person.id))),
        Err(e) => {
            let q = SearchQuery {
                q: None,
                cursor: None,
            };
            persons_page(&state, &session, q, fields, Some(explain(e))).await
        }
    }
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    layout: Layout,
    person: PersonRow,
    cards: Vec<CardRow>,
    has_photo: bool,
    /// A cache-busting suffix for the photo's address (the hash of the stored photo).
    photo_version: String,
}

/// GET /persons/{id}: a person and their temporary cards.
pub(crate) async fn profile(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Reply {
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let id: PersonId = path_id(&session, &id)?;
    let person = persons::get(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    let cards = card_process::of_person(&state.ctx, person.id)
        .await
        .map_err(|e| process_error(&session, e))?;
    let photo = match photos::get(&state.ctx, &session.operator, person.id).await {
        Ok(jpeg) => Some(jpeg),
        Err(ProcessError::NotFound(_)) => None,
        Err(e) => return Err(process_error(&session, e)),
    };
    Ok(render(&PersonPage {
        layout: Layout::new(&session, Section::Persons, person.display_name()),
        person: person.into(),
        cards: cards.into_iter().map(CardRow::from).collect(),
        has_photo: photo.is_some(),
        photo_version: photo
            .map(|jpeg| photos::source_hash(&jpeg)[..16].to_owned())
            .unwrap_or_default(),
    }))
}

/// GET /persons/{id}/photo: the person's photo (JPEG).
pub(crate) async fn photo(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Reply {
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let id: PersonId = path_id(&session, &id)?;
    let jpeg = photos::get(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(([(CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

/// POST /persons/{id}/photo: a photo file from the person page's form (multipart), re-encoded
/// and stored; back to the person.
pub(crate) async fn upload_photo(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply {
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let id: PersonId = path_id(&session, &id)?;
    let bad = |message: String| error_page(&session, StatusCode::BAD_REQUEST, message);
    let mut multipart = multipart.map_err(|e| bad(format!("The form cannot be read: {e}")))?;
    let mut csrf = None;
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("The form cannot be read: {e}")))?
    {
        match field.name() {
            Some("csrf") => {
                csrf = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| bad(format!("The form cannot be read: {e}")))?,
                );
            }
            Some("photo") => {
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| bad(format!("The photo cannot be read: {e}")))?,
                );
            }
            _ => {}
        }
    }
    if !session.csrf_ok(csrf.as_deref()) {
        return Err(error_page(
            &session,
            StatusCode::FORBIDDEN,
            "The form's security token is missing or out of date, so nothing was changed. \
             Reload the page and try again.",
        ));
    }
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad("Choose a photo file (JPEG or PNG) first.".into()))?;
    photos::upload(&state.ctx, &session.operator, id, file.to_vec())
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(see_other(&format!("/persons/{id}")))
}

/// POST /persons/{id}/photo/remove: removes the person's photo; back to the person.
pub(crate) async fn remove_photo(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let session = posted.session;
    if !Section::Persons.open_to(&session.operator.roles) {
        return Err(forbidden(&session, Section::Persons));
    }
    let id: PersonId = path_id(&session, &id)?;
    photos::remove(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(see_other(&format!("/persons/{id}")))
}
