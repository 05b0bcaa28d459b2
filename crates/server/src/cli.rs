//! The `cardwright` command line.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use cardwright_storage::{redact_url, Store};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// Cardwright: request, produce, assign, withdraw, extend and lock temporary ID cards.
#[derive(Debug, Parser)]
#[command(name = "cardwright", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration and the data are; these override the file and the environment.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file. Every key can also be set as CARDWRIGHT_<KEY>
    /// (e.g. CARDWRIGHT_LISTEN, CARDWRIGHT_LOGIN_MAX_FAILURES).
    #[arg(long, global = true, value_name = "FILE", env = "CARDWRIGHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the SQLite database and other local files [default: data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: postgres://USER@HOST/DB or sqlite://PATH [default: SQLite in the data folder].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (REST API, health and metrics) and the expiry job.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Add demo data (persons, requested cards and an operator) and print how to log in.
        #[arg(long)]
        demo: bool,
    },
    /// Manage operator accounts.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Persons from the organisation: import a CSV file.
    #[command(subcommand)]
    Persons(PersonsCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The installation's keys: the certificate authority, the PUK master key, the audit key.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Apply pending database migrations, move the keys of a data folder from before key stores
    /// into the key store (once), and exit.
    Migrate,
    /// Print the REST API's OpenAPI document (JSON).
    Openapi,
    /// A station at an operator's desk: enrol it with the server, then produce cards there
    /// with the desk's printer and chip reader (over mutual TLS).
    #[command(subcommand)]
    Station(crate::agent::StationCommand),
    /// Measure throughput on a scratch database (a temporary SQLite file, or a temporary schema
    /// on the server given by --database-url); nothing existing is touched.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum PersonsCommand {
    /// Import persons from a CSV file with a header row (employee_number, given_name,
    /// family_name, optional email and state), matched by employee number. A bad row stops the
    /// import unless --skip-bad-rows; nothing is half-applied.
    ///
    /// Example: cardwright persons import staff.csv --dry-run
    Import {
        file: PathBuf,
        /// Only report what would happen.
        #[arg(long)]
        dry_run: bool,
        /// Import the good rows even when some are bad.
        #[arg(long)]
        skip_bad_rows: bool,
        /// Deactivate active persons the file does not name.
        #[arg(long)]
        deactivate_missing: bool,
    },
    /// Synchronise persons with the LDAP directory of `[directory]` once.
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add an operator. The password is read from standard input (first line).
    ///
    /// Example: echo 'long secret' | cardwright operator add alice --role registration-officer --password-stdin
    Add {
        /// Login name.
        username: String,
        /// production-admin, registration-officer, policy-admin or service-admin; repeat for several.
        #[arg(long = "role", value_name = "ROLE", required = true, num_args = 1..)]
        roles: Vec<String>,
        /// Read the password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List operators: roles, enabled or disabled, one-time password, lockout.
    List,
    /// Set an operator's roles (replacing the ones it had).
    ///
    /// Example: cardwright operator roles alice --role policy-admin --role service-admin
    Roles {
        username: String,
        #[arg(long = "role", value_name = "ROLE", required = true, num_args = 1..)]
        roles: Vec<String>,
    },
    /// Disable an operator: it cannot log in and its sessions end.
    Disable { username: String },
    /// Enable a disabled operator again.
    Enable { username: String },
    /// Give an operator a one-time password (printed once) to change at the next login; its
    /// sessions end and any lockout is lifted.
    ResetPassword { username: String },
    /// Lift a lockout after failed logins.
    Unlock { username: String },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the installation's keys (before the first server starts): a new CA, or an
    /// existing one imported from PEM files or a PKCS#12 file. Refused once keys exist.
    ///
    /// Example: cardwright pki init --import-cert ca.pem --import-key ca-key.pem
    Init {
        /// The new CA's name [default: pki.ca_name].
        #[arg(long, value_name = "NAME", conflicts_with_all = ["import_cert", "import_pkcs12"])]
        ca_name: Option<String>,
        /// An existing CA certificate (PEM); with --import-key.
        #[arg(long, value_name = "FILE", requires = "import_key")]
        import_cert: Option<PathBuf>,
        /// The existing CA's private key (PEM: PKCS#8, SEC1 or PKCS#1).
        #[arg(long, value_name = "FILE", requires = "import_cert")]
        import_key: Option<PathBuf>,
        /// An existing CA as a PKCS#12 file; its password is read from standard input.
        #[arg(long, value_name = "FILE", conflicts_with = "import_cert")]
        import_pkcs12: Option<PathBuf>,
    },
    /// Print the key store, the CA certificates (fingerprint, validity) and the master keys.
    Show,
    /// Make a new PUK master key and re-seal every PUK under it, one transaction per batch. A
    /// rotation that was interrupted is resumed instead of starting another.
    RotateMasterKey {
        /// Cards per transaction.
        #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch_size: i64,
        /// Stop after this many batches (run again to go on), to spread the work.
        #[arg(long, value_name = "N")]
        batches: Option<u64>,
    },
    /// Give the CA a new certificate for the same key, or with --new-key a new key; the old
    /// certificate stays published until it expires, so what it issued still verifies. Servers
    /// take the new CA at their next start.
    RenewCa {
        #[arg(long)]
        new_key: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log: every event's link, hash and signature, and the signed head. Prints
    /// the last signed checkpoint, and exits non-zero naming the first bad event and the last
    /// signed checkpoint that still holds.
    ///
    /// Example: cardwright audit verify --checkpoint checkpoints.log
    Verify {
        /// Also check the checkpoints a server published (its log lines "audit checkpoint: ...",
        /// or audit.checkpoint webhook bodies, one per line): the log must still hold each
        /// checkpoint's event with its hash.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Take over a log written by a Cardwright from before the log was signed: check that its
    /// chain holds, sign every event and the head, and record the adoption in the log. Refused
    /// for a log that was written with signing (its missing signatures were removed).
    Adopt,
}

impl Cli {
    /// The configuration in force: file, then environment, then flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::check_environment(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
        let mut config = Config::load(self.global.config.as_deref(), |k| std::env::var(k).ok())?;
        if let Some(dir) = &self.global.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(url) = &self.global.database_url {
            config.database_url.clone_from(url);
        }
        if let Command::Serve {
            listen: Some(listen),
            ..
        } = &self.command
        {
            config.listen.clone_from(listen);
        }
        config.check()?;
        Ok(config)
    }
}

/// Runs a command other than `serve`.
pub async fn run_admin(cli: &Cli, config: &Config) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { .. } => unreachable!("serve is run by main"),
        Command::Openapi => unreachable!("openapi needs no configuration and is run by main"),
        Command::Station(_) => unreachable!("a station has no server configuration; run by main"),
        Command::Bench(bench) => {
            crate::bench::run(bench, cli.global.database_url.as_deref()).await?;
        }
        Command::Migrate => {
            let store = crate::app::open_store(config).await?;
            crate::keys::open_or_create(config, &store, chrono::Utc::now()).await?;
            println!("database is up to date");
            store.close().await;
        }
        Command::Pki(command) => {
            let store = crate::app::open_store(config).await?;
            let result = crate::pki_cli::run(command, config, &store).await;
            store.close().await;
            result?;
        }
        Command::Operator(command) => crate::operator_cli::run(command, config).await?,
        Command::Persons(PersonsCommand::Import {
            file,
            dry_run,
            skip_bad_rows,
            deactivate_missing,
        }) => {
            let options = cardwright_processes::persons_import::ImportOptions {
                dry_run: *dry_run,
                skip_bad_rows: *skip_bad_rows,
                deactivate_missing: *deactivate_missing,
            };
            crate::operator_cli::import_persons(file, options, config).await?;
        }
        Command::Persons(PersonsCommand::Sync) => {
            if config.directory.url.is_empty() {
                bail!("no directory is configured: set directory.url, base_dn and bind_dn");
            }
            let ctx = crate::app::context(
                config,
                std::sync::Arc::new(cardwright_processes::SystemClock),
            )
            .await?;
            let result = crate::directory::sync(&ctx, &config.directory).await;
            ctx.store.close().await;
            let report = result?;
            for bad in &report.bad_rows {
                eprintln!("{}", bad.message);
            }
            println!(
                "{} created, {} updated, {} deactivated, {} unchanged, {} photos set, {} photos \
                 removed, {} entries not read",
                report.created.len(),
                report.updated.len(),
                report.deactivated.len(),
                report.unchanged,
                report.photos_set.len(),
                report.photos_removed.len(),
                report.bad_rows.len()
            );
            for card in &report.cards {
                println!("card {}: {}", card.serial, card.outcome);
            }
        }
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            verify_audit(config, checkpoint.as_deref()).await?;
        }
        Command::Audit(AuditCommand::Adopt) => {
            let ctx = crate::app::open_context(
                config,
                std::sync::Arc::new(cardwright_processes::SystemClock),
            )
            .await?;
            let adopted = cardwright_processes::audit::adopt(
                &ctx,
                &cardwright_processes::Actor::System("cli"),
            )
            .await;
            ctx.store.close().await;
            let events = adopted.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "audit log adopted: {events} events written before signing are signed now; the \
                 adoption is the log's newest event"
            );
        }
    }
    Ok(())
}

/// `cardwright audit verify`: the chain, and the published checkpoints in `checkpoints`.
async fn verify_audit(
    config: &Config,
    checkpoints: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    // The checkpoints are read first, so a file that cannot be read stops the command before the
    // database is opened.
    let checkpoints = match checkpoints {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading checkpoints from {}", path.display()))?;
            let found = cardwright_processes::audit::parse_checkpoints(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if found.is_empty() {
                bail!(
                    "{} holds no checkpoint: give the server's log lines \"audit checkpoint: ...\" \
                     or audit.checkpoint webhook bodies",
                    path.display()
                );
            }
            Some((path, found))
        }
        None => None,
    };
    // A verification only reads: the database is opened read-only, no migration runs and no
    // file (key, CA, data folder) is created.
    crate::keys::require_some_key(config)?;
    let url = config.effective_database_url();
    let store = Store::connect_read_only(&url)
        .await
        .with_context(|| format!("opening {} read-only", redact_url(&url)))?;
    let checked = async {
        let key = crate::keys::existing_audit_key(config, &store).await?;
        let result = {
            let mut conn = store.reader().await?;
            cardwright_storage::audit::verify(&mut conn, &key)
                .await
                .context("reading the audit log")?
        };
        let problems = match &checkpoints {
            Some((_, found)) => cardwright_processes::audit::check_checkpoints(&store, &key, found)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            None => Vec::new(),
        };
        Ok::<_, anyhow::Error>((result, problems))
    }
    .await;
    store.close().await;
    let (result, problems) = checked?;
    let chain = match (&result.first_bad, result.last_checkpoint) {
        (None, Some(checkpoint)) => Ok(format!(
            "audit log intact: {} events verified, last signed checkpoint at event {checkpoint}",
            result.events
        )),
        (None, None) => Ok("audit log intact: the log is empty and its head signed".to_owned()),
        (Some((seq, reason)), Some(checkpoint)) => Err(format!(
            "audit log broken at event {seq}: {reason}; the last signed checkpoint that holds is \
             event {checkpoint}"
        )),
        (Some((seq, reason)), None) => Err(format!(
            "audit log broken at event {seq}: {reason}; no signed checkpoint holds (if no event \
             verifies, check that this is the installation's key-encryption key or token)"
        )),
    };
    let mut failed = chain.is_err();
    match chain {
        Ok(line) => println!("{line}"),
        Err(line) => eprintln!("{line}"),
    }
    if let Some((path, found)) = &checkpoints {
        for (line, problem) in &problems {
            eprintln!("checkpoint on line {line} of {}: {problem}", path.display());
        }
        if problems.is_empty() {
            let newest = found.iter().map(|(_, c)| c.seq).max().unwrap_or(0);
            println!(
                "{} published checkpoints hold, the newest at event {newest}",
                found.len()
            );
        } else {
            failed = true;
        }
    }
    if failed {
        bail!("the audit log does not verify");
    }
    Ok(())
}
