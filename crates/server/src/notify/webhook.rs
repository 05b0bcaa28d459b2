//! Delivering to webhook receivers over HTTP(S), signed, never following redirects.

use std::collections::HashMap;
use std::time::Duration;

use cardwright_domain::WebhookId;
use cardwright_processes::notify::webhooks::{self, Attempt};
use cardwright_processes::Context;
use cardwright_storage::webhooks::{Delivery, Webhook};

/// Deliveries claimed at once per subscription.
pub const BATCH: i64 = 100;

/// The HTTP client and the subscriptions' opened signing keys.
pub struct Sender {
    client: reqwest::Client,
    keys: HashMap<WebhookId, Vec<u8>>,
}

impl Sender {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("Cardwright/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            keys: HashMap::new(),
        })
    }

    /// The signing key of a subscription, opened once.
    async fn key(&mut self, ctx: &Context, webhook: &Webhook) -> anyhow::Result<Vec<u8>> {
        if let Some(key) = self.keys.get(&webhook.id) {
            return Ok(key.clone());
        }
        let key = webhooks::signing_key(ctx, webhook).await?;
        self.keys.insert(webhook.id, key.clone());
        Ok(key)
    }

    /// Delivers what is due for one subscription, batch after batch, until nothing is due, the
    /// receiver fails every delivery of a batch, or `stop` says so. Returns how many were
    /// delivered.
    pub async fn run(
        &mut self,
        ctx: &Context,
        webhook: &Webhook,
        claimer: &str,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> anyhow::Result<usize> {
        let key = self.key(ctx, webhook).await?;
        let mut delivered = 0;
        // Bounded, so one busy subscription gives the others and the fan-out their turn.
        for _ in 0..50 {
            let taken = webhooks::claim(ctx, webhook.id, claimer, BATCH).await?;
            if taken.is_empty() {
                break;
            }
            let full = i64::try_from(taken.len()).unwrap_or(0) == BATCH;
            let mut outcomes: Vec<(&Delivery, Attempt)> = Vec::with_capacity(taken.len());
            let mut failed_keys: Vec<&str> = Vec::new();
            for d in &taken {
                // A card whose earlier event failed waits: its events arrive in order.
                if stop() || failed_keys.contains(&d.ordering_key.as_str()) {
                    outcomes.push((d, Attempt::NotTried));
                    continue;
                }
                let attempt = self.deliver(ctx, webhook, &key, d).await;
                if !matches!(attempt, Attempt::Delivered { .. }) {
                    failed_keys.push(&d.ordering_key);
                }
                outcomes.push((d, attempt));
            }
            let ok = outcomes
                .iter()
                .filter(|(_, a)| matches!(a, Attempt::Delivered { .. }))
                .count();
            webhooks::record(ctx, claimer, &outcomes).await?;
            delivered += ok;
            if !full || ok == 0 || stop() {
                break;
            }
        }
        Ok(delivered)
    }

    async fn deliver(&self, ctx: &Context, webhook: &Webhook, key: &[u8], d: &Delivery) -> Attempt {
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
            Err(e) => Attempt::Failed {
                status: None,
                error: cardwright_processes::report(&e),
            },
        }
    }
}
