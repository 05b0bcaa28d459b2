//! Telling systems and people: webhook subscriptions and their deliveries, the mail texts, and
//! the mail log (policy-admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cardwright_domain::{DeliveryId, WebhookId};
use cardwright_processes::notify::mails::{self, MailText};
use cardwright_processes::notify::webhooks::{self, WebhookView as Subscription};
use cardwright_storage::mails::Mail;
use cardwright_storage::webhooks::{Delivery, WebhookState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth, IdPath};
use super::openapi::{BadId, JsonBody, NeedsLogin};
use super::schema::{
    EventTypeText, Id, LanguageText, MailBodyText, MailKindText, MailSubjectText, WebhookUrlText,
};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// Where deliveries are POSTed: http or https, a host, no user name or password. A URL
    /// that a prefix of `webhooks.allowed_urls` names is taken; otherwise the list must be empty
    /// and the host neither be nor resolve to an address inside the network (loopback,
    /// private, link-local, unique-local, unspecified, shared, multicast, broadcast, reserved;
    /// IPv4 in IPv6 too) nor be `localhost`.
    #[schema(value_type = WebhookUrlText)]
    pub url: String,
    /// The event types to deliver; at least one.
    #[schema(value_type = Vec<EventTypeText>, min_items = 1)]
    pub events: Vec<String>,
}

/// Whether a subscription gets deliveries.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    Enabled,
    /// Its receiver answered 410 Gone: nothing is sent and nothing new is queued until a
    /// policy-admin enables it again.
    Disabled,
}

/// A subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<EventTypeText>)]
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub state: SubscriptionState,
    /// When it was disabled (disabled subscriptions).
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled, e.g. "the receiver answered 410 Gone".
    pub disabled_reason: Option<String>,
    /// Deliveries waiting to be made or retried.
    pub pending: i64,
    pub delivered: i64,
    /// Deliveries given up after their last retry.
    pub dead: i64,
}

impl From<Subscription> for WebhookView {
    fn from(v: Subscription) -> Self {
        let (disabled_at, disabled_reason) = v.webhook.disabled.unzip();
        Self {
            id: v.webhook.id.to_string(),
            url: v.webhook.url,
            events: v.webhook.events,
            created_at: v.webhook.created_at,
            created_by: v.webhook.created_by,
            state: match v.webhook.state {
                WebhookState::Enabled => SubscriptionState::Enabled,
                WebhookState::Disabled => SubscriptionState::Disabled,
            },
            disabled_at,
            disabled_reason,
            pending: v.pending,
            delivered: v.delivered,
            dead: v.dead,
        }
    }
}

/// A new subscription with its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<EventTypeText>)]
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// `whsec_` and the base64 key every delivery's `webhook-signature` is computed with.
    /// Shown once: Cardwright keeps it only sealed.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One event's delivery to one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Sent as the `webhook-id` header; the same on every retry.
    pub id: String,
    pub event_type: String,
    /// The audit event's sequence number; for `audit.checkpoint`, the one the checkpoint
    /// covers.
    pub seq: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// When it is given up if no attempt succeeds.
    pub give_up_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// The JSON body delivered.
    pub payload: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            event_type: d.event_type,
            seq: d.event_seq,
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            give_up_at: d.give_up_at,
            delivered_at: d.delivered_at,
            last_status: d.last_status,
            last_error: d.last_error,
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first, at most 200.
    pub deliveries: Vec<DeliveryView>,
}

/// Subscribe a URL to event types. Every delivery is a POST of `{"type", "timestamp", "data"}`
/// with the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and
/// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Subscribed; the answer carries the signing secret, shown once.", body = CreatedWebhook),
        (status = 400, description = "The URL is empty or longer than 2,000 characters, no event type is named, or one is unknown.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 422, description = "The URL has a control or invisible formatting character, is not an http or https URL with a host, carries a user name or password, is outside the allow-list (`webhooks.allowed_urls`), or, when the allow-list does not name it, its host is or resolves to an address inside the network or is `localhost`.", body = ErrorBody)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<NewWebhookBody>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let (webhook, secret) = webhooks::subscribe(&state.ctx, &op, &body.url, &body.events).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: webhook.id.to_string(),
            url: webhook.url,
            events: webhook.events,
            created_at: webhook.created_at,
            secret,
        }),
    ))
}

/// Every subscription, with how its deliveries stand.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, description = "The subscriptions, oldest first.", body = WebhookList), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Auth(op): Auth,
) -> Result<Json<WebhookList>, ApiError> {
    let list = webhooks::list(&state.ctx, &op).await?;
    Ok(Json(WebhookList {
        webhooks: list.into_iter().map(WebhookView::from).collect(),
    }))
}

/// One subscription.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = Id, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, description = "The subscription.", body = WebhookView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<WebhookId>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(webhooks::get(&state.ctx, &op, id).await?.into()))
}

/// Remove a subscription; deliveries not yet made are dropped.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = Id, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 204, description = "Removed."), BadId, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<WebhookId>,
) -> Result<StatusCode, ApiError> {
    webhooks::unsubscribe(&state.ctx, &op, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a subscription that was disabled because its receiver answered 410 Gone. Its pending
/// deliveries go out at once, with another day to succeed; events while it was disabled were not
/// queued for it. An enabled subscription is answered as it is.
#[utoipa::path(post, path = "/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = Id, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, description = "The subscription, enabled.", body = WebhookView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody),
        (status = 422, description = "Its URL is no longer allowed (see `POST /webhooks`).", body = ErrorBody)))]
pub async fn enable_webhook(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<WebhookId>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(webhooks::enable(&state.ctx, &op, id).await?.into()))
}

/// A subscription's deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Id, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, description = "The newest 200 deliveries.", body = DeliveryList), BadId, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<WebhookId>,
) -> Result<Json<DeliveryList>, ApiError> {
    let list = webhooks::deliveries(&state.ctx, &op, id, webhooks::MAX_DELIVERIES_SHOWN).await?;
    Ok(Json(DeliveryList {
        deliveries: list.into_iter().map(DeliveryView::from).collect(),
    }))
}

/// Send a delivery again (delivered or dead): it is pending at once, with the same
/// `webhook-id`, and retried for another day if the receiver fails.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery}/resend", tag = "webhooks",
    params(("id" = Id, Path, description = "webhook id"), ("delivery" = Id, Path, description = "delivery id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The delivery, pending again.", body = DeliveryView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such subscription or delivery.", body = ErrorBody),
        (status = 409, description = "The delivery is being sent right now.", body = ErrorBody)))]
pub async fn resend_delivery(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    let id: WebhookId = id
        .parse()
        .map_err(|e: cardwright_domain::DomainError| ApiError::bad_request(e.to_string()))?;
    let delivery: DeliveryId = delivery
        .parse()
        .map_err(|e: cardwright_domain::DomainError| ApiError::bad_request(e.to_string()))?;
    Ok(Json(
        webhooks::resend(&state.ctx, &op, id, delivery)
            .await?
            .into(),
    ))
}

/// A mail's text in one language.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailTemplateView {
    #[schema(value_type = MailKindText)]
    pub kind: String,
    #[schema(value_type = LanguageText)]
    pub language: String,
    pub subject: String,
    /// Plain text with placeholders: {{serial}}, {{holder}}, {{valid_until}}, {{days}},
    /// {{desk_email}}, {{template}}.
    pub body: String,
    /// False for the built-in text.
    pub custom: bool,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

impl From<MailText> for MailTemplateView {
    fn from(t: MailText) -> Self {
        let (updated_by, updated_at) = t
            .changed
            .map_or((None, None), |(by, at)| (Some(by), Some(at)));
        Self {
            kind: t.kind.as_str().to_owned(),
            language: t.language.as_str().to_owned(),
            subject: t.subject,
            body: t.body,
            custom: updated_at.is_some(),
            updated_at,
            updated_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MailTemplateList {
    pub templates: Vec<MailTemplateView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailTemplateBody {
    #[schema(value_type = MailSubjectText)]
    pub subject: String,
    /// Only the known placeholders.
    #[schema(value_type = MailBodyText)]
    pub body: String,
}

/// Every mail's text in every language: built in, or as an admin changed it.
#[utoipa::path(get, path = "/mail-templates", tag = "mail", security(("bearer" = [])),
    responses((status = 200, description = "The texts in force.", body = MailTemplateList), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody)))]
pub async fn list_mail_templates(
    State(state): State<AppState>,
    Auth(op): Auth,
) -> Result<Json<MailTemplateList>, ApiError> {
    let texts = mails::texts(&state.ctx, &op).await?;
    Ok(Json(MailTemplateList {
        templates: texts.into_iter().map(MailTemplateView::from).collect(),
    }))
}

/// Change one mail's text in one language. Mails decided from then on use it.
#[utoipa::path(put, path = "/mail-templates/{kind}/{language}", tag = "mail",
    params(("kind" = MailKindText, Path, description = "the mail"), ("language" = LanguageText, Path, description = "the language")),
    request_body = MailTemplateBody, security(("bearer" = [])),
    responses((status = 200, description = "The text, now in force.", body = MailTemplateView),
        (status = 400, description = "The subject or the body is blank or too long.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such mail or language.", body = ErrorBody),
        (status = 422, description = "The subject or the body has a control character (a line break, in the subject) or an invisible formatting character, or a placeholder is unknown or not closed; the message names the field.", body = ErrorBody)))]
pub async fn put_mail_template(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path((kind, language)): Path<(String, String)>,
    ApiJson(body): ApiJson<MailTemplateBody>,
) -> Result<Json<MailTemplateView>, ApiError> {
    Ok(Json(
        mails::put_text(&state.ctx, &op, &kind, &language, &body.subject, &body.body)
            .await?
            .into(),
    ))
}

/// Put the built-in text of one mail in one language back.
#[utoipa::path(delete, path = "/mail-templates/{kind}/{language}", tag = "mail",
    params(("kind" = MailKindText, Path, description = "the mail"), ("language" = LanguageText, Path, description = "the language")),
    security(("bearer" = [])),
    responses((status = 200, description = "The built-in text, now in force.", body = MailTemplateView), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin.", body = ErrorBody),
        (status = 404, description = "No such mail or language.", body = ErrorBody)))]
pub async fn reset_mail_template(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path((kind, language)): Path<(String, String)>,
) -> Result<Json<MailTemplateView>, ApiError> {
    Ok(Json(
        mails::reset_text(&state.ctx, &op, &kind, &language)
            .await?
            .into(),
    ))
}

/// A mail and how sending it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailView {
    pub id: String,
    #[schema(value_type = MailKindText)]
    pub kind: String,
    pub card_id: Option<String>,
    pub recipients: Vec<String>,
    pub copy_to: Vec<String>,
    pub subject: String,
    /// `pending`, `sent`, `dead` (given up) or `skipped` (nobody to send it to).
    pub state: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<Mail> for MailView {
    fn from(m: Mail) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            card_id: m.card,
            recipients: m.recipients,
            copy_to: m.copy_to,
            subject: m.subject,
            state: m.state,
            attempts: m.attempts,
            created_at: m.created_at,
            sent_at: m.sent_at,
            last_error: m.last_error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MailList {
    /// Newest first, at most 200.
    pub mails: Vec<MailView>,
}

/// The newest mails and how sending them went.
#[utoipa::path(get, path = "/mails", tag = "mail", security(("bearer" = [])),
    responses((status = 200, description = "The newest 200 mails.", body = MailList), NeedsLogin,
        (status = 403, description = "Needs the role policy-admin or service-admin.", body = ErrorBody)))]
pub async fn list_mails(
    State(state): State<AppState>,
    Auth(op): Auth,
) -> Result<Json<MailList>, ApiError> {
    let list = mails::recent(&state.ctx, &op, 200).await?;
    Ok(Json(MailList {
        mails: list.into_iter().map(MailView::from).collect(),
    }))
}
