//! Delivering to one subscription's receiver over HTTP(S), signed, never following redirects,
//! and never to an address inside the network that the allow-list does not name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cardwright_processes::notify::addresses;
use cardwright_processes::notify::webhooks::{self, Attempt};
use cardwright_processes::Context;
use cardwright_storage::webhooks::{Delivery, Webhook};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Deliveries claimed at once.
pub const BATCH: i64 = 100;

/// What a delivery refused at connection records: no connection was made, so it tells nothing
/// of the ports behind the address.
pub const REFUSED_INSIDE: &str = "not sent: the URL's host resolves only to addresses inside the \
    network; ask the administrator to allow it in webhooks.allowed_urls";

/// A host name whose every address is inside the network.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses inside the network")]
pub struct InsideOnly(String);

/// Resolves as the system does and drops the addresses inside the network, so a name that
/// passed when it was subscribed and resolves inside later (DNS rebinding) reaches nothing.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| addresses::inside(a.ip()).is_none())
                .collect();
            if public.is_empty() {
                return Err(Box::new(InsideOnly(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// How a turn of sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing more is due now (or the receiver failed every delivery tried, or the run stops).
    CaughtUp,
    /// More is due at once: the turn stopped after its bounded number of batches.
    MoreDue,
    /// The receiver answered 410 Gone and the subscription is disabled.
    Disabled,
}

/// One subscription's HTTP client and its opened signing key.
pub struct Sender {
    client: reqwest::Client,
    key: Option<Vec<u8>>,
}

impl Sender {
    /// A client for `webhook`: connections go straight to the receiver (no proxy from the
    /// environment, whose address would be the one checked), and unless the allow-list names
    /// the URL, only to addresses outside the network.
    pub fn new(webhook: &Webhook, allowed: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .user_agent(concat!("Cardwright/", env!("CARGO_PKG_VERSION")));
        let listed =
            url::Url::parse(&webhook.url).is_ok_and(|url| webhooks::allow_listed(&url, allowed));
        if !listed {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            client: builder.build()?,
            key: None,
        })
    }

    /// The signing key of the subscription, opened once.
    async fn key(&mut self, ctx: &Context, webhook: &Webhook) -> anyhow::Result<Vec<u8>> {
        if let Some(key) = &self.key {
            return Ok(key.clone());
        }
        let key = webhooks::signing_key(ctx, webhook).await?;
        self.key = Some(key.clone());
        Ok(key)
    }

    /// Delivers what is due, batch after batch, until nothing is due, the receiver fails every
    /// delivery of a batch, it answers 410 Gone, or `stop` says so. Each outcome is recorded as
    /// soon as it is known, so a server killed mid-batch sends again only the delivery it was
    /// making.
    pub async fn run(
        &mut self,
        ctx: &Context,
        webhook: &Webhook,
        claimer: &str,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> anyhow::Result<Turn> {
        let key = self.key(ctx, webhook).await?;
        // Bounded, so that the task looks at its stop signal and its subscription now and then.
        for _ in 0..50 {
            let taken = webhooks::claim(ctx, webhook.id, claimer, BATCH).await?;
            if taken.is_empty() {
                return Ok(Turn::CaughtUp);
            }
            let full = i64::try_from(taken.len()).unwrap_or(0) == BATCH;
            let mut untried: Vec<(&Delivery, Attempt)> = Vec::new();
            let mut failed_keys: Vec<&str> = Vec::new();
            let mut delivered = 0;
            let mut gone = false;
            for d in &taken {
                // A card whose earlier event failed waits: its events arrive in order.
                if gone || stop() || failed_keys.contains(&d.ordering_key.as_str()) {
                    untried.push((d, Attempt::NotTried));
                    continue;
                }
                let attempt = self.deliver(ctx, webhook, &key, d).await;
                match attempt {
                    Attempt::Delivered { .. } => delivered += 1,
                    Attempt::Gone => gone = true,
                    _ => failed_keys.push(&d.ordering_key),
                }
                webhooks::record(ctx, claimer, &[(d, attempt)]).await?;
            }
            if !untried.is_empty() {
                webhooks::record(ctx, claimer, &untried).await?;
            }
            if gone {
                return Ok(Turn::Disabled);
            }
            if !full || delivered == 0 || stop() {
                return Ok(Turn::CaughtUp);
            }
        }
        Ok(Turn::MoreDue)
    }

    async fn deliver(&self, ctx: &Context, webhook: &Webhook, key: &[u8], d: &Delivery) -> Attempt {
        // Checked at every send: the allow-list may have changed, and an address written in the
        // URL is never looked up, so the resolver does not see it.
        if let Err(e) = webhooks::check_url(&webhook.url, &ctx.notify.allowed_urls) {
            return Attempt::Refused {
                error: e.to_string(),
            };
        }
        let id = d.id.to_string();
        // The receiver checks this against its own clock (Standard Webhooks allows a few
        // minutes), so it is the wall clock's time of sending, not the processes' clock.
        let timestamp = chrono::Utc::now().timestamp();
        let answer = self
            .client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                webhooks::signature(key, &id, timestamp, &d.payload),
            )
            .body(d.payload.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => Attempt::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) if response.status() == reqwest::StatusCode::GONE => Attempt::Gone,
            Ok(response) => {
                let status = response.status();
                let error = if status.is_redirection() {
                    format!("the receiver answered {status}; redirects are not followed")
                } else {
                    format!("the receiver answered {status}")
                };
                Attempt::Failed {
                    status: Some(status.as_u16()),
                    error,
                }
            }
            Err(e) if refused_inside(&e) => Attempt::Failed {
                status: None,
                error: REFUSED_INSIDE.to_owned(),
            },
            Err(e) => Attempt::Failed {
                status: None,
                error: cardwright_processes::report(&e),
            },
        }
    }
}

/// Whether a request failed because [`PublicOnly`] found only addresses inside the network.
fn refused_inside(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // The chain is a few links long (request, connect, resolve); the bound is for safety.
    for _ in 0..16 {
        let Some(c) = cause else { return false };
        if c.is::<InsideOnly>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolving_inside_the_network_resolve_to_nothing() {
        let resolved = PublicOnly.resolve("localhost".parse().unwrap()).await;
        let error = resolved.err().expect("localhost is refused");
        assert!(error.is::<InsideOnly>(), "{error}");
    }
}
