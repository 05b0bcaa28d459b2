//! `cardwright pki`: the key ceremony.

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use cardwright_pki::import::{self, ImportedCa};
use cardwright_processes::keys;
use cardwright_processes::OsEntropy;
use cardwright_storage::keys::KeyState;
use cardwright_storage::Store;

use crate::cli::PkiCommand;
use crate::config::Config;
use crate::keys::{refused, Creation};

/// Who the audit log names for a step taken on the command line.
const ACTOR: &str = "cli";

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > import::MAX_FILE_BYTES as u64 {
        bail!(
            "{}: {} bytes is too large for a CA file (at most {})",
            path.display(),
            meta.len(),
            import::MAX_FILE_BYTES
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| anyhow::anyhow!("{}: not a PEM text file", path.display()))
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map_or_else(|| unix.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

pub async fn run(command: &PkiCommand, config: &Config, store: &Store) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    match command {
        PkiCommand::Init {
            ca_name,
            import_cert,
            import_key,
            import_pkcs12,
        } => {
            let imported = match (import_cert, import_key, import_pkcs12) {
                (Some(cert), Some(key), None) => Some(
                    import::from_pem(&text(cert)?, &text(key)?)
                        .map_err(|e| anyhow::anyhow!("{}", cardwright_processes::report(&e)))?,
                ),
                (None, None, Some(file)) => Some(pkcs12(file)?),
                _ => None,
            };
            init(config, store, ca_name.as_deref(), imported.as_ref(), now).await
        }
        PkiCommand::Show => show(config, store, now).await,
        PkiCommand::RotateMasterKey {
            batch_size,
            batches,
        } => rotate(config, store, *batch_size, *batches, now).await,
        PkiCommand::RenewCa { new_key } => renew(config, store, *new_key, now).await,
    }
}

/// An existing CA from a PKCS#12 file, its password read from standard input.
fn pkcs12(file: &Path) -> anyhow::Result<ImportedCa> {
    let bytes = read_file(file)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the PKCS#12 password from standard input")?;
    let password = password.lines().next().unwrap_or_default();
    import::from_pkcs12(&bytes, password)
        .map_err(|e| anyhow::anyhow!("{}", cardwright_processes::report(&e)))
}

async fn init(
    config: &Config,
    store: &Store,
    ca_name: Option<&str>,
    imported: Option<&ImportedCa>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let existing = {
        let mut conn = store.reader().await?;
        keys::exists(&mut conn).await.map_err(refused)?
    };
    if existing {
        bail!("the installation already has its keys; nothing was changed (see `cardwright pki show`)");
    }
    let created = crate::keys::create(
        config,
        store,
        &Creation {
            ca_name: ca_name.unwrap_or(&config.pki.ca_name),
            import: imported,
            recorded_by: Some(ACTOR),
        },
        now,
    )
    .await?;
    if !created {
        bail!("another server created the installation's keys first; nothing was changed");
    }
    let set = crate::keys::open(config, store, now).await?;
    let info = set.ca.info()?;
    println!(
        "created the installation's keys in the key store \"{}\"\nCA: {}\nSHA-256 fingerprint: {}",
        set.custody.store_name(),
        info.subject,
        info.fingerprint
    );
    Ok(())
}

async fn show(
    config: &Config,
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let overview = {
        let mut conn = store.reader().await?;
        keys::overview(&mut conn).await.map_err(refused)?
    };
    if overview.cas.is_empty() {
        bail!("the installation has no keys yet (a server creates them at its first start, or `cardwright pki init`)");
    }
    // Opening proves this server's KEK or token holds the keys it shows.
    let opened = crate::keys::open(config, store, now).await;
    println!("key store: {}", overview.key_store);
    for (row, info) in &overview.cas {
        let state = match row.state {
            KeyState::Current => "current",
            _ => "previous",
        };
        println!("CA {} ({state}): {}", row.version, info.subject);
        println!("  SHA-256 fingerprint: {}", info.fingerprint);
        println!(
            "  valid from {} to {}",
            date(info.not_before),
            date(info.not_after)
        );
        match &row.token_label {
            Some(label) => println!("  key: on the token, label {label}"),
            None => println!("  key: sealed in the database"),
        }
    }
    for row in &overview.master_keys {
        println!("master key {}: {}", row.version, row.state.as_str());
    }
    println!(
        "PUKs not yet under the current master key: {}",
        overview.puks_behind
    );
    match opened {
        Ok(_) => println!("this server's key-encryption key or token opens every key"),
        Err(e) => bail!("{e:#}"),
    }
    Ok(())
}

async fn rotate(
    config: &Config,
    store: &Store,
    batch_size: i64,
    batches: Option<u64>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let set = crate::keys::open(config, store, now).await?;
    let rotation =
        keys::rotate_master_key(store, &set, ACTOR, now, batch_size, batches, &OsEntropy)
            .await
            .map_err(refused)?;
    if rotation.resumed {
        println!(
            "resumed the unfinished rotation to master key {}",
            rotation.version
        );
    }
    println!(
        "re-sealed {} PUKs under master key {}",
        rotation.resealed, rotation.version
    );
    if rotation.finished {
        println!(
            "every PUK is under master key {}; the previous key is retired",
            rotation.version
        );
    } else {
        let left = {
            let mut conn = store.reader().await?;
            keys::overview(&mut conn)
                .await
                .map_err(refused)?
                .puks_behind
        };
        println!("rotation not finished: {left} PUKs left; run the command again to go on");
    }
    Ok(())
}

async fn renew(
    config: &Config,
    store: &Store,
    new_key: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let set = crate::keys::open(config, store, now).await?;
    let info = keys::renew_ca(store, &set, ACTOR, new_key, now, &OsEntropy)
        .await
        .map_err(refused)?;
    println!(
            "the CA has a new certificate{}: {}\nSHA-256 fingerprint: {}\nvalid from {} to {}\nrestart the servers to issue with it",
            if new_key { " and a new key" } else { " for the same key" },
            info.subject,
            info.fingerprint,
            date(info.not_before),
            date(info.not_after)
        );
    Ok(())
}
