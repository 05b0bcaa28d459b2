//! `cardwright bench`: throughput of a whole batch order, of audit appends and the speed of the
//! card search, on SQLite or PostgreSQL, with numbers a reader can compare against the targets.

use cardwright_domain::temp_cards::states;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cardwright_cardsdk::SimulatedPrinter;
use cardwright_domain::temp_cards::{Card, Serial};
use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::{CardId, Role, SerialPrefix};
use cardwright_processes::keys::{self, Custody, Kek, NewSet};
use cardwright_processes::temp_cards::cards::{search, CardQuery};
use cardwright_processes::temp_cards::production::{self, Station};
use cardwright_processes::temp_cards::{issue_multiple, request};
use cardwright_processes::{
    audit, auth, scripts, templates, Actor, Context, OsEntropy, Settings, SystemClock,
};
use cardwright_storage::audit::NewEvent;
use cardwright_storage::{cards, Store};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Request N cards, order them, produce them on zero-delay simulated stations and complete
    /// the orders; reports cards per second through the whole batch order.
    Order {
        /// Cards to push through (in orders of at most 1000).
        #[arg(long, default_value_t = 5000)]
        cards: u32,
        /// Production stations working the queue in parallel.
        #[arg(long, default_value_t = 1)]
        stations: u32,
    },
    /// Render the shipped temporary card on one core: print-ready PDFs (front and back) and
    /// PNG previews (front, 640 px) per second.
    Render {
        /// Cards rendered for each measurement.
        #[arg(long, default_value_t = 200)]
        cards: u32,
    },
    /// Time the options of one process run: the option script's version check and its
    /// evaluation (compiled once and cached), against the evaluation alone.
    Options {
        /// Process runs timed.
        #[arg(long, default_value_t = 10_000)]
        runs: u32,
    },
    /// Encode N cards through a PKCS#11 module (SoftHSM2 by default) as production does (token,
    /// PUK, PIN, keys, certificates from the built-in CA), beside the raw PKCS#11 work the same
    /// cards need, measured in the same run. Uses a fresh token folder unless SOFTHSM2_CONF is set.
    Encode {
        #[arg(long, default_value_t = 20)]
        cards: u32,
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: std::path::PathBuf,
    },
    /// Issue N certificates with the CA's key in the database key store and on a PKCS#11 token
    /// (a fresh SoftHSM2 token by default), in the same run; reports certificates per second.
    Pki {
        #[arg(long, default_value_t = 2000)]
        certificates: u32,
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: std::path::PathBuf,
    },
    /// Append N audit events, each in its own transaction as every process does, and report
    /// events per second; then time checking the whole log as `audit verify` does.
    Audit {
        /// Events appended.
        #[arg(long, default_value_t = 10_000)]
        events: u32,
    },
    /// Write N card events with subscriptions on loopback receivers and let the server's
    /// notification jobs deliver them; reports deliveries per second and how long after its
    /// event each delivery arrived (p50, p99).
    Webhooks {
        /// Events written (card.requested, in requests of 100 cards).
        #[arg(long, default_value_t = 10_000)]
        events: u32,
        /// Subscriptions, each with a receiver of its own.
        #[arg(long, default_value_t = 3)]
        subscribers: u32,
        /// Events written per second; 0: as fast as requests go.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// The notification jobs' poll interval (`notify.interval_ms`).
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
    /// Import a CSV file of N persons as `persons import` does: a dry run, the first import
    /// (every row created), then the file again with a tenth of the rows changed; reports rows
    /// per second for each.
    Import {
        /// Rows in the file.
        #[arg(long, default_value_t = 10_000)]
        rows: u32,
    },
    /// Produce N cards on A stations elsewhere (agents over mutual TLS with a server of the
    /// benchmark's own on loopback) and on A of the server's own stations, in the same run:
    /// cards per second and how long each request for a card took (p50, p99).
    Stations {
        /// Stations working at once, on each side.
        #[arg(long, default_value_t = 50)]
        agents: u32,
        /// Cards produced on each side.
        #[arg(long, default_value_t = 2000)]
        cards: u32,
    },
    /// Store N cards, then time the first page of "cards in state requested".
    List {
        /// Cards stored before the search is timed.
        #[arg(long, default_value_t = 1_000_000)]
        cards: u32,
        /// Times the page is read.
        #[arg(long, default_value_t = 200)]
        rounds: u32,
    },
}

/// A scratch database: a fresh SQLite file, or a fresh schema on the given PostgreSQL server.
struct Scratch {
    url: String,
    dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
}

async fn scratch(database_url: Option<&str>) -> anyhow::Result<Scratch> {
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    match database_url {
        None => Ok(Scratch {
            url: Store::sqlite_url(&dir.path().join("bench.db")),
            dir,
            pg_schema: None,
        }),
        Some(url) if url.starts_with("postgres") => {
            let schema = format!("bench_{}", std::process::id());
            let admin = Store::connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            admin
                .execute_raw(&format!("CREATE SCHEMA {schema}"))
                .await?;
            admin.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok(Scratch {
                url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
                dir,
                pg_schema: Some((url.to_owned(), schema)),
            })
        }
        Some(other) => {
            bail!("bench runs on a fresh SQLite file or a postgres:// server, not {other}")
        }
    }
}

impl Scratch {
    async fn drop_schema(&self) -> anyhow::Result<()> {
        if let Some((url, schema)) = &self.pg_schema {
            let admin = Store::connect(url).await?;
            admin
                .execute_raw(&format!("DROP SCHEMA {schema} CASCADE"))
                .await?;
            admin.close().await;
        }
        Ok(())
    }
}

pub(crate) async fn context(url: &str) -> anyhow::Result<Context> {
    context_with(url, None).await
}

/// A scratch context whose keys are in the database key store under a KEK of its own (nothing
/// outlives the run), with `desk_encoder` writing holder certificates.
pub(crate) async fn context_with(
    url: &str,
    desk_encoder: Option<Arc<cardwright_cardsdk::encoder::Pkcs11Encoder>>,
) -> anyhow::Result<Context> {
    context_in(
        url,
        &Custody::Database(Kek::generate(&OsEntropy)),
        desk_encoder,
    )
    .await
}

/// A scratch context on `url` whose new keys are kept in `custody`.
pub(crate) async fn context_in(
    url: &str,
    custody: &Custody,
    desk_encoder: Option<Arc<cardwright_cardsdk::encoder::Pkcs11Encoder>>,
) -> anyhow::Result<Context> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let now = chrono::Utc::now();
    let new = NewSet {
        ca_name: "Bench CA",
        ca: None,
        master_key: None,
        recorded_by: None,
    };
    keys::create(&store, custody, &new, now, &OsEntropy).await?;
    let set = {
        let mut conn = store.reader().await?;
        keys::open(&mut conn, custody, now).await?
    };
    let (pki, audit) = set.into_pki(cardwright_pki::builtin_profiles(365), desk_encoder);
    let ctx = Context::new(store, Arc::new(SystemClock), Settings::default(), audit).with_pki(pki);
    templates::ensure_default(&ctx).await?;
    scripts::ensure_default(&ctx).await?;
    Ok(ctx)
}

/// Runs a benchmark and prints its report.
pub async fn run(command: &BenchCommand, database_url: Option<&str>) -> anyhow::Result<()> {
    if let BenchCommand::Render { cards } = command {
        return render(*cards);
    }
    if let BenchCommand::Encode { cards, module } = command {
        return crate::bench_encode::run(*cards, module).await;
    }
    if let BenchCommand::Pki {
        certificates,
        module,
    } = command
    {
        return crate::bench_pki::run(*certificates, module).await;
    }
    let scratch = scratch(database_url).await?;
    let backend = if scratch.pg_schema.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    if let BenchCommand::Stations { agents, cards } = command {
        let data = scratch.dir.path().join("data");
        let outcome =
            crate::bench_stations::run(&scratch.url, &data, backend, *agents, *cards).await;
        scratch.drop_schema().await?;
        return outcome;
    }
    let ctx = context(&scratch.url).await?;
    let outcome = match command {
        BenchCommand::Order { cards, stations } => order(&ctx, backend, *cards, *stations).await,
        BenchCommand::List { cards, rounds } => list(&ctx, backend, *cards, *rounds).await,
        BenchCommand::Render { .. }
        | BenchCommand::Encode { .. }
        | BenchCommand::Pki { .. }
        | BenchCommand::Stations { .. } => {
            unreachable!("run without this context")
        }
        BenchCommand::Options { runs } => options(&ctx, backend, *runs).await,
        BenchCommand::Import { rows } => import(&ctx, backend, *rows).await,
        BenchCommand::Audit { events } => audit_log(&ctx, backend, *events).await,
        BenchCommand::Webhooks {
            events,
            subscribers,
            rate,
            interval_ms,
        } => {
            crate::bench_webhooks::run(
                &ctx,
                scratch.dir.path(),
                backend,
                *events,
                *subscribers,
                *rate,
                *interval_ms,
            )
            .await
        }
    };
    ctx.store.close().await;
    scratch.drop_schema().await?;
    outcome
}

async fn order(ctx: &Context, backend: &str, total: u32, station_count: u32) -> anyhow::Result<()> {
    let roles = Role::ALL.into_iter().collect();
    let op = auth::add_operator(
        ctx,
        &Actor::System("bench"),
        "bench",
        roles,
        "bench-password",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stations: Vec<Station> = (0..station_count.max(1))
        .map(|i| Station {
            name: format!("bench-{i}"),
            // The order's machinery is measured here; rendering has its own benchmark.
            printer: Arc::new(SimulatedPrinter::discarding(0, Duration::ZERO)),
            encoder: None,
        })
        .collect();
    let started = Instant::now();
    let mut remaining = total;
    let mut produced = 0u64;
    // Time spent in request, order + next, production, complete.
    let mut phases = [Duration::ZERO; 4];
    let mut analyzed = false;
    while remaining > 0 {
        let n = remaining.min(1000);
        remaining -= n;
        let phase = Instant::now();
        let cards = request::request(ctx, &op, DEFAULT_TEMPLATE_NAME, i64::from(n))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        phases[0] += phase.elapsed();
        let phase = Instant::now();
        let ids: Vec<_> = cards.iter().map(|c| c.card.id).collect();
        let order = issue_multiple::create(ctx, &op, "TempCardsBoProcIssueMultiple", &ids)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = order.record.order.id;
        issue_multiple::next(ctx, &op, id, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !analyzed && backend == "PostgreSQL" {
            // A fresh scratch database has no planner statistics; a live one has them from
            // autovacuum, which a run this short would not wait for.
            ctx.store.analyze().await?;
            analyzed = true;
        }
        phases[1] += phase.elapsed();
        let phase = Instant::now();
        let workers = stations.iter().cloned().map(|station| {
            let ctx = ctx.clone();
            tokio::spawn(
                async move { production::produce_while_queued(&ctx, &station, || false).await },
            )
        });
        for worker in workers.collect::<Vec<_>>() {
            produced += worker.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        phases[2] += phase.elapsed();
        let phase = Instant::now();
        issue_multiple::complete(ctx, &op, id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        phases[3] += phase.elapsed();
    }
    let elapsed = started.elapsed();
    if produced != u64::from(total) {
        bail!("produced {produced} cards, expected {total}");
    }
    println!(
        "batch order on {backend}: {total} cards requested, ordered, produced on {} zero-delay station(s) and completed in {:.2} s = {:.0} cards/s",
        stations.len(),
        elapsed.as_secs_f64(),
        f64::from(total) / elapsed.as_secs_f64()
    );
    let share = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    println!(
        "  request {:.0} %, order and next {:.0} %, production {:.0} %, complete {:.0} %",
        share(phases[0]),
        share(phases[1]),
        share(phases[2]),
        share(phases[3])
    );
    Ok(())
}

async fn list(ctx: &Context, backend: &str, total: u32, rounds: u32) -> anyhow::Result<()> {
    let template = templates::get(ctx, DEFAULT_TEMPLATE_NAME)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let prefix = SerialPrefix::parse("BENCH-").map_err(|e| anyhow::anyhow!("{e}"))?;
    let seeding = Instant::now();
    let states = [
        states::UNASSIGNED,
        states::ASSIGNED,
        states::LOCKED,
        states::REQUESTED,
        states::ABORTED,
    ];
    let mut number = 0u64;
    while number < u64::from(total) {
        let batch = (u64::from(total) - number).min(20_000);
        let now = ctx.now();
        let cards: Vec<Card> = (0..batch)
            .map(|i| {
                let n = number + i;
                let (millis, random) = ctx.id_parts();
                Card {
                    id: CardId::new(millis, random),
                    serial: Serial::compose(&prefix, n),
                    template: template.id,
                    state: states[usize::try_from(n % 5).unwrap_or(0)],
                    holder: None,
                    valid_until: None,
                    encoded: false,
                    batch_order: None,
                    created_at: now,
                    updated_at: now,
                }
            })
            .collect();
        let mut tx = ctx.store.begin().await?;
        cards::insert_many(&mut tx, &cards).await?;
        Store::commit(tx).await?;
        number += batch;
    }
    ctx.store.analyze().await?;
    let seeded = seeding.elapsed();
    let query = CardQuery {
        state: Some("requested".into()),
        ..CardQuery::default()
    };
    let mut times = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let (page, _) = search(ctx, &query)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed());
        if page.len() != 50 {
            bail!("expected a full first page, got {} cards", page.len());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "first page of requested cards on {backend} with {total} cards stored ({} requested; seeded in {:.1} s): \
         median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {} reads",
        total / 5,
        seeded.as_secs_f64(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        times.len()
    );
    Ok(())
}

/// Appends events like a card process's (an assignment with its details), one transaction each,
/// as the processes do: the head's lock, the event and the head's new hash and signature.
/// A CSV file of `rows` persons; `changed` gives every tenth a new family name.
fn persons_csv(rows: u32, changed: bool) -> String {
    let mut csv = String::from("employee_number,given_name,family_name,email\n");
    for n in 0..rows {
        let family = if changed && n % 10 == 0 {
            format!("Renamed{n}")
        } else {
            format!("Family{n}")
        };
        let _ = writeln!(csv, "E{n:07},Given{n},{family},p{n}@example.com");
    }
    csv
}

async fn import(ctx: &Context, backend: &str, rows: u32) -> anyhow::Result<()> {
    use cardwright_processes::persons_import::{self, ImportOptions};
    let rows = rows.max(1);
    let operator = cardwright_domain::Operator {
        id: cardwright_domain::OperatorId::new(0, [0; 10]),
        username: cardwright_domain::Username::parse("bench").expect("a valid username"),
        roles: [Role::RegistrationOfficer].into_iter().collect(),
    };
    let first = persons_csv(rows, false);
    let second = persons_csv(rows, true);
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    for (label, text, options) in [
        ("dry run", &first, dry),
        ("first import", &first, ImportOptions::default()),
        (
            "re-import, a tenth changed",
            &second,
            ImportOptions::default(),
        ),
    ] {
        let started = Instant::now();
        let report = persons_import::import(ctx, &operator, text, options)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        if !report.bad_rows.is_empty() {
            bail!(
                "the benchmark's own file has bad rows: {:?}",
                report.bad_rows
            );
        }
        println!(
            "CSV import on {backend}, {label}: {rows} rows ({} KiB) in {:.2} s = {:.0} rows/s \
             ({} created, {} updated, {} unchanged)",
            text.len() / 1024,
            took.as_secs_f64(),
            f64::from(rows) / took.as_secs_f64(),
            report.created.len(),
            report.updated.len(),
            report.unchanged
        );
    }
    Ok(())
}

async fn audit_log(ctx: &Context, backend: &str, total: u32) -> anyhow::Result<()> {
    let total = total.max(1);
    let started = Instant::now();
    for n in 0..total {
        let (millis, random) = ctx.id_parts();
        let event = NewEvent {
            at: ctx.now(),
            operator: "bench".into(),
            process: "TempCardsProcAssign".into(),
            card: Some(CardId::new(millis, random).to_string()),
            order: None,
            old_state: Some("unassigned".into()),
            new_state: Some("assigned".into()),
            details: serde_json::json!({"person": format!("P{n:06}"), "validity_days": 14}),
        };
        let mut tx = ctx.store.begin().await?;
        cardwright_storage::audit::append(&mut tx, &ctx.audit_key, event).await?;
        Store::commit(tx).await?;
    }
    let appended = started.elapsed();
    let started = Instant::now();
    let verification = audit::verify(ctx)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let verified = started.elapsed();
    if let Some((seq, reason)) = verification.first_bad {
        bail!("the benchmark's own log does not verify at event {seq}: {reason}");
    }
    println!(
        "audit events on {backend}: {total} appended, each in its own transaction, in {:.2} s = {:.0} events/s; \
         verifying all {} took {:.2} s = {:.0} events/s",
        appended.as_secs_f64(),
        f64::from(total) / appended.as_secs_f64(),
        verification.events,
        verified.as_secs_f64(),
        f64::from(u32::try_from(verification.events).unwrap_or(u32::MAX)) / verified.as_secs_f64()
    );
    Ok(())
}

/// Renders on the calling thread only, so the numbers are per core.
fn render(cards: u32) -> anyhow::Result<()> {
    use cardwright_cardsdk::layout::{TEMPORARY_BACK, TEMPORARY_FRONT};
    use cardwright_cardsdk::{CardArtwork, CardFace, Lane, Side};
    let cards = cards.max(1);
    let face = |n: u32| CardFace {
        serial: format!("TMP-{n:06}"),
        template: "Temporary card".into(),
        issue_date: "2026-11-25".into(),
        ..CardFace::default()
    };
    // Warm up: fonts are loaded once per process.
    CardArtwork::new(TEMPORARY_FRONT, TEMPORARY_BACK, face(0)).pdf()?;
    let started = Instant::now();
    let mut pdf_bytes = 0;
    for n in 0..cards {
        pdf_bytes += CardArtwork::new(TEMPORARY_FRONT, TEMPORARY_BACK, face(n))
            .pdf()?
            .len();
    }
    let pdf_time = started.elapsed();
    let started = Instant::now();
    for n in 0..cards {
        CardArtwork::new(TEMPORARY_FRONT, TEMPORARY_BACK, face(n)).png_in(
            Lane::Preview,
            Side::Front,
            640,
        )?;
    }
    let png_time = started.elapsed();
    println!(
        "rendering on one core: {:.0} PDFs/s (front and back, {} KiB each), {:.0} PNG previews/s (640 px) over {cards} cards",
        f64::from(cards) / pdf_time.as_secs_f64(),
        pdf_bytes / cards as usize / 1024,
        f64::from(cards) / png_time.as_secs_f64()
    );
    Ok(())
}

async fn options(ctx: &Context, backend: &str, runs: u32) -> anyhow::Result<()> {
    use cardwright_scripts::{ScriptContext, DEFAULT_SCRIPT};
    let runs = runs.max(1);
    let mut conn = ctx.store.reader().await?;
    // Warm the cache once, as the first process run after a start or a save does.
    ctx.scripts
        .for_run(
            &mut conn,
            DEFAULT_TEMPLATE_NAME,
            "TempCardsProcAssign",
            "bench",
        )
        .await?;
    let started = Instant::now();
    for _ in 0..runs {
        ctx.scripts
            .for_run(
                &mut conn,
                DEFAULT_TEMPLATE_NAME,
                "TempCardsProcAssign",
                "bench",
            )
            .await?;
    }
    let per_run = started.elapsed() / runs;
    let engine = &ctx.scripts.engine;
    let started = Instant::now();
    let compiled = engine.compile(DEFAULT_SCRIPT)?;
    let compile = started.elapsed();
    let context = ScriptContext {
        template: DEFAULT_TEMPLATE_NAME,
        process: "TempCardsProcAssign",
        operator: "bench",
    };
    let started = Instant::now();
    for _ in 0..runs {
        engine.evaluate(&compiled, &context)?;
    }
    let per_eval = started.elapsed() / runs;
    println!(
        "options per process run on {backend}: {:.1} µs with the version check ({:.1} µs evaluating the cached script; compiling it once takes {:.0} µs) over {runs} runs",
        per_run.as_secs_f64() * 1e6,
        per_eval.as_secs_f64() * 1e6,
        compile.as_secs_f64() * 1e6
    );
    Ok(())
}
