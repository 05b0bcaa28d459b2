//! The server's keys on a PKCS#11 token (an HSM; SoftHSM2 in tests): the CA's and the audit
//! log's signing keys, the master key that seals secrets at rest, and HMAC keys. The keys are
//! generated on the token (or moved onto it once from a file) as sensitive, non-extractable
//! objects found by their `CKA_LABEL`; the server only ever asks the token to use them.
//!
//! All calls block; run them on a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest as _, Sha256};

use crate::PkiError;

mod signer;
#[cfg(test)]
mod tests;

pub use signer::TokenSigner;
use signer::{der, p256_scalar};

/// Loads and initialises the PKCS#11 module at `path`, once per process.
///
/// A module may be initialised only once per process and keeps its state (sessions, logins)
/// per process, so every user of a module in this process shares the one context kept here
/// for the life of the process.
pub fn module(path: &Path) -> Result<Pkcs11, PkiError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    // The map stays consistent even if a holder panicked, so a poisoned lock is still usable.
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(pkcs11) = modules.get(path) {
        return Ok(pkcs11.clone());
    }
    let pkcs11 = Pkcs11::new(path).map_err(|source| PkiError::Token {
        what: format!("the PKCS#11 module {} could not be loaded", path.display()),
        source,
    })?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // The same library reached through another path is initialised already; its state is
        // the one this process shares.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(source) => {
            return Err(PkiError::Token {
                what: format!(
                    "the PKCS#11 module {} could not be initialised",
                    path.display()
                ),
                source,
            })
        }
    }
    modules.insert(path.to_owned(), pkcs11.clone());
    Ok(pkcs11)
}

/// The kinds of secret key a token keeps for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// AES-256, for AES-GCM sealing.
    Aes256,
    /// A 32-byte generic secret, for HMAC-SHA-256.
    HmacSha256,
}

impl SecretKind {
    fn key_type(self) -> KeyType {
        match self {
            Self::Aes256 => KeyType::AES,
            Self::HmacSha256 => KeyType::GENERIC_SECRET,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Aes256 => "AES-256 key",
            Self::HmacSha256 => "HMAC key",
        }
    }

    /// What the key may be used for, and explicitly not, since modules default the usages
    /// left out to allowed (SoftHSM2 does).
    fn usage(self) -> [Attribute; 7] {
        let aes = self == Self::Aes256;
        [
            Attribute::Encrypt(aes),
            Attribute::Decrypt(aes),
            Attribute::Sign(!aes),
            Attribute::Verify(!aes),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]
    }
}

/// How many idle sessions a token keeps open; more are opened when more threads work at once,
/// and those beyond this number are closed when they are handed back.
const MAX_IDLE_SESSIONS: usize = 8;

/// DER of the P-256 curve's object identifier (`CKA_EC_PARAMS`).
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the object identifier of EC public keys (id-ecPublicKey).
const EC_PUBLIC_KEY_OID: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// Length of an uncompressed P-256 point: 0x04, x, y.
const P256_POINT_LEN: usize = 65;
/// CKR_AEAD_DECRYPT_FAILED of PKCS#11 3.0, which cryptoki 0.12 has no name for.
const CKR_AEAD_DECRYPT_FAILED: std::ffi::c_ulong = 0x42;

/// The logged-in sessions on one token, shared by the [`Token`] and its [`TokenSigner`]s.
struct Pool {
    pkcs11: Pkcs11,
    slot: Slot,
    module_path: PathBuf,
    label: String,
    /// Kept to log in again should every session have been closed, which logs the process out.
    pin: AuthPin,
    /// SHA-256 of the PIN, to check the PIN of a second [`Token::open`] of this token.
    pin_digest: [u8; 32],
    idle: Mutex<Vec<Session>>,
    /// Held while an object is created, so two threads cannot both find a label free and both
    /// create it.
    creating: Mutex<()>,
}

impl Pool {
    /// A new logged-in session. Login is per process, so it normally succeeds as "already
    /// logged in"; it matters when the pool was empty.
    fn open_session(&self) -> Result<Session, PkiError> {
        let session = self
            .pkcs11
            .open_rw_session(self.slot)
            .map_err(self.failed("a session could not be opened"))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(source @ CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(PkiError::Token {
                what: format!(
                    "the PKCS#11 token '{}' refused the PIN: the PIN is wrong",
                    self.label
                ),
                source,
            }),
            Err(source @ CkError::Pkcs11(RvError::PinLocked, _)) => Err(PkiError::Token {
                what: format!(
                    "the PKCS#11 token '{}' refused the PIN: the PIN is locked",
                    self.label
                ),
                source,
            }),
            Err(source) => Err(self.failed("logging in failed")(source)),
        }
    }

    /// Runs `f` with a session of the pool. The session goes back to the pool unless the token
    /// failed, because a session may be left with an operation still active or may itself be
    /// what broke; a fresh one costs little.
    fn run<T>(&self, f: impl FnOnce(&Session) -> Result<T, PkiError>) -> Result<T, PkiError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match idle {
            Some(session) => session,
            None => self.open_session()?,
        };
        let result = f(&session);
        if !matches!(result, Err(PkiError::Token { .. })) {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_SESSIONS {
                idle.push(session);
            }
        }
        result
    }

    /// Maps a refused call to an error that says what failed on which token.
    fn failed<'a>(&'a self, what: &'a str) -> impl FnOnce(CkError) -> PkiError + 'a {
        move |source| PkiError::Token {
            what: format!("{what} on the PKCS#11 token '{}'", self.label),
            source,
        }
    }
}

/// The objects labelled `label` of the kind `template` describes.
fn find(
    pool: &Pool,
    session: &Session,
    label: &str,
    mut template: Vec<Attribute>,
) -> Result<Vec<ObjectHandle>, PkiError> {
    template.push(Attribute::Label(label.as_bytes().to_vec()));
    session
        .find_objects(&template)
        .map_err(pool.failed("looking for objects failed"))
}

/// The one object labelled `label` of the kind `template` describes; `name` says what it is.
fn find_one(
    pool: &Pool,
    session: &Session,
    label: &str,
    name: &str,
    template: Vec<Attribute>,
) -> Result<Option<ObjectHandle>, PkiError> {
    match find(pool, session, label, template)?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(PkiError::TokenState(format!(
            "the PKCS#11 token '{}' holds {} {name}s labelled '{label}', where one was expected",
            pool.label,
            many.len()
        ))),
    }
}

fn secret_key(
    pool: &Pool,
    session: &Session,
    label: &str,
    kind: SecretKind,
) -> Result<ObjectHandle, PkiError> {
    find_one(
        pool,
        session,
        label,
        kind.name(),
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(kind.key_type()),
        ],
    )?
    .ok_or_else(|| {
        PkiError::TokenState(format!(
            "the PKCS#11 token '{}' holds no {} labelled '{label}'",
            pool.label,
            kind.name()
        ))
    })
}

/// The uncompressed point of the P-256 public key `key`.
fn p256_point(
    pool: &Pool,
    session: &Session,
    label: &str,
    key: ObjectHandle,
) -> Result<[u8; P256_POINT_LEN], PkiError> {
    let attributes = session
        .get_attributes(key, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(pool.failed("reading a public key failed"))?;
    let (mut params, mut point) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::EcParams(value) => params = Some(value),
            Attribute::EcPoint(value) => point = Some(value),
            _ => {}
        }
    }
    let wrong = |why: &str| {
        PkiError::TokenState(format!(
            "the public key labelled '{label}' on the PKCS#11 token '{}' {why}",
            pool.label
        ))
    };
    if params.as_deref() != Some(P256_PARAMS.as_slice()) {
        return Err(wrong("is not on the P-256 curve"));
    }
    // PKCS#11 gives CKA_EC_POINT as the DER OCTET STRING of the point; some modules give the
    // bare point.
    let raw = match point.as_deref() {
        Some([0x04, 0x41, rest @ ..]) if rest.len() == P256_POINT_LEN => rest,
        Some(raw) if raw.len() == P256_POINT_LEN => raw,
        _ => return Err(wrong("has a point that is not an uncompressed P-256 point")),
    };
    match <[u8; P256_POINT_LEN]>::try_from(raw) {
        Ok(point @ [0x04, ..]) => Ok(point),
        _ => Err(wrong("has a point that is not an uncompressed P-256 point")),
    }
}

/// The tokens open in this process, by module and slot, while a [`Token`] or [`TokenSigner`]
/// uses them.
type OpenTokens = Mutex<HashMap<(PathBuf, Slot), Weak<Pool>>>;
static OPEN_TOKENS: OnceLock<OpenTokens> = OnceLock::new();

/// A token of a PKCS#11 module, found by its label and logged in as its user, with a pool of
/// sessions so that several threads can use it at once. Cheap to share as `Arc<Token>`.
pub struct Token {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.pool.module_path)
            .field("label", &self.pool.label)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Opens the token labelled `token_label` in the PKCS#11 module at `module_path` and logs
    /// in with the user PIN `pin`. Opening a token this process has open already shares its
    /// sessions, provided `pin` is the PIN it was opened with.
    pub fn open(module_path: &Path, token_label: &str, pin: &str) -> Result<Self, PkiError> {
        let pkcs11 = module(module_path)?;
        let listing = |source| PkiError::Token {
            what: format!(
                "the tokens of the PKCS#11 module {} could not be listed",
                module_path.display()
            ),
            source,
        };
        let mut seen = Vec::new();
        let mut found = None;
        for slot in pkcs11.get_slots_with_token().map_err(listing)? {
            let info = pkcs11.get_token_info(slot).map_err(listing)?;
            let label = info.label().trim();
            if label == token_label {
                found = Some(slot);
                break;
            }
            seen.push(format!("'{label}'"));
        }
        let Some(slot) = found else {
            return Err(PkiError::TokenState(format!(
                "the PKCS#11 module {} has no token labelled '{token_label}' (its tokens: {})",
                module_path.display(),
                if seen.is_empty() {
                    "none".to_owned()
                } else {
                    seen.join(", ")
                }
            )));
        };
        // Login is per process: once this process is logged in, the token accepts any PIN as
        // "already logged in". So a token already open here is shared, and the PIN it was
        // opened with is what a second PIN is checked against.
        let mut pools = OPEN_TOKENS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pools.retain(|_, pool| pool.strong_count() > 0);
        let key = (module_path.to_owned(), slot);
        let pin_digest: [u8; 32] = Sha256::digest(pin.as_bytes()).into();
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            if pool.pin_digest != pin_digest {
                return Err(PkiError::TokenState(format!(
                    "the PKCS#11 token '{token_label}' refused the PIN: it is not the PIN this \
                     process logged in with"
                )));
            }
            return Ok(Self { pool });
        }
        let pool = Pool {
            pkcs11,
            slot,
            module_path: module_path.to_owned(),
            label: token_label.to_owned(),
            pin: AuthPin::from(pin.to_owned()),
            pin_digest,
            idle: Mutex::new(Vec::new()),
            creating: Mutex::new(()),
        };
        // Logging in now shows a wrong PIN at once rather than at the first use of a key.
        let session = pool.open_session()?;
        pool.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        let pool = Arc::new(pool);
        pools.insert(key, Arc::downgrade(&pool));
        Ok(Self { pool })
    }

    /// The path of the PKCS#11 module.
    pub fn module_path(&self) -> &Path {
        &self.pool.module_path
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.pool.label
    }

    /// Whether the token holds any object labelled `label`.
    pub fn has(&self, label: &str) -> Result<bool, PkiError> {
        let pool = &*self.pool;
        pool.run(|session| Ok(!find(pool, session, label, Vec::new())?.is_empty()))
    }

    /// Destroys every object labelled `label`; nothing to destroy is not an error.
    pub fn destroy(&self, label: &str) -> Result<(), PkiError> {
        let pool = &*self.pool;
        pool.run(|session| {
            for object in find(pool, session, label, Vec::new())? {
                session
                    .destroy_object(object)
                    .map_err(pool.failed("an object could not be destroyed"))?;
            }
            Ok(())
        })
    }

    /// Runs `create` (which makes the objects labelled `label`) unless the token holds an
    /// object with that label already.
    fn create<T>(
        &self,
        label: &str,
        create: impl FnOnce(&Session) -> Result<T, PkiError>,
    ) -> Result<T, PkiError> {
        let _creating = self
            .pool
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.has(label)? {
            return Err(PkiError::TokenState(format!(
                "the PKCS#11 token '{}' already holds an object labelled '{label}'",
                self.pool.label
            )));
        }
        self.pool.run(create)
    }

    /// The attributes every key the server keeps shares: on the token, behind the login,
    /// never readable.
    fn private_attributes(label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    /// The attributes of the private half of a P-256 key pair: it signs and does nothing else.
    fn signing_attributes(label: &str) -> Vec<Attribute> {
        let mut attributes = Self::private_attributes(label);
        attributes.extend([
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Id(label.as_bytes().to_vec()),
        ]);
        attributes
    }

    /// The attributes of the public half of a P-256 key pair. `CKA_ID` repeats the label so
    /// that tools which pair keys by `CKA_ID` find the halves together.
    fn public_attributes(label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    fn signer(&self, label: &str, key: ObjectHandle, point: [u8; P256_POINT_LEN]) -> TokenSigner {
        TokenSigner {
            pool: Arc::clone(&self.pool),
            label: label.to_owned(),
            key,
            point,
        }
    }

    /// Generates an EC P-256 key pair labelled `label` on the token; the private key never
    /// leaves it. Fails when an object with that label exists already.
    pub fn generate_ec_p256(&self, label: &str) -> Result<TokenSigner, PkiError> {
        let pool = &*self.pool;
        let (key, point) = self.create(label, |session| {
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &Self::public_attributes(label),
                    &Self::signing_attributes(label),
                )
                .map_err(pool.failed("an EC P-256 key pair could not be generated"))?;
            Ok((private, p256_point(pool, session, label, public)?))
        })?;
        Ok(self.signer(label, key, point))
    }

    /// Moves an existing EC P-256 private key (PKCS#8 DER, as rcgen's
    /// `KeyPair::serialize_der` gives it) onto the token as a sensitive, non-extractable key
    /// labelled `label`, with its public key next to it. Fails when an object with that label
    /// exists already.
    pub fn import_ec_p256(&self, label: &str, pkcs8_der: &[u8]) -> Result<TokenSigner, PkiError> {
        let not_p256 = || {
            PkiError::TokenState(format!(
                "the key to store as '{label}' is not an EC P-256 private key in PKCS#8 DER"
            ))
        };
        // ring checks the key and derives its public point, which PKCS#8 need not carry.
        let software = rcgen::KeyPair::try_from(pkcs8_der).map_err(|_| not_p256())?;
        if software.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(not_p256());
        }
        let point: [u8; P256_POINT_LEN] = software
            .public_key_raw()
            .try_into()
            .map_err(|_| not_p256())?;
        let scalar = p256_scalar(pkcs8_der).ok_or_else(not_p256)?;
        let pool = &*self.pool;
        let key = self.create(label, |session| {
            let mut private = Self::signing_attributes(label);
            private.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Value(scalar.to_vec()),
            ]);
            let key = session
                .create_object(&private)
                .map_err(pool.failed("an EC private key could not be stored"))?;
            let mut public = Self::public_attributes(label);
            public.extend([
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcPoint(der(0x04, &point)),
            ]);
            if let Err(source) = session.create_object(&public) {
                // A private key without its public half would not be found again; take it
                // away, so that the import can be repeated.
                let _ = session.destroy_object(key);
                return Err(pool.failed("an EC public key could not be stored")(source));
            }
            Ok(key)
        })?;
        Ok(self.signer(label, key, point))
    }

    /// The EC P-256 key pair labelled `label`, or `None` when the token has no private key
    /// with that label.
    pub fn ec_p256(&self, label: &str) -> Result<Option<TokenSigner>, PkiError> {
        let pool = &*self.pool;
        let found = pool.run(|session| {
            let ec = |class| vec![Attribute::Class(class), Attribute::KeyType(KeyType::EC)];
            let Some(key) = find_one(
                pool,
                session,
                label,
                "EC private key",
                ec(ObjectClass::PRIVATE_KEY),
            )?
            else {
                return Ok(None);
            };
            let public = find_one(
                pool,
                session,
                label,
                "EC public key",
                ec(ObjectClass::PUBLIC_KEY),
            )?
            .ok_or_else(|| {
                PkiError::TokenState(format!(
                    "the PKCS#11 token '{}' holds the private key '{label}' without its public key",
                    pool.label
                ))
            })?;
            Ok(Some((key, p256_point(pool, session, label, public)?)))
        })?;
        Ok(found.map(|(key, point)| self.signer(label, key, point)))
    }

    /// Generates a secret key of `kind` labelled `label` on the token. Fails when an object
    /// with that label exists already.
    pub fn generate_secret(&self, label: &str, kind: SecretKind) -> Result<(), PkiError> {
        let pool = &*self.pool;
        self.create(label, |session| {
            let mut template = Self::private_attributes(label);
            template.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(kind.key_type()),
                Attribute::ValueLen(32.into()),
            ]);
            template.extend(kind.usage());
            let mechanism = match kind {
                SecretKind::Aes256 => Mechanism::AesKeyGen,
                SecretKind::HmacSha256 => Mechanism::GenericSecretKeyGen,
            };
            session
                .generate_key(&mechanism, &template)
                .map_err(pool.failed("a secret key could not be generated"))?;
            Ok(())
        })
    }

    /// Stores the known secret `value` as a key of `kind` labelled `label`, sensitive and not
    /// extractable (to move a key kept in a file onto the token). Fails when an object with
    /// that label exists already.
    pub fn import_secret(
        &self,
        label: &str,
        kind: SecretKind,
        value: &[u8; 32],
    ) -> Result<(), PkiError> {
        let pool = &*self.pool;
        self.create(label, |session| {
            let mut template = Self::private_attributes(label);
            template.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(kind.key_type()),
                Attribute::Value(value.to_vec()),
            ]);
            template.extend(kind.usage());
            session
                .create_object(&template)
                .map_err(pool.failed("a secret key could not be stored"))?;
            Ok(())
        })
    }

    /// Encrypts `plaintext` with AES-256-GCM under the key `label`, the 12-byte `nonce` (never
    /// reuse one with a key) and the additional data `aad`. Returns nonce, ciphertext and the
    /// 16-byte tag, the layout of [`crate::sealing::seal`].
    pub fn seal(
        &self,
        label: &str,
        nonce: [u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PkiError> {
        let pool = &*self.pool;
        pool.run(|session| {
            let key = secret_key(pool, session, label, SecretKind::Aes256)?;
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, aad, 128.into())
                .map_err(pool.failed("the additional data is too long for AES-GCM"))?;
            let sealed = session
                .encrypt(&Mechanism::AesGcm(params), key, plaintext)
                .map_err(pool.failed("sealing failed"))?;
            Ok([nonce.as_slice(), &sealed].concat())
        })
    }

    /// Decrypts what [`Token::seal`] (or [`crate::sealing::seal`], with empty `aad`) made.
    /// `Ok(None)` when the data does not verify: a different key, other additional data, or
    /// changed bytes.
    pub fn unseal(
        &self,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, PkiError> {
        if sealed.len() < 12 + 16 {
            return Ok(None);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let pool = &*self.pool;
        pool.run(|session| {
            let key = secret_key(pool, session, label, SecretKind::Aes256)?;
            let mut iv = nonce.to_vec();
            let params = GcmParams::new(&mut iv, aad, 128.into())
                .map_err(pool.failed("the additional data is too long for AES-GCM"))?;
            // A failed call ends the decryption, so the session stays usable after any of
            // these.
            match session.decrypt(&Mechanism::AesGcm(params), key, ciphertext) {
                Ok(plaintext) => Ok(Some(plaintext)),
                // What PKCS#11 2.40 and 3.0 name for a tag that does not verify.
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::UnknownErrorCode(CKR_AEAD_DECRYPT_FAILED),
                    _,
                )) => Ok(None),
                // SoftHSM2 reports a tag that does not verify as a general error. It is taken
                // as such only while the session is still logged in, which a broken token
                // could not say.
                Err(source @ CkError::Pkcs11(RvError::GeneralError, _)) => {
                    match session.get_session_info() {
                        Ok(info) if info.session_state() == SessionState::RwUser => Ok(None),
                        _ => Err(pool.failed("opening sealed data failed")(source)),
                    }
                }
                Err(source) => Err(pool.failed("opening sealed data failed")(source)),
            }
        })
    }

    /// HMAC-SHA-256 of `data` under the key `label`.
    pub fn hmac_sha256(&self, label: &str, data: &[u8]) -> Result<[u8; 32], PkiError> {
        let pool = &*self.pool;
        pool.run(|session| {
            let key = secret_key(pool, session, label, SecretKind::HmacSha256)?;
            let mac = session
                .sign(&Mechanism::Sha256Hmac, key, data)
                .map_err(pool.failed("HMAC failed"))?;
            mac.try_into().map_err(|mac: Vec<u8>| {
                PkiError::TokenState(format!(
                    "the PKCS#11 token '{}' gave an HMAC-SHA-256 of {} bytes",
                    pool.label,
                    mac.len()
                ))
            })
        })
    }
}
