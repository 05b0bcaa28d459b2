//! Where this server finds the installation's keys: the key store the configuration names, the
//! key-encryption key or the token, and the move of keys from data folders of installations from
//! before key stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use cardwright_domain::Timestamp;
use cardwright_pki::pkcs11::Token;
use cardwright_processes::keys::{self, Custody, Kek, KeyError, KeySet, NewSet};
use cardwright_processes::OsEntropy;
use cardwright_storage::audit::AuditKey;
use cardwright_storage::Store;

use crate::config::{Config, KeyStoreKind};

/// The folder of the file-based CA and master key of installations from before key stores.
fn legacy_dir(config: &Config) -> PathBuf {
    config.data_dir.join("pki")
}

/// The key-encryption key file the single-server default creates once in the data folder.
fn default_kek_file(config: &Config) -> PathBuf {
    config.data_dir.join("pki").join("kek")
}

/// The key store's error in words an operator acts on.
pub(crate) fn refused(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::Refused(message) => anyhow::anyhow!(message),
        other => anyhow::Error::new(other),
    }
}

/// The configured KEK: given, from its file, or from the data folder's file when that exists.
/// `Ok(None)`: none yet (the default file is created with the keys).
fn configured_kek(config: &Config) -> anyhow::Result<Option<Kek>> {
    if !config.pki.kek.is_empty() {
        return Kek::from_hex(&config.pki.kek)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("pki.kek: {}", refused(e)));
    }
    let (path, required) = if config.pki.kek_file.is_empty() {
        (default_kek_file(config), false)
    } else {
        (PathBuf::from(&config.pki.kek_file), true)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Kek::from_hex(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), refused(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "pki.kek_file: reading the key-encryption key {}",
                path.display()
            )
        }),
    }
}

/// The token of the key store `pkcs11`.
fn token(config: &Config) -> anyhow::Result<Custody> {
    let token = Token::open(
        Path::new(&config.pki.pkcs11_module),
        &config.pki.token_label,
        &config.pki.pin,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "pki.key_store = \"pkcs11\": {}",
            cardwright_processes::report(&e)
        )
    })?;
    Ok(Custody::Token(Arc::new(token)))
}

/// What an installation from before key stores kept in its data folder (and `pki.master_key`).
fn legacy_keys(config: &Config) -> anyhow::Result<keys::LegacyKeys> {
    let dir = legacy_dir(config);
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    let ca = match (read("ca.pem")?, read("ca-key.pem")?) {
        (Some(certificate), Some(key)) => Some((certificate, key)),
        _ => None,
    };
    let master_hex = if config.pki.master_key.is_empty() {
        read("master.key")?
    } else {
        Some(config.pki.master_key.clone())
    };
    let master_key = master_hex
        .map(|text| -> anyhow::Result<[u8; 32]> {
            hex::decode(text.trim())
                .context("pki.master_key: not hex")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("pki.master_key: must be 32 bytes (64 hex digits)"))
        })
        .transpose()?;
    Ok(keys::LegacyKeys { ca, master_key })
}

/// What a server or `pki init` creates the keys with.
pub struct Creation<'a> {
    pub ca_name: &'a str,
    /// An existing CA (certificate PEM, PKCS#8 key) to take over instead of making one.
    pub import: Option<&'a cardwright_pki::import::ImportedCa>,
    /// The audit log's actor name for `pki init`; none for a server's first start.
    pub recorded_by: Option<&'a str>,
}

/// Creates the installation's keys unless they exist; whether this call created them. Keys
/// from an installation's data folder from before key stores are moved in (once, with a log
/// line), and their files removed. A default KEK file made here is removed again when another
/// server's keys won, so a refused start leaves nothing behind.
pub async fn create(
    config: &Config,
    store: &Store,
    creation: &Creation<'_>,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let existing = {
        let mut conn = store.reader().await?;
        keys::exists(&mut conn).await.map_err(refused)?
    };
    if existing {
        return Ok(false);
    }
    let (custody, made_kek_file) = match config.pki.key_store {
        KeyStoreKind::Pkcs11 => (token(config)?, None),
        KeyStoreKind::Database => {
            if let Some(kek) = configured_kek(config)? {
                (Custody::Database(kek), None)
            } else {
                let kek = Kek::generate(&OsEntropy);
                let path = default_kek_file(config);
                crate::app::create_private_dir(&legacy_dir(config))
                    .with_context(|| format!("creating {}", legacy_dir(config).display()))?;
                match write_once(&path, kek.to_hex().as_bytes()) {
                    Ok(()) => (Custody::Database(kek), Some(path)),
                    // A server of the same data folder starting at the same moment wrote it
                    // first: both use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let kek = configured_kek(config)?.with_context(|| {
                            format!("reading the key-encryption key {}", path.display())
                        })?;
                        (Custody::Database(kek), None)
                    }
                    Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
                }
            }
        }
    };
    let legacy = legacy_keys(config)?;
    let legacy_ca = match (&creation.import, &legacy.ca) {
        (None, Some((certificate, key))) => Some(
            cardwright_pki::import::from_pem(certificate, key)
                .context("reading the CA from the data folder")?,
        ),
        _ => None,
    };
    let ca = creation.import.or(legacy_ca.as_ref());
    let new = NewSet {
        ca_name: creation.ca_name,
        ca: ca.map(|ca| (ca.certificate_pem.as_str(), ca.key_pkcs8_der.as_slice())),
        master_key: legacy.master_key,
        recorded_by: creation.recorded_by,
    };
    let created = keys::create(store, &custody, &new, now, &OsEntropy)
        .await
        .map_err(refused);
    if !matches!(created, Ok(true)) {
        if let Some(path) = &made_kek_file {
            discard_unused_kek(store, &custody, path, now).await;
        }
        return created;
    }
    if legacy_ca.is_some() || legacy.master_key.is_some() {
        let dir = legacy_dir(config);
        for file in ["ca-key.pem", "ca.pem", "master.key"] {
            let path = dir.join(file);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {} after moving it", path.display()))?;
            }
        }
        tracing::info!(
            key_store = custody.store_name(),
            folder = %dir.display(),
            ca = legacy_ca.is_some(),
            master_key = legacy.master_key.is_some(),
            "moved the certificate authority and the PUK master key from the data folder into the \
             key store; the audit log keeps its key, and the key files were removed"
        );
    }
    Ok(true)
}

/// Writes a secret file whole or not at all: another process never reads it half written, and
/// when the file exists already nothing is written (`AlreadyExists`).
fn write_once(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut nonce = [0u8; 8];
    cardwright_processes::Entropy::fill(&OsEntropy, &mut nonce);
    let temporary = path.with_extension(format!("{}.tmp", hex::encode(nonce)));
    crate::app::write_secret(&temporary, bytes)?;
    // A hard link appears at once with its whole content, and fails when the name is taken.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    linked
}

/// Removes the key-encryption key file this start wrote when the keys it was written for were
/// not made: unless another server of the same data folder read it and made the keys with it,
/// which then open with it.
async fn discard_unused_kek(store: &Store, custody: &Custody, path: &Path, now: Timestamp) {
    let used = match store.reader().await {
        Ok(mut conn) => keys::open(&mut conn, custody, now).await.is_ok(),
        Err(_) => true,
    };
    if !used {
        let _ = std::fs::remove_file(path);
    }
}

/// This server's way into the key store, for keys that exist.
fn custody(config: &Config) -> anyhow::Result<Custody> {
    match config.pki.key_store {
        KeyStoreKind::Pkcs11 => token(config),
        KeyStoreKind::Database => configured_kek(config)?
            .map(Custody::Database)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the database holds the installation's keys, but this server has no \
                 key-encryption key: set pki.kek (CARDWRIGHT_PKI_KEK) or pki.kek_file to the \
                 installation's"
                )
            }),
    }
}

/// Opens the installation's keys, creating them first when there are none (the first server).
pub async fn open_or_create(
    config: &Config,
    store: &Store,
    now: Timestamp,
) -> anyhow::Result<KeySet> {
    create(
        config,
        store,
        &Creation {
            ca_name: &config.pki.ca_name,
            import: None,
            recorded_by: None,
        },
        now,
    )
    .await?;
    open(config, store, now).await
}

/// Opens the installation's keys, which must exist.
pub async fn open(config: &Config, store: &Store, now: Timestamp) -> anyhow::Result<KeySet> {
    let custody = custody(config)?;
    let mut conn = store.reader().await?;
    let set = keys::open(&mut conn, &custody, now)
        .await
        .map_err(refused)?;
    if legacy_dir(config).join("ca-key.pem").exists()
        || legacy_dir(config).join("master.key").exists()
    {
        tracing::warn!(
            folder = %legacy_dir(config).display(),
            "the data folder holds a CA key or master key from before key stores, which the \
             installation does not use (its keys are in the key store); remove them"
        );
    }
    Ok(set)
}

/// Refuses to check a log where no key could be: no key-encryption key (given or in the data
/// folder), no token and no master key from before key stores. Reads no database.
pub fn require_some_key(config: &Config) -> anyhow::Result<()> {
    if config.pki.key_store == KeyStoreKind::Database
        && configured_kek(config)?.is_none()
        && legacy_keys(config)?.master_key.is_none()
    {
        anyhow::bail!(
            "no key to check the audit log with: no key-encryption key (pki.kek, pki.kek_file or              {}) and no master key from before key stores ({}); run this where the server's keys are",
            default_kek_file(config).display(),
            legacy_dir(config).join("master.key").display()
        );
    }
    Ok(())
}

/// The audit key for checking the log: from the key store, or for an installation whose keys
/// were not moved yet, derived from its master key as before. Creates nothing.
pub async fn existing_audit_key(config: &Config, store: &Store) -> anyhow::Result<AuditKey> {
    let mut conn = store.reader().await?;
    // An installation that was never migrated has no key table yet: its keys are the files.
    if let Ok(true) = keys::exists(&mut conn).await {
        let custody = custody(config)?;
        return keys::open_audit(&mut conn, &custody).await.map_err(refused);
    }
    match legacy_keys(config)?.master_key {
        Some(master) => Ok(AuditKey::derive(&master)),
        None => anyhow::bail!(
            "the installation has no keys yet: nothing signs its audit log (set pki.kek and the \
             database of the installation)"
        ),
    }
}
