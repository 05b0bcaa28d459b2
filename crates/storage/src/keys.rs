//! The installation's keys as rows: each sealed under the key-encryption key (key store
//! "database") or named by its label on a PKCS#11 token (key store "pkcs11"). What a row's
//! `sealed` holds is opened by the key custody in the processes; here it is only text.

use cardwright_domain::{CardId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_micros, to_micros, Conn, StoreError};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The certificate authority's signing key; the row carries its certificate.
    Ca,
    /// A key that seals PUKs.
    Master,
    /// The key that signs the audit log.
    Audit,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::Master => "master",
            Self::Audit => "audit",
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// In use: the CA that issues, the master key that seals new PUKs.
    Current,
    /// A master key whose PUKs are being re-sealed under the current one (a rotation not yet
    /// finished); a CA certificate that still verifies what it issued.
    Previous,
    /// A master key no PUK was left under when its rotation finished. Its sealed copy is kept, so
    /// a PUK a server sealed with it while the rotation ran still opens.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "current" => Ok(Self::Current),
            "previous" => Ok(Self::Previous),
            "retired" => Ok(Self::Retired),
            other => Err(StoreError::Corrupt(format!("key state '{other}'"))),
        }
    }
}

/// One stored key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// `ca-1`, `master-2`, `audit`.
    pub name: String,
    pub purpose: Purpose,
    pub version: i64,
    /// `database` or `pkcs11`.
    pub store: String,
    /// Base64 of the key sealed under the key-encryption key (key store "database").
    pub sealed: Option<String>,
    /// The key's label on the token (key store "pkcs11").
    pub token_label: Option<String>,
    /// A CA's certificate (PEM).
    pub certificate: Option<String>,
    pub state: KeyState,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("name", &self.name)
            .field("store", &self.store)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "name, purpose, version, store, sealed, token_label, certificate, state, created_at";

fn from_row(row: &AnyRow) -> Result<StoredKey, StoreError> {
    let purpose: String = row.try_get("purpose")?;
    Ok(StoredKey {
        name: row.try_get("name")?,
        purpose: match purpose.as_str() {
            "ca" => Purpose::Ca,
            "master" => Purpose::Master,
            "audit" => Purpose::Audit,
            other => return Err(StoreError::Corrupt(format!("key purpose '{other}'"))),
        },
        version: row.try_get("version")?,
        store: row.try_get("store")?,
        sealed: row.try_get("sealed")?,
        token_label: row.try_get("token_label")?,
        certificate: row.try_get("certificate")?,
        state: KeyState::parse(&row.try_get::<String, _>("state")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

/// Every stored key, by purpose and newest version first.
pub async fn all(conn: &mut Conn) -> Result<Vec<StoredKey>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM pki_keys ORDER BY purpose, version DESC"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The key named `name`.
pub async fn get(conn: &mut Conn, name: &str) -> Result<Option<StoredKey>, StoreError> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM pki_keys WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The current key for `purpose`.
pub async fn current(conn: &mut Conn, purpose: Purpose) -> Result<Option<StoredKey>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM pki_keys WHERE purpose = $1 AND state = 'current' \
         ORDER BY version DESC LIMIT 1"
    ))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Stores `key` unless a key of that name exists; whether it was stored. Two servers creating
/// the first keys at once both try: the database lets exactly one in (on PostgreSQL the second
/// insert waits for the first transaction and then finds the row).
pub async fn insert(conn: &mut Conn, key: &StoredKey) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO pki_keys (name, purpose, version, store, sealed, token_label, certificate, \
         state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&key.name)
    .bind(key.purpose.as_str())
    .bind(key.version)
    .bind(&key.store)
    .bind(&key.sealed)
    .bind(&key.token_label)
    .bind(&key.certificate)
    .bind(key.state.as_str())
    .bind(to_micros(key.created_at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves every key of `purpose` in state `from` to state `to`.
pub async fn set_state(
    conn: &mut Conn,
    purpose: Purpose,
    from: KeyState,
    to: KeyState,
) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("UPDATE pki_keys SET state = $1 WHERE purpose = $2 AND state = $3")
            .bind(to.as_str())
            .bind(purpose.as_str())
            .bind(from.as_str())
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Up to `limit` sealed PUKs of cards after `after` (by id), for re-sealing in batches.
pub async fn sealed_puks(
    conn: &mut Conn,
    after: Option<CardId>,
    limit: i64,
) -> Result<Vec<(CardId, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, puk_sealed FROM cards WHERE puk_sealed IS NOT NULL AND id > $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(after.map(|id| id.to_string()).unwrap_or_default())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            Ok((CardId::parse(&id)?, row.try_get("puk_sealed")?))
        })
        .collect()
}

/// Replaces a card's sealed PUK if it is still `old`; whether it was.
pub async fn reseal_puk(
    conn: &mut Conn,
    card: CardId,
    old: &str,
    new: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("UPDATE cards SET puk_sealed = $1 WHERE id = $2 AND puk_sealed = $3")
            .bind(new)
            .bind(card.to_string())
            .bind(old)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}

/// How many sealed PUKs do not start with `prefix` (those not under the current master key).
pub async fn puks_not_under(conn: &mut Conn, prefix: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM cards WHERE puk_sealed IS NOT NULL AND puk_sealed NOT LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .fetch_one(conn)
    .await?)
}
