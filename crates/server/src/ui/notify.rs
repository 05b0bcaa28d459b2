//! Webhooks (subscribe, see deliveries, resend, enable a disabled one, remove) and mail (the
//! texts in both languages, the mail log), for policy-admins.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cardwright_domain::temp_cards::{EventType, Language, MailKind};
use cardwright_domain::{DeliveryId, WebhookId};
use cardwright_processes::notify::mails::{self, MailText, PLACEHOLDERS};
use cardwright_processes::notify::webhooks;
use cardwright_processes::ProcessError;
use serde::Deserialize;

use super::form::Posted;
use super::page::{
    explain, forbidden, path_id, process_error, render, render_with, when, Layout, Reply, Section,
};
use super::session::{see_other, UiSession};
use crate::state::AppState;

struct EventChoice {
    name: &'static str,
    checked: bool,
}

struct WebhookRow {
    id: String,
    url: String,
    events: String,
    created: String,
    pending: i64,
    delivered: i64,
    dead: i64,
    /// Why nothing is sent to it, for a disabled subscription.
    disabled: Option<String>,
}

/// The sentence that says why a subscription is disabled and what enabling it does.
fn disabled_because(view: &webhooks::WebhookView) -> Option<String> {
    view.webhook.disabled.as_ref().map(|(at, reason)| {
        format!(
            "Disabled {} because {reason}: nothing is sent to it and nothing new is queued for it. \
             Enabling it sends its {} pending deliveries.",
            when(*at),
            view.pending
        )
    })
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    rows: Vec<WebhookRow>,
    choices: Vec<EventChoice>,
    url: String,
    error: Option<String>,
    /// A subscription just made: its URL and secret, shown once.
    created: Option<(String, String, String)>,
    /// The notice that a subscription was enabled again.
    enabled: Option<String>,
}

/// What the Webhooks page shows besides the subscriptions.
#[derive(Default)]
struct Shown {
    /// The subscribe form as posted.
    url: String,
    chosen: Vec<String>,
    error: Option<String>,
    /// A subscription just made (id, URL, secret).
    created: Option<(String, String, String)>,
    /// The id of a subscription just enabled.
    enabled: Option<String>,
}

fn check(session: &UiSession, section: Section) -> Result<(), axum::response::Response> {
    if section.open_to(&session.operator.roles) {
        Ok(())
    } else {
        Err(forbidden(session, section))
    }
}

async fn webhooks_page(
    state: &AppState,
    session: &UiSession,
    shown: Shown,
    status: StatusCode,
) -> Reply {
    let list = webhooks::list(&state.ctx, &session.operator)
        .await
        .map_err(|e| process_error(session, e))?;
    let enabled = shown.enabled.and_then(|id| {
        let v = list.iter().find(|v| v.webhook.id.to_string() == id)?;
        Some(format!(
            "{} is enabled again; its pending deliveries go out now.",
            v.webhook.url
        ))
    });
    let page = WebhooksPage {
        layout: Layout::new(session, Section::Webhooks, "Webhooks"),
        rows: list
            .into_iter()
            .map(|v| WebhookRow {
                disabled: disabled_because(&v),
                id: v.webhook.id.to_string(),
                url: v.webhook.url,
                events: v.webhook.events.join(", "),
                created: format!("{} by {}", when(v.webhook.created_at), v.webhook.created_by),
                pending: v.pending,
                delivered: v.delivered,
                dead: v.dead,
            })
            .collect(),
        choices: EventType::ALL
            .iter()
            .map(|t| EventChoice {
                name: t.as_str(),
                checked: shown.chosen.iter().any(|c| c == t.as_str()),
            })
            .collect(),
        url: shown.url,
        error: shown.error,
        created: shown.created,
        enabled,
    };
    if status.is_success() {
        Ok(render_with(status, &page))
    } else {
        Err(render_with(status, &page))
    }
}

#[derive(Deserialize)]
pub(crate) struct WebhooksQuery {
    enabled: Option<String>,
}

/// GET /admin/webhooks: the subscriptions and the form for a new one.
pub(crate) async fn webhooks(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<WebhooksQuery>,
) -> Reply {
    check(&session, Section::Webhooks)?;
    let shown = Shown {
        enabled: q.enabled,
        ..Shown::default()
    };
    webhooks_page(&state, &session, shown, StatusCode::OK).await
}

/// POST /admin/webhooks/{id}/enable: enables a subscription its receiver had disabled.
pub(crate) async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, .. } = posted;
    check(&session, Section::Webhooks)?;
    let id: WebhookId = path_id(&session, &id)?;
    match webhooks::enable(&state.ctx, &session.operator, id).await {
        Ok(_) => Ok(see_other(&format!("/admin/webhooks?enabled={id}"))),
        Err(e @ ProcessError::Unprocessable(_)) => {
            let (status, message) = explain(e);
            let shown = Shown {
                error: Some(message),
                ..Shown::default()
            };
            webhooks_page(&state, &session, shown, status).await
        }
        Err(e) => Err(process_error(&session, e)),
    }
}

/// POST /admin/webhooks: subscribes, and shows the secret once (it cannot travel in a redirect).
pub(crate) async fn subscribe(State(state): State<AppState>, posted: Posted) -> Reply {
    let Posted { session, form } = posted;
    check(&session, Section::Webhooks)?;
    let url = form.get("url").unwrap_or_default().to_owned();
    let events = form.all("events");
    match webhooks::subscribe(&state.ctx, &session.operator, &url, &events).await {
        Ok((webhook, secret)) => {
            let shown = Shown {
                created: Some((webhook.id.to_string(), webhook.url, secret)),
                ..Shown::default()
            };
            webhooks_page(&state, &session, shown, StatusCode::CREATED).await
        }
        Err(e @ (ProcessError::Invalid(_) | ProcessError::Unprocessable(_))) => {
            let (status, message) = explain(e);
            let shown = Shown {
                url,
                chosen: events,
                error: Some(message),
                ..Shown::default()
            };
            webhooks_page(&state, &session, shown, status).await
        }
        Err(e) => Err(process_error(&session, e)),
    }
}

struct DeliveryRow {
    id: String,
    event_type: String,
    seq: i64,
    state: &'static str,
    attempts: i64,
    created: String,
    outcome: String,
    resendable: bool,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    layout: Layout,
    id: String,
    url: String,
    events: String,
    pending: i64,
    delivered: i64,
    dead: i64,
    disabled: Option<String>,
    rows: Vec<DeliveryRow>,
    resent: bool,
}

#[derive(Deserialize)]
pub(crate) struct WebhookQuery {
    resent: Option<String>,
}

/// GET /admin/webhooks/{id}: the subscription's newest deliveries, with Resend.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<WebhookQuery>,
) -> Reply {
    check(&session, Section::Webhooks)?;
    let id: WebhookId = path_id(&session, &id)?;
    let fail = |e| process_error(&session, e);
    let view = webhooks::get(&state.ctx, &session.operator, id)
        .await
        .map_err(fail)?;
    let deliveries = webhooks::deliveries(&state.ctx, &session.operator, id, 100)
        .await
        .map_err(fail)?;
    let page = WebhookPage {
        layout: Layout::new(&session, Section::Webhooks, "Webhook"),
        disabled: disabled_because(&view),
        id: id.to_string(),
        url: view.webhook.url,
        events: view.webhook.events.join(", "),
        pending: view.pending,
        delivered: view.delivered,
        dead: view.dead,
        rows: deliveries
            .into_iter()
            .map(|d| {
                let outcome = match (&d.delivered_at, d.last_status, &d.last_error) {
                    (Some(at), Some(status), _) => format!("{status} at {}", when(*at)),
                    (_, _, Some(error)) => match d.state.as_str() {
                        "pending" => format!("{error}; next try {}", when(d.next_attempt_at)),
                        _ => error.clone(),
                    },
                    _ => format!("due {}", when(d.next_attempt_at)),
                };
                DeliveryRow {
                    id: d.id.to_string(),
                    event_type: d.event_type,
                    seq: d.event_seq,
                    state: d.state.as_str(),
                    attempts: d.attempts,
                    created: when(d.created_at),
                    resendable: d.state.as_str() != "pending",
                    outcome,
                }
            })
            .collect(),
        resent: q.resent.is_some(),
    };
    Ok(render(&page))
}

/// POST /admin/webhooks/{id}/resend: sends one delivery again.
pub(crate) async fn resend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    check(&session, Section::Webhooks)?;
    let id: WebhookId = path_id(&session, &id)?;
    let delivery: DeliveryId = path_id(&session, form.get("delivery").unwrap_or_default())?;
    webhooks::resend(&state.ctx, &session.operator, id, delivery)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(see_other(&format!("/admin/webhooks/{id}?resent=1")))
}

/// POST /admin/webhooks/{id}/delete: removes the subscription.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Reply {
    let Posted { session, .. } = posted;
    check(&session, Section::Webhooks)?;
    let id: WebhookId = path_id(&session, &id)?;
    webhooks::unsubscribe(&state.ctx, &session.operator, id)
        .await
        .map_err(|e| process_error(&session, e))?;
    Ok(see_other("/admin/webhooks"))
}

struct TextForm {
    kind: &'static str,
    language: &'static str,
    title: String,
    subject: String,
    body: String,
    rows: usize,
    changed: Option<String>,
    error: Option<String>,
    saved: bool,
}

struct MailRow {
    kind: String,
    to: String,
    subject: String,
    state: String,
    created: String,
    note: String,
}

#[derive(Template)]
#[template(path = "mail.html")]
struct MailPage {
    layout: Layout,
    enabled: bool,
    placeholders: String,
    texts: Vec<TextForm>,
    mails: Vec<MailRow>,
}

fn title(kind: MailKind, language: Language) -> String {
    let what = match kind {
        MailKind::Reminder => "Reminder before the card's end (to the holder, copy to the desk)",
        MailKind::Assigned => "Notice of an assignment (to the holder)",
        MailKind::Expired => "Notice of a card that expired unreturned (to the desk)",
    };
    let language = match language {
        Language::En => "English",
        Language::De => "German",
    };
    format!("{what}: {language}")
}

async fn mail_page(
    state: &AppState,
    session: &UiSession,
    edited: Option<(MailText, String)>,
    saved: Option<(MailKind, Language)>,
    status: StatusCode,
) -> Reply {
    let fail = |e| process_error(session, e);
    let texts = mails::texts(&state.ctx, &session.operator)
        .await
        .map_err(fail)?;
    let log = mails::recent(&state.ctx, &session.operator, 50)
        .await
        .map_err(fail)?;
    let forms = texts
        .into_iter()
        .map(|t| {
            let (t, error) = match &edited {
                Some((e, message)) if e.kind == t.kind && e.language == t.language => {
                    (e.clone(), Some(message.clone()))
                }
                _ => (t, None),
            };
            TextForm {
                kind: t.kind.as_str(),
                language: t.language.as_str(),
                title: title(t.kind, t.language),
                rows: t.body.lines().count().clamp(4, 30) + 1,
                changed: t
                    .changed
                    .map(|(by, at)| format!("changed {} by {by}", when(at))),
                saved: saved == Some((t.kind, t.language)),
                subject: t.subject,
                body: t.body,
                error,
            }
        })
        .collect();
    let page = MailPage {
        layout: Layout::new(session, Section::Mail, "Mail"),
        enabled: state.ctx.notify.mail,
        placeholders: PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(" "),
        texts: forms,
        mails: log
            .into_iter()
            .map(|m| {
                let mut to = m.recipients.join(", ");
                if !m.copy_to.is_empty() {
                    to = format!("{to} (copy: {})", m.copy_to.join(", "));
                }
                MailRow {
                    note: match (&m.sent_at, &m.last_error) {
                        (Some(at), _) => format!("sent {}", when(*at)),
                        (None, Some(error)) => error.clone(),
                        (None, None) => String::new(),
                    },
                    kind: m.kind,
                    to,
                    subject: m.subject,
                    state: m.state,
                    created: when(m.created_at),
                }
            })
            .collect(),
    };
    if status.is_success() {
        Ok(render(&page))
    } else {
        Err(render_with(status, &page))
    }
}

#[derive(Deserialize)]
pub(crate) struct MailQuery {
    saved: Option<String>,
}

/// GET /admin/mail: the texts of every mail in both languages, and the mail log.
pub(crate) async fn mail(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<MailQuery>,
) -> Reply {
    check(&session, Section::Mail)?;
    let saved = q.saved.as_deref().and_then(|s| {
        let (kind, language) = s.split_once('-')?;
        Some((kind.parse().ok()?, language.parse().ok()?))
    });
    mail_page(&state, &session, None, saved, StatusCode::OK).await
}

/// POST /admin/mail/{kind}/{language}: saves a text, or puts the built-in one back.
pub(crate) async fn save_text(
    State(state): State<AppState>,
    Path((kind, language)): Path<(String, String)>,
    posted: Posted,
) -> Reply {
    let Posted { session, form } = posted;
    check(&session, Section::Mail)?;
    let result = if form.get("action") == Some("reset") {
        mails::reset_text(&state.ctx, &session.operator, &kind, &language).await
    } else {
        let subject = form.get("subject").unwrap_or_default().to_owned();
        let body = form.get("body").unwrap_or_default().replace("\r\n", "\n");
        match mails::put_text(
            &state.ctx,
            &session.operator,
            &kind,
            &language,
            &subject,
            &body,
        )
        .await
        {
            Err(e @ (ProcessError::Invalid(_) | ProcessError::Unprocessable(_))) => {
                let (Ok(k), Ok(l)) = (kind.parse(), language.parse()) else {
                    return Err(process_error(&session, e));
                };
                let (status, message) = explain(e);
                let edited = MailText {
                    kind: k,
                    language: l,
                    subject,
                    body,
                    changed: None,
                };
                return mail_page(&state, &session, Some((edited, message)), None, status).await;
            }
            other => other,
        }
    };
    let text = result.map_err(|e| process_error(&session, e))?;
    Ok(see_other(&format!(
        "/admin/mail?saved={}-{}#{}-{}",
        text.kind, text.language, text.kind, text.language
    )))
}
