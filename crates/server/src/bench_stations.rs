//! `cardwright bench stations`: cards dispatched to N stations elsewhere (agents over mutual TLS,
//! in this process) against N of the server's own stations, in the same run on the same
//! database. Both sides use zero-delay simulated printers and no chip, and both record a card's
//! outcome and take the next card in one transaction (an agent's report asks for its next card).
//! A claim's time is that of the step that hands out the card: the station's first request, or
//! the outcome that brings the next card.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use cardwright_cardsdk::SimulatedPrinter;
use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::{Operator, Role};
use cardwright_processes::temp_cards::production::{self, Station};
use cardwright_processes::temp_cards::{issue_multiple, request};
use cardwright_processes::{auth, stations, Actor, Context, SystemClock};

use crate::config::{Config, TlsConfig};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a list of at most millions"
    )]
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One side's result.
struct Side {
    cards: u32,
    elapsed: Duration,
    claims: Vec<Duration>,
}

impl Side {
    fn per_second(&self) -> f64 {
        f64::from(self.cards) / self.elapsed.as_secs_f64()
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: {} cards in {:.2} s = {:.0} cards/s; claim p50 {:.1} ms, p99 {:.1} ms",
            self.cards,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            percentile(&self.claims, 50.0).as_secs_f64() * 1000.0,
            percentile(&self.claims, 99.0).as_secs_f64() * 1000.0,
        )
    }
}

/// Requests `cards` cards in orders of at most 1000 and presses Next on each.
async fn queue(
    ctx: &Context,
    op: &Operator,
    cards: u32,
) -> anyhow::Result<Vec<cardwright_domain::BatchOrderId>> {
    let mut orders = Vec::new();
    let mut remaining = cards;
    while remaining > 0 {
        let n = remaining.min(1000);
        remaining -= n;
        let made = request::request(ctx, op, DEFAULT_TEMPLATE_NAME, i64::from(n))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let ids: Vec<_> = made.iter().map(|c| c.card.id).collect();
        let order = issue_multiple::create(ctx, op, "TempCardsBoProcIssueMultiple", &ids)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        issue_multiple::next(ctx, op, order.record.order.id, None)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        orders.push(order.record.order.id);
    }
    Ok(orders)
}

fn simulated(name: String) -> Station {
    Station {
        name,
        printer: Arc::new(SimulatedPrinter::discarding(0, Duration::ZERO)),
        encoder: None,
    }
}

/// The server's own stations, as `serve` runs them: claim, produce, record the outcome and claim
/// the next card in one transaction, until the queue is empty.
async fn in_process(ctx: &Context, op: &Operator, count: u32, cards: u32) -> anyhow::Result<Side> {
    queue(ctx, op, cards).await?;
    let claims = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..count)
        .map(|i| {
            let (ctx, claims) = (ctx.clone(), claims.clone());
            let station = simulated(format!("local-{i}"));
            tokio::spawn(async move {
                let mut made = 0u32;
                let asked = Instant::now();
                let mut next = production::claim(&ctx, &station.name).await?;
                let mut took = asked.elapsed();
                while let Some(attempt) = next {
                    claims.lock().expect("claims lock").push(took);
                    let outcome = production::run_job(&station, &attempt).await;
                    made += 1;
                    let asked = Instant::now();
                    next = production::finish(&ctx, &attempt, &outcome, Some(&station.name))
                        .await?
                        .1;
                    took = asked.elapsed();
                }
                Ok::<u32, cardwright_processes::ProcessError>(made)
            })
        })
        .collect();
    let mut made = 0;
    for worker in workers {
        made += worker.await?.map_err(|e| anyhow!("{e}"))?;
    }
    let elapsed = started.elapsed();
    if made != cards {
        bail!("the server's stations produced {made} cards, expected {cards}");
    }
    let mut claims = std::mem::take(&mut *claims.lock().expect("claims lock"));
    claims.sort();
    Ok(Side {
        cards,
        elapsed,
        claims,
    })
}

/// Registers and enrols `count` stations; returns their links.
async fn enrol(
    ctx: &Context,
    op: &Operator,
    count: u32,
    server: &str,
) -> anyhow::Result<Vec<(String, crate::agent::Link)>> {
    let mut links = Vec::new();
    for i in 0..count {
        let name = format!("desk-{i}");
        let code = stations::register(ctx, op, &name, "bench")
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let (key, request) = cardwright_pki::tls::key_and_request("bench")?;
        let enrolled = stations::enroll(ctx, &code.code, &request)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let http = crate::agent::mtls_client(
            enrolled.certificate_pem.as_bytes(),
            key.as_bytes(),
            crate::agent::roots(enrolled.ca_pem.as_bytes())?,
        )?;
        links.push((
            name,
            crate::agent::Link {
                http,
                server: server.to_owned(),
            },
        ));
    }
    Ok(links)
}

/// Agents over mutual TLS, each with a connection of its own, until the queue is empty.
async fn remote(
    ctx: &Context,
    op: &Operator,
    count: u32,
    cards: u32,
    server: &str,
) -> anyhow::Result<Side> {
    let links = enrol(ctx, op, count, server).await?;
    let orders = queue(ctx, op, cards).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let claims = Arc::new(Mutex::new(Vec::new()));
    let hello = serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "printer": "simulated", "encoder": "none", "wait_secs": 1});
    let started = Instant::now();
    let agents: Vec<_> = links
        .into_iter()
        .map(|(name, mut link)| {
            let (stop, claims, hello) = (stop.clone(), claims.clone(), hello.clone());
            let station = simulated(name);
            tokio::spawn(async move {
                crate::agent::work(&mut link, &station, &hello, &stop, Some(&claims), None).await;
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_mins(30);
    let elapsed = loop {
        let mut produced = 0;
        for order in &orders {
            produced += issue_multiple::get(ctx, *order)
                .await
                .map_err(|e| anyhow!("{e}"))?
                .record
                .counts
                .produced;
        }
        if produced >= u64::from(cards) {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {produced} of {cards} cards were produced in 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for agent in agents {
        let _ = agent.await;
    }
    let mut claims = std::mem::take(&mut *claims.lock().expect("claims lock"));
    claims.sort();
    Ok(Side {
        cards,
        elapsed,
        claims,
    })
}

/// Runs the benchmark on a scratch database (`url`) with a server of its own on loopback.
pub(crate) async fn run(
    url: &str,
    data_dir: &std::path::Path,
    backend: &str,
    agents: u32,
    cards: u32,
) -> anyhow::Result<()> {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_owned(),
        database_url: url.to_owned(),
        stations: Vec::new(),
        station_lease_secs: 300,
        tls: TlsConfig {
            builtin: true,
            names: vec!["127.0.0.1".into()],
            ..TlsConfig::default()
        },
        ..Config::default()
    };
    let running = crate::app::start(&config, Arc::new(SystemClock), false)
        .await
        .context("starting the server")?;
    let ctx = running.ctx.clone();
    let op = auth::add_operator(
        &ctx,
        &Actor::System("bench"),
        "bench",
        Role::ALL.into_iter().collect(),
        "bench-password",
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    if backend == "PostgreSQL" {
        ctx.store.analyze().await?;
    }
    let count = agents.max(1);
    let local = in_process(&ctx, &op, count, cards).await?;
    let server = format!("https://{}", running.addr);
    let far = remote(&ctx, &op, count, cards, &server).await?;
    running.stop().await;
    println!("stations on {backend}, {count} at once, zero-delay simulated printers:");
    println!("  {}", far.line("agents over mutual TLS"));
    println!("  {}", local.line("the server's own stations"));
    println!(
        "  agents reach {:.0} % of the server's own stations' throughput",
        far.per_second() / local.per_second() * 100.0
    );
    Ok(())
}
