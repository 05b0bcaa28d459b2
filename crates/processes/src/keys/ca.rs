//! Renewing the certificate authority.

use cardwright_domain::Timestamp;
use cardwright_pki::{CaInfo, CertificateAuthority};
use cardwright_storage::audit::{self as audit_log, NewEvent};
use cardwright_storage::keys::{self, KeyState, Purpose, StoredKey};
use cardwright_storage::Store;
use serde_json::json;

use super::{seal_row, Custody, KeyError, KeySet, CA_YEARS};
use crate::Entropy;

/// Renews the CA: a new self-signed certificate for the same key, or with `new_key` for a new
/// key. The previous certificate is kept and published beside the new one until it expires, so
/// what it issued still verifies. Servers take the new CA at their next start.
pub async fn renew_ca(
    store: &Store,
    set: &KeySet,
    actor: &str,
    new_key: bool,
    now: Timestamp,
    entropy: &dyn Entropy,
) -> Result<CaInfo, KeyError> {
    let mut tx = store.begin().await?;
    let current = keys::current(&mut tx, Purpose::Ca)
        .await?
        .ok_or_else(|| KeyError::Refused("the installation has no current CA".into()))?;
    let old = CaInfo::of_pem(current.certificate.as_deref().unwrap_or_default())?;
    let version = keys::all(&mut tx)
        .await?
        .iter()
        .filter(|r| r.purpose == Purpose::Ca)
        .map(|r| r.version)
        .max()
        .unwrap_or(0)
        + 1;
    let name = format!("ca-{version}");
    let (key, sealed, label) = if new_key {
        let mut suffix = [0u8; 4];
        entropy.fill(&mut suffix);
        set.custody
            .new_ca_key(&name, None, &hex::encode(suffix), entropy)?
    } else {
        let key = set.custody.open_ca_key(&current)?;
        match &set.custody {
            Custody::Database(kek) => {
                let der = key.pkcs8_der().unwrap_or_default();
                (key, Some(seal_row(kek, &name, &der, entropy)), None)
            }
            Custody::Token(_) => (key, None, current.token_label.clone()),
        }
    };
    let common_name = old
        .subject
        .strip_prefix("CN=")
        .unwrap_or(&old.subject)
        .to_owned();
    let ca = CertificateAuthority::create(
        &common_name,
        key,
        u64::try_from(version).unwrap_or(1),
        now.timestamp(),
        CA_YEARS,
    )?;
    let info = ca.info()?;
    keys::set_state(&mut tx, Purpose::Ca, KeyState::Current, KeyState::Previous).await?;
    keys::insert(
        &mut tx,
        &StoredKey {
            certificate: Some(ca.certificate_pem().to_owned()),
            ..set
                .custody
                .row(&name, Purpose::Ca, version, (sealed, label), now)
        },
    )
    .await?;
    audit_log::append(
        &mut tx,
        &set.audit,
        NewEvent::admin(
            now,
            actor.to_owned(),
            "PkiCaRenewed",
            json!({
                "version": version,
                "new_key": new_key,
                "previous_fingerprint": old.fingerprint,
                "fingerprint": info.fingerprint,
            }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(info)
}
