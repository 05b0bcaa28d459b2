//! Webhook subscriptions: made and removed by a policy-admin, their deliveries listed and
//! resent, and the signature every delivery carries (Standard Webhooks: HMAC-SHA256 over
//! `id.timestamp.body`, sent as `v1,<base64>`).

use base64::Engine as _;
use cardwright_domain::temp_cards::EventType;
use cardwright_domain::{DeliveryId, FreeText, Operator, Role, TextRule, WebhookId};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::webhooks::{self as rows, Delivery, Webhook};
use cardwright_storage::{outbox, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{require_any, Context, ProcessError};

/// The most characters of a webhook URL.
pub const MAX_URL_CHARS: usize = 2000;
/// A webhook URL is read as free text of one line first ([`cardwright_domain::text`]): the URL
/// parser would drop tabs and line breaks from it silently, and shows invisible formatting as it
/// came.
pub const URL_RULE: TextRule = TextRule::line(MAX_URL_CHARS);
/// The prefix of a signing secret; the rest is the key in base64.
pub const SECRET_PREFIX: &str = "whsec_";

/// A subscription as shown, with how its deliveries stand.
#[derive(Debug, Clone)]
pub struct WebhookView {
    pub webhook: Webhook,
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

/// Parses and checks a webhook URL: at most 2,000 characters and not blank (else `Invalid`); no
/// control or invisible formatting characters, http or https, a host, no credentials, and allowed
/// by the allow-list (each entry a URL prefix: same scheme, host and port, and a path starting
/// with the entry's); else `Unprocessable`.
pub fn check_url(url: &str, allowed: &[String]) -> Result<url::Url, ProcessError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ProcessError::Invalid(format!(
            "url: a webhook URL has at most {MAX_URL_CHARS} characters"
        )));
    }
    let url = FreeText::parse("url", URL_RULE, url)?;
    let trimmed = url.as_str();
    let parsed = url::Url::parse(trimmed)
        .map_err(|e| ProcessError::Unprocessable(format!("url: '{trimmed}' is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProcessError::Unprocessable(format!(
            "url: a webhook URL starts with http:// or https://, not {}:",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ProcessError::Unprocessable(
            "url: a webhook URL names a host".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ProcessError::Unprocessable(
            "url: a webhook URL carries no user name or password; the signature proves the sender"
                .into(),
        ));
    }
    if !allowed.is_empty() && !allowed.iter().any(|prefix| url_allowed(&parsed, prefix)) {
        return Err(ProcessError::Unprocessable(format!(
            "url: {parsed} is not allowed; webhook URLs must start with one of: {}",
            allowed.join(", ")
        )));
    }
    Ok(parsed)
}

fn url_allowed(url: &url::Url, prefix: &str) -> bool {
    let Ok(prefix) = url::Url::parse(prefix) else {
        return false;
    };
    url.scheme() == prefix.scheme()
        && url.host_str() == prefix.host_str()
        && url.port_or_known_default() == prefix.port_or_known_default()
        && (url.path().starts_with(prefix.path())
            && (prefix.path().ends_with('/')
                || url.path().len() == prefix.path().len()
                || url.path()[prefix.path().len()..].starts_with('/')))
}

/// Parses the event types asked for: at least one, each known; sorted, without repeats.
pub fn parse_events(events: &[String]) -> Result<Vec<EventType>, ProcessError> {
    if events.is_empty() {
        return Err(ProcessError::Invalid(format!(
            "events: name at least one event type: {}",
            EventType::ALL.map(EventType::as_str).join(", ")
        )));
    }
    let mut parsed = events
        .iter()
        .map(|e| e.trim().parse::<EventType>())
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

/// Subscribes `url` to `events`. Returns the subscription and its signing secret, which is shown
/// this once and afterwards kept only sealed.
pub async fn subscribe(
    ctx: &Context,
    operator: &Operator,
    url: &str,
    events: &[String],
) -> Result<(Webhook, String), ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let url = check_url(url, &ctx.notify.allowed_urls)?;
    let events = parse_events(events)?;
    let pki = ctx.pki.as_ref().ok_or_else(|| {
        ProcessError::Conflict("webhooks need the installation's keys, which are not open".into())
    })?;
    let mut key = [0u8; 32];
    ctx.entropy.fill(&mut key);
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let mut nonce = [0u8; 12];
    ctx.entropy.fill(&mut nonce);
    let (millis, random) = ctx.id_parts();
    let mut tx = ctx.store.begin().await?;
    let webhook = Webhook {
        id: WebhookId::new(millis, random),
        url: url.to_string(),
        events: events.iter().map(|e| e.as_str().to_owned()).collect(),
        secret_sealed: pki.seal_puk(&mut tx, nonce, &secret).await?,
        since_seq: outbox::audit_head(&mut tx).await?,
        created_at: ctx.now(),
        created_by: operator.username.as_str().to_owned(),
    };
    rows::insert(&mut tx, &webhook).await?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            ctx.now(),
            webhook.created_by.clone(),
            "WebhookCreate",
            serde_json::json!({"webhook": webhook.id.to_string(), "url": webhook.url, "events": webhook.events}),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok((webhook, secret))
}

async fn view(
    conn: &mut cardwright_storage::Conn,
    webhook: Webhook,
) -> Result<WebhookView, ProcessError> {
    let counts = rows::counts(&mut *conn, webhook.id).await?;
    let count = |state: &str| {
        counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    Ok(WebhookView {
        pending: count("pending"),
        delivered: count("delivered"),
        dead: count("dead"),
        webhook,
    })
}

pub async fn list(ctx: &Context, operator: &Operator) -> Result<Vec<WebhookView>, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let mut conn = ctx.store.reader().await?;
    let mut views = Vec::new();
    for webhook in rows::list(&mut conn).await? {
        views.push(view(&mut conn, webhook).await?);
    }
    Ok(views)
}

fn unknown(id: WebhookId) -> ProcessError {
    ProcessError::NotFound(format!("webhook {id} not found"))
}

pub async fn get(
    ctx: &Context,
    operator: &Operator,
    id: WebhookId,
) -> Result<WebhookView, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let mut conn = ctx.store.reader().await?;
    let webhook = rows::get(&mut conn, id).await?.ok_or_else(|| unknown(id))?;
    view(&mut conn, webhook).await
}

/// Removes a subscription; deliveries not yet made are dropped with it.
pub async fn unsubscribe(
    ctx: &Context,
    operator: &Operator,
    id: WebhookId,
) -> Result<(), ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let mut tx = ctx.store.begin().await?;
    let webhook = rows::get(&mut tx, id).await?.ok_or_else(|| unknown(id))?;
    rows::delete(&mut tx, id).await?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            ctx.now(),
            operator.username.as_str().to_owned(),
            "WebhookDelete",
            serde_json::json!({"webhook": id.to_string(), "url": webhook.url}),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(())
}

/// The most deliveries one listing shows.
pub const MAX_DELIVERIES_SHOWN: i64 = 200;

/// A subscription's newest deliveries first.
pub async fn deliveries(
    ctx: &Context,
    operator: &Operator,
    id: WebhookId,
    limit: i64,
) -> Result<Vec<Delivery>, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let mut conn = ctx.store.reader().await?;
    rows::get(&mut conn, id).await?.ok_or_else(|| unknown(id))?;
    Ok(rows::recent(&mut conn, id, limit.clamp(1, MAX_DELIVERIES_SHOWN)).await?)
}

/// Sends a delivery again: it becomes pending, due now, with a new day to succeed in.
pub async fn resend(
    ctx: &Context,
    operator: &Operator,
    id: WebhookId,
    delivery: DeliveryId,
) -> Result<Delivery, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    rows::get(&mut tx, id).await?.ok_or_else(|| unknown(id))?;
    let found = rows::get_delivery(&mut tx, id, delivery)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("delivery {delivery} not found")))?;
    if !rows::resend(&mut tx, id, delivery, now, ctx.notify.give_up_at(now)).await? {
        return Err(ProcessError::Conflict(format!(
            "delivery {delivery} is being sent right now"
        )));
    }
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            "WebhookResend",
            serde_json::json!({
                "webhook": id.to_string(),
                "delivery": delivery.to_string(),
                "event_type": found.event_type,
                "seq": found.event_seq,
            }),
        ),
    )
    .await?;
    let again = rows::get_delivery(&mut tx, id, delivery)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("delivery {delivery} not found")))?;
    Store::commit(tx).await?;
    Ok(again)
}

/// Every subscription, for the senders.
pub async fn all(ctx: &Context) -> Result<Vec<Webhook>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(rows::list(&mut conn).await?)
}

/// The signing key of a subscription, opened from its sealed secret.
pub async fn signing_key(ctx: &Context, webhook: &Webhook) -> Result<Vec<u8>, ProcessError> {
    let pki = ctx.pki.as_ref().ok_or_else(|| {
        ProcessError::Conflict("webhooks need the installation's keys, which are not open".into())
    })?;
    let mut conn = ctx.store.reader().await?;
    let secret = pki
        .open_puk(&mut conn, &webhook.secret_sealed)
        .await?
        .ok_or_else(|| {
            ProcessError::Conflict(format!(
                "the secret of webhook {} does not open",
                webhook.id
            ))
        })?;
    secret_key(&secret)
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, ProcessError> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| ProcessError::Invalid("a webhook secret is whsec_ and base64".into()))
}

/// The `webhook-signature` header of a delivery: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` under the key.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Claims due deliveries of one subscription for `claimer`, in event order.
pub async fn claim(
    ctx: &Context,
    webhook: WebhookId,
    claimer: &str,
    limit: i64,
) -> Result<Vec<Delivery>, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let taken = rows::claim(
        &mut tx,
        ctx.store.dialect(),
        webhook,
        now,
        ctx.notify.lease_until(now),
        claimer,
        limit,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(taken)
}

/// What became of one delivery attempt.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It answered otherwise, or not at all.
    Failed { status: Option<u16>, error: String },
    /// It may not be sent at all (its URL is no longer allowed): dead at once.
    Refused { error: String },
    /// It was not tried (the run stopped first).
    NotTried,
}

/// Records the attempts of one claimed batch in one transaction: delivered ones are done, failed
/// ones wait for their retry (or are dead after the last), untried ones are given back.
pub async fn record(
    ctx: &Context,
    claimer: &str,
    attempts: &[(&Delivery, Attempt)],
) -> Result<(), ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let delivered: Vec<(DeliveryId, i64)> = attempts
        .iter()
        .filter_map(|(d, a)| match a {
            Attempt::Delivered { status } => Some((d.id, i64::from(*status))),
            _ => None,
        })
        .collect();
    rows::mark_delivered(&mut tx, &delivered, claimer, now).await?;
    let untried: Vec<DeliveryId> = attempts
        .iter()
        .filter(|(_, a)| matches!(a, Attempt::NotTried))
        .map(|(d, _)| d.id)
        .collect();
    rows::release(&mut tx, &untried, claimer).await?;
    for (d, attempt) in attempts {
        match attempt {
            Attempt::Failed { status, error } => {
                let retry = ctx.notify.retry_at(now, d.attempts + 1, d.give_up_at);
                rows::mark_failed(&mut tx, d.id, claimer, status.map(i64::from), error, retry)
                    .await?;
            }
            Attempt::Refused { error } => {
                rows::mark_failed(&mut tx, d.id, claimer, None, error, None).await?;
            }
            Attempt::Delivered { .. } | Attempt::NotTried => {}
        }
    }
    Store::commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_follows_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn urls_are_checked_against_the_allow_list() {
        let allowed = vec!["https://hooks.example.com/cardwright/".to_owned()];
        assert!(check_url("https://hooks.example.com/cardwright/in", &allowed).is_ok());
        assert!(check_url("https://hooks.example.com/other", &allowed).is_err());
        assert!(check_url("https://hooks.example.com:8443/cardwright/in", &allowed).is_err());
        assert!(check_url("http://hooks.example.com/cardwright/in", &allowed).is_err());
        assert!(check_url("https://evil.example.com/cardwright/in", &allowed).is_err());
        assert!(check_url("http://127.0.0.1:9/x", &[]).is_ok());
        assert!(check_url("ftp://example.com/", &[]).is_err());
        assert!(check_url("https://user:pw@example.com/", &[]).is_err());
        assert!(check_url("not a url", &[]).is_err());
        let exact = vec!["https://siem.example.com/in".to_owned()];
        assert!(check_url("https://siem.example.com/in", &exact).is_ok());
        assert!(check_url("https://siem.example.com/in/x", &exact).is_ok());
        assert!(check_url("https://siem.example.com/inx", &exact).is_err());
    }
}
