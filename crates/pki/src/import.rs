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

// ---------------------------------------------------------------------------------------------
// PKCS#12 (RFC 7292)

const P12: &str = "the PKCS#12 file";

struct Pfx<'a> {
    /// The AuthenticatedSafe's DER, which the MAC covers.
    auth_safe: &'a [u8],
    /// The MacData SEQUENCE's content.
    mac_data: Option<&'a [u8]>,
}

fn read_pfx(der: &[u8]) -> Result<Pfx<'_>, PkiError> {
    let mut fields = Elements::of(element(der, Tag::Sequence, P12)?, P12)?;
    if fields.integer()? != 3 {
        return Err(damaged(P12));
    }
    let (content_type, content) = content_info(fields.next()?)?;
    if content_type == SIGNED_DATA {
        return Err(refused(
            "the PKCS#12 file is protected by a signature (public-key integrity mode), which is \
             not supported; export it with a password",
        ));
    }
    if content_type != DATA {
        return Err(damaged(P12));
    }
    let auth_safe = element(content, Tag::OctetString, P12)?;
    let mac_data = fields.next_if(Tag::Sequence)?.map(AnyRef::value);
    Ok(Pfx {
        auth_safe,
        mac_data,
    })
}

/// A ContentInfo's type and its content (the DER inside `[0] EXPLICIT`).
fn content_info(info: AnyRef<'_>) -> Result<(ObjectIdentifier, &[u8]), PkiError> {
    let mut fields = sequence(info, P12)?;
    let content_type = fields.oid()?;
    let content = fields.expect(EXPLICIT_0)?;
    Ok((content_type, content))
}

/// The password in the two forms PKCS#12 uses.
struct Password<'p> {
    /// As typed (UTF-8): PBES2 derives its keys from these bytes.
    text: &'p [u8],
    /// As a BMPString (UTF-16 big-endian) with a terminating zero: the PKCS#12 key derivation of
    /// the MAC and of the legacy ciphers uses these bytes.
    bmp: Vec<u8>,
    /// Whether the MAC proved the password right; a part that does not decrypt then means a
    /// damaged file rather than a wrong password.
    checked: bool,
}

impl Password<'_> {
    fn undecryptable(&self) -> PkiError {
        if self.checked {
            refused(
                "part of the PKCS#12 file does not decrypt although the password passed the \
                 file's integrity check; the file is damaged",
            )
        } else {
            PkiError::WrongPassword
        }
    }
}

fn bmp(password: &str) -> Vec<u8> {
    password
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// Checks the file's MAC with `password` and gives the password in the form that matched.
fn verify_mac<'p>(
    mac_data: &[u8],
    auth_safe: &[u8],
    password: &'p str,
    work: &mut Work,
) -> Result<Password<'p>, PkiError> {
    const WHAT: &str = "the PKCS#12 file's integrity check (MAC)";
    let mut fields = Elements::of(mac_data, WHAT)?;
    let mut digest_info = fields.sequence()?;
    let (oid, _) = algorithm_identifier(digest_info.next()?, WHAT)?;
    let expected = digest_info.expect(Tag::OctetString)?;
    let salt = fields.expect(Tag::OctetString)?;
    let iterations = match fields.next_if(Tag::Integer)? {
        Some(count) => count.decode_as::<u64>().map_err(|_| damaged(WHAT))?,
        None => 1,
    };
    let hash = Hash::from_digest_oid(oid).ok_or_else(|| {
        refused(format!(
            "the PKCS#12 file's integrity check uses {}, which is not supported (SHA-1, SHA-256, \
             SHA-384 and SHA-512 are)",
            oid_name(oid)
        ))
    })?;
    // An empty password is written by some tools as an empty BMPString (just the terminating
    // zero) and by others as no bytes at all; both are tried.
    let mut candidates = vec![bmp(password)];
    if password.is_empty() {
        candidates.push(Vec::new());
    }
    for candidate in candidates {
        let iterations = work.charge(iterations, 1)?;
        let key = pkcs12_kdf(
            hash,
            3,
            &candidate,
            salt,
            iterations,
            hash.digest().output_len(),
        );
        let key = ring::hmac::Key::new(hash.hmac(), &key);
        if ring::hmac::verify(&key, auth_safe, expected).is_ok() {
            return Ok(Password {
                text: password.as_bytes(),
                bmp: candidate,
                checked: true,
            });
        }
    }
    Err(PkiError::WrongPassword)
}

/// What the bags of a PKCS#12 file held.
#[derive(Default)]
struct Found {
    keys: Vec<PrivateKey>,
    certificates: Vec<Vec<u8>>,
}

impl Found {
    fn into_ca(self) -> Result<ImportedCa, PkiError> {
        let key = match self.keys.as_slice() {
            [] => return Err(refused("the PKCS#12 file holds no private key")),
            [key] => key,
            more => {
                return Err(refused(format!(
                    "the PKCS#12 file holds {} private keys; export it with the CA's key only",
                    more.len()
                )))
            }
        };
        if self.certificates.is_empty() {
            return Err(refused("the PKCS#12 file holds no certificate"));
        }
        let mut first_error = None;
        for certificate in &self.certificates {
            // Certificates of a chain, and any that do not parse, are passed over: only the one
            // whose public key is the key's counts.
            if !certificate_may_belong(certificate, key) {
                continue;
            }
            match assemble(certificate, key) {
                Ok(ca) => return Ok(ca),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            refused(
                "no certificate in the PKCS#12 file belongs to its private key (their public keys \
                 differ)",
            )
        }))
    }
}

fn certificate_may_belong(certificate_der: &[u8], key: &PrivateKey) -> bool {
    X509Certificate::from_der(certificate_der)
        .ok()
        .and_then(|(_, certificate)| {
            certificate_public_key(certificate.tbs_certificate.subject_pki.raw).ok()
        })
        .is_some_and(|(key_type, public)| key.may_belong_to(key_type, public))
}

/// Reads the AuthenticatedSafe: a sequence of ContentInfo, each plain or encrypted.
fn read_authenticated_safe(
    der: &[u8],
    password: &Password<'_>,
    work: &mut Work,
    found: &mut Found,
) -> Result<(), PkiError> {
    let mut infos = Elements::of(element(der, Tag::Sequence, P12)?, P12)?;
    while !infos.is_done() {
        let (content_type, content) = content_info(infos.next()?)?;
        if content_type == DATA {
            let safe_contents = element(content, Tag::OctetString, P12)?;
            read_safe_contents(safe_contents, password, work, found, 0)?;
        } else if content_type == ENCRYPTED_DATA {
            let safe_contents = decrypt_encrypted_data(content, password, work)?;
            read_safe_contents(&safe_contents, password, work, found, 0)?;
        } else if content_type == ENVELOPED_DATA {
            return Err(refused(
                "part of the PKCS#12 file is encrypted to a public key (envelopedData), which is \
                 not supported; export it with a password",
            ));
        } else {
            return Err(refused(format!(
                "part of the PKCS#12 file has an unsupported content type ({})",
                oid_name(content_type)
            )));
        }
    }
    Ok(())
}

/// Decrypts an EncryptedData, which OpenSSL uses for the certificates.
fn decrypt_encrypted_data(
    der: &[u8],
    password: &Password<'_>,
    work: &mut Work,
) -> Result<Vec<u8>, PkiError> {
    let mut fields = Elements::of(element(der, Tag::Sequence, P12)?, P12)?;
    fields.integer()?;
    let mut info = fields.sequence()?;
    info.oid()?;
    let algorithm = info.next()?;
    let ciphertext = info.expect(IMPLICIT_0)?;
    decrypt(algorithm, ciphertext, password, work)
}

/// Reads a SafeContents: a sequence of bags holding keys, certificates or further SafeContents.
fn read_safe_contents(
    der: &[u8],
    password: &Password<'_>,
    work: &mut Work,
    found: &mut Found,
    depth: usize,
) -> Result<(), PkiError> {
    if depth > MAX_NESTING {
        return Err(refused(format!(
            "the PKCS#12 file nests its contents more than {MAX_NESTING} levels deep"
        )));
    }
    let mut bags = Elements::of(element(der, Tag::Sequence, P12)?, P12)?;
    while !bags.is_done() {
        let mut bag = bags.sequence()?;
        let bag_type = bag.oid()?;
        let value = bag.expect(EXPLICIT_0)?;
        if bag_type == KEY_BAG {
            found.keys.push(key_from_pkcs8(value)?);
        } else if bag_type == SHROUDED_KEY_BAG {
            let mut fields = Elements::of(element(value, Tag::Sequence, P12)?, P12)?;
            let algorithm = fields.next()?;
            let ciphertext = fields.expect(Tag::OctetString)?;
            let pkcs8 = decrypt(algorithm, ciphertext, password, work)?;
            found.keys.push(key_from_pkcs8(&pkcs8)?);
        } else if bag_type == CERT_BAG {
            let mut fields = Elements::of(element(value, Tag::Sequence, P12)?, P12)?;
            if fields.oid()? == X509_CERTIFICATE {
                let certificate = element(fields.expect(EXPLICIT_0)?, Tag::OctetString, P12)?;
                found.certificates.push(certificate.to_vec());
            }
        } else if bag_type == SAFE_CONTENTS_BAG {
            read_safe_contents(value, password, work, found, depth + 1)?;
        }
        // Revocation lists and secret bags hold nothing a CA import needs.
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Password-based decryption

/// The key-derivation work a file may still ask for.
struct Work {
    left: u64,
}

impl Default for Work {
    fn default() -> Self {
        Self {
            left: MAX_TOTAL_ITERATIONS,
        }
    }
}

impl Work {
    /// Checks an iteration count the file asks for and charges it `rounds` times (a derivation
    /// that runs the iterations for several output blocks or for key and IV costs that much more).
    fn charge(&mut self, iterations: u64, rounds: u64) -> Result<NonZeroU32, PkiError> {
        if iterations > MAX_ITERATIONS {
            return Err(refused(format!(
                "the PKCS#12 file asks for {iterations} key-derivation iterations; at most \
                 {MAX_ITERATIONS} are accepted, so that a file cannot occupy the server"
            )));
        }
        let count = u32::try_from(iterations)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| refused("the PKCS#12 file asks for zero key-derivation iterations"))?;
        let cost = iterations.saturating_mul(rounds);
        if cost > self.left {
            return Err(refused(format!(
                "the PKCS#12 file asks for more than {MAX_TOTAL_ITERATIONS} key-derivation \
                 iterations in all, so that a file cannot occupy the server"
            )));
        }
        self.left -= cost;
        Ok(count)
    }
}

/// The hash functions PKCS#12 files use for their MAC and key derivation.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_digest_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (SHA1, Self::Sha1),
            (SHA256, Self::Sha256),
            (SHA384, Self::Sha384),
            (SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(known, hash)| (known == oid).then_some(hash))
    }

    fn from_hmac_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (HMAC_SHA1, Self::Sha1),
            (HMAC_SHA256, Self::Sha256),
            (HMAC_SHA384, Self::Sha384),
            (HMAC_SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(known, hash)| (known == oid).then_some(hash))
    }

    fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            Self::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => ring::hmac::HMAC_SHA256,
            Self::Sha384 => ring::hmac::HMAC_SHA384,
            Self::Sha512 => ring::hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> ring::pbkdf2::Algorithm {
        match self {
            Self::Sha1 => ring::pbkdf2::PBKDF2_HMAC_SHA1,
            Self::Sha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha384 => ring::pbkdf2::PBKDF2_HMAC_SHA384,
            Self::Sha512 => ring::pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
}

/// The ciphers PBES2 may name.
#[derive(Debug, Clone, Copy)]
enum Pbes2Cipher {
    Aes128,
    Aes192,
    Aes256,
    DesEde3,
}

impl Pbes2Cipher {
    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (AES128_CBC, Self::Aes128),
            (AES192_CBC, Self::Aes192),
            (AES256_CBC, Self::Aes256),
            (DES_EDE3_CBC, Self::DesEde3),
        ]
        .into_iter()
        .find_map(|(known, cipher)| (known == oid).then_some(cipher))
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 | Self::DesEde3 => 24,
            Self::Aes256 => 32,
        }
    }
}

/// The legacy password-based ciphers of PKCS#12 itself (RFC 7292, appendix C).
#[derive(Debug, Clone, Copy)]
enum LegacyCipher {
    DesEde3,
    DesEde2,
    Rc2With128BitKey,
    Rc2With40BitKey,
}

impl LegacyCipher {
    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (PBE_SHA1_3DES, Self::DesEde3),
            (PBE_SHA1_2DES, Self::DesEde2),
            (PBE_SHA1_RC2_128, Self::Rc2With128BitKey),
            (PBE_SHA1_RC2_40, Self::Rc2With40BitKey),
        ]
        .into_iter()
        .find_map(|(known, cipher)| (known == oid).then_some(cipher))
    }

    fn key_len(self) -> usize {
        match self {
            Self::DesEde3 => 24,
            Self::DesEde2 | Self::Rc2With128BitKey => 16,
            Self::Rc2With40BitKey => 5,
        }
    }
}

/// Decrypts `ciphertext` as the AlgorithmIdentifier `algorithm` says.
fn decrypt(
    algorithm: AnyRef<'_>,
    ciphertext: &[u8],
    password: &Password<'_>,
    work: &mut Work,
) -> Result<Vec<u8>, PkiError> {
    const WHAT: &str = "the PKCS#12 file's encryption parameters";
    let (oid, parameters) = algorithm_identifier(algorithm, WHAT)?;
    let parameters = parameters.ok_or_else(|| damaged(WHAT))?;
    if oid == PBES2 {
        return pbes2(parameters, ciphertext, password, work);
    }
    if let Some(cipher) = LegacyCipher::from_oid(oid) {
        return pkcs12_pbe(cipher, parameters, ciphertext, password, work);
    }
    Err(refused(format!(
        "the PKCS#12 file is encrypted with {}, which is not supported; re-export it with \
         OpenSSL 3 defaults (PBES2 with AES-256-CBC)",
        oid_name(oid)
    )))
}

/// PBES2 (RFC 8018): PBKDF2 derives the key from the password's UTF-8 bytes; the cipher is CBC.
fn pbes2(
    parameters: AnyRef<'_>,
    ciphertext: &[u8],
    password: &Password<'_>,
    work: &mut Work,
) -> Result<Vec<u8>, PkiError> {
    const WHAT: &str = "the PKCS#12 file's encryption parameters (PBES2)";
    let mut fields = sequence(parameters, WHAT)?;
    let (kdf, kdf_parameters) = algorithm_identifier(fields.next()?, WHAT)?;
    let (scheme, iv) = algorithm_identifier(fields.next()?, WHAT)?;
    if kdf == SCRYPT {
        return Err(refused(
            "the PKCS#12 file derives its keys with scrypt, which is not supported; re-export it \
             with OpenSSL 3 defaults (PBKDF2)",
        ));
    }
    if kdf != PBKDF2 {
        return Err(refused(format!(
            "the PKCS#12 file derives its keys with {}, which is not supported",
            oid_name(kdf)
        )));
    }
    let cipher = Pbes2Cipher::from_oid(scheme).ok_or_else(|| {
        refused(format!(
            "the PKCS#12 file is encrypted with {}, which is not supported (AES-CBC and 3DES-CBC \
             are)",
            oid_name(scheme)
        ))
    })?;
    let iv = iv
        .filter(|iv| iv.tag() == Tag::OctetString)
        .ok_or_else(|| damaged(WHAT))?
        .value();
    let mut kdf_fields = sequence(kdf_parameters.ok_or_else(|| damaged(WHAT))?, WHAT)?;
    let salt = kdf_fields.next()?;
    if salt.tag() != Tag::OctetString {
        return Err(refused(
            "the PKCS#12 file takes its PBKDF2 salt from another algorithm, which is not supported",
        ));
    }
    let iterations = kdf_fields.integer()?;
    if let Some(key_len) = kdf_fields.next_if(Tag::Integer)? {
        let key_len = key_len.decode_as::<u64>().map_err(|_| damaged(WHAT))?;
        if usize::try_from(key_len).ok() != Some(cipher.key_len()) {
            return Err(damaged(WHAT));
        }
    }
    let prf = match kdf_fields.next_if(Tag::Sequence)? {
        Some(prf) => {
            let (oid, _) = algorithm_identifier(prf, WHAT)?;
            Hash::from_hmac_oid(oid).ok_or_else(|| {
                refused(format!(
                    "the PKCS#12 file derives its keys with PBKDF2 and {}, which is not supported",
                    oid_name(oid)
                ))
            })?
        }
        // RFC 8018 makes HMAC-SHA-1 the default when the file names none.
        None => Hash::Sha1,
    };
    // PBKDF2 runs all its iterations once for each block of output the key needs.
    let blocks = cipher.key_len().div_ceil(prf.digest().output_len());
    let iterations = work.charge(iterations, u64::try_from(blocks).unwrap_or(u64::MAX))?;
    let mut key = vec![0; cipher.key_len()];
    ring::pbkdf2::derive(
        prf.pbkdf2(),
        iterations,
        salt.value(),
        password.text,
        &mut key,
    );
    let cipher_error = |_| damaged(WHAT);
    match cipher {
        Pbes2Cipher::Aes128 => cbc_decrypt(
            aes::Aes128::new_from_slice(&key).map_err(cipher_error)?,
            iv,
            ciphertext,
            password,
        ),
        Pbes2Cipher::Aes192 => cbc_decrypt(
            aes::Aes192::new_from_slice(&key).map_err(cipher_error)?,
            iv,
            ciphertext,
            password,
        ),
        Pbes2Cipher::Aes256 => cbc_decrypt(
            aes::Aes256::new_from_slice(&key).map_err(cipher_error)?,
            iv,
            ciphertext,
            password,
        ),
        Pbes2Cipher::DesEde3 => cbc_decrypt(
            des::TdesEde3::new_from_slice(&key).map_err(cipher_error)?,
            iv,
            ciphertext,
            password,
        ),
    }
}

/// The legacy PKCS#12 encryption: the PKCS#12 key derivation with SHA-1 makes key and IV from
/// the password as a BMPString; the cipher is 3DES or RC2 in CBC mode.
fn pkcs12_pbe(
    cipher: LegacyCipher,
    parameters: AnyRef<'_>,
    ciphertext: &[u8],
    password: &Password<'_>,
    work: &mut Work,
) -> Result<Vec<u8>, PkiError> {
    const WHAT: &str = "the PKCS#12 file's encryption parameters";
    let mut fields = sequence(parameters, WHAT)?;
    let salt = fields.expect(Tag::OctetString)?;
    // Key and IV are two derivations.
    let iterations = work.charge(fields.integer()?, 2)?;
    let key = pkcs12_kdf(
        Hash::Sha1,
        1,
        &password.bmp,
        salt,
        iterations,
        cipher.key_len(),
    );
    let iv = pkcs12_kdf(Hash::Sha1, 2, &password.bmp, salt, iterations, 8);
    let cipher_error = |_| damaged(WHAT);
    match cipher {
        LegacyCipher::DesEde3 => cbc_decrypt(
            des::TdesEde3::new_from_slice(&key).map_err(cipher_error)?,
            &iv,
            ciphertext,
            password,
        ),
        LegacyCipher::DesEde2 => cbc_decrypt(
            des::TdesEde2::new_from_slice(&key).map_err(cipher_error)?,
            &iv,
            ciphertext,
            password,
        ),
        // RC2's effective key length is a parameter of its own; these OIDs fix it to the key's.
        LegacyCipher::Rc2With128BitKey => cbc_decrypt(
            rc2::Rc2::new_with_eff_key_len(&key, 128),
            &iv,
            ciphertext,
            password,
        ),
        LegacyCipher::Rc2With40BitKey => cbc_decrypt(
            rc2::Rc2::new_with_eff_key_len(&key, 40),
            &iv,
            ciphertext,
            password,
        ),
    }
}

fn cbc_decrypt<C: BlockDecryptMut + BlockCipher>(
    cipher: C,
    iv: &[u8],
    ciphertext: &[u8],
    password: &Password<'_>,
) -> Result<Vec<u8>, PkiError> {
    let decryptor = cbc::Decryptor::<C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| damaged("the PKCS#12 file's encryption parameters"))?;
    let mut buffer = ciphertext.to_vec();
    // With a wrong key the padding at the end almost never comes out right.
    let plaintext = decryptor
        .decrypt_padded_mut::<Pkcs7>(&mut buffer)
        .map_err(|_| password.undecryptable())?;
    Ok(plaintext.to_vec())
}

/// The key derivation of PKCS#12 (RFC 7292, appendix B.2): `id` 1 makes a key, 2 an IV, 3 a MAC
/// key; `password` is the BMPString form.
fn pkcs12_kdf(
    hash: Hash,
    id: u8,
    password: &[u8],
    salt: &[u8],
    iterations: NonZeroU32,
    len: usize,
) -> Vec<u8> {
    let algorithm = hash.digest();
    let block = algorithm.block_len();
    // Salt and password are each repeated to a whole number of hash blocks.
    let repeat = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .cycle()
            .take(bytes.len().div_ceil(block) * block)
            .copied()
            .collect()
    };
    let mut input = [repeat(salt), repeat(password)].concat();
    let diversifier = vec![id; block];
    let mut out = Vec::with_capacity(len);
    loop {
        let mut context = ring::digest::Context::new(algorithm);
        context.update(&diversifier);
        context.update(&input);
        let mut digest = context.finish();
        for _ in 1..iterations.get() {
            digest = ring::digest::digest(algorithm, digest.as_ref());
        }
        let wanted = len - out.len();
        out.extend_from_slice(&digest.as_ref()[..wanted.min(digest.as_ref().len())]);
        if out.len() >= len {
            return out;
        }
        // Each block of the input is increased by the digest (repeated to a block) plus one,
        // as big-endian numbers modulo 2^(8 * block), for the next round.
        let addend: Vec<u8> = digest
            .as_ref()
            .iter()
            .cycle()
            .take(block)
            .copied()
            .collect();
        for chunk in input.chunks_exact_mut(block) {
            let mut carry = 1u16;
            for (byte, add) in chunk.iter_mut().zip(&addend).rev() {
                let [high, low] = (u16::from(*byte) + u16::from(*add) + carry).to_be_bytes();
                *byte = low;
                carry = u16::from(high);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DER

const EXPLICIT_0: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber::N0,
};
const IMPLICIT_0: Tag = Tag::ContextSpecific {
    constructed: false,
    number: TagNumber::N0,
};
const EXPLICIT_1: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber::N1,
};
const IMPLICIT_1: Tag = Tag::ContextSpecific {
    constructed: false,
    number: TagNumber::N1,
};

/// The value of the one DER element that `bytes` must be, of type `tag`.
fn element<'a>(bytes: &'a [u8], tag: Tag, what: &str) -> Result<&'a [u8], PkiError> {
    let any = AnyRef::from_der(bytes).map_err(|_| damaged(what))?;
    if any.tag() != tag {
        return Err(damaged(what));
    }
    Ok(any.value())
}

/// The fields of a SEQUENCE.
fn sequence<'a>(any: AnyRef<'a>, what: &'static str) -> Result<Elements<'a>, PkiError> {
    if any.tag() != Tag::Sequence {
        return Err(damaged(what));
    }
    Elements::of(any.value(), what)
}

/// An AlgorithmIdentifier's OID and parameters.
fn algorithm_identifier<'a>(
    any: AnyRef<'a>,
    what: &'static str,
) -> Result<(ObjectIdentifier, Option<AnyRef<'a>>), PkiError> {
    let mut fields = sequence(any, what)?;
    let oid = fields.oid()?;
    let parameters = if fields.is_done() {
        None
    } else {
        Some(fields.next()?)
    };
    Ok((oid, parameters))
}

/// The bytes of a BIT STRING's value that has no unused bits, as keys are.
fn bit_string<'a>(value: &'a [u8], what: &str) -> Result<&'a [u8], PkiError> {
    match value.split_first() {
        Some((0, bits)) if !bits.is_empty() => Ok(bits),
        _ => Err(damaged(what)),
    }
}

fn encode(tag: Tag, value: &[u8]) -> Result<Vec<u8>, PkiError> {
    AnyRef::new(tag, value)
        .and_then(|any| any.to_der())
        .map_err(|e| refused(format!("the private key cannot be re-encoded ({e})")))
}

fn encode_oid(oid: ObjectIdentifier) -> Result<Vec<u8>, PkiError> {
    encode(Tag::ObjectIdentifier, oid.as_bytes())
}

/// Reads the DER elements inside a constructed value one by one.
struct Elements<'a> {
    reader: SliceReader<'a>,
    what: &'static str,
}

impl<'a> Elements<'a> {
    fn of(value: &'a [u8], what: &'static str) -> Result<Self, PkiError> {
        let reader = SliceReader::new(value).map_err(|_| damaged(what))?;
        Ok(Self { reader, what })
    }

    fn is_done(&self) -> bool {
        self.reader.is_finished()
    }

    fn next(&mut self) -> Result<AnyRef<'a>, PkiError> {
        if self.is_done() {
            return Err(damaged(self.what));
        }
        self.reader.decode().map_err(|_| damaged(self.what))
    }

    /// The next element if it has type `tag`; `None` at the end or for another type.
    fn next_if(&mut self, tag: Tag) -> Result<Option<AnyRef<'a>>, PkiError> {
        if self.is_done() {
            return Ok(None);
        }
        match self.reader.peek_tag() {
            Ok(next) if next == tag => self.next().map(Some),
            Ok(_) => Ok(None),
            Err(_) => Err(damaged(self.what)),
        }
    }

    fn next_tagged(&mut self, tag: Tag) -> Result<AnyRef<'a>, PkiError> {
        let any = self.next()?;
        if any.tag() != tag {
            return Err(damaged(self.what));
        }
        Ok(any)
    }

    /// The value of the next element, which must have type `tag`.
    fn expect(&mut self, tag: Tag) -> Result<&'a [u8], PkiError> {
        self.next_tagged(tag).map(AnyRef::value)
    }

    fn sequence(&mut self) -> Result<Elements<'a>, PkiError> {
        let value = self.expect(Tag::Sequence)?;
        Elements::of(value, self.what)
    }

    fn integer(&mut self) -> Result<u64, PkiError> {
        self.next()?
            .decode_as::<u64>()
            .map_err(|_| damaged(self.what))
    }

    fn oid(&mut self) -> Result<ObjectIdentifier, PkiError> {
        self.next()?
            .decode_as::<ObjectIdentifier>()
            .map_err(|_| damaged(self.what))
    }
}

// ---------------------------------------------------------------------------------------------
// Object identifiers

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");

const KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
const SHROUDED_KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const SAFE_CONTENTS_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.6");
const X509_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");

const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
const SCRYPT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.4.11");
const HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
const HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const HMAC_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.10");
const HMAC_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");
const AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
const AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");

const PBE_SHA1_3DES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");
const PBE_SHA1_2DES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.4");
const PBE_SHA1_RC2_128: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.5");
const PBE_SHA1_RC2_40: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.6");

const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// A name for an algorithm a refusal mentions, so that the admin can tell what the file uses.
fn oid_name(oid: ObjectIdentifier) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("1.3.101.112", "Ed25519"),
        ("1.3.101.113", "Ed448"),
        ("1.3.101.110", "X25519"),
        ("1.3.101.111", "X448"),
        ("1.2.840.10040.4.1", "DSA"),
        ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
        ("1.3.132.0.35", "P-521"),
        ("1.3.132.0.10", "secp256k1"),
        ("1.2.156.10197.1.301", "SM2"),
        ("1.2.840.113549.1.12.1.1", "pbeWithSHAAnd128BitRC4"),
        ("1.2.840.113549.1.12.1.2", "pbeWithSHAAnd40BitRC4"),
        ("1.2.840.113549.1.5.3", "pbeWithMD5AndDES-CBC"),
        ("1.2.840.113549.1.5.10", "pbeWithSHA1AndDES-CBC"),
        ("1.2.840.113549.1.5.14", "PBMAC1"),
        ("1.2.840.113549.2.5", "MD5"),
        ("1.2.840.113549.2.8", "HMAC-SHA-224"),
        ("2.16.840.1.101.3.4.2.4", "SHA-224"),
        ("1.3.14.3.2.7", "DES-CBC"),
    ];
    let dotted = oid.to_string();
    NAMES
        .iter()
        .find(|(known, _)| *known == dotted)
        .map_or_else(|| format!("OID {dotted}"), |(_, name)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rcgen::{CertificateParams, Issuer, KeyPair};

    use super::*;

    const OPENSSL: &str = "install Debian's openssl (scripts/test does)";
    const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
    /// A password with a space and letters outside ASCII, so that the UTF-8 form (PBES2) and the
    /// BMPString form (MAC, legacy ciphers) differ.
    const PASSWORD: &str = "pässwörd 1";

    /// A temporary folder in which openssl makes the inputs.
    struct Folder {
        dir: tempfile::TempDir,
    }

    impl Folder {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// Runs openssl in the folder with the words of `command` and then `extra` (arguments
        /// that may hold spaces) and gives what it printed; it must succeed.
        fn openssl(&self, command: &str, extra: &[&str]) -> String {
            let out = Command::new("openssl")
                .args(command.split_whitespace())
                .args(extra)
                .current_dir(self.dir.path())
                .output()
                .expect("openssl runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "openssl {command}: {text}");
            text
        }

        fn text(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap()
        }

        fn bytes(&self, name: &str) -> Vec<u8> {
            std::fs::read(self.dir.path().join(name)).unwrap()
        }

        /// A self-signed certificate `{name}.pem` and its PKCS#8 key `{name}-key.pem`, made with
        /// the `-newkey` words `new_key`, with `basicConstraints` as openssl spells it.
        fn self_signed(&self, name: &str, new_key: &str, basic_constraints: &str) {
            self.openssl(
                &format!(
                    "req -x509 -new {new_key} -nodes -keyout {name}-key.pem -out {name}.pem \
                     -subj /CN={name} -days 3650"
                ),
                &["-addext", &format!("basicConstraints={basic_constraints}")],
            );
        }

        /// `{file}.p12` from `words` (what goes in and any options), with `password`.
        fn pkcs12(&self, file: &str, words: &str, password: &str) -> Vec<u8> {
            let name = format!("{file}.p12");
            self.openssl(
                &format!("pkcs12 -export {words} -out {name}"),
                &["-passout", &format!("pass:{password}")],
            );
            self.bytes(&name)
        }

        /// Signs a leaf certificate through rcgen with the imported CA and has openssl verify
        /// it against the imported CA certificate.
        fn signs_verifiable_leaf(&self, ca: &ImportedCa, label: &str) {
            let key = KeyPair::try_from(ca.key_pkcs8_der.as_slice()).unwrap();
            let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem, key).unwrap();
            let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(vec!["card.example".to_owned()]).unwrap();
            params.use_authority_key_identifier_extension = true;
            let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
            let (ca_file, leaf_file) = (format!("{label}-ca.pem"), format!("{label}-leaf.pem"));
            std::fs::write(self.dir.path().join(&ca_file), &ca.certificate_pem).unwrap();
            std::fs::write(self.dir.path().join(&leaf_file), leaf.pem()).unwrap();
            let text = self.openssl(&format!("verify -CAfile {ca_file} {leaf_file}"), &[]);
            assert!(text.contains(": OK"), "{label}: {text}");
            let debug = format!("{ca:?}");
            assert!(debug.contains("not shown"), "{debug}");
        }
    }

    fn certificate_der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).unwrap().into_contents()
    }

    /// Imports a CA made with `new_key` from PKCS#8 PEM, from the traditional PEM that the
    /// openssl command `traditional` writes (its first line holds `tag`), and from PKCS#12 files
    /// in the default and the legacy form, one with another CA's certificate beside it; each
    /// import signs a leaf that openssl verifies.
    fn imports_in_every_form(new_key: &str, traditional: &str, tag: &str) {
        let folder = Folder::new();
        folder.self_signed("ca", new_key, "critical,CA:TRUE");
        folder.self_signed("other", P256, "critical,CA:TRUE");
        let certificate = folder.text("ca.pem");

        let ca = from_pem(&certificate, &folder.text("ca-key.pem")).unwrap();
        assert_eq!(
            certificate_der(&ca.certificate_pem),
            certificate_der(&certificate),
            "the certificate comes out unchanged"
        );
        folder.signs_verifiable_leaf(&ca, "pkcs8");

        folder.openssl(
            &format!("{traditional} -in ca-key.pem -out traditional.pem"),
            &[],
        );
        let key = folder.text("traditional.pem");
        assert!(key.starts_with(tag), "{key}");
        let ca = from_pem(&certificate, &key).unwrap();
        folder.signs_verifiable_leaf(&ca, "traditional");

        for (label, options) in [
            ("default", ""),
            ("chain", "-certfile other.pem"),
            ("legacy", "-legacy"),
        ] {
            let words = format!("-in ca.pem -inkey ca-key.pem {options}");
            let p12 = folder.pkcs12(label, &words, PASSWORD);
            let ca = from_pkcs12(&p12, PASSWORD).unwrap();
            assert_eq!(
                certificate_der(&ca.certificate_pem),
                certificate_der(&certificate),
                "{label}"
            );
            folder.signs_verifiable_leaf(&ca, label);
        }
    }

    #[test]
    fn an_ec_p256_ca_imports_from_pem_and_pkcs12() {
        if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            imports_in_every_form(P256, "ec", "-----BEGIN EC PRIVATE KEY-----");
        }
    }

    #[test]
    fn an_ec_p384_ca_imports_from_pem_and_pkcs12() {
        if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            imports_in_every_form(
                "-newkey ec -pkeyopt ec_paramgen_curve:P-384",
                "ec",
                "-----BEGIN EC PRIVATE KEY-----",
            );
        }
    }

    #[test]
    fn an_rsa_2048_ca_imports_from_pem_and_pkcs12() {
        if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            imports_in_every_form(
                "-newkey rsa:2048",
                "rsa -traditional",
                "-----BEGIN RSA PRIVATE KEY-----",
            );
        }
    }

    #[test]
    fn unusual_but_sound_files_import() {
        if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            return;
        }
        let folder = Folder::new();
        folder.self_signed("ca", P256, "critical,CA:TRUE");
        let certificate = folder.text("ca.pem");

        // A SEC1 key without its public key: the public key is taken from the certificate, and
        // ring checks that it is the private key's.
        folder.openssl("ec -in ca-key.pem -no_public -out bare.pem", &[]);
        let ca = from_pem(&certificate, &folder.text("bare.pem")).unwrap();
        folder.signs_verifiable_leaf(&ca, "bare");

        // The certificate that belongs to the key is picked wherever it stands among others.
        folder.self_signed("other", P256, "critical,CA:TRUE");
        let found = Found {
            keys: vec![key_from_pem(&folder.text("ca-key.pem")).unwrap()],
            certificates: vec![
                certificate_der(&folder.text("other.pem")),
                certificate_der(&certificate),
            ],
        };
        let ca = found.into_ca().unwrap();
        assert_eq!(
            certificate_der(&ca.certificate_pem),
            certificate_der(&certificate)
        );

        // Certificate and key in one file, as some servers keep them.
        let both = format!("{certificate}{}", folder.text("ca-key.pem"));
        let ca = from_pem(&both, &both).unwrap();
        folder.signs_verifiable_leaf(&ca, "both");

        let p12 = folder.pkcs12("empty", "-in ca.pem -inkey ca-key.pem", "");
        let ca = from_pkcs12(&p12, "").unwrap();
        folder.signs_verifiable_leaf(&ca, "empty");

        let p12 = folder.pkcs12("nomac", "-in ca.pem -inkey ca-key.pem -nomac", PASSWORD);
        let ca = from_pkcs12(&p12, PASSWORD).unwrap();
        folder.signs_verifiable_leaf(&ca, "nomac");
        let error = from_pkcs12(&p12, "wrong").unwrap_err();
        assert!(matches!(error, PkiError::WrongPassword), "{error}");
    }

    fn refusal(result: Result<ImportedCa, PkiError>) -> String {
        match result {
            Ok(_) => panic!("the import was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn pem_refusals_name_the_problem() {
        if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            return;
        }
        let folder = Folder::new();
        folder.self_signed("ca", P256, "critical,CA:TRUE");
        folder.self_signed("other", P256, "critical,CA:TRUE");
        folder.self_signed("leaf", P256, "critical,CA:FALSE");
        let (ca, ca_key) = (folder.text("ca.pem"), folder.text("ca-key.pem"));

        let text = refusal(from_pem(
            &folder.text("leaf.pem"),
            &folder.text("leaf-key.pem"),
        ));
        assert!(text.contains("not a CA certificate"), "{text}");

        let text = refusal(from_pem(&ca, &folder.text("other-key.pem")));
        assert!(
            text.contains("does not belong to the certificate"),
            "{text}"
        );
        // Without its public key, the other key is caught when ring derives the public key.
        folder.openssl("ec -in other-key.pem -no_public -out bare.pem", &[]);
        let text = refusal(from_pem(&ca, &folder.text("bare.pem")));
        assert!(
            text.contains("does not belong to the certificate"),
            "{text}"
        );

        let text = refusal(from_pem(&ca, &ca));
        assert!(text.contains("no private key"), "{text}");
        let text = refusal(from_pem(&ca_key, &ca_key));
        assert!(text.contains("no certificate"), "{text}");

        for command in ["pkey", "ec"] {
            folder.openssl(
                &format!("{command} -in ca-key.pem -aes256 -passout pass:pw -out locked.pem"),
                &[],
            );
            let text = refusal(from_pem(&ca, &folder.text("locked.pem")));
            assert!(
                text.contains("private key is encrypted"),
                "{command}: {text}"
            );
        }

        folder.openssl("genpkey -algorithm ed25519 -out ed.pem", &[]);
        let text = refusal(from_pem(&ca, &folder.text("ed.pem")));
        assert!(text.contains("unsupported key type (Ed25519)"), "{text}");
        folder.openssl(
            "genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024 -out weak.key",
            &[],
        );
        folder.self_signed("weak", "-key weak.key", "critical,CA:TRUE");
        let text = refusal(from_pem(&folder.text("weak.pem"), &folder.text("weak.key")));
        assert!(text.contains("too weak"), "{text}");
    }

    #[test]
    fn pkcs12_refusals_name_the_problem() {
        if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            return;
        }
        let folder = Folder::new();
        folder.self_signed("ca", P256, "critical,CA:TRUE");
        folder.self_signed("leaf", P256, "critical,CA:FALSE");

        let p12 = folder.pkcs12("ca", "-in ca.pem -inkey ca-key.pem", PASSWORD);
        let text = refusal(from_pkcs12(&p12, "pässwörd 2"));
        assert!(text.contains("wrong password"), "{text}");
        let text = refusal(from_pkcs12(&p12, ""));
        assert!(text.contains("wrong password"), "{text}");

        let p12 = folder.pkcs12("leaf", "-in leaf.pem -inkey leaf-key.pem", "pw");
        let text = refusal(from_pkcs12(&p12, "pw"));
        assert!(text.contains("not a CA certificate"), "{text}");

        let p12 = folder.pkcs12("nokey", "-nokeys -in ca.pem", "pw");
        let text = refusal(from_pkcs12(&p12, "pw"));
        assert!(text.contains("no private key"), "{text}");
        let p12 = folder.pkcs12("nocert", "-nocerts -inkey ca-key.pem", "pw");
        let text = refusal(from_pkcs12(&p12, "pw"));
        assert!(text.contains("no certificate"), "{text}");
    }

    #[test]
    fn damaged_pkcs12_files_give_errors_not_panics() {
        if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
            return;
        }
        let folder = Folder::new();
        folder.self_signed("ca", P256, "critical,CA:TRUE");
        // Without a MAC, changed bytes reach the decryption and the parsing of the contents. One
        // iteration of each key derivation keeps the many tries quick.
        for (file, options) in [
            ("mac", "-nomaciter"),
            ("nomac", "-nomac"),
            ("legacy", "-legacy -nomac"),
        ] {
            let words = format!("-in ca.pem -inkey ca-key.pem -iter 1 {options}");
            let p12 = folder.pkcs12(file, &words, "pw");
            let original = from_pkcs12(&p12, "pw").unwrap();
            for at in 0..p12.len() {
                let mut changed = p12.clone();
                changed[at] ^= 0x5a;
                if let Ok(ca) = from_pkcs12(&changed, "pw") {
                    assert_eq!(ca.key_pkcs8_der, original.key_pkcs8_der, "{file} at {at}");
                }
            }
            for cut in 0..p12.len() {
                assert!(
                    from_pkcs12(&p12[..cut], "pw").is_err(),
                    "{file} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn garbage_and_oversized_files_are_refused() {
        let text = refusal(from_pkcs12(b"this is not a PKCS#12 file at all", "pw"));
        assert!(text.contains("PKCS#12 file is damaged"), "{text}");
        let text = refusal(from_pkcs12(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0], "pw"));
        assert!(text.contains("PKCS#12 file is damaged"), "{text}");
        let text = refusal(from_pkcs12(b"-----BEGIN CERTIFICATE-----\n", "pw"));
        assert!(text.contains("PEM text"), "{text}");
        let text = refusal(from_pem("garbage", "garbage"));
        assert!(text.contains("no certificate"), "{text}");
        let text = refusal(from_pem(
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        ));
        assert!(text.contains("private key (PKCS#8) is damaged"), "{text}");

        let big = vec![0x30; MAX_FILE_BYTES + 1];
        let text = refusal(from_pkcs12(&big, "pw"));
        assert!(text.contains("above the limit of 1 MiB"), "{text}");
        let big = "A".repeat(MAX_FILE_BYTES + 1);
        let text = refusal(from_pem(&big, "x"));
        assert!(text.contains("above the limit of 1 MiB"), "{text}");
        let text = refusal(from_pem("x", &big));
        assert!(text.contains("above the limit of 1 MiB"), "{text}");
    }

    /// A PBES2 AlgorithmIdentifier (the key derivation `kdf_oid` with PBKDF2's parameters and
    /// HMAC-SHA-256, AES-256-CBC) asking for the iteration count whose DER integer value is
    /// `iterations`.
    fn pbes2_algorithm(kdf_oid: ObjectIdentifier, iterations: &[u8]) -> Vec<u8> {
        let seq = |parts: &[Vec<u8>]| encode(Tag::Sequence, &parts.concat()).unwrap();
        let kdf_parameters = seq(&[
            encode(Tag::OctetString, &[1; 8]).unwrap(),
            encode(Tag::Integer, iterations).unwrap(),
            seq(&[
                encode_oid(HMAC_SHA256).unwrap(),
                encode(Tag::Null, &[]).unwrap(),
            ]),
        ]);
        let kdf = seq(&[encode_oid(kdf_oid).unwrap(), kdf_parameters]);
        let scheme = seq(&[
            encode_oid(AES256_CBC).unwrap(),
            encode(Tag::OctetString, &[2; 16]).unwrap(),
        ]);
        seq(&[encode_oid(PBES2).unwrap(), seq(&[kdf, scheme])])
    }

    fn decrypt_with(kdf_oid: ObjectIdentifier, iterations: &[u8]) -> Result<Vec<u8>, PkiError> {
        let password = Password {
            text: b"pw",
            bmp: bmp("pw"),
            checked: false,
        };
        let algorithm = pbes2_algorithm(kdf_oid, iterations);
        let algorithm = AnyRef::from_der(&algorithm).unwrap();
        decrypt(algorithm, &[0; 32], &password, &mut Work::default())
    }

    #[test]
    fn key_derivation_work_is_bounded() {
        // 0x01312d01 is 20,000,001.
        let text = decrypt_with(PBKDF2, &[0x01, 0x31, 0x2d, 0x01])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("20000001 key-derivation iterations"),
            "{text}"
        );
        let text = decrypt_with(PBKDF2, &[0]).unwrap_err().to_string();
        assert!(text.contains("zero key-derivation iterations"), "{text}");
        // A count within the bounds runs; the padding then gives the wrong key away.
        let error = decrypt_with(PBKDF2, &[0x08, 0x00]).unwrap_err();
        assert!(matches!(error, PkiError::WrongPassword), "{error}");

        let text = decrypt_with(SCRYPT, &[0x08, 0x00]).unwrap_err().to_string();
        assert!(text.contains("scrypt, which is not supported"), "{text}");

        // Three derivations at the limit are allowed, and then nothing more.
        let mut work = Work::default();
        for _ in 0..3 {
            work.charge(MAX_ITERATIONS, 1).unwrap();
        }
        let text = work.charge(1, 1).unwrap_err().to_string();
        assert!(text.contains("in all"), "{text}");
    }

    #[test]
    fn pkcs12_key_derivation_matches_a_known_answer() {
        // A published test vector (Bouncy Castle's PKCS12Test): password "smeg", salt
        // 0A58CF64530D823F, one iteration, SHA-1, ID 1 (key), 24 bytes.
        let key = pkcs12_kdf(
            Hash::Sha1,
            1,
            &bmp("smeg"),
            &[0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f],
            NonZeroU32::MIN,
            24,
        );
        assert_eq!(
            key,
            [
                0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
                0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
            ]
        );
    }
}
