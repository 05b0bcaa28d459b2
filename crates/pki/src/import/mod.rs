//! Bringing an existing certificate authority into Cardwright (`cardwright pki init --import`).
//!
//! An admin hands over the CA's certificate and private key, either as PEM files or as one
//! PKCS#12 file with its password. Every file is treated as hostile input: sizes and the work of
//! key derivation are bounded, nothing panics, and each refusal names the problem in plain words.
//! What comes out is the certificate as clean PEM and the key as unencrypted PKCS#8 DER, the form
//! `rcgen::KeyPair::try_from` reads, checked to belong together and to be usable for signing.
//!
//! Supported keys are EC P-256, EC P-384 and RSA of 2048 to 4096 bits, which is what rcgen on ring
//! can sign with. PKCS#12 files are read in the form OpenSSL 3 writes by default (PBES2 with
//! PBKDF2 and AES-CBC, HMAC-SHA-256 integrity) and in the legacy form of OpenSSL 1.1, Windows and
//! `openssl pkcs12 -legacy` (SHA-1 PKCS#12 key derivation with 3DES or RC2).

use std::fmt;
use std::num::NonZeroU32;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipher, BlockDecryptMut, InnerIvInit, KeyInit};
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _, Reader as _, SliceReader, Tag, TagNumber, Tagged as _};
use rcgen::{Issuer, KeyPair};
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use crate::PkiError;

mod asn1;
mod decrypt;
mod pkcs12;
#[cfg(test)]
mod tests;

// The parts of the import share their helpers, as they did in one file.
#[allow(clippy::wildcard_imports)]
use asn1::*;
#[allow(clippy::wildcard_imports)]
use decrypt::*;
#[allow(clippy::wildcard_imports)]
use pkcs12::*;

/// The largest file accepted. A CA's certificate and key take a few kilobytes, even with a chain
/// beside them; the limit keeps a stray or hostile file from being read into memory and parsed.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The most key-derivation iterations one password derivation may ask for. OpenSSL writes 2,048
/// and the slowest common settings stay well below a million, so a larger count only serves to
/// make the server spin.
pub const MAX_ITERATIONS: u64 = 10_000_000;

/// The most iterations one file may ask for in all (its integrity check and each encrypted part
/// derive separately), so that a file of many encrypted parts cannot multiply the work.
const MAX_TOTAL_ITERATIONS: u64 = 3 * MAX_ITERATIONS;

/// How deep PKCS#12 bags may nest inside each other; real files do not nest at all, and the
/// bound keeps a crafted file from exhausting the stack.
const MAX_NESTING: usize = 4;

const SUPPORTED_KEYS: &str =
    "Cardwright signs with EC P-256, EC P-384 or RSA keys of 2048 to 4096 bits";

/// An existing CA: its certificate and its private key.
pub struct ImportedCa {
    /// The CA certificate, as one PEM block.
    pub certificate_pem: String,
    /// The CA's private key as unencrypted PKCS#8 DER, which `rcgen::KeyPair::try_from` reads.
    pub key_pkcs8_der: Vec<u8>,
}

impl fmt::Debug for ImportedCa {
    /// Shows the certificate only: the key is a secret and must not end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedCa")
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pkcs8_der", &"(secret, not shown)")
            .finish()
    }
}

/// Reads a CA from its certificate (the first CERTIFICATE block of `certificate_pem`) and its
/// unencrypted private key in PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`) PEM.
pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<ImportedCa, PkiError> {
    check_size(certificate_pem.len(), "the certificate file")?;
    check_size(key_pem.len(), "the key file")?;
    let blocks = pem::parse_many(certificate_pem)
        .map_err(|e| refused(format!("the certificate file is not readable PEM ({e})")))?;
    let certificate = blocks
        .iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .ok_or_else(|| {
            refused("the certificate file holds no certificate (no BEGIN CERTIFICATE block)")
        })?;
    let key = key_from_pem(key_pem)?;
    assemble(certificate.contents(), &key)
}

/// Reads a CA from a PKCS#12 file (`.p12`, `.pfx`) and its password. Of the certificates in the
/// file, the one whose public key matches the private key is taken; the others (a chain) are
/// passed over.
pub fn from_pkcs12(der: &[u8], password: &str) -> Result<ImportedCa, PkiError> {
    check_size(der.len(), "the PKCS#12 file")?;
    if der.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(refused(
            "the file is PEM text, not PKCS#12; import PEM files as a certificate and a key",
        ));
    }
    let pfx = read_pfx(der)?;
    let mut work = Work::default();
    let password = match pfx.mac_data {
        Some(mac_data) => verify_mac(mac_data, pfx.auth_safe, password, &mut work)?,
        None => Password {
            text: password.as_bytes(),
            bmp: bmp(password),
            checked: false,
        },
    };
    let mut found = Found::default();
    read_authenticated_safe(pfx.auth_safe, &password, &mut work, &mut found)?;
    found.into_ca()
}

fn refused(message: impl Into<String>) -> PkiError {
    PkiError::Import(message.into())
}

fn damaged(what: &str) -> PkiError {
    refused(format!("{what} is damaged or not in the expected format"))
}

fn check_size(len: usize, what: &str) -> Result<(), PkiError> {
    if len > MAX_FILE_BYTES {
        return Err(refused(format!(
            "{what} is {len} bytes, above the limit of 1 MiB; a CA's certificate and key take a \
             few kilobytes"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The certificate and the key together

/// Checks that `certificate_der` is a CA certificate and that `key` is its private key, and gives
/// both in the form Cardwright keeps.
fn assemble(certificate_der: &[u8], key: &PrivateKey) -> Result<ImportedCa, PkiError> {
    let (rest, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|e| refused(format!("the certificate does not parse ({e})")))?;
    if !rest.is_empty() {
        return Err(damaged("the certificate"));
    }
    require_ca(&certificate)?;
    let (key_type, certificate_public) =
        certificate_public_key(certificate.tbs_certificate.subject_pki.raw)?;
    if !key.may_belong_to(key_type, certificate_public) {
        return Err(not_its_key());
    }
    let pkcs8 = key.pkcs8(certificate_public)?;
    check_key(&pkcs8, key_type, key.public().is_none())?;
    let key_pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|e| {
        refused(format!(
            "the signing library does not accept the private key ({e})"
        ))
    })?;
    // The checks above compare what the files say; this compares what the signing library
    // derived from the private key, so a key that only claims a public key cannot pass.
    if key_pair.public_key_raw() != certificate_public {
        return Err(not_its_key());
    }
    let certificate_pem = crate::certificate_pem(certificate_der);
    Issuer::from_ca_cert_pem(&certificate_pem, key_pair).map_err(|e| {
        refused(format!(
            "the certificate cannot be used to issue certificates ({e})"
        ))
    })?;
    Ok(ImportedCa {
        certificate_pem,
        key_pkcs8_der: pkcs8,
    })
}

fn not_its_key() -> PkiError {
    refused("the private key does not belong to the certificate (their public keys differ)")
}

fn require_ca(certificate: &X509Certificate<'_>) -> Result<(), PkiError> {
    let constraints = certificate.basic_constraints().map_err(|e| {
        refused(format!(
            "the certificate's basic constraints do not parse ({e})"
        ))
    })?;
    if !constraints.is_some_and(|c| c.value.ca) {
        return Err(refused(
            "the certificate is not a CA certificate: it lacks basicConstraints with cA=TRUE, so \
             certificates it signed would not verify",
        ));
    }
    let usage = certificate
        .key_usage()
        .map_err(|e| refused(format!("the certificate's key usage does not parse ({e})")))?;
    if usage.is_some_and(|u| !u.value.key_cert_sign()) {
        return Err(refused(
            "the CA certificate's key usage does not allow signing certificates (keyCertSign is \
             missing)",
        ));
    }
    Ok(())
}

/// The key type and the public key (the BIT STRING's bytes) of a SubjectPublicKeyInfo.
fn certificate_public_key(spki: &[u8]) -> Result<(KeyType, &[u8]), PkiError> {
    const WHAT: &str = "the certificate's public key";
    let mut fields = Elements::of(element(spki, Tag::Sequence, WHAT)?, WHAT)?;
    let (oid, parameters) = algorithm_identifier(fields.next()?, WHAT)?;
    let bits = fields.expect(Tag::BitString)?;
    let key_type = key_type(oid, parameters, WHAT)?;
    Ok((key_type, bit_string(bits, WHAT)?))
}

/// Asks ring, which rcgen signs with, whether it takes the key, so that a refusal can say why
/// (rcgen itself only says that it could not parse the key).
fn check_key(
    pkcs8: &[u8],
    key_type: KeyType,
    public_from_certificate: bool,
) -> Result<(), PkiError> {
    let rng = ring::rand::SystemRandom::new();
    let result = match key_type {
        KeyType::P256 => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).map(drop)
        }
        KeyType::P384 => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8, &rng).map(drop)
        }
        KeyType::Rsa => RsaKeyPair::from_pkcs8(pkcs8).map(drop),
    };
    let Err(rejected) = result else {
        return Ok(());
    };
    let reason = match rejected.to_string().as_str() {
        // The public key was taken from the certificate, so parts that do not fit mean that the
        // private key belongs to another certificate.
        "InconsistentComponents" if public_from_certificate => return Err(not_its_key()),
        "InconsistentComponents" => "its parts do not fit together (the file is damaged)".into(),
        "TooSmall" => "it is too weak: RSA keys need at least 2048 bits and a public exponent of \
                       at least 65537"
            .into(),
        "TooLarge" => "RSA keys above 4096 bits are not supported".into(),
        "PrivateModulusLenNotMultipleOf512Bits" => {
            "the RSA key length must be a multiple of 512 bits (2048, 3072 or 4096)".into()
        }
        "InvalidComponent" => "a part of it is out of range".into(),
        other => format!("it is not well-formed ({other})"),
    };
    Err(refused(format!(
        "the {} private key is not usable: {reason}",
        key_type.name()
    )))
}

// ---------------------------------------------------------------------------------------------
// Private keys

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    P256,
    P384,
    Rsa,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "EC P-256",
            Self::P384 => "EC P-384",
            Self::Rsa => "RSA",
        }
    }

    /// The curve's OID and the length of its private scalar in bytes.
    fn curve(self) -> Option<(ObjectIdentifier, usize)> {
        match self {
            Self::P256 => Some((SECP256R1, 32)),
            Self::P384 => Some((SECP384R1, 48)),
            Self::Rsa => None,
        }
    }
}

/// The key type an AlgorithmIdentifier names; `whose` says in the error whose key it is.
fn key_type(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    whose: &str,
) -> Result<KeyType, PkiError> {
    if oid == RSA_ENCRYPTION {
        return Ok(KeyType::Rsa);
    }
    if oid != EC_PUBLIC_KEY {
        return Err(refused(format!(
            "{whose} has an unsupported key type ({}); {SUPPORTED_KEYS}",
            oid_name(oid)
        )));
    }
    match parameters {
        Some(curve) if curve.tag() == Tag::ObjectIdentifier => {
            let curve = curve
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| damaged(whose))?;
            curve_type(curve, whose)
        }
        Some(_) => Err(explicit_curve(whose)),
        None => Err(refused(format!("{whose} does not name its EC curve"))),
    }
}

fn curve_type(curve: ObjectIdentifier, whose: &str) -> Result<KeyType, PkiError> {
    if curve == SECP256R1 {
        Ok(KeyType::P256)
    } else if curve == SECP384R1 {
        Ok(KeyType::P384)
    } else {
        Err(refused(format!(
            "{whose} is an EC key on an unsupported curve ({}); {SUPPORTED_KEYS}",
            oid_name(curve)
        )))
    }
}

fn explicit_curve(whose: &str) -> PkiError {
    refused(format!(
        "{whose} spells out its EC curve's parameters instead of naming the curve, which is not \
         supported; convert it with `openssl ec -in key.pem -param_enc named_curve -out named.pem`"
    ))
}

/// A private key as read from a file, before it is checked against a certificate.
enum PrivateKey {
    /// The PKCS#1 RSAPrivateKey (DER) and the RSAPublicKey (DER) made of its modulus and exponent,
    /// which is what a certificate's SubjectPublicKeyInfo holds.
    Rsa { pkcs1: Vec<u8>, public: Vec<u8> },
    /// The private scalar and, when the file carries it, the public point.
    Ec {
        key_type: KeyType,
        scalar: Vec<u8>,
        public: Option<Vec<u8>>,
    },
}

impl PrivateKey {
    fn key_type(&self) -> KeyType {
        match self {
            Self::Rsa { .. } => KeyType::Rsa,
            Self::Ec { key_type, .. } => *key_type,
        }
    }

    fn public(&self) -> Option<&[u8]> {
        match self {
            Self::Rsa { public, .. } => Some(public),
            Self::Ec { public, .. } => public.as_deref(),
        }
    }

    /// Whether the key may be the one for a certificate's public key: the same type and, when
    /// the key carries its public key, the same public key. An EC key without its public key is
    /// checked later, when ring derives the public key from the private one.
    fn may_belong_to(&self, key_type: KeyType, public: &[u8]) -> bool {
        self.key_type() == key_type && self.public().is_none_or(|own| own == public)
    }

    /// The key as PKCS#8 in the one form ring reads: version 1, no attributes, and for EC keys an
    /// ECPrivateKey carrying its public key (ring requires it), taken from the certificate when
    /// the file left it out.
    fn pkcs8(&self, certificate_public: &[u8]) -> Result<Vec<u8>, PkiError> {
        let (algorithm, inner) = match self {
            Self::Rsa { pkcs1, .. } => (
                [encode_oid(RSA_ENCRYPTION)?, encode(Tag::Null, &[])?].concat(),
                pkcs1.clone(),
            ),
            Self::Ec {
                key_type,
                scalar,
                public,
            } => {
                let Some((curve, scalar_len)) = key_type.curve() else {
                    return Err(damaged("the private key"));
                };
                if scalar.len() > scalar_len {
                    return Err(damaged("the EC private key"));
                }
                // SEC1 gives the scalar at the curve's full length; some tools drop leading
                // zero bytes, which ring would refuse, so they are put back.
                let mut padded = vec![0; scalar_len - scalar.len()];
                padded.extend_from_slice(scalar);
                let public = public.as_deref().unwrap_or(certificate_public);
                let mut bits = vec![0];
                bits.extend_from_slice(public);
                let ec_private_key = encode(
                    Tag::Sequence,
                    &[
                        encode(Tag::Integer, &[1])?,
                        encode(Tag::OctetString, &padded)?,
                        encode(EXPLICIT_1, &encode(Tag::BitString, &bits)?)?,
                    ]
                    .concat(),
                )?;
                (
                    [encode_oid(EC_PUBLIC_KEY)?, encode_oid(curve)?].concat(),
                    ec_private_key,
                )
            }
        };
        encode(
            Tag::Sequence,
            &[
                encode(Tag::Integer, &[0])?,
                encode(Tag::Sequence, &algorithm)?,
                encode(Tag::OctetString, &inner)?,
            ]
            .concat(),
        )
    }
}

fn key_from_pem(text: &str) -> Result<PrivateKey, PkiError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| refused(format!("the key file is not readable PEM ({e})")))?;
    let mut found = None;
    for block in &blocks {
        // Traditional OpenSSL encryption announces itself in a header of the PEM block.
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|value| value.contains("ENCRYPTED"));
        let key = match block.tag() {
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted_key()),
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" if encrypted => {
                return Err(encrypted_key())
            }
            "PRIVATE KEY" => key_from_pkcs8(block.contents())?,
            "EC PRIVATE KEY" => key_from_sec1(block.contents(), None)?,
            "RSA PRIVATE KEY" => key_from_pkcs1(block.contents())?,
            "DSA PRIVATE KEY" => {
                return Err(refused(format!(
                    "the key file holds a DSA key, an unsupported key type; {SUPPORTED_KEYS}"
                )))
            }
            "OPENSSH PRIVATE KEY" => {
                return Err(refused(
                    "the key file holds an OpenSSH key; a CA key is read as PEM (PRIVATE KEY, \
                     EC PRIVATE KEY or RSA PRIVATE KEY)",
                ))
            }
            // Certificates and EC PARAMETERS blocks often sit beside a key; they are passed over.
            _ => continue,
        };
        if found.is_some() {
            return Err(refused(
                "the key file holds more than one private key; give the CA's key alone",
            ));
        }
        found = Some(key);
    }
    found.ok_or_else(|| {
        refused(
            "the key file holds no private key (no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE \
             KEY block)",
        )
    })
}

fn encrypted_key() -> PkiError {
    refused(
        "the private key is encrypted; write it out unencrypted (openssl pkey -in key.pem -out \
         plain.pem) or import a PKCS#12 file with its password",
    )
}

/// Reads a PKCS#8 PrivateKeyInfo (or a version 2 OneAsymmetricKey).
fn key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, PkiError> {
    const WHAT: &str = "the private key (PKCS#8)";
    let mut fields = Elements::of(element(der, Tag::Sequence, WHAT)?, WHAT)?;
    if fields.integer()? > 1 {
        return Err(damaged(WHAT));
    }
    let (oid, parameters) = algorithm_identifier(fields.next()?, WHAT)?;
    let inner = fields.expect(Tag::OctetString)?;
    fields.next_if(EXPLICIT_0)?;
    // Version 2 may carry the public key here, outside the ECPrivateKey.
    let public = fields.next_if(IMPLICIT_1)?;
    match key_type(oid, parameters, "the private key")? {
        KeyType::Rsa => key_from_pkcs1(inner),
        ec => {
            let mut key = key_from_sec1(inner, Some(ec))?;
            if let (PrivateKey::Ec { public: own, .. }, Some(public)) = (&mut key, public) {
                if own.is_none() {
                    *own = Some(bit_string(public.value(), WHAT)?.to_vec());
                }
            }
            Ok(key)
        }
    }
}

/// Reads a SEC1 ECPrivateKey; `outer` is the curve that a surrounding PKCS#8 names.
fn key_from_sec1(der: &[u8], outer: Option<KeyType>) -> Result<PrivateKey, PkiError> {
    const WHAT: &str = "the EC private key";
    let mut fields = Elements::of(element(der, Tag::Sequence, WHAT)?, WHAT)?;
    if fields.integer()? != 1 {
        return Err(damaged(WHAT));
    }
    let scalar = fields.expect(Tag::OctetString)?.to_vec();
    let named = match fields.next_if(EXPLICIT_0)? {
        Some(parameters) => {
            let curve = AnyRef::from_der(parameters.value()).map_err(|_| damaged(WHAT))?;
            if curve.tag() != Tag::ObjectIdentifier {
                return Err(explicit_curve("the private key"));
            }
            let curve = curve
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| damaged(WHAT))?;
            Some(curve_type(curve, "the private key")?)
        }
        None => None,
    };
    let public = match fields.next_if(EXPLICIT_1)? {
        Some(public) => {
            let bits = element(public.value(), Tag::BitString, WHAT)?;
            Some(bit_string(bits, WHAT)?.to_vec())
        }
        None => None,
    };
    let key_type = match (named, outer) {
        (Some(named), Some(outer)) if named != outer => return Err(damaged(WHAT)),
        (Some(key_type), _) | (None, Some(key_type)) => key_type,
        (None, None) => return Err(refused("the EC private key does not name its curve")),
    };
    Ok(PrivateKey::Ec {
        key_type,
        scalar,
        public,
    })
}

/// Reads a PKCS#1 RSAPrivateKey.
fn key_from_pkcs1(der: &[u8]) -> Result<PrivateKey, PkiError> {
    const WHAT: &str = "the RSA private key";
    let mut fields = Elements::of(element(der, Tag::Sequence, WHAT)?, WHAT)?;
    match fields.integer()? {
        0 => {}
        1 => {
            return Err(refused(
                "the RSA private key has more than two primes, which is not supported",
            ))
        }
        _ => return Err(damaged(WHAT)),
    }
    let modulus = fields.next_tagged(Tag::Integer)?;
    let exponent = fields.next_tagged(Tag::Integer)?;
    let public = encode(
        Tag::Sequence,
        &[modulus.to_der(), exponent.to_der()]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| damaged(WHAT))?
            .concat(),
    )?;
    Ok(PrivateKey::Rsa {
        pkcs1: der.to_vec(),
        public,
    })
}
