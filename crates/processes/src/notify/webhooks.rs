//! Webhook subscriptions: made and removed by a policy-admin, their deliveries listed and
//! resent, and the signature every delivery carries (Standard Webhooks: HMAC-SHA256 over
//! `id.timestamp.body`, sent as `v1,<base64>`).

use base64::Engine as _;
use cardwright_domain::temp_cards::EventType;
use cardwright_domain::{DeliveryId, Operator, Role, Timestamp, WebhookId};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::webhooks::{self as rows, Delivery, NewDelivery, Webhook, WebhookState};
use cardwright_storage::{outbox, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::addresses::{self, Inside, Lookup, SystemLookup};
use crate::{require_any, Context, ProcessError};

/// The most characters of a webhook URL.
pub const MAX_URL_CHARS: usize = 2000;
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

/// Parses and checks a webhook URL as written: at most 2,000 characters (else `Invalid`), http
/// or https, a host after `//`, no credentials, and (else `Unprocessable`) either within the
/// allow-list (each entry a URL prefix: same scheme, host and port, and a path starting with the
/// entry's) or, when the list does not name it, no address inside the network. It is checked
/// at every send too. Host names are checked by [`check_destination`] when subscribing and by the
/// sender's resolver at every connection.
pub fn check_url(url: &str, allowed: &[String]) -> Result<url::Url, ProcessError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ProcessError::Invalid(format!(
            "url: a webhook URL has at most {MAX_URL_CHARS} characters"
        )));
    }
    let trimmed = url.trim();
    let no_host = || {
        ProcessError::Unprocessable(
            "url: a webhook URL names a host after http:// or https://".into(),
        )
    };
    // The parser makes a host of what follows a missing one (`http:///x` becomes `http://x/`),
    // so the text as written must name it.
    let web = trimmed.split_once(':').is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    if web && !names_a_host(trimmed) {
        return Err(no_host());
    }
    let parsed = url::Url::parse(trimmed)
        .map_err(|e| ProcessError::Unprocessable(format!("url: '{trimmed}' is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProcessError::Unprocessable(format!(
            "url: a webhook URL starts with http:// or https://, not {}:",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(no_host());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ProcessError::Unprocessable(
            "url: a webhook URL carries no user name or password; the signature proves the sender"
                .into(),
        ));
    }
    if allow_listed(&parsed, allowed) {
        return Ok(parsed);
    }
    let inside = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => addresses::inside(ip.into()).map(|why| (ip.to_string(), why)),
        Some(url::Host::Ipv6(ip)) => addresses::inside(ip.into()).map(|why| (ip.to_string(), why)),
        _ => None,
    };
    if let Some((host, why)) = inside {
        return Err(points_inside(&format!("({host}, {why})")));
    }
    if !allowed.is_empty() {
        return Err(ProcessError::Unprocessable(format!(
            "url: {parsed} is not allowed; webhook URLs must start with one of: {}",
            allowed.join(", ")
        )));
    }
    Ok(parsed)
}

fn points_inside(what: &str) -> ProcessError {
    ProcessError::Unprocessable(format!(
        "url: this URL points inside the network {what} and is not allowed; ask the \
         administrator to allow it in webhooks.allowed_urls"
    ))
}

/// Whether the URL as written has a host between `scheme://` and the path.
fn names_a_host(raw: &str) -> bool {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    !host.is_empty()
}

/// Whether a prefix of the allow-list names the URL; such a URL may point anywhere, inside the
/// network too.
pub fn allow_listed(url: &url::Url, allowed: &[String]) -> bool {
    allowed.iter().any(|prefix| url_allowed(url, prefix))
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

/// Refuses the host name of a URL that [`check_url`] passed when it is `localhost` (or a name
/// under it) or any of its addresses is inside the network, unless the allow-list names the URL.
/// A name that does not resolve (yet) is taken: every connection checks the addresses it is
/// about to use.
pub async fn check_destination(
    url: &url::Url,
    allowed: &[String],
    lookup: &impl Lookup,
) -> Result<(), ProcessError> {
    if allow_listed(url, allowed) {
        return Ok(());
    }
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    if addresses::is_local_name(name) {
        return Err(points_inside(&format!("({name}, {})", Inside::Loopback)));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let found = tokio::time::timeout(addresses::LOOKUP_TIMEOUT, lookup.lookup(name, port)).await;
    let Ok(Ok(found)) = found else {
        return Ok(());
    };
    if found.iter().any(|a| addresses::inside(a.ip()).is_some()) {
        // The address itself is left out: the answer should not read internal DNS to anyone.
        return Err(points_inside(&format!(
            "({name} resolves to an address inside it)"
        )));
    }
    Ok(())
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
    // Resolved before the transaction: no network call while it is open.
    check_destination(&url, &ctx.notify.allowed_urls, &SystemLookup).await?;
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
        state: WebhookState::Enabled,
        disabled: None,
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

/// Enables a subscription its receiver had disabled (410 Gone), once its URL is still allowed.
/// Its pending deliveries are due at once, with a new time to give up; what happened while it
/// was disabled was not queued for it. Enabling an enabled subscription changes nothing.
pub async fn enable(
    ctx: &Context,
    operator: &Operator,
    id: WebhookId,
) -> Result<WebhookView, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Managing webhooks")?;
    let found = {
        let mut conn = ctx.store.reader().await?;
        rows::get(&mut conn, id).await?.ok_or_else(|| unknown(id))?
    };
    if found.enabled() {
        return get(ctx, operator, id).await;
    }
    let url = check_url(&found.url, &ctx.notify.allowed_urls)?;
    check_destination(&url, &ctx.notify.allowed_urls, &SystemLookup).await?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    if rows::enable(&mut tx, id, now, ctx.notify.give_up_at(now)).await? {
        audit::append(
            &mut tx,
            &ctx.audit_key,
            NewEvent::admin(
                now,
                operator.username.as_str().to_owned(),
                "WebhookEnable",
                serde_json::json!({"webhook": id.to_string(), "url": found.url}),
            ),
        )
        .await?;
    }
    let webhook = rows::get(&mut tx, id).await?.ok_or_else(|| unknown(id))?;
    let shown = view(&mut tx, webhook).await?;
    Store::commit(tx).await?;
    Ok(shown)
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

/// The enabled subscriptions, for the senders.
pub async fn enabled(ctx: &Context) -> Result<Vec<Webhook>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(rows::list_enabled(&mut conn).await?)
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
    /// It answered 410 Gone: the subscription is disabled, and this delivery waits with the rest.
    Gone,
    /// It may not be sent at all (its URL is no longer allowed): dead at once.
    Refused { error: String },
    /// It was not tried (the run stopped first).
    NotTried,
}

/// What a receiver's 410 Gone is recorded as, on the delivery and on the subscription.
pub const GONE: &str = "the receiver answered 410 Gone";

/// Records the attempts of claimed deliveries in one transaction: delivered ones are done,
/// failed ones wait for their retry (or are dead after the last), untried ones are given back.
/// A 410 Gone disables the subscription, audited as done by `system`.
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
            Attempt::Gone => {
                let retry = ctx.notify.retry_at(now, d.attempts + 1, d.give_up_at);
                let error =
                    format!("{GONE}; the subscription is disabled until a policy-admin enables it");
                rows::mark_failed(&mut tx, d.id, claimer, Some(410), &error, retry).await?;
                disable(ctx, &mut tx, d.webhook, now).await?;
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

/// Disables a subscription whose receiver answered 410 Gone, with its audit event; a
/// subscription another server disabled first is left as it is.
async fn disable(
    ctx: &Context,
    conn: &mut cardwright_storage::Conn,
    id: WebhookId,
    now: Timestamp,
) -> Result<(), ProcessError> {
    let Some(webhook) = rows::get(&mut *conn, id).await? else {
        return Ok(());
    };
    if rows::disable(&mut *conn, id, now, GONE).await? {
        audit::append(
            conn,
            &ctx.audit_key,
            NewEvent::admin(
                now,
                "system".to_owned(),
                "WebhookDisable",
                serde_json::json!({
                    "webhook": id.to_string(),
                    "url": webhook.url,
                    "answer": "410 Gone",
                }),
            ),
        )
        .await?;
    }
    Ok(())
}

/// A signed checkpoint of the audit log: its head's sequence number and hash, the signature
/// over them, and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
    pub at: Timestamp,
}

/// The event type of checkpoints.
const CHECKPOINT: EventType = EventType::AuditCheckpoint;

/// Queues a delivery of `checkpoint` for each enabled subscription that lists
/// `audit.checkpoint`, signed and retried like every delivery; returns how many were queued. A
/// checkpoint of a sequence number published before is not queued again. Publishing is no change
/// of the installation: nothing is written to the audit log it vouches for.
pub async fn publish_checkpoint(
    ctx: &Context,
    checkpoint: &AuditCheckpoint,
) -> Result<usize, ProcessError> {
    let time = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let payload = serde_json::json!({
        "type": CHECKPOINT.as_str(),
        "timestamp": time(checkpoint.at),
        "data": {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "signature": checkpoint.signature,
            "at": time(checkpoint.at),
        }
    })
    .to_string();
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let deliveries: Vec<NewDelivery> = rows::list_enabled(&mut tx)
        .await?
        .into_iter()
        .filter(|w| w.events.iter().any(|e| e == CHECKPOINT.as_str()))
        .map(|w| {
            let (millis, random) = ctx.id_parts();
            NewDelivery {
                id: DeliveryId::new(millis, random),
                webhook: w.id,
                source: format!("checkpoint:{}", checkpoint.seq),
                event_seq: checkpoint.seq,
                event_type: CHECKPOINT.as_str().to_owned(),
                // Checkpoints arrive in order among themselves, whatever else waits.
                ordering_key: CHECKPOINT.as_str().to_owned(),
                payload: payload.clone(),
                created_at: now,
                give_up_at: ctx.notify.give_up_at(now),
            }
        })
        .collect();
    let written = rows::insert_deliveries(&mut tx, &deliveries).await?;
    Store::commit(tx).await?;
    Ok(usize::try_from(written).unwrap_or(usize::MAX))
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
        assert!(check_url("http://192.0.2.10:9/x", &[]).is_ok());
        assert!(check_url("ftp://example.com/", &[]).is_err());
        assert!(check_url("https://user:pw@example.com/", &[]).is_err());
        assert!(check_url("not a url", &[]).is_err());
        let exact = vec!["https://siem.example.com/in".to_owned()];
        assert!(check_url("https://siem.example.com/in", &exact).is_ok());
        assert!(check_url("https://siem.example.com/in/x", &exact).is_ok());
        assert!(check_url("https://siem.example.com/inx", &exact).is_err());
    }

    fn refused(url: &str, allowed: &[String]) -> String {
        match check_url(url, allowed) {
            Err(ProcessError::Unprocessable(message)) => message,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_inside_the_network_are_refused_unless_allowed() {
        for (url, shown) in [
            ("http://127.0.0.1:8080/x", "127.0.0.1, a loopback address"),
            ("http://127.1/", "127.0.0.1, a loopback address"),
            ("http://2130706433/", "127.0.0.1, a loopback address"),
            ("http://0x7f000001:9/", "127.0.0.1, a loopback address"),
            ("http://017700000001/", "127.0.0.1, a loopback address"),
            ("http://[::1]:9/", "::1, a loopback address"),
            (
                "http://[::ffff:127.0.0.1]/",
                "127.0.0.1, a loopback address",
            ),
            ("http://[::ffff:a00:1]/", "10.0.0.1, a private address"),
            ("http://0.0.0.0:9/", "0.0.0.0, an unspecified address"),
            ("http://0/", "0.0.0.0, an unspecified address"),
            ("http://[::]/", "::, an unspecified address"),
            ("http://10.1.2.3/", "10.1.2.3, a private address"),
            ("https://172.20.0.1/", "172.20.0.1, a private address"),
            ("http://192.168.0.10/", "192.168.0.10, a private address"),
            (
                "http://100.64.1.1/",
                "100.64.1.1, a shared (carrier-grade NAT) address",
            ),
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254, a link-local address",
            ),
            ("http://[fe80::1]/", "fe80::1, a link-local address"),
            ("http://[fd00::1]/", "fd00::1, a unique-local address"),
            ("http://224.0.0.1/", "224.0.0.1, a multicast address"),
            (
                "http://255.255.255.255/",
                "255.255.255.255, the broadcast address",
            ),
        ] {
            let message = refused(url, &[]);
            assert!(message.contains("inside the network"), "{url}: {message}");
            assert!(message.contains(shown), "{url}: {message}");
            assert!(
                message.contains("webhooks.allowed_urls"),
                "{url}: {message}"
            );
        }
        // A prefix of the allow-list names what may be reached, inside the network too.
        let allowed = vec!["http://127.0.0.1:8080/hooks/".to_owned()];
        assert!(check_url("http://127.0.0.1:8080/hooks/in", &allowed).is_ok());
        assert!(refused("http://127.0.0.1:8081/hooks/in", &allowed).contains("inside the network"));
        assert!(refused("https://hooks.example.com/", &allowed).contains("not allowed"));
    }

    #[test]
    fn a_url_names_its_host_as_written() {
        for url in [
            "http:///x",
            "https:///",
            "http://:80/x",
            "http://@/x",
            "http:/x.example.com/",
            "http:x.example.com",
            "http:\\\\x.example.com/",
            "http://\\x.example.com/",
        ] {
            assert!(refused(url, &[]).contains("names a host"), "{url}");
        }
        assert!(check_url("HTTPS://Hooks.Example.com:8443/in", &[]).is_ok());
        assert!(check_url("https://[2606:4700::1111]/in", &[]).is_ok());
    }

    /// Answers names from a table, as DNS would.
    struct Table(Vec<(&'static str, Vec<&'static str>)>);

    impl Lookup for Table {
        async fn lookup(
            &self,
            host: &str,
            port: u16,
        ) -> std::io::Result<Vec<std::net::SocketAddr>> {
            let (_, found) = self
                .0
                .iter()
                .find(|(name, _)| *name == host)
                .ok_or_else(|| std::io::Error::other("no such name"))?;
            Ok(found
                .iter()
                .map(|ip| std::net::SocketAddr::new(ip.parse().unwrap(), port))
                .collect())
        }
    }

    #[tokio::test]
    async fn names_resolving_inside_the_network_are_refused() {
        let dns = Table(vec![
            ("rebind.example", vec!["127.0.0.1"]),
            ("split.example", vec!["203.0.113.9", "10.0.0.7"]),
            ("metadata.example", vec!["::ffff:169.254.169.254"]),
            ("public.example", vec!["203.0.113.9", "2001:db8::9"]),
        ]);
        let check = |url: &str, allowed: Vec<String>| {
            let url = url::Url::parse(url).unwrap();
            let dns = &dns;
            async move { check_destination(&url, &allowed, dns).await }
        };
        for url in [
            "http://localhost:9/",
            "http://LocalHost./",
            "http://hooks.localhost/",
        ] {
            match check(url, Vec::new()).await {
                Err(ProcessError::Unprocessable(message)) => {
                    assert!(message.contains("a loopback address"), "{message}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in [
            "http://rebind.example/x",
            "https://split.example/x",
            "http://metadata.example/",
        ] {
            match check(url, Vec::new()).await {
                Err(ProcessError::Unprocessable(message)) => {
                    assert!(
                        message.contains("resolves to an address inside"),
                        "{message}"
                    );
                    assert!(!message.contains("10.0.0.7") && !message.contains("127.0.0.1"));
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(check("https://public.example/x", Vec::new()).await.is_ok());
        // A name that does not resolve yet is taken; each connection checks it again.
        assert!(check("https://unknown.example/x", Vec::new()).await.is_ok());
        assert!(check(
            "http://rebind.example/x",
            vec!["http://rebind.example/".to_owned()]
        )
        .await
        .is_ok());
    }
}
