//! The master keys that seal PUKs, by version, and their rotation.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use cardwright_domain::Timestamp;
use cardwright_pki::pkcs11::{SecretKind, Token};
use cardwright_pki::sealing;
use cardwright_storage::audit::{self as audit_log, NewEvent};
use cardwright_storage::keys::{self, KeyState, Purpose, StoredKey};
use cardwright_storage::{Conn, Store};
use serde_json::json;

use super::{token_label, Custody, KeyError, KeySet};
use crate::Entropy;

/// A master key that seals PUKs.
#[derive(Clone)]
pub(super) enum MasterKey {
    Local([u8; 32]),
    Token { token: Arc<Token>, label: String },
}

/// The master keys by version: sealing uses the current one (read from the database each time,
/// so a rotation run by another process is followed at once), opening the one a PUK names.
pub struct MasterKeys {
    custody: Custody,
    ring: RwLock<BTreeMap<i64, MasterKey>>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys(..)")
    }
}

/// The prefix a PUK sealed under master key `version` carries. PUKs sealed before master keys
/// had versions carry none and belong to version 1.
pub(super) fn puk_prefix(version: i64) -> String {
    format!("m{version}:")
}

fn puk_version(sealed: &str) -> (i64, &str) {
    sealed
        .strip_prefix('m')
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(version, body)| Some((version.parse().ok()?, body)))
        .unwrap_or((1, sealed))
}

impl MasterKeys {
    pub(super) fn new(custody: Custody) -> Self {
        Self {
            custody,
            ring: RwLock::new(BTreeMap::new()),
        }
    }

    pub(super) fn add(&self, row: &StoredKey) -> Result<MasterKey, KeyError> {
        let key = match self.custody.open_secret(row)? {
            Some(bytes) => MasterKey::Local(bytes),
            None => match &self.custody {
                Custody::Token(token) => MasterKey::Token {
                    token: token.clone(),
                    label: token_label(row)?.to_owned(),
                },
                Custody::Database(_) => unreachable!("a database key opens to bytes"),
            },
        };
        if let Ok(mut ring) = self.ring.write() {
            ring.insert(row.version, key.clone());
        }
        Ok(key)
    }

    async fn version(&self, conn: &mut Conn, version: i64) -> Result<MasterKey, KeyError> {
        if let Some(key) = self.ring.read().ok().and_then(|r| r.get(&version).cloned()) {
            return Ok(key);
        }
        let row = keys::get(conn, &format!("master-{version}"))
            .await?
            .ok_or_else(|| KeyError::Refused(format!("master key {version} is not stored")))?;
        self.add(&row)
    }

    /// Seals a PUK under the current master key.
    pub async fn seal(
        &self,
        conn: &mut Conn,
        nonce: [u8; 12],
        puk: &str,
    ) -> Result<String, KeyError> {
        let row = keys::current(conn, Purpose::Master)
            .await?
            .ok_or_else(|| KeyError::Refused("no current master key is stored".into()))?;
        let key = self.version(conn, row.version).await?;
        Ok(format!(
            "{}{}",
            puk_prefix(row.version),
            base64::engine::general_purpose::STANDARD.encode(seal_with(&key, nonce, puk)?)
        ))
    }

    /// Opens a sealed PUK; `None` when it does not open (changed, or not a sealed PUK).
    pub async fn open(&self, conn: &mut Conn, sealed: &str) -> Result<Option<String>, KeyError> {
        let (version, body) = puk_version(sealed);
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body) else {
            return Ok(None);
        };
        let key = self.version(conn, version).await?;
        Ok(open_with(&key, &bytes)?.and_then(|plain| String::from_utf8(plain).ok()))
    }
}

fn seal_with(key: &MasterKey, nonce: [u8; 12], puk: &str) -> Result<Vec<u8>, KeyError> {
    Ok(match key {
        MasterKey::Local(bytes) => sealing::seal(bytes, nonce, puk.as_bytes()),
        MasterKey::Token { token, label } => token.seal(label, nonce, b"", puk.as_bytes())?,
    })
}

fn open_with(key: &MasterKey, sealed: &[u8]) -> Result<Option<Vec<u8>>, KeyError> {
    Ok(match key {
        MasterKey::Local(bytes) => sealing::open(bytes, sealed),
        MasterKey::Token { token, label } => token.unseal(label, b"", sealed)?,
    })
}

/// How a master key rotation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The master key now current.
    pub version: i64,
    /// Whether this run picked up a rotation an earlier run left unfinished.
    pub resumed: bool,
    /// PUKs re-sealed by this run.
    pub resealed: u64,
    /// Whether every PUK is now under the current key (false when stopped after `max_batches`).
    pub finished: bool,
}

/// Makes a new master key current and the current one `previous`, in one transaction with its
/// audit event; or, when a `previous` key shows an unfinished rotation, goes on with that one.
/// The current version, and whether it was resumed.
async fn start_rotation(
    store: &Store,
    set: &KeySet,
    actor: &str,
    now: Timestamp,
    entropy: &dyn Entropy,
) -> Result<(i64, bool), KeyError> {
    let mut tx = store.begin().await?;
    let rows = keys::all(&mut tx).await?;
    let masters: Vec<&StoredKey> = rows
        .iter()
        .filter(|r| r.purpose == Purpose::Master)
        .collect();
    let resumed = masters.iter().any(|r| r.state == KeyState::Previous);
    let version = if resumed {
        masters
            .iter()
            .find(|r| r.state == KeyState::Current)
            .map(|r| r.version)
            .ok_or_else(|| KeyError::Refused("the installation has no current master key".into()))?
    } else {
        let version = masters.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        let name = format!("master-{version}");
        let mut suffix = [0u8; 4];
        entropy.fill(&mut suffix);
        let (sealed, label) = set.custody.new_secret(
            &name,
            SecretKind::Aes256,
            None,
            &hex::encode(suffix),
            entropy,
        )?;
        keys::set_state(
            &mut tx,
            Purpose::Master,
            KeyState::Current,
            KeyState::Previous,
        )
        .await?;
        keys::insert(
            &mut tx,
            &set.custody
                .row(&name, Purpose::Master, version, (sealed, label), now),
        )
        .await?;
        audit_log::append(
            &mut tx,
            &set.audit,
            NewEvent::admin(
                now,
                actor.to_owned(),
                "PkiMasterKeyRotationStarted",
                json!({ "version": version }),
            ),
        )
        .await?;
        version
    };
    Store::commit(tx).await?;
    Ok((version, resumed))
}

/// Rotates the PUK master key: a new key becomes current, then every PUK is re-sealed under it,
/// `batch` cards per transaction, and last the stations' escrow key. An interrupted rotation (a crash, or `max_batches` reached) is
/// resumed by the next call instead of starting another: a previous key that still has PUKs
/// marks it. When no PUK is left under the previous key it is retired.
pub async fn rotate_master_key(
    store: &Store,
    set: &KeySet,
    actor: &str,
    now: Timestamp,
    batch: i64,
    max_batches: Option<u64>,
    entropy: &dyn Entropy,
) -> Result<Rotation, KeyError> {
    let (version, resumed) = start_rotation(store, set, actor, now, entropy).await?;
    let prefix = puk_prefix(version);
    let mut resealed = 0u64;
    let mut batches = 0u64;
    let mut after = None;
    loop {
        if max_batches.is_some_and(|max| batches >= max) {
            return Ok(Rotation {
                version,
                resumed,
                resealed,
                finished: false,
            });
        }
        let mut tx = store.begin().await?;
        let page = keys::sealed_puks(&mut tx, after, batch).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (card, sealed) in page.iter().filter(|(_, s)| !s.starts_with(&prefix)) {
            let Some(puk) = set.master.open(&mut tx, sealed).await? else {
                return Err(KeyError::Refused(format!(
                    "the PUK of card {card} does not open under its master key; nothing of this \
                     batch was changed"
                )));
            };
            let mut nonce = [0u8; 12];
            entropy.fill(&mut nonce);
            let fresh = set.master.seal(&mut tx, nonce, &puk).await?;
            if keys::reseal_puk(&mut tx, *card, sealed, &fresh).await? {
                resealed += 1;
            }
        }
        Store::commit(tx).await?;
        batches += 1;
    }
    let mut tx = store.begin().await?;
    // The escrow key stations seal PUKs to is sealed like a PUK: it moves to the new key too.
    if let Some((_, sealed)) = cardwright_storage::stations::escrow(&mut tx).await? {
        if !sealed.starts_with(&prefix) {
            let Some(secret) = set.master.open(&mut tx, &sealed).await? else {
                return Err(KeyError::Refused(
                    "the stations' escrow key does not open under its master key; it was not \
                     changed"
                        .into(),
                ));
            };
            let mut nonce = [0u8; 12];
            entropy.fill(&mut nonce);
            let fresh = set.master.seal(&mut tx, nonce, &secret).await?;
            cardwright_storage::stations::reseal_escrow(&mut tx, &sealed, &fresh).await?;
        }
    }
    let behind = keys::puks_not_under(&mut tx, &prefix).await?;
    if behind > 0 {
        // A server sealed a PUK under the previous key while this run went through the cards:
        // the rotation stays open and the next run takes those.
        return Ok(Rotation {
            version,
            resumed,
            resealed,
            finished: false,
        });
    }
    let retired = keys::set_state(
        &mut tx,
        Purpose::Master,
        KeyState::Previous,
        KeyState::Retired,
    )
    .await?;
    audit_log::append(
        &mut tx,
        &set.audit,
        NewEvent::admin(
            now,
            actor.to_owned(),
            "PkiMasterKeyRotated",
            json!({ "version": version, "resealed": resealed, "retired_keys": retired }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(Rotation {
        version,
        resumed,
        resealed,
        finished: true,
    })
}

#[cfg(test)]
mod tests {
    use super::puk_version;

    #[test]
    fn sealed_puks_name_their_master_key() {
        assert_eq!(puk_version("m3:abc"), (3, "abc"));
        assert_eq!(puk_version("abc="), (1, "abc="), "from before versions");
        assert_eq!(puk_version("mx:abc"), (1, "mx:abc"));
    }
}
