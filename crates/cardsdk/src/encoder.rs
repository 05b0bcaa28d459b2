//! Chip encoding over PKCS#11: the card's token is initialised (label = serial, SO PIN = PUK,
//! user PIN), one key pair is generated on the card per certificate, and each certificate is
//! written next to its key (same `CKA_ID`). Works with any PKCS#11 module: OpenSC for real
//! smart cards, SoftHSM2 for tests.
//!
//! All calls block; run them on a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// Why a card could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("the encoder's PKCS#11 module is not usable")]
    Module(#[source] cardwright_pki::PkiError),
    #[error("no card in the encoder (no free token)")]
    NoToken,
    #[error("no card labelled {0} in the encoder")]
    CardNotFound(String),
    #[error("chip error: {0}")]
    Chip(String),
    /// The PKCS#11 module refused a call.
    #[error("chip error")]
    Pkcs11(#[source] cryptoki::error::Error),
    /// No certificate could be had for a key the chip generated.
    #[error("certificate")]
    Certificate(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(chip)")]
fn chip(e: cryptoki::error::Error) -> EncodeError {
    EncodeError::Pkcs11(e)
}

/// The key a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcP256,
    Rsa2048,
}

/// One key pair to generate on the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The certificate profile; also the key's label.
    pub profile: String,
    pub kind: KeyKind,
}

/// A key generated on the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardKey {
    pub profile: String,
    /// `CKA_ID`, shared by the key pair and its certificate.
    pub id: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the public key.
    pub spki: Vec<u8>,
}

/// A certificate to write next to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCertificate {
    pub key_id: Vec<u8>,
    pub label: String,
    pub der: Vec<u8>,
    /// DER of the certificate's subject name.
    pub subject: Vec<u8>,
}

/// A PKCS#11 module. A module may be initialised only once per process, so every encoder of
/// the same module shares one loaded context.
#[derive(Debug)]
pub struct Pkcs11Encoder {
    module: PathBuf,
}

/// The modules this encoder has used, by path, each behind a lock of its own: the encoder
/// makes one call at a time per module. Loading and initialising is left to
/// [`cardwright_pki::pkcs11::module`], the one place in the process that does it.
fn loaded(module: &Path) -> Result<Arc<Mutex<Pkcs11>>, EncodeError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<Pkcs11>>>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| EncodeError::Chip("encoder registry lock poisoned".into()))?;
    if let Some(context) = modules.get(module) {
        return Ok(Arc::clone(context));
    }
    let context = Arc::new(Mutex::new(
        cardwright_pki::pkcs11::module(module).map_err(EncodeError::Module)?,
    ));
    modules.insert(module.to_owned(), Arc::clone(&context));
    Ok(context)
}

const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Pkcs11Encoder {
    pub fn new(module: impl Into<PathBuf>) -> Self {
        Self {
            module: module.into(),
        }
    }

    pub fn module(&self) -> &Path {
        &self.module
    }

    /// Runs `f` with the module, one call at a time.
    fn with_context<T>(
        &self,
        f: impl FnOnce(&Pkcs11) -> Result<T, EncodeError>,
    ) -> Result<T, EncodeError> {
        let context = loaded(&self.module)?;
        let pkcs11 = context
            .lock()
            .map_err(|_| EncodeError::Chip("encoder lock poisoned".into()))?;
        f(&pkcs11)
    }

    /// The slot of the card labelled `serial`, or of a blank card.
    fn slot(pkcs11: &Pkcs11, serial: &str) -> Result<(Slot, bool), EncodeError> {
        let mut blank = None;
        for slot in pkcs11.get_slots_with_token().map_err(chip)? {
            let info = pkcs11.get_token_info(slot).map_err(chip)?;
            if !info.token_initialized() {
                blank.get_or_insert(slot);
            } else if info.label().trim_end() == serial {
                return Ok((slot, true));
            }
        }
        blank.map(|slot| (slot, false)).ok_or(EncodeError::NoToken)
    }

    /// Initialises the card for `serial` (a blank one, or the card already labelled `serial`,
    /// which is wiped with its current PUK `old_puk`), sets PUK and PIN, generates the keys and
    /// hands each public key to `certify`, whose certificates are written next to their keys.
    pub fn encode(
        &self,
        serial: &str,
        puk: &str,
        pin: &str,
        old_puk: Option<&str>,
        keys: &[KeySpec],
        certify: &mut dyn FnMut(&CardKey) -> Result<CardCertificate, EncodeError>,
    ) -> Result<Vec<CardKey>, EncodeError> {
        self.with_context(|pkcs11| {
            let (slot, existing) = Self::slot(pkcs11, serial)?;
            let so_pin = AuthPin::from(
                if existing {
                    old_puk.unwrap_or(puk)
                } else {
                    puk
                }
                .to_owned(),
            );
            pkcs11.init_token(slot, &so_pin, serial).map_err(chip)?;
            let session = pkcs11.open_rw_session(slot).map_err(chip)?;
            let puk = AuthPin::from(puk.to_owned());
            if existing {
                // Re-initialising keeps the old SO PIN; set the new PUK.
                session.login(UserType::So, Some(&so_pin)).map_err(chip)?;
                session.set_pin(&so_pin, &puk).map_err(chip)?;
            } else {
                session.login(UserType::So, Some(&puk)).map_err(chip)?;
            }
            session
                .init_pin(&AuthPin::from(pin.to_owned()))
                .map_err(chip)?;
            session.logout().map_err(chip)?;
            session
                .login(UserType::User, Some(&AuthPin::from(pin.to_owned())))
                .map_err(chip)?;
            let mut generated = Vec::with_capacity(keys.len());
            for (index, spec) in keys.iter().enumerate() {
                let id = vec![u8::try_from(index + 1).unwrap_or(u8::MAX)];
                let key = generate(&session, spec, &id)?;
                let certificate = certify(&key)?;
                write_certificate(&session, &certificate)?;
                generated.push(key);
            }
            session.logout().map_err(chip)?;
            Ok(generated)
        })
    }

    /// Writes certificates (public objects) onto the card labelled `serial`, replacing any with
    /// the same label.
    pub fn write_certificates(
        &self,
        serial: &str,
        certificates: &[CardCertificate],
    ) -> Result<(), EncodeError> {
        self.with_context(|pkcs11| {
            let (slot, existing) = Self::slot(pkcs11, serial)?;
            if !existing {
                return Err(EncodeError::CardNotFound(serial.to_owned()));
            }
            let session = pkcs11.open_rw_session(slot).map_err(chip)?;
            for certificate in certificates {
                for old in session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::CERTIFICATE),
                        Attribute::Label(certificate.label.as_bytes().to_vec()),
                    ])
                    .map_err(chip)?
                {
                    session.destroy_object(old).map_err(chip)?;
                }
                write_certificate(&session, certificate)?;
            }
            Ok(())
        })
    }
}

fn generate(session: &Session, spec: &KeySpec, id: &[u8]) -> Result<CardKey, EncodeError> {
    let label = spec.profile.as_bytes().to_vec();
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.clone()),
        ]
    };
    let mut public = common(false);
    public.push(Attribute::Verify(true));
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let (mechanism, spki) = match spec.kind {
        KeyKind::EcP256 => {
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            (Mechanism::EccKeyPairGen, None)
        }
        KeyKind::Rsa2048 => {
            public.push(Attribute::ModulusBits(2048.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            (Mechanism::RsaPkcsKeyPairGen, Some(()))
        }
    };
    let (public_handle, _) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(chip)?;
    let spki = match spki {
        None => ec_spki(session, public_handle)?,
        Some(()) => rsa_spki(session, public_handle)?,
    };
    Ok(CardKey {
        profile: spec.profile.clone(),
        id: id.to_vec(),
        spki,
    })
}

fn ec_spki(session: &Session, key: ObjectHandle) -> Result<Vec<u8>, EncodeError> {
    let attributes = session
        .get_attributes(key, &[AttributeType::EcPoint])
        .map_err(chip)?;
    let Some(Attribute::EcPoint(point)) = attributes.into_iter().next() else {
        return Err(EncodeError::Chip("the card gave no EC point".into()));
    };
    // CKA_EC_POINT is the DER OCTET STRING of the uncompressed point (some modules give it raw).
    let raw = match point.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
        raw if raw.len() == 65 && raw[0] == 0x04 => raw.to_vec(),
        _ => return Err(EncodeError::Chip("unexpected EC point encoding".into())),
    };
    Ok([P256_SPKI_PREFIX.as_slice(), &raw].concat())
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![u8::try_from(len).unwrap_or(0)]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
        out.extend(bytes);
        out
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_length(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_unsigned(value: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

fn rsa_spki(session: &Session, key: ObjectHandle) -> Result<Vec<u8>, EncodeError> {
    let attributes = session
        .get_attributes(
            key,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(chip)?;
    let (mut modulus, mut exponent) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
        return Err(EncodeError::Chip("the card gave no RSA public key".into()));
    };
    let rsa_key = der(
        0x30,
        &[der_unsigned(&modulus), der_unsigned(&exponent)].concat(),
    );
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bit_string = der(0x03, &[&[0u8][..], &rsa_key].concat());
    Ok(der(0x30, &[algorithm.as_slice(), &bit_string].concat()))
}

fn write_certificate(session: &Session, certificate: &CardCertificate) -> Result<(), EncodeError> {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(certificate.key_id.clone()),
            Attribute::Label(certificate.label.as_bytes().to_vec()),
            Attribute::Subject(certificate.subject.clone()),
            Attribute::Value(certificate.der.clone()),
        ])
        .map_err(chip)?;
    Ok(())
}
