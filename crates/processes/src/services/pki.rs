//! The certificate authority as a service: certificates that name the card at issue and its holder
//! at assignment, the key specifications of the configured profiles, and sealed PUKs.

use std::sync::Arc;

use cardwright_cardsdk::encoder::{CardCertificate, CardKey, KeyKind, KeySpec, Pkcs11Encoder};
use cardwright_domain::temp_cards::Card;
use cardwright_domain::{Person, Timestamp};
use cardwright_pki::{CertificateAuthority, KeyAlgorithm, Profile, Subject};
use cardwright_storage::certificates::{CertificateKind, CertificateRecord};
use cardwright_storage::Conn;

use crate::keys::{KeyError, MasterKeys};

/// Why the certificate authority did not give a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate profile '{0}' is not configured")]
    UnknownProfile(String),
    #[error("the certificate authority refused to sign")]
    Sign(#[source] cardwright_pki::PkiError),
    #[error("the certificate it signed does not parse")]
    Parse(#[source] cardwright_pki::PkiError),
}

/// An earlier CA of the installation (before `pki renew-ca`), numbered as `pki show` numbers it.
pub struct PreviousCa {
    pub version: i64,
    pub ca: CertificateAuthority,
}

/// The built-in certificate authority, its profiles and the keys that seal PUKs.
pub struct Pki {
    pub ca: CertificateAuthority,
    /// Older CAs whose certificates have not expired, newest first.
    pub previous: Vec<PreviousCa>,
    pub profiles: Vec<Profile>,
    master: Arc<MasterKeys>,
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
        previous: Vec<PreviousCa>,
        profiles: Vec<Profile>,
        master: Arc<MasterKeys>,
        desk_encoder: Option<Arc<Pkcs11Encoder>>,
    ) -> Self {
        Self {
            ca,
            previous,
            profiles,
            master,
            desk_encoder,
        }
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, PkiError> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| PkiError::UnknownProfile(name.to_owned()))
    }

    /// The keys to generate on a card for these certificate profiles.
    pub fn key_specs(&self, profiles: &[String]) -> Result<Vec<KeySpec>, PkiError> {
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

    /// Seals a PUK for storage (AES-256-GCM under the current master key).
    pub async fn seal_puk(
        &self,
        conn: &mut Conn,
        nonce: [u8; 12],
        puk: &str,
    ) -> Result<String, KeyError> {
        self.master.seal(conn, nonce, puk).await
    }

    /// Opens a sealed PUK; `None` when it does not open.
    pub async fn open_puk(
        &self,
        conn: &mut Conn,
        sealed: &str,
    ) -> Result<Option<String>, KeyError> {
        self.master.open(conn, sealed).await
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
    ) -> Result<(CardCertificate, CertificateRecord), PkiError> {
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
            .map_err(PkiError::Sign)?;
        let (subject_der, serial_der) =
            cardwright_pki::subject_and_serial(&der).map_err(PkiError::Parse)?;
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
