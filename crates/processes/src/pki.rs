//! The certificate authority at work for cards: certificates that name the card at issue and its
//! holder at assignment, revocation, the published CA certificate and revocation list, and the
//! sealed PUK.

use std::sync::Arc;

use base64::Engine as _;
use cardwright_cardsdk::encoder::{CardCertificate, CardKey, KeyKind, KeySpec, Pkcs11Encoder};
use cardwright_domain::{Card, Person, Timestamp};
use cardwright_pki::{CertificateAuthority, KeyAlgorithm, Profile, Revoked, Subject};
use cardwright_storage::certificates::{self, CertificateKind, CertificateRecord};
use cardwright_storage::{Conn, Store};
use sha2::{Digest as _, Sha256};

use crate::{Context, ProcessError};

/// The built-in certificate authority, its profiles and the key that seals PUKs.
pub struct Pki {
    pub ca: CertificateAuthority,
    pub profiles: Vec<Profile>,
    master_key: [u8; 32],
    /// The encoder that writes holder certificates at the desk (the first station's).
    pub desk_encoder: Option<Arc<Pkcs11Encoder>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("profiles", &self.profiles)
            .finish_non_exhaustive()
    }
}

impl Pki {
    pub fn new(
        ca: CertificateAuthority,
        profiles: Vec<Profile>,
        master_key: [u8; 32],
        desk_encoder: Option<Arc<Pkcs11Encoder>>,
    ) -> Self {
        Self {
            ca,
            profiles,
            master_key,
            desk_encoder,
        }
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, String> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("certificate profile '{name}' is not configured"))
    }

    /// The keys to generate on a card for these certificate profiles.
    pub fn key_specs(&self, profiles: &[String]) -> Result<Vec<KeySpec>, String> {
        profiles
            .iter()
            .map(|name| {
                let profile = self.profile(name)?;
                Ok(KeySpec {
                    profile: profile.name.clone(),
                    kind: match profile.algorithm {
                        KeyAlgorithm::EcP256 => KeyKind::EcP256,
                        KeyAlgorithm::Rsa2048 => KeyKind::Rsa2048,
                    },
                })
            })
            .collect()
    }

    /// Seals a PUK for storage (AES-256-GCM under the master key).
    pub fn seal_puk(&self, nonce: [u8; 12], puk: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(cardwright_pki::sealing::seal(
            &self.master_key,
            nonce,
            puk.as_bytes(),
        ))
    }

    /// Opens a sealed PUK.
    pub fn open_puk(&self, sealed: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        String::from_utf8(cardwright_pki::sealing::open(&self.master_key, &bytes)?).ok()
    }

    /// Issues a certificate for a key on a card and the record to store for it. A holder's
    /// certificate ends with the assignment (to the day, rounded up), never after its profile's
    /// validity.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one fact of the certificate"
    )]
    pub fn issue(
        &self,
        card: &Card,
        key: &CardKey,
        kind: CertificateKind,
        subject: &Subject,
        holder: Option<&Person>,
        serial: [u8; 16],
        now: Timestamp,
    ) -> Result<(CardCertificate, CertificateRecord), String> {
        let mut profile = self.profile(&key.profile)?.clone();
        if let (CertificateKind::Holder, Some(until)) = (kind, card.valid_until) {
            let days = u64::try_from((until - now).num_seconds())
                .unwrap_or(0)
                .div_ceil(86_400)
                .max(1);
            profile.validity_days = profile
                .validity_days
                .min(u32::try_from(days).unwrap_or(u32::MAX));
        }
        let der = self
            .ca
            .issue(&key.spki, subject, &profile, &serial, now.timestamp())
            .map_err(|e| e.to_string())?;
        let (subject_der, serial_der) =
            cardwright_pki::subject_and_serial(&der).map_err(|e| e.to_string())?;
        let label = match kind {
            CertificateKind::Card => key.profile.clone(),
            CertificateKind::Holder => format!("{} holder", key.profile),
        };
        let record = CertificateRecord {
            serial: hex::encode(serial_der),
            card: card.id,
            profile: key.profile.clone(),
            kind,
            key_id: hex::encode(&key.id),
            public_key: hex::encode(&key.spki),
            subject: subject.common_name.clone(),
            holder: holder.map(|p| p.id),
            der: hex::encode(&der),
            revoked: false,
            issued_at: now,
            not_after: now + chrono::Duration::days(i64::from(profile.validity_days)),
            revoked_at: None,
        };
        Ok((
            CardCertificate {
                key_id: key.id.clone(),
                label,
                der,
                subject: subject_der,
            },
            record,
        ))
    }
}

/// A serial number for a new certificate: 16 random bytes, positive.
pub fn new_serial(ctx: &Context) -> [u8; 16] {
    let mut serial = [0u8; 16];
    ctx.entropy.fill(&mut serial);
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

fn pki(ctx: &Context) -> Result<&Arc<Pki>, ProcessError> {
    ctx.pki
        .as_ref()
        .ok_or_else(|| ProcessError::Internal("no certificate authority is configured".into()))
}

/// The CA certificate (PEM).
pub fn ca_pem(ctx: &Context) -> Result<String, ProcessError> {
    Ok(pki(ctx)?.ca.certificate_pem().to_owned())
}

/// A revocation list is signed again when the revocations change or when it is this old (it
/// is valid for a week); until then every request gets the same list.
const CRL_REISSUE_AFTER_SECS: i64 = 3600;

/// The current revocation list (DER): every revoked certificate. Each list signed gets the next
/// number of a stored counter, so numbers only grow (RFC 5280), across servers too; a list whose
/// revocations are unchanged is served again for an hour instead of being signed anew.
pub async fn crl(ctx: &Context) -> Result<Vec<u8>, ProcessError> {
    let pki = pki(ctx)?;
    let (revoked, issued) = {
        let mut conn = ctx.store.reader().await?;
        (
            certificates::revoked(&mut conn).await?,
            certificates::issued_crl(&mut conn).await?,
        )
    };
    let mut fingerprint = Sha256::new();
    for (serial, at) in &revoked {
        fingerprint.update(format!("{serial}@{};", at.timestamp_micros()));
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
    let list = revoked
        .iter()
        .map(|(serial, at)| {
            Ok(Revoked {
                serial: hex::decode(serial)
                    .map_err(|e| ProcessError::Internal(format!("stored serial {serial}: {e}")))?,
                revoked_at: at.timestamp(),
            })
        })
        .collect::<Result<Vec<_>, ProcessError>>()?;
    let mut tx = ctx.store.begin().await?;
    let number = certificates::next_crl_number(&mut tx).await?;
    let der = pki
        .ca
        .crl(&list, u64::try_from(number).unwrap_or(0), now.timestamp())
        .map_err(|e| ProcessError::Internal(e.to_string()))?;
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

/// Issues holder certificates for the keys on an encoded card, records them and writes them to
/// the card with the desk's encoder. Returns the new certificates' serials.
pub(crate) async fn issue_holder_certificates(
    ctx: &Context,
    conn: &mut Conn,
    card: &Card,
    holder: &Person,
) -> Result<Vec<String>, ProcessError> {
    let pki = pki(ctx)?.clone();
    let Some(encoder) = pki.desk_encoder.clone() else {
        return Err(ProcessError::Conflict(format!(
            "card {} carries a chip but no station has a chip encoder to write the holder's certificates",
            card.serial
        )));
    };
    let card_certs: Vec<CertificateRecord> = certificates::of_card(&mut *conn, card.id, true)
        .await?
        .into_iter()
        .filter(|c| c.kind == CertificateKind::Card)
        .collect();
    let subject = Subject {
        common_name: holder.display_name(),
        email: holder.email.as_ref().map(|e| e.as_str().to_owned()),
    };
    let now = ctx.now();
    let mut written = Vec::new();
    let mut serials = Vec::new();
    for cert in &card_certs {
        let key = CardKey {
            profile: cert.profile.clone(),
            id: hex::decode(&cert.key_id).map_err(|e| ProcessError::Internal(e.to_string()))?,
            spki: hex::decode(&cert.public_key)
                .map_err(|e| ProcessError::Internal(e.to_string()))?,
        };
        let (on_card, record) = pki
            .issue(
                card,
                &key,
                CertificateKind::Holder,
                &subject,
                Some(holder),
                new_serial(ctx),
                now,
            )
            .map_err(ProcessError::Internal)?;
        certificates::insert(&mut *conn, &record).await?;
        serials.push(record.serial);
        written.push(on_card);
    }
    let serial = card.serial.to_string();
    tokio::task::spawn_blocking(move || encoder.write_certificates(&serial, &written))
        .await
        .map_err(|e| ProcessError::Internal(e.to_string()))?
        .map_err(|e| {
            ProcessError::Conflict(format!(
                "the holder's certificates could not be written to the card: {e}"
            ))
        })?;
    Ok(serials)
}
