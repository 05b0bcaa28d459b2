//! Building and running the server: store, migrations, defaults, HTTP and background jobs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cardwright_cardsdk::encoder::Pkcs11Encoder;
use cardwright_cardsdk::{IppPrinter, Printer, SimulatedPrinter, SpoolPrinter};
use cardwright_pki::builtin_profiles;
use cardwright_processes::keys::KeySet;
use cardwright_processes::services::pki::Pki;
use cardwright_processes::temp_cards::production::{self, Station};
use cardwright_processes::{audit, scripts, temp_cards, templates, Clock, Context};
use cardwright_storage::audit::AuditKey;
use cardwright_storage::{redact_url, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, EncoderConfig, PrinterConfig};

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.effective_database_url();
    if url.starts_with("sqlite:") {
        create_private_dir(&config.data_dir)
            .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
        if config.database_url.is_empty() {
            create_private_file(&config.data_dir.join("cardwright.db"))?;
        }
    }
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&url)))?;
    let applied = store.migrate().await.context("migrating the database")?;
    for name in applied {
        tracing::info!(migration = %name, "applied migration");
    }
    Ok(store)
}

/// Creates a folder (and its missing parents) readable by the server's user only: the data
/// folder holds the database, the CA key and spooled PIN letters.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the embedded database's file with mode 0600 before SQLite opens it, so it is never
/// readable by other users (it holds password hashes, persons and sealed PUKs); SQLite gives its
/// WAL and shared-memory files the same mode. An existing file is left as it is.
fn create_private_file(path: &std::path::Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating database file {}", path.display())),
    }
}

/// The certificate authority with the installation's keys, its profiles, and the encoder that
/// writes holder certificates at the desk.
fn pki(config: &Config, set: KeySet, stations: &[Station]) -> (Pki, AuditKey) {
    let desk_encoder = stations.iter().find_map(|s| s.encoder.clone());
    set.into_pki(builtin_profiles(config.pki.certificate_days), desk_encoder)
}

/// Writes a secret to a new file readable by the server's user only.
pub(crate) fn write_secret(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(bytes)
}

/// Opens the store and builds the processes' context, checks the audit log and makes the shipped
/// template and option script when they are missing.
pub async fn context(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Context> {
    let ctx = open_context(config, clock).await?;
    // Nothing is written to a log that does not verify: the server (and every command that
    // writes) stops here, naming the problem.
    audit::require_intact(&ctx)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    templates::ensure_default(&ctx)
        .await
        .context("creating the default card template")?;
    scripts::ensure_default(&ctx)
        .await
        .context("saving the default option script")?;
    Ok(ctx)
}

/// Opens the store and builds the processes' context, and nothing more: for `audit adopt`, which
/// must run on a log that does not verify yet.
pub async fn open_context(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Context> {
    let store = open_store(config).await?;
    let set = crate::keys::open_or_create(config, &store, clock.now()).await?;
    let (pki, audit) = pki(config, set, &stations(config));
    let ctx = Context::new(store, clock, config.settings()?, audit)
        .with_pki(pki)
        .with_notify(config.notify_settings())
        .with_stations(cardwright_processes::StationSettings {
            local: config.stations.iter().map(|s| s.name.clone()).collect(),
            lease: chrono::Duration::seconds(
                i64::try_from(config.station_lease_secs).unwrap_or(60),
            ),
        });
    Ok(ctx)
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub ctx: Context,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting requests, lets background jobs finish their step, and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.ctx.store.close().await;
    }

    /// Waits until the server stops (on a shutdown signal).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the HTTP server and the expiry job. `shutdown_on_signal` ends them on Ctrl-C/SIGTERM.
pub async fn start(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown_on_signal: bool,
) -> anyhow::Result<Running> {
    let ctx = context(config, clock).await?;
    cardwright_processes::stations::check_local_names(&ctx)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, watch_rx) = watch::channel(false);
    if shutdown_on_signal {
        let tx = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
    }
    let router = crate::router::router(
        ctx.clone(),
        &crate::state::HttpOptions {
            metrics_token: config.metrics_token.clone(),
            oidc: config.oidc.clone(),
            shutdown: Some(watch_rx.clone()),
        },
    )?;
    let mut tasks = Vec::new();
    let http = serve(config, &ctx, listener, router, &watch_rx, &mut tasks)?;
    tasks.push(http);
    tasks.push(tokio::spawn(lease_job(
        ctx.clone(),
        Duration::from_secs((config.station_lease_secs / 4).max(1)),
        watch_rx.clone(),
    )));
    let stale = chrono::Duration::seconds(
        i64::try_from(config.production_stale_secs).unwrap_or(i64::MAX / 1000),
    );
    for station in stations(config) {
        let recovered = production::recover(&ctx, &station.name, stale)
            .await
            .with_context(|| format!("recovering station {}", station.name))?;
        if recovered > 0 {
            tracing::warn!(station = %station.name, items = recovered, "items left in a printer marked failed");
        }
        tasks.push(tokio::spawn(station_job(
            ctx.clone(),
            station,
            Duration::from_millis(config.station_poll_ms),
            stale,
            watch_rx.clone(),
        )));
    }
    tasks.extend(crate::notify::start(config, &ctx, &watch_rx).await?);
    if !config.directory.url.is_empty() && config.directory.sync_interval_secs > 0 {
        tasks.push(tokio::spawn(crate::directory::sync_job(
            ctx.clone(),
            config.directory.clone(),
            watch_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(checkpoint_job(
        ctx.clone(),
        Duration::from_secs(config.audit.checkpoint_secs),
        watch_rx.clone(),
    )));
    tasks.push(tokio::spawn(expiry_job(
        ctx.clone(),
        Duration::from_millis(config.expiry_interval_ms),
        watch_rx,
    )));
    tracing::info!(%addr, https = config.tls.enabled(), "Cardwright serving");
    Ok(Running {
        addr,
        ctx,
        shutdown,
        tasks,
    })
}

/// Serves the router on `listener`: plain HTTP, or HTTPS when `[tls]` is configured (with the
/// built-in certificate's renewal job pushed to `tasks`).
fn serve(
    config: &Config,
    ctx: &Context,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    watch_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let https = crate::tls::https(config, ctx)?;
    if https.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on an address other machines reach (tls.allow_plain_http): only behind a TLS proxy");
    }
    let mut rx = watch_rx.clone();
    let until_stopped = async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    Ok(match https {
        None => tokio::spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<crate::tls::Peer>(),
            )
            .with_graceful_shutdown(until_stopped)
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }),
        Some(https) => {
            let listener = crate::tls::listen(listener, https.acceptor.clone(), watch_rx.clone())?;
            if config.tls.builtin {
                tasks.push(tokio::spawn(crate::tls::renewal_job(
                    config.clone(),
                    ctx.clone(),
                    https.certificate.clone(),
                    watch_rx.clone(),
                )));
            }
            tokio::spawn(async move {
                let served = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<crate::tls::Peer>(),
                )
                .with_graceful_shutdown(until_stopped)
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            })
        }
    })
}

/// The configured stations with their printers.
pub fn stations(config: &Config) -> Vec<Station> {
    let default_spool = config.data_dir.join("spool");
    config
        .stations
        .iter()
        .map(|s| {
            let printer: Arc<dyn Printer> = match &s.printer {
                PrinterConfig::Spool { dir } => Arc::new(SpoolPrinter::new(
                    dir.clone().unwrap_or_else(|| default_spool.clone()),
                )),
                PrinterConfig::Simulated {
                    fail_every,
                    delay_ms,
                    dir,
                } => Arc::new(SimulatedPrinter::new(
                    dir.clone().unwrap_or_else(|| default_spool.clone()),
                    *fail_every,
                    Duration::from_millis(*delay_ms),
                )),
                PrinterConfig::Ipp {
                    uri,
                    job_timeout_secs,
                } => Arc::new(
                    IppPrinter::new(uri, Duration::from_secs(*job_timeout_secs))
                        .expect("printer URIs are checked when the configuration loads"),
                ),
            };
            let encoder = match &s.encoder {
                EncoderConfig::None => None,
                EncoderConfig::Pkcs11 { module } => {
                    Some(Arc::new(Pkcs11Encoder::new(module.clone())))
                }
            };
            Station {
                name: s.name.clone(),
                printer,
                encoder,
            }
        })
        .collect()
}

/// A station's loop: produce while the queue has work, look again every `poll` when idle, and
/// every `stale` recover items another station left in its printer. A shutdown lets the card in
/// hand finish first.
async fn station_job(
    ctx: Context,
    station: Station,
    poll: Duration,
    stale: chrono::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_recovery = tokio::time::Instant::now();
    let recovery_every = stale.to_std().unwrap_or(Duration::from_mins(15));
    loop {
        if *stop.borrow() {
            return;
        }
        if last_recovery.elapsed() >= recovery_every {
            last_recovery = tokio::time::Instant::now();
            if let Err(e) = production::recover(&ctx, &station.name, stale).await {
                tracing::error!(station = %station.name, error = %e, "recovering stale items failed");
            }
        }
        // One transaction records each card and claims the next; the run pauses for a
        // shutdown (the card in hand is finished first) or when recovery is due.
        let worked = production::produce_while_queued(&ctx, &station, || {
            *stop.borrow() || last_recovery.elapsed() >= recovery_every
        })
        .await;
        let idle = match worked {
            Ok(cards) => cards == 0,
            Err(e) => {
                tracing::error!(station = %station.name, error = %e, "production step failed");
                true
            }
        };
        if idle {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// Fails the items whose station elsewhere stopped calling, every `every` until shut down.
async fn lease_job(ctx: Context, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = temp_cards::remote::expire_leases(&ctx).await {
            tracing::error!(error = %e, "ending stations' leases failed");
        }
    }
}

/// Publishes the audit log's signed head at start and every `every` until shut down: in the
/// server's log, a line `cardwright audit verify --checkpoint` reads back, and as an
/// `audit.checkpoint` webhook event. A copy kept outside the database shows later whether the log
/// was cut back or rewritten past it, even by someone holding the keys.
async fn checkpoint_job(ctx: Context, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = audit::publish_checkpoint(&ctx).await {
            tracing::error!(error = %e, "publishing the audit checkpoint failed");
        }
    }
}

/// Runs TempCardsSysExpire every `every` until shut down.
async fn expiry_job(ctx: Context, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match temp_cards::expire::expire_due(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cards = n, "expired temporary cards"),
            Err(e) => tracing::error!(error = %e, "expiring cards failed"),
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
