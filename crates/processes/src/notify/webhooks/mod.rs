//! Webhook subscriptions: made and removed by a policy-admin, their deliveries listed and
//! resent, and the signature every delivery carries (Standard Webhooks: HMAC-SHA256 over
//! `id.timestamp.body`, sent as `v1,<base64>`).

use base64::Engine as _;
use cardwright_domain::temp_cards::EventType;
use cardwright_domain::{DeliveryId, Operator, Role, TextRule, WebhookId};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::webhooks::{self as rows, Delivery, Webhook, WebhookState};
use cardwright_storage::{outbox, Store};

use super::addresses::SystemLookup;
use crate::{require_any, Context, ProcessError};

mod checkpoints;
mod sending;
mod urls;

pub use checkpoints::{publish_checkpoint, AuditCheckpoint};
pub use sending::*;
pub use urls::*;

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

#[cfg(test)]
mod tests {
    use super::super::addresses::Lookup;
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
