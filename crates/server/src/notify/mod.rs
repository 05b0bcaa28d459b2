//! The background jobs that tell people and systems: one turns audit events into deliveries and
//! mails, decides reminders and sends mails; the other keeps a task per enabled webhook
//! subscription, each sending on its own, so a slow receiver holds up only itself.

pub mod smtp;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use cardwright_domain::WebhookId;
use cardwright_processes::notify::{self, mails, webhooks};
use cardwright_processes::Context;
use cardwright_storage::webhooks::Webhook;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

/// Mails claimed at once.
const MAIL_BATCH: i64 = 20;

/// Starts both jobs, after taking back what this server held when it last stopped.
pub async fn start(
    config: &Config,
    ctx: &Context,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mailer = if config.smtp.host.is_empty() {
        None
    } else {
        Some(smtp::Mailer::new(&config.smtp)?)
    };
    let every = Duration::from_millis(config.notify.interval_ms);
    let timeout = Duration::from_secs(config.webhooks.timeout_secs);
    let claimer = claimer_name(config, ctx)?;
    let released = notify::release_claims(ctx, &claimer)
        .await
        .context("taking back unsent mails and deliveries")?;
    if released > 0 {
        tracing::warn!(
            released,
            "mails and webhook deliveries claimed before the last stop are sent again"
        );
    }
    // Counts fan-outs that made deliveries; every subscription's task wakes when it moves.
    let (woken, wake) = watch::channel(0u64);
    Ok(vec![
        tokio::spawn(announce_job(
            ctx.clone(),
            mailer,
            claimer.clone(),
            every,
            woken.clone(),
            stop.clone(),
        )),
        tokio::spawn(deliver_job(
            ctx.clone(),
            claimer,
            timeout,
            every,
            wake,
            stop.clone(),
        )),
    ])
}

/// The name this server's senders claim under, kept in the data folder so that a server that
/// died knows its own claims when it starts again; servers with data folders of their own have
/// names of their own.
fn claimer_name(config: &Config, ctx: &Context) -> anyhow::Result<String> {
    let path = config.data_dir.join("notify-id");
    if let Ok(name) = std::fs::read_to_string(&path) {
        let name = name.trim();
        if name.starts_with("server-") && name.len() == 23 {
            return Ok(name.to_owned());
        }
        anyhow::bail!("{} is not a sender name; remove it", path.display());
    }
    crate::app::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    let mut random = [0u8; 8];
    ctx.entropy.fill(&mut random);
    let name = format!("server-{}", hex::encode(random));
    match crate::app::write_secret(&path, name.as_bytes()) {
        Ok(()) => Ok(name),
        // Another server of this data folder wrote it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().to_owned())
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Reminders are looked for on every this many turns: they are due to the hour, not the second.
const REMINDER_TURNS: u32 = 20;

/// Fans out new events and sends due mails every `every`, and writes due reminders every
/// [`REMINDER_TURNS`] turns.
async fn announce_job(
    ctx: Context,
    mailer: Option<smtp::Mailer>,
    claimer: String,
    every: Duration,
    woken: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match fan_out(&ctx).await {
            Ok(0) => {}
            Ok(_) => woken.send_modify(|n| *n = n.wrapping_add(1)),
            Err(e) => tracing::error!(error = %e, "announcing events failed"),
        }
        if turn.is_multiple_of(REMINDER_TURNS) {
            match mails::queue_reminders(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reminders = n, "expiry reminders due"),
                Err(e) => tracing::error!(error = %e, "deciding reminders failed"),
            }
        }
        turn = turn.wrapping_add(1);
        if let Some(mailer) = &mailer {
            if let Err(e) = send_mails(&ctx, mailer, &claimer, &stop).await {
                tracing::error!(error = %e, "sending mails failed");
            }
        }
    }
}

/// Fans out until caught up (at most a few batches a turn). Returns the events read.
async fn fan_out(ctx: &Context) -> Result<usize, cardwright_processes::ProcessError> {
    let mut total = 0;
    for _ in 0..20 {
        let n = notify::fan_out(ctx, notify::FAN_OUT_BATCH).await?;
        total += n;
        if n < notify::FAN_OUT_BATCH as usize {
            break;
        }
    }
    Ok(total)
}

async fn send_mails(
    ctx: &Context,
    mailer: &smtp::Mailer,
    claimer: &str,
    stop: &watch::Receiver<bool>,
) -> Result<(), cardwright_processes::ProcessError> {
    for _ in 0..10 {
        let taken = mails::claim(ctx, claimer, MAIL_BATCH).await?;
        let full = i64::try_from(taken.len()).unwrap_or(0) == MAIL_BATCH;
        for mail in &taken {
            if *stop.borrow() {
                // The lease runs out and another turn (or server) sends it.
                return Ok(());
            }
            match mailer.send(mail).await {
                smtp::Sent::Accepted => {
                    mails::sent(ctx, mail, claimer).await?;
                    tracing::info!(mail = %mail.id, kind = %mail.kind, "mail sent");
                }
                smtp::Sent::Retry(error) => {
                    tracing::warn!(mail = %mail.id, %error, "mail not sent, will retry");
                    mails::failed(ctx, mail, claimer, &error, false).await?;
                }
                smtp::Sent::Refused(error) => {
                    tracing::error!(mail = %mail.id, %error, "mail refused, given up");
                    mails::failed(ctx, mail, claimer, &error, true).await?;
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(())
}

/// A subscription's sending task, the URL it sends to, and the signal that ends it.
struct Sending {
    task: tokio::task::AbortHandle,
    url: String,
    quit: watch::Sender<bool>,
}

/// Keeps one sending task per enabled subscription: every `every` it starts the tasks of new or
/// re-enabled subscriptions and ends those of removed or disabled ones (and those whose URL
/// changed, which get a new task and client). On `stop` it waits for the tasks to finish the
/// delivery each is making.
async fn deliver_job(
    ctx: Context,
    claimer: String,
    timeout: Duration,
    every: Duration,
    wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    let mut sending: HashMap<WebhookId, Sending> = HashMap::new();
    loop {
        match webhooks::enabled(&ctx).await {
            Ok(subscriptions) => {
                sending.retain(|id, s| {
                    let keep = !s.task.is_finished()
                        && subscriptions.iter().any(|w| w.id == *id && w.url == s.url);
                    if !keep {
                        let _ = s.quit.send(true);
                    }
                    keep
                });
                for webhook in subscriptions {
                    if sending.contains_key(&webhook.id) {
                        continue;
                    }
                    let (quit, quitting) = watch::channel(false);
                    let (id, url) = (webhook.id, webhook.url.clone());
                    let task = tasks.spawn(send_to(
                        ctx.clone(),
                        webhook,
                        claimer.clone(),
                        timeout,
                        every,
                        wake.clone(),
                        quitting,
                        stop.clone(),
                    ));
                    sending.insert(id, Sending { task, url, quit });
                }
            }
            Err(e) => tracing::error!(error = %e, "reading webhook subscriptions failed"),
        }
        // Finished tasks are collected as they end, so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one subscription's deliveries whenever the fan-out made new ones or every `every`,
/// until the subscription is disabled, `quit` (it was removed or disabled elsewhere) or `stop`.
#[allow(
    clippy::too_many_arguments,
    reason = "one task's whole world, passed once"
)]
async fn send_to(
    ctx: Context,
    webhook: Webhook,
    claimer: String,
    timeout: Duration,
    every: Duration,
    mut wake: watch::Receiver<u64>,
    mut quit: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sender = match webhook::Sender::new(&webhook, &ctx.notify.allowed_urls, timeout) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(webhook = %webhook.id, error = %e, "building the webhook client failed");
            return;
        }
    };
    loop {
        let stopped = || *stop.borrow() || *quit.borrow();
        if stopped() {
            return;
        }
        match sender.run(&ctx, &webhook, &claimer, &stopped).await {
            Ok(webhook::Turn::MoreDue) => continue,
            Ok(webhook::Turn::Disabled) => {
                tracing::warn!(webhook = %webhook.id, url = %webhook.url, "the receiver answered 410 Gone; the subscription is disabled");
                return;
            }
            Ok(webhook::Turn::CaughtUp) => {}
            Err(e) => {
                tracing::error!(webhook = %webhook.id, error = %e, "webhook delivery failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            Ok(()) = wake.changed() => {}
            _ = quit.wait_for(|quit| *quit) => return,
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}
