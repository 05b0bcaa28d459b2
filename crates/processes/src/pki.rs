//! The certificate authority's public side: the CA certificate and the revocation list, and the
//! random serials, PINs and PUKs the processes draw.

use std::sync::Arc;

use cardwright_domain::Timestamp;
use cardwright_pki::{Reason, Revoked};
use cardwright_storage::certificates;
use cardwright_storage::Store;
use sha2::{Digest as _, Sha256};

use crate::services::pki::Pki;
use crate::{Context, ProcessError};

/// A serial number for a new certificate from 16 random bytes: made positive.
pub fn new_serial(mut serial: [u8; 16]) -> [u8; 16] {
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

/// `length` random decimal digits (PINs and PUKs), uniform.
pub fn random_digits(ctx: &Context, length: u32) -> String {
    let mut out = String::with_capacity(length as usize);
    while out.len() < length as usize {
        let mut byte = [0u8; 1];
        ctx.entropy.fill(&mut byte);
        if byte[0] < 250 {
            out.push(char::from(b'0' + byte[0] % 10));
        }
    }
    out
}

pub(crate) fn pki(ctx: &Context) -> Result<&Arc<Pki>, ProcessError> {
    ctx.pki
        .as_ref()
        .ok_or_else(|| ProcessError::Internal("no certificate authority is configured".into()))
}

/// The CA certificate (PEM), followed by older CA certificates that still verify what they
/// issued (after a renewal), so a relying party trusts both.
pub fn ca_pem(ctx: &Context) -> Result<String, ProcessError> {
    let pki = pki(ctx)?;
    let mut pem = pki.ca.certificate_pem().to_owned();
    for previous in &pki.previous {
        pem.push_str(previous.ca.certificate_pem());
    }
    Ok(pem)
}

/// A revocation list is signed again when the revocations change or when it is this old (it
/// is valid for a week); until then every request gets the same list.
const CRL_REISSUE_AFTER_SECS: i64 = 3600;

/// The revocation list (DER) of the earlier CA numbered `version` (before a `pki renew-ca`),
/// signed with that CA's key, so certificates it issued can still be checked: it lists every
/// revoked certificate, and takes its number from the same counter as the current list.
pub async fn previous_crl(ctx: &Context, version: i64) -> Result<Vec<u8>, ProcessError> {
    let pki = pki(ctx)?;
    let previous = pki
        .previous
        .iter()
        .find(|p| p.version == version)
        .ok_or_else(|| {
            ProcessError::NotFound(format!(
                "no earlier CA {version} whose certificate is still valid (see `cardwright pki show`)"
            ))
        })?;
    let revoked = {
        let mut conn = ctx.store.reader().await?;
        all_revoked(&mut conn).await?
    };
    let list = revoked_list(&revoked)?;
    let mut tx = ctx.store.begin().await?;
    let number = certificates::next_crl_number(&mut tx).await?;
    let der = previous
        .ca
        .crl(
            &list,
            u64::try_from(number).unwrap_or(0),
            ctx.now().timestamp(),
        )
        .map_err(|e| ProcessError::failed("signing the revocation list", e))?;
    Store::commit(tx).await?;
    Ok(der)
}

fn revoked_list(revoked: &[(String, Timestamp, Reason)]) -> Result<Vec<Revoked>, ProcessError> {
    revoked
        .iter()
        .map(|(serial, at, reason)| {
            Ok(Revoked {
                serial: hex::decode(serial)
                    .map_err(|e| ProcessError::Internal(format!("stored serial {serial}: {e}")))?,
                revoked_at: at.timestamp(),
                reason: *reason,
            })
        })
        .collect()
}

/// Every revoked card certificate, then every station certificate on hold (a disabled
/// station's) or replaced by a newer one, each with its reason.
async fn all_revoked(
    conn: &mut cardwright_storage::Conn,
) -> Result<Vec<(String, Timestamp, Reason)>, ProcessError> {
    let mut list: Vec<(String, Timestamp, Reason)> = certificates::revoked(&mut *conn)
        .await?
        .into_iter()
        .map(|(serial, at)| (serial, at, Reason::CessationOfOperation))
        .collect();
    list.extend(
        cardwright_storage::stations::listed(conn)
            .await?
            .into_iter()
            .map(|(serial, at, hold)| {
                let reason = if hold {
                    Reason::CertificateHold
                } else {
                    Reason::Superseded
                };
                (serial, at, reason)
            }),
    );
    Ok(list)
}

/// The current revocation list (DER): every revoked certificate. Each list signed gets the next
/// number of a stored counter, so numbers only grow (RFC 5280), across servers too; a list whose
/// revocations are unchanged is served again for an hour instead of being signed anew.
pub async fn crl(ctx: &Context) -> Result<Vec<u8>, ProcessError> {
    let pki = pki(ctx)?;
    let (revoked, issued) = {
        let mut conn = ctx.store.reader().await?;
        (
            all_revoked(&mut conn).await?,
            certificates::issued_crl(&mut conn).await?,
        )
    };
    let mut fingerprint = Sha256::new();
    for (serial, at, reason) in &revoked {
        let reason = match reason {
            Reason::CessationOfOperation => "",
            Reason::CertificateHold => "h",
            Reason::Superseded => "s",
        };
        fingerprint.update(format!("{serial}@{}{reason};", at.timestamp_micros()));
    }
    let fingerprint = hex::encode(fingerprint.finalize());
    let now = ctx.now();
    if issued.number > 0
        && issued.fingerprint == fingerprint
        && (now - issued.issued_at).num_seconds() < CRL_REISSUE_AFTER_SECS
        && issued.issued_at <= now
    {
        return hex::decode(&issued.der)
            .map_err(|e| ProcessError::Internal(format!("stored revocation list: {e}")));
    }
    let list = revoked_list(&revoked)?;
    let mut tx = ctx.store.begin().await?;
    let number = certificates::next_crl_number(&mut tx).await?;
    let der = pki
        .ca
        .crl(&list, u64::try_from(number).unwrap_or(0), now.timestamp())
        .map_err(|e| ProcessError::failed("signing the revocation list", e))?;
    certificates::record_crl(
        &mut tx,
        &certificates::IssuedCrl {
            number,
            fingerprint,
            issued_at: now,
            der: hex::encode(&der),
        },
    )
    .await?;
    Store::commit(tx).await?;
    Ok(der)
}
