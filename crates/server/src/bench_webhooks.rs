//! `cardwright bench webhooks`: events fanned out to subscribers on loopback receivers, through
//! the server's own notification jobs; deliveries per second and how long after its event each
//! delivery arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::Role;
use cardwright_processes::notify::webhooks;
use cardwright_processes::temp_cards::request;
use cardwright_processes::{auth, Actor, Context};
use tokio::sync::watch;

use crate::config::Config;

/// When each delivery arrived, and how long after its event.
#[derive(Default)]
struct Arrivals {
    latencies: Vec<Duration>,
    last: Option<Instant>,
}

async fn receive(State(arrivals): State<Arc<Mutex<Arrivals>>>, body: String) -> StatusCode {
    let now = chrono::Utc::now();
    let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let at = event["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let mut a = arrivals.lock().expect("arrivals lock");
    if let Some(at) = at {
        let late = (now - at.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default();
        a.latencies.push(late);
    }
    a.last = Some(Instant::now());
    StatusCode::NO_CONTENT
}

/// A receiver on a loopback port; returns its URL.
async fn receiver(arrivals: Arc<Mutex<Arrivals>>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/hook"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: a test's few hundred thousand deliveries fit f64 exactly, and p is at most
    // 100, so the rank is within the slice.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Writes `events` card.requested events (requests of 100 cards), at `rate` events a second (0:
/// as fast as requests go), with `subscribers` subscriptions, and waits until every delivery
/// arrived.
#[allow(
    clippy::cast_precision_loss,
    reason = "counts and seconds for a printed report"
)]
pub(crate) async fn run(
    ctx: &Context,
    data_dir: &std::path::Path,
    backend: &str,
    events: u32,
    subscribers: u32,
    rate: u32,
    interval_ms: u64,
) -> anyhow::Result<()> {
    let op = auth::add_operator(
        ctx,
        &Actor::System("bench"),
        "bench",
        Role::ALL.into_iter().collect(),
        "bench-password",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut all = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..subscribers.max(1) {
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        urls.push(receiver(arrivals.clone()).await?);
        all.push(arrivals);
    }
    // The receivers are on loopback, which only an allow-list that names them reaches.
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.notify.interval_ms = interval_ms;
    config.webhooks.allowed_urls.clone_from(&urls);
    let ctx = &ctx.clone().with_notify(config.notify_settings());
    for url in &urls {
        webhooks::subscribe(ctx, &op, url, &["card.requested".to_owned()])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (stop, stopped) = watch::channel(false);
    let jobs = crate::notify::start(&config, ctx, &stopped).await?;

    let expected = events as usize * all.len();
    let batch = 100u32;
    let started = Instant::now();
    let mut written = 0u32;
    while written < events {
        let n = batch.min(events - written);
        request::request(ctx, &op, DEFAULT_TEMPLATE_NAME, i64::from(n))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        written += n;
        if rate > 0 {
            let due = Duration::from_secs_f64(f64::from(written) / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let writing = started.elapsed();
    let deadline = Instant::now() + Duration::from_mins(10);
    loop {
        let arrived: usize = all
            .iter()
            .map(|a| a.lock().expect("arrivals lock").latencies.len())
            .sum();
        if arrived >= expected {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {arrived} of {expected} deliveries arrived in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = all
        .iter()
        .filter_map(|a| a.lock().expect("arrivals lock").last)
        .max()
        .context("no delivery arrived")?;
    let elapsed = last - started;
    let _ = stop.send(true);
    for job in jobs {
        let _ = job.await;
    }
    let mut latencies: Vec<Duration> = all
        .iter()
        .flat_map(|a| a.lock().expect("arrivals lock").latencies.clone())
        .collect();
    latencies.sort();
    let pace = if rate == 0 {
        "as fast as requests go".to_owned()
    } else {
        format!("{rate} events/s")
    };
    println!(
        "webhooks on {backend}: {events} events ({pace}, written in {:.2} s) to {} subscribers, \
         {expected} deliveries in {:.2} s: {:.0} deliveries/s; after the event: p50 {} ms, p99 {} ms, \
         max {} ms (poll interval {interval_ms} ms)",
        writing.as_secs_f64(),
        all.len(),
        elapsed.as_secs_f64(),
        expected as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_millis(),
        percentile(&latencies, 99.0).as_millis(),
        latencies.last().copied().unwrap_or_default().as_millis(),
    );
    Ok(())
}
