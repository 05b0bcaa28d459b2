//! Key custody: one set of keys per installation, found by every server that shares its database.
//!
//! The set is the certificate authority's key (with its certificate), the master keys that seal
//! PUKs (versioned, so they can be rotated) and the key that signs the audit log. With the key
//! store "database" each key is a row sealed under the key-encryption key (KEK) every server is
//! given; with "pkcs11" each key is generated on a token, never leaves it, and its row names it by
//! its label. The first server to start creates the set; others that start at the same moment find
//! it, because the database lets exactly one set in. A server whose KEK does not open the set
//! refuses to start: it never creates a second one.

use std::sync::Arc;

pub use crate::services::pki::PreviousCa;
use base64::Engine as _;
use cardwright_domain::Timestamp;
use cardwright_pki::pkcs11::{SecretKind, Token};
use cardwright_pki::sealing;
use cardwright_pki::{CaInfo, CaKey, CertificateAuthority};
use cardwright_storage::audit::{self as audit_log, AuditKey, ExternalMac, NewEvent};
use cardwright_storage::keys::{self, KeyState, Purpose, StoredKey};
use cardwright_storage::{Conn, Store, StoreError};
use serde_json::json;

use crate::Entropy;
use master::puk_prefix;

mod ca;
mod master;

pub use ca::renew_ca;
pub use master::{rotate_master_key, MasterKeys, Rotation};

/// How long a new CA certificate is valid, in years.
const CA_YEARS: u32 = 20;

/// Why the keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// What an operator must do differently, in plain words.
    #[error("{0}")]
    Refused(String),
    #[error("key store")]
    Store(#[from] StoreError),
    #[error("key store")]
    Pki(#[from] cardwright_pki::PkiError),
}

/// The 32-byte key-encryption key that seals the installation's keys in the database.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A KEK from 64 hex digits (surrounding white space is ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            KeyError::Refused("the key-encryption key is not hex (64 hex digits)".into())
        })?;
        bytes.try_into().map(Self).map_err(|_| {
            KeyError::Refused("the key-encryption key must be 32 bytes (64 hex digits)".into())
        })
    }

    /// A new random KEK.
    pub fn generate(entropy: &dyn Entropy) -> Self {
        let mut key = [0u8; 32];
        entropy.fill(&mut key);
        Self(key)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Where this server keeps and finds the installation's keys.
#[derive(Clone)]
pub enum Custody {
    /// Sealed under the KEK, in the database.
    Database(Kek),
    /// On a PKCS#11 token.
    Token(Arc<Token>),
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.store_name())
    }
}

impl Custody {
    /// The key store's name, as configured (`pki.key_store`) and stored with each key.
    pub fn store_name(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Token(_) => "pkcs11",
        }
    }

    /// A row for a new secret (a master or audit key) named `name`: sealed here, or generated
    /// on the token under a label unique to this installation.
    fn new_secret(
        &self,
        name: &str,
        kind: SecretKind,
        value: Option<&[u8; 32]>,
        suffix: &str,
        entropy: &dyn Entropy,
    ) -> Result<(Option<String>, Option<String>), KeyError> {
        match self {
            Self::Database(kek) => {
                let secret = value.copied().unwrap_or_else(|| {
                    let mut fresh = [0u8; 32];
                    entropy.fill(&mut fresh);
                    fresh
                });
                Ok((Some(seal_row(kek, name, &secret, entropy)), None))
            }
            Self::Token(token) => {
                let label = format!("cardwright-{name}-{suffix}");
                match value {
                    Some(value) => token.import_secret(&label, kind, value)?,
                    None => token.generate_secret(&label, kind)?,
                }
                Ok((None, Some(label)))
            }
        }
    }

    /// A row's key for a new CA: sealed here, or generated on (or moved onto) the token.
    fn new_ca_key(
        &self,
        name: &str,
        imported: Option<&[u8]>,
        suffix: &str,
        entropy: &dyn Entropy,
    ) -> Result<(CaKey, Option<String>, Option<String>), KeyError> {
        match self {
            Self::Database(kek) => {
                let key = match imported {
                    Some(der) => CaKey::from_pkcs8(der)?,
                    None => CaKey::generate()?,
                };
                let der = key.pkcs8_der().ok_or_else(|| {
                    KeyError::Refused("a key on a token cannot be sealed in the database".into())
                })?;
                Ok((key, Some(seal_row(kek, name, &der, entropy)), None))
            }
            Self::Token(token) => {
                let label = format!("cardwright-{name}-{suffix}");
                let signer = match imported {
                    Some(der) => token.import_ec_p256(&label, der)?,
                    None => token.generate_ec_p256(&label)?,
                };
                Ok((CaKey::Token(signer), None, Some(label)))
            }
        }
    }

    /// The row of a new current key in this key store: its sealed copy or its token label.
    fn row(
        &self,
        name: &str,
        purpose: Purpose,
        version: i64,
        (sealed, token_label): (Option<String>, Option<String>),
        now: Timestamp,
    ) -> StoredKey {
        StoredKey {
            name: name.to_owned(),
            purpose,
            version,
            store: self.store_name().to_owned(),
            sealed,
            token_label,
            certificate: None,
            state: KeyState::Current,
            created_at: now,
        }
    }

    /// Opens a stored secret (32 bytes) kept in the database; `None` for a key on the token.
    fn open_secret(&self, row: &StoredKey) -> Result<Option<[u8; 32]>, KeyError> {
        match self {
            Self::Database(kek) => {
                let bytes = open_row(kek, row)?;
                bytes.try_into().map(Some).map_err(|_| {
                    KeyError::Refused(format!("the stored key {} is not 32 bytes", row.name))
                })
            }
            Self::Token(token) => {
                let label = token_label(row)?;
                if !token.has(label)? {
                    return Err(missing_on_token(row, token));
                }
                Ok(None)
            }
        }
    }

    fn open_ca_key(&self, row: &StoredKey) -> Result<CaKey, KeyError> {
        match self {
            Self::Database(kek) => Ok(CaKey::from_pkcs8(&open_row(kek, row)?)?),
            Self::Token(token) => token
                .ec_p256(token_label(row)?)?
                .map(CaKey::Token)
                .ok_or_else(|| missing_on_token(row, token)),
        }
    }
}

fn token_label(row: &StoredKey) -> Result<&str, KeyError> {
    row.token_label.as_deref().ok_or_else(|| {
        KeyError::Refused(format!("the stored key {} names no token label", row.name))
    })
}

fn missing_on_token(row: &StoredKey, token: &Token) -> KeyError {
    KeyError::Refused(format!(
        "the key {} (label {}) is not on the token {}: this server is given another token than \
         the installation's",
        row.name,
        row.token_label.as_deref().unwrap_or("?"),
        token.label()
    ))
}

fn seal_row(kek: &Kek, name: &str, secret: &[u8], entropy: &dyn Entropy) -> String {
    let mut nonce = [0u8; 12];
    entropy.fill(&mut nonce);
    base64::engine::general_purpose::STANDARD.encode(sealing::seal_bound(
        &kek.0,
        nonce,
        name.as_bytes(),
        secret,
    ))
}

fn open_row(kek: &Kek, row: &StoredKey) -> Result<Vec<u8>, KeyError> {
    let sealed = row
        .sealed
        .as_deref()
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or_else(|| KeyError::Refused(format!("the stored key {} is not sealed", row.name)))?;
    sealing::open_bound(&kek.0, row.name.as_bytes(), &sealed).ok_or_else(|| {
        KeyError::Refused(
            "the key-encryption key (pki.kek) does not open the keys stored in the database: \
             this server was given another key-encryption key than the one the installation's \
             keys are sealed under; give it the installation's (pki.kek, CARDWRIGHT_PKI_KEK or \
             pki.kek_file)"
                .into(),
        )
    })
}

/// The audit key on a token: the token computes each MAC.
struct TokenMac {
    token: Arc<Token>,
    label: String,
}

impl ExternalMac for TokenMac {
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], String> {
        self.token
            .hmac_sha256(&self.label, message)
            .map_err(|e| crate::report(&e))
    }
}

/// The installation's keys, opened.
pub struct KeySet {
    /// The authority that issues now.
    pub ca: CertificateAuthority,
    /// Older CAs whose certificates have not expired: published with the current one, and each
    /// signs a revocation list of its own, so what it issued can still be checked.
    pub previous: Vec<PreviousCa>,
    pub master: Arc<MasterKeys>,
    pub audit: AuditKey,
    pub custody: Custody,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("custody", &self.custody)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The certificate authority service with `profiles` and the desk's encoder, and the audit
    /// key for the context.
    pub fn into_pki(
        self,
        profiles: Vec<cardwright_pki::Profile>,
        desk_encoder: Option<Arc<cardwright_cardsdk::encoder::Pkcs11Encoder>>,
    ) -> (crate::services::pki::Pki, AuditKey) {
        let pki = crate::services::pki::Pki::new(
            self.ca,
            self.previous,
            profiles,
            self.master,
            desk_encoder,
        );
        (pki, self.audit)
    }
}

/// Keys an installation had before key stores (files in the data folder), to move into one.
pub struct LegacyKeys {
    /// The CA certificate and key (PEM).
    pub ca: Option<(String, String)>,
    pub master_key: Option<[u8; 32]>,
}

/// What a new key set starts from.
pub struct NewSet<'a> {
    pub ca_name: &'a str,
    /// An existing CA to take over: its certificate (PEM) and key (PKCS#8 DER).
    pub ca: Option<(&'a str, &'a [u8])>,
    /// An existing master key; also gives the audit key (derived from it, as before key stores).
    pub master_key: Option<[u8; 32]>,
    /// Who to name in the audit event of the creation; none for a server's first start.
    pub recorded_by: Option<&'a str>,
}

/// Whether the installation has keys yet.
pub async fn exists(conn: &mut Conn) -> Result<bool, KeyError> {
    Ok(!keys::all(conn).await?.is_empty())
}

/// Creates the installation's key set unless one exists; whether this call created it. The rows
/// go in one transaction whose first insert decides: a server that loses to another one starting
/// at the same moment rolls back (and destroys what it made on a token) and opens theirs.
pub async fn create(
    store: &Store,
    custody: &Custody,
    new: &NewSet<'_>,
    now: Timestamp,
    entropy: &dyn Entropy,
) -> Result<bool, KeyError> {
    let mut suffix_bytes = [0u8; 4];
    entropy.fill(&mut suffix_bytes);
    let suffix = hex::encode(suffix_bytes);
    let mut tx = store.begin().await?;
    // The audit key's row is the claim: on PostgreSQL a second server's insert waits here until
    // the first commits, then finds the row; on SQLite the first insert holds the write lock.
    let audit_bytes = new.master_key.as_ref().map(AuditKey::derived_bytes);
    let (sealed, label) = custody.new_secret(
        "audit",
        SecretKind::HmacSha256,
        audit_bytes.as_ref(),
        &suffix,
        entropy,
    )?;
    let mut made: Vec<String> = label.iter().cloned().collect();
    let result = async {
        if !keys::insert(
            &mut tx,
            &custody.row("audit", Purpose::Audit, 1, (sealed, label), now),
        )
        .await?
        {
            return Ok(false);
        }
        let (sealed, label) = custody.new_secret(
            "master-1",
            SecretKind::Aes256,
            new.master_key.as_ref(),
            &suffix,
            entropy,
        )?;
        made.extend(label.clone());
        keys::insert(
            &mut tx,
            &custody.row("master-1", Purpose::Master, 1, (sealed, label), now),
        )
        .await?;
        let (key, sealed, label) =
            custody.new_ca_key("ca-1", new.ca.map(|(_, key)| key), &suffix, entropy)?;
        made.extend(label.clone());
        let ca = match new.ca {
            Some((certificate, _)) => CertificateAuthority::from_pem(certificate, key)?,
            None => CertificateAuthority::create(new.ca_name, key, 1, now.timestamp(), CA_YEARS)?,
        };
        let certificate = ca.certificate_pem().to_owned();
        keys::insert(
            &mut tx,
            &StoredKey {
                certificate: Some(certificate),
                ..custody.row("ca-1", Purpose::Ca, 1, (sealed, label), now)
            },
        )
        .await?;
        // From the moment the keys exist every head is signed, the empty log's too, so an
        // emptied log or a head reset outside Cardwright never passes for a new installation.
        let audit = open_audit_key(custody, keys::get(&mut tx, "audit").await?.as_ref())?;
        audit_log::sign_empty(&mut tx, &audit).await?;
        if let Some(actor) = new.recorded_by {
            let info = ca.info()?;
            audit_log::append(
                &mut tx,
                &audit,
                NewEvent::admin(
                    now,
                    actor.to_owned(),
                    "PkiInit",
                    json!({
                        "key_store": custody.store_name(),
                        "ca_subject": info.subject,
                        "ca_fingerprint": info.fingerprint,
                        "ca_imported": new.ca.is_some(),
                        "master_key_imported": new.master_key.is_some(),
                    }),
                ),
            )
            .await?;
        }
        Ok::<bool, KeyError>(true)
    }
    .await;
    let result = match result {
        Ok(true) => Store::commit(tx)
            .await
            .map(|()| true)
            .map_err(KeyError::from),
        other => other,
    };
    if !matches!(result, Ok(true)) {
        // Lost to another server, or failed: nothing of this attempt may stay on the token.
        if let Custody::Token(token) = custody {
            for label in made {
                if let Err(e) = token.destroy(&label) {
                    tracing::warn!(label, error = %crate::report(&e), "could not remove a key made on the token");
                }
            }
        }
    }
    result
}

fn open_audit_key(custody: &Custody, row: Option<&StoredKey>) -> Result<AuditKey, KeyError> {
    let row = row.ok_or_else(|| KeyError::Refused("the installation has no audit key".into()))?;
    Ok(match custody.open_secret(row)? {
        Some(bytes) => AuditKey::from_bytes(bytes),
        None => AuditKey::external(Arc::new(TokenMac {
            token: match custody {
                Custody::Token(token) => token.clone(),
                Custody::Database(_) => unreachable!("a database key opens to bytes"),
            },
            label: token_label(row)?.to_owned(),
        })),
    })
}

/// Refuses keys kept in another key store than this server's.
fn check_store(custody: &Custody, rows: &[StoredKey]) -> Result<(), KeyError> {
    match rows.iter().find(|row| row.store != custody.store_name()) {
        Some(row) => Err(KeyError::Refused(format!(
            "the installation's keys are in the key store \"{}\", but this server is configured \
             with pki.key_store = \"{}\"",
            row.store,
            custody.store_name()
        ))),
        None => Ok(()),
    }
}

/// Opens the installation's keys: every one must open with this server's KEK or token.
pub async fn open(conn: &mut Conn, custody: &Custody, now: Timestamp) -> Result<KeySet, KeyError> {
    let rows = keys::all(conn).await?;
    if rows.is_empty() {
        return Err(KeyError::Refused(
            "the installation has no keys yet (a server creates them at its first start, or \
             `cardwright pki init`)"
                .into(),
        ));
    }
    check_store(custody, &rows)?;
    let audit = open_audit_key(custody, rows.iter().find(|r| r.purpose == Purpose::Audit))?;
    let master = Arc::new(MasterKeys::new(custody.clone()));
    for row in rows.iter().filter(|r| r.purpose == Purpose::Master) {
        master.add(row)?;
    }
    let mut cas = rows.iter().filter(|r| r.purpose == Purpose::Ca);
    let current = cas
        .clone()
        .find(|r| r.state == KeyState::Current)
        .ok_or_else(|| KeyError::Refused("the installation has no current CA".into()))?;
    let ca = CertificateAuthority::from_pem(
        current.certificate.as_deref().unwrap_or_default(),
        custody.open_ca_key(current)?,
    )?;
    let mut previous = Vec::new();
    for row in cas.by_ref().filter(|r| r.state != KeyState::Current) {
        let pem = row.certificate.as_deref().unwrap_or_default();
        if CaInfo::of_pem(pem).is_ok_and(|info| info.not_after > now.timestamp()) {
            previous.push(PreviousCa {
                version: row.version,
                ca: CertificateAuthority::from_pem(pem, custody.open_ca_key(row)?)?,
            });
        }
    }
    Ok(KeySet {
        ca,
        previous,
        master,
        audit,
        custody: custody.clone(),
    })
}

/// Opens only the audit key (for `audit verify`, on a read-only connection).
pub async fn open_audit(conn: &mut Conn, custody: &Custody) -> Result<AuditKey, KeyError> {
    let rows = keys::all(conn).await?;
    check_store(custody, &rows)?;
    open_audit_key(custody, rows.iter().find(|r| r.purpose == Purpose::Audit))
}

/// What `cardwright pki show` prints.
#[derive(Debug, Clone)]
pub struct Overview {
    pub key_store: String,
    /// Current first.
    pub cas: Vec<(StoredKey, CaInfo)>,
    pub master_keys: Vec<StoredKey>,
    /// Sealed PUKs not (yet) under the current master key.
    pub puks_behind: i64,
}

pub async fn overview(conn: &mut Conn) -> Result<Overview, KeyError> {
    let rows = keys::all(conn).await?;
    let mut cas = Vec::new();
    for row in rows.iter().filter(|r| r.purpose == Purpose::Ca) {
        let info = CaInfo::of_pem(row.certificate.as_deref().unwrap_or_default())?;
        cas.push((row.clone(), info));
    }
    cas.sort_by_key(|(row, _)| (row.state != KeyState::Current, -row.version));
    let master_keys: Vec<StoredKey> = rows
        .iter()
        .filter(|r| r.purpose == Purpose::Master)
        .cloned()
        .collect();
    let puks_behind = match master_keys.iter().find(|r| r.state == KeyState::Current) {
        Some(current) => keys::puks_not_under(conn, &puk_prefix(current.version)).await?,
        None => 0,
    };
    Ok(Overview {
        key_store: rows.first().map(|r| r.store.clone()).unwrap_or_default(),
        cas,
        master_keys,
        puks_behind,
    })
}
