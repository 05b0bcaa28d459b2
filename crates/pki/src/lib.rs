//! Cardwright's built-in certificate authority.
//!
//! It issues certificates from [`Profile`]s for key pairs generated on cards (the card gives its
//! public key; the private key never leaves it) and signs revocation lists. Time and serial
//! numbers are passed in, so issuing is deterministic for a given input. Where the authority's key
//! is kept (sealed in the database, or on a PKCS#11 token) is the key custody's business: this
//! crate signs with a [`CaKey`] it is given.

pub mod escrow;
pub mod import;
pub mod pkcs11;
pub mod tls;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber, SigningKey,
    SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

/// What went wrong in the certificate authority.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the public key from the card is not usable")]
    PublicKey(#[source] rcgen::Error),
    #[error("signing failed: {0}")]
    Signing(String),
    /// rcgen refused to build or sign.
    #[error("signing failed")]
    Rcgen(#[source] rcgen::Error),
    #[error("time out of range: {0}")]
    Time(i64),
    /// An existing CA's files were refused; the message names the problem.
    #[error("the CA cannot be imported: {0}")]
    Import(String),
    /// The PKCS#12 file's password is wrong: its integrity check does not match.
    #[error(
        "the CA cannot be imported: wrong password for the PKCS#12 file (or the file was altered)"
    )]
    WrongPassword,
    /// A PKCS#11 module or token refused a call; `what` says which and where.
    #[error("{what}")]
    Token {
        what: String,
        #[source]
        source: cryptoki::error::Error,
    },
    /// A PKCS#11 token is not as expected: no such token, a key missing or there twice.
    #[error("{0}")]
    TokenState(String),
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(sign_err)")]
fn sign_err(e: rcgen::Error) -> PkiError {
    PkiError::Rcgen(e)
}

fn at(unix_seconds: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix_seconds).map_err(|_| PkiError::Time(unix_seconds))
}

/// The key a profile's certificates are for, generated on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcP256,
    Rsa2048,
}

/// A certificate profile: what a certificate may be used for and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub digital_signature: bool,
    pub non_repudiation: bool,
    /// Extended key usage TLS client authentication (smart card logon, VPN, Wi-Fi).
    pub client_auth: bool,
    pub validity_days: u32,
    pub algorithm: KeyAlgorithm,
}

/// The shipped profiles: `authentication` (digitalSignature, clientAuth) and `signature`
/// (nonRepudiation), both on EC P-256 keys.
pub fn builtin_profiles(validity_days: u32) -> Vec<Profile> {
    vec![
        Profile {
            name: "authentication".into(),
            digital_signature: true,
            non_repudiation: false,
            client_auth: true,
            validity_days,
            algorithm: KeyAlgorithm::EcP256,
        },
        Profile {
            name: "signature".into(),
            digital_signature: false,
            non_repudiation: true,
            client_auth: false,
            validity_days,
            algorithm: KeyAlgorithm::EcP256,
        },
    ]
}

/// Whom a certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub email: Option<String>,
}

/// A revoked certificate for the revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub serial: Vec<u8>,
    /// Unix seconds.
    pub revoked_at: i64,
    pub reason: Reason,
}

/// Why a certificate is on the revocation list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Revoked for good: its card was withdrawn, locked or made again.
    CessationOfOperation,
    /// On hold (a disabled station's certificate): listed until it is released.
    CertificateHold,
    /// Replaced by a newer certificate for the same holder (a station's renewal).
    Superseded,
}

/// The key a certificate authority signs with.
pub enum CaKey {
    /// A key in this process's memory (opened from its sealed copy).
    Local(Box<KeyPair>),
    /// A key that never leaves its PKCS#11 token.
    Token(pkcs11::TokenSigner),
}

impl CaKey {
    /// A new EC P-256 key in memory.
    pub fn generate() -> Result<Self, PkiError> {
        Ok(Self::Local(Box::new(
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign_err)?,
        )))
    }

    /// A key from its PKCS#8 DER (EC P-256, P-384 or RSA).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, PkiError> {
        KeyPair::try_from(der)
            .map(|key| Self::Local(Box::new(key)))
            .map_err(|e| PkiError::Signing(format!("CA key: {e}")))
    }

    /// The PKCS#8 DER of a key held in memory, to seal it; `None` for a key on a token.
    pub fn pkcs8_der(&self) -> Option<Vec<u8>> {
        match self {
            Self::Local(key) => Some(key.serialize_der()),
            Self::Token(_) => None,
        }
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::Local(key) => key.der_bytes(),
            Self::Token(key) => key.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Local(key) => key.algorithm(),
            Self::Token(key) => key.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            Self::Local(key) => key.sign(msg),
            Self::Token(key) => key.sign(msg),
        }
    }
}

/// The certificate authority: its certificate and signing key.
pub struct CertificateAuthority {
    issuer: Issuer<'static, CaKey>,
    certificate_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed authority named `name` for `key`, valid from `now` for `years`, with
    /// certificate serial `serial` (each certificate of the same authority gets its own).
    pub fn create(
        name: &str,
        key: CaKey,
        serial: u64,
        now: i64,
        years: u32,
    ) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(now)?;
        params.not_after = at(now + i64::from(years) * 365 * 86_400)?;
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_identifier_method = KeyIdMethod::Sha256;
        let certificate = params.self_signed(&key).map_err(sign_err)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            certificate_pem: certificate.pem(),
        })
    }

    /// The authority from its certificate (PEM) and its key.
    pub fn from_pem(certificate_pem: &str, key: CaKey) -> Result<Self, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)
            .map_err(|e| PkiError::Signing(format!("CA certificate: {e}")))?;
        let ca = Self {
            issuer,
            certificate_pem: certificate_pem.to_owned(),
        };
        let info = ca.info()?;
        if info.public_key != ca.issuer.key().subject_public_key_info() {
            return Err(PkiError::Signing(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok(ca)
    }

    /// The authority's key.
    pub fn key(&self) -> &CaKey {
        self.issuer.key()
    }

    /// What an operator checks about the authority's certificate.
    pub fn info(&self) -> Result<CaInfo, PkiError> {
        CaInfo::of_pem(&self.certificate_pem)
    }

    /// The authority's certificate (PEM), as published at `/pki/ca.pem`.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Issues a certificate for the public key `spki_der` (DER SubjectPublicKeyInfo, as read
    /// from the card), naming `subject`, under `profile`, valid from `now`.
    pub fn issue(
        &self,
        spki_der: &[u8],
        subject: &Subject,
        profile: &Profile,
        serial: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, PkiError> {
        let public_key = SubjectPublicKeyInfo::from_der(spki_der).map_err(PkiError::PublicKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, subject.common_name.as_str());
        if let Some(email) = &subject.email {
            let ia5 = email
                .as_str()
                .try_into()
                .map_err(|_| PkiError::Signing(format!("'{email}' is not an ASCII email")))?;
            params.subject_alt_names = vec![SanType::Rfc822Name(ia5)];
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = [
            (profile.digital_signature, KeyUsagePurpose::DigitalSignature),
            (profile.non_repudiation, KeyUsagePurpose::ContentCommitment),
        ]
        .into_iter()
        .filter_map(|(on, usage)| on.then_some(usage))
        .collect();
        if profile.client_auth {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.not_before = at(now)?;
        params.not_after = at(now + i64::from(profile.validity_days) * 86_400)?;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&public_key, &self.issuer)
            .map_err(sign_err)?;
        Ok(certificate.der().to_vec())
    }

    /// The revocation list (DER) of `revoked`, number `number`, valid for a week from `now`.
    pub fn crl(&self, revoked: &[Revoked], number: u64, now: i64) -> Result<Vec<u8>, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: at(r.revoked_at)?,
                    reason_code: Some(match r.reason {
                        Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
                        Reason::CertificateHold => RevocationReason::CertificateHold,
                        Reason::Superseded => RevocationReason::Superseded,
                    }),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: at(now)?,
            next_update: at(now + 7 * 86_400)?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params
            .signed_by(&self.issuer)
            .map_err(sign_err)?
            .der()
            .to_vec())
    }
}

/// AES-256-GCM for secrets kept at rest (the PUK): the master key stays outside the database.
pub mod sealing {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Key, Nonce};

    /// Encrypts `plaintext` under `key` with the 12-byte `nonce` (never reuse a nonce with a
    /// key); returns nonce followed by ciphertext and tag.
    pub fn seal(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
        seal_bound(key, nonce, b"", plaintext)
    }

    /// As [`seal`], bound to `aad` (what the secret is, such as a key's name), which opening
    /// must name again: a sealed value copied to another place does not open there.
    pub fn seal_bound(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
        let mut out = nonce.to_vec();
        out.extend(
            cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext,
                        aad,
                    },
                )
                .unwrap_or_default(),
        );
        out
    }

    /// Decrypts what [`seal`] made; `None` when the key is wrong or the data was changed.
    pub fn open(key: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
        open_bound(key, b"", sealed)
    }

    /// Decrypts what [`seal_bound`] made with the same `aad`.
    pub fn open_bound(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn sealed_secrets_open_only_with_their_key() {
            let key = [7u8; 32];
            let sealed = super::seal(&key, [1; 12], b"12345678");
            assert!(!sealed.windows(8).any(|w| w == b"12345678"));
            assert_eq!(
                super::open(&key, &sealed).as_deref(),
                Some(&b"12345678"[..])
            );
            assert_eq!(super::open(&[8u8; 32], &sealed), None);
            let mut tampered = sealed.clone();
            tampered[15] ^= 1;
            assert_eq!(super::open(&key, &tampered), None);
            let bound = super::seal_bound(&key, [2; 12], b"master-1", b"secret");
            assert_eq!(
                super::open_bound(&key, b"master-1", &bound).as_deref(),
                Some(&b"secret"[..])
            );
            assert_eq!(super::open_bound(&key, b"master-2", &bound), None);
        }
    }
}

/// The DER of a certificate's subject name (what PKCS#11 stores as `CKA_SUBJECT`) and its serial.
pub fn subject_and_serial(certificate_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(certificate_der)
        .map_err(|e| PkiError::Signing(format!("certificate does not parse: {e}")))?;
    Ok((
        cert.tbs_certificate.subject.as_raw().to_vec(),
        cert.tbs_certificate.raw_serial().to_vec(),
    ))
}

/// PEM of a DER certificate, as `openssl` and browsers read it.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// What an operator checks about a CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaInfo {
    /// The subject, as openssl prints it (`CN=Cardwright Card CA`).
    pub subject: String,
    /// SHA-256 of the certificate's DER, colon-separated upper-case hex, as `openssl x509
    /// -fingerprint -sha256` prints it.
    pub fingerprint: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

impl CaInfo {
    /// Reads a certificate (PEM).
    pub fn of_pem(certificate_pem: &str) -> Result<Self, PkiError> {
        use sha2::{Digest as _, Sha256};
        use x509_parser::prelude::FromDer as _;
        let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
            .map_err(|e| PkiError::Signing(format!("CA certificate is not PEM: {e}")))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
            .map_err(|e| PkiError::Signing(format!("CA certificate does not parse: {e}")))?;
        let fingerprint = Sha256::digest(&pem.contents)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(Self {
            subject: cert.subject().to_string(),
            fingerprint,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            public_key: cert.public_key().raw.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rcgen::PublicKeyData as _;

    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn openssl(args: &[&str]) -> (bool, String) {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "one authority's life, step by step")]
    fn issued_certificates_verify_and_revocations_are_listed() {
        if !cardwright_testkit::require_programs(
            &["openssl"],
            "install Debian's openssl (scripts/test does)",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            "Cardwright Test CA",
            CaKey::generate().unwrap(),
            1,
            NOW,
            20,
        )
        .unwrap();
        let sealed_copy = ca.key().pkcs8_der().unwrap();
        let again = CertificateAuthority::from_pem(
            ca.certificate_pem(),
            CaKey::from_pkcs8(&sealed_copy).unwrap(),
        )
        .unwrap();
        assert!(
            CertificateAuthority::from_pem(ca.certificate_pem(), CaKey::generate().unwrap())
                .is_err(),
            "a key that is not the certificate's is refused"
        );
        let info = again.info().unwrap();
        assert_eq!(info.subject, "CN=Cardwright Test CA");
        assert_eq!(info.not_before, NOW);
        let card_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let profiles = builtin_profiles(30);
        let subject = Subject {
            common_name: "Ada Lovelace".into(),
            email: Some("ada@example.com".into()),
        };
        let der = again
            .issue(
                &card_key.subject_public_key_info(),
                &subject,
                &profiles[0],
                &[0x42, 0x01],
                NOW,
            )
            .unwrap();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("card.pem");
        std::fs::write(&ca_path, ca.certificate_pem()).unwrap();
        std::fs::write(&cert_path, certificate_pem(&der)).unwrap();
        let (ok, text) = openssl(&[
            "verify",
            "-attime",
            &(NOW + 60).to_string(),
            "-CAfile",
            ca_path.to_str().unwrap(),
            cert_path.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let (_, text) = openssl(&[
            "x509",
            "-in",
            cert_path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            text.contains("CN=Ada Lovelace") || text.contains("CN = Ada Lovelace"),
            "{text}"
        );
        assert!(
            text.contains("Digital Signature") && text.contains("TLS Web Client Authentication"),
            "{text}"
        );
        assert!(text.contains("email:ada@example.com"), "{text}");
        assert!(text.contains("0x4201"), "{text}");

        let crl = ca
            .crl(
                &[Revoked {
                    serial: vec![0x42, 0x01],
                    revoked_at: NOW + 100,
                    reason: Reason::CessationOfOperation,
                }],
                2,
                NOW + 200,
            )
            .unwrap();
        let crl_path = dir.path().join("crl.der");
        std::fs::write(&crl_path, &crl).unwrap();
        let (ok, text) = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("4201"), "{text}");
        let (ok, text) = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_path.to_str().unwrap(),
            "-CAfile",
            ca_path.to_str().unwrap(),
            "-noout",
        ]);
        assert!(ok && text.contains("verify OK"), "{text}");
    }

    #[test]
    fn signature_profile_is_non_repudiation_only() {
        let ca = CertificateAuthority::create("CA", CaKey::generate().unwrap(), 1, NOW, 1).unwrap();
        let card_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = ca
            .issue(
                &card_key.subject_public_key_info(),
                &Subject {
                    common_name: "TMP-000001".into(),
                    email: None,
                },
                &builtin_profiles(30)[1],
                &[7],
                NOW,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, certificate_pem(&der)).unwrap();
        let (_, text) = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"]);
        assert!(
            text.contains("Non Repudiation") && !text.contains("Client Authentication"),
            "{text}"
        );
        assert!(ca
            .issue(
                b"not a key",
                &Subject {
                    common_name: "x".into(),
                    email: None
                },
                &builtin_profiles(30)[1],
                &[8],
                NOW
            )
            .is_err());
    }
}
