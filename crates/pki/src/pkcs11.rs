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

/// An EC P-256 private key on a token, usable by rcgen to sign certificates and revocation
/// lists (as a self-signed CA's key or through `rcgen::Issuer`).
#[derive(Clone)]
pub struct TokenSigner {
    pool: Arc<Pool>,
    label: String,
    key: ObjectHandle,
    point: [u8; P256_POINT_LEN],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("token", &self.pool.label)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// The key's label on the token.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// DER SubjectPublicKeyInfo of the public key.
    pub fn spki_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }

    /// ECDSA with SHA-256 over `msg`, as the DER `ECDSA-Sig-Value` that X.509 carries. The
    /// same as [`rcgen::SigningKey::sign`], with the token's reason when it fails.
    pub fn sign_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let digest = Sha256::digest(msg);
        let pool = &*self.pool;
        let raw = pool.run(|session| {
            session
                .sign(&Mechanism::Ecdsa, self.key, &digest)
                .map_err(pool.failed("signing failed"))
        })?;
        ecdsa_signature_der(&raw).ok_or_else(|| {
            PkiError::TokenState(format!(
                "the PKCS#11 token '{}' gave an ECDSA signature of {} bytes, where 64 were expected",
                pool.label,
                raw.len()
            ))
        })
    }
}

impl rcgen::PublicKeyData for TokenSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TokenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_sha256(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// The DER `ECDSA-Sig-Value` (a SEQUENCE of the INTEGERs r and s) of the raw r‖s that
/// PKCS#11's CKM_ECDSA gives; `None` unless it is 64 bytes, as for P-256.
fn ecdsa_signature_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    Some(der(0x30, &[der_unsigned(r), der_unsigned(s)].concat()))
}

/// A DER element of `tag` around `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if let Ok(short @ 0..0x80) = u8::try_from(content.len()) {
        out.push(short);
    } else {
        let length: Vec<u8> = content
            .len()
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(length.len()).unwrap_or(0));
        out.extend(length);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of the unsigned big-endian `value`: without leading zeros, with a zero byte
/// in front where the top bit would otherwise make it negative.
fn der_unsigned(value: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// Reads one DER element from the front of `input`: its tag, its content and what follows.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, b| (length << 8) | usize::from(*b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

/// Reads the element of `tag` from the front of `input`: its content and what follows.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    der_element(input).and_then(|(found, content, rest)| (found == tag).then_some((content, rest)))
}

/// The 32-byte private scalar of an EC P-256 key in PKCS#8 DER (RFC 5208 PrivateKeyInfo, or
/// RFC 5958 OneAsymmetricKey, around an RFC 5915 ECPrivateKey).
fn p256_scalar(pkcs8: &[u8]) -> Option<[u8; 32]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (info, _) = der_expect(pkcs8, SEQUENCE)?;
    let (_version, rest) = der_expect(info, INTEGER)?;
    let (algorithm, rest) = der_expect(rest, SEQUENCE)?;
    if algorithm != [EC_PUBLIC_KEY_OID.as_slice(), &P256_PARAMS].concat() {
        return None;
    }
    let (private_key, _) = der_expect(rest, OCTET_STRING)?;
    let (ec_private_key, _) = der_expect(private_key, SEQUENCE)?;
    let (_version, rest) = der_expect(ec_private_key, INTEGER)?;
    let (scalar, _) = der_expect(rest, OCTET_STRING)?;
    // RFC 5915 fixes the length at 32 bytes, but a shorter one is the same number.
    let mut out = [0u8; 32];
    let start = out.len().checked_sub(scalar.len())?;
    out[start..].copy_from_slice(scalar);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData as _,
    };

    use super::*;

    #[test]
    fn raw_signatures_become_der_integers() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r needs a zero byte in front to stay positive
        raw[31] = 1;
        raw[63] = 2; // s is 2 after 31 leading zeros
        let der = ecdsa_signature_der(&raw).unwrap();
        let (content, rest) = der_expect(&der, 0x30).unwrap();
        assert!(rest.is_empty());
        let (r, rest) = der_expect(content, 0x02).unwrap();
        let (s, rest) = der_expect(rest, 0x02).unwrap();
        assert!(rest.is_empty());
        assert_eq!(r.len(), 33);
        assert_eq!((r[0], r[1], r[32]), (0, 0x80, 1));
        assert_eq!(s, [2]);
        assert_eq!(ecdsa_signature_der(&raw[..63]), None);
    }

    #[test]
    fn long_der_lengths_round_trip() {
        let content = vec![7u8; 300];
        let element = der(0x04, &content);
        assert_eq!(&element[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(
            der_expect(&element, 0x04),
            Some((content.as_slice(), &[][..]))
        );
        assert_eq!(
            der_element(&element[..100]),
            None,
            "a cut element is refused"
        );
    }

    #[test]
    fn the_private_scalar_is_read_from_pkcs8() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = key.serialize_der();
        let scalar = p256_scalar(&der).unwrap();
        assert!(
            der.windows(32).any(|w| w == scalar),
            "the scalar is the key's own bytes"
        );
        let rsa_like = [0x30, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(p256_scalar(&rsa_like), None);
    }

    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    const TOKEN: &str = "cardwright-test";
    const PIN: &str = "246810";
    const NOW: i64 = 1_790_000_000;

    fn assert_send_sync<T: Send + Sync>() {}

    /// Runs `program` with `args` (and SoftHSM's configuration `conf`); success and output.
    fn run(program: &str, conf: &Path, args: &[&str]) -> (bool, String) {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", conf)
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The line pkcs11-tool prints after `field` (such as "Access:") for the object of `kind`
    /// (its first line, such as "Private Key Object; EC") labelled `label`.
    fn shown(listing: &str, kind: &str, label: &str, field: &str) -> String {
        let mut objects: Vec<Vec<&str>> = Vec::new();
        for line in listing.lines() {
            if line.starts_with(char::is_whitespace) {
                if let Some(object) = objects.last_mut() {
                    object.push(line.trim());
                }
            } else {
                objects.push(vec![line.trim()]);
            }
        }
        let object = objects
            .iter()
            .find(|object| {
                object[0].starts_with(kind)
                    && object
                        .iter()
                        .any(|line| line.strip_prefix("label:").map(str::trim) == Some(label))
            })
            .unwrap_or_else(|| panic!("no {kind} labelled {label} in:\n{listing}"));
        object
            .iter()
            .find_map(|line| line.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} line for {label} in:\n{listing}"))
            .trim()
            .to_owned()
    }

    /// What `pkcs11-tool --list-objects` prints for the test token, logged in.
    fn list_objects(conf: &Path) -> String {
        let (ok, listing) = run(
            "pkcs11-tool",
            conf,
            &[
                "--module",
                MODULE,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                PIN,
                "--list-objects",
            ],
        );
        assert!(ok, "{listing}");
        listing
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_before = crate::at(NOW).unwrap();
        params.not_after = crate::at(NOW + 365 * 86_400).unwrap();
        params
    }

    /// `openssl verify` of `leaf` (PEM) against the self-signed `ca` (PEM), both written to
    /// `dir`.
    fn verify(dir: &Path, ca: &str, leaf: &str) {
        let (ca_path, leaf_path) = (dir.join("verify-ca.pem"), dir.join("verify-leaf.pem"));
        std::fs::write(&ca_path, ca).unwrap();
        std::fs::write(&leaf_path, leaf).unwrap();
        let (ok, text) = run(
            "openssl",
            dir,
            &[
                "verify",
                "-attime",
                &(NOW + 60).to_string(),
                "-CAfile",
                ca_path.to_str().unwrap(),
                leaf_path.to_str().unwrap(),
            ],
        );
        assert!(ok && text.contains(": OK"), "{text}");
    }

    /// One test for everything on SoftHSM2, because the module reads its configuration
    /// (`SOFTHSM2_CONF`) once per process, when it is initialised, and tests share a process.
    #[test]
    fn server_keys_live_on_a_softhsm_token() {
        let install = "install Debian's softhsm2, opensc and openssl (scripts/test does)";
        if !cardwright_testkit::require_programs(
            &["softhsm2-util", "pkcs11-tool", "openssl"],
            install,
        ) || !cardwright_testkit::require_file(Path::new(MODULE), install)
        {
            return;
        }
        assert_send_sync::<Token>();
        assert_send_sync::<TokenSigner>();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        for (label, pin) in [("other-token", "111111"), (TOKEN, PIN)] {
            let (ok, text) = run(
                "softhsm2-util",
                &conf,
                &[
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--so-pin",
                    "12345678",
                    "--pin",
                    pin,
                ],
            );
            assert!(ok, "{text}");
        }
        // Before the module is initialised, which is when SoftHSM2 reads it.
        std::env::set_var("SOFTHSM2_CONF", &conf);

        refusals();
        let token = Arc::new(Token::open(Path::new(MODULE), TOKEN, PIN).unwrap());
        assert_eq!(token.label(), TOKEN);
        assert_eq!(token.module_path(), Path::new(MODULE));
        // Logged in already, the token would take any PIN; the first one is what counts.
        let wrong = Token::open(Path::new(MODULE), TOKEN, "000000").unwrap_err();
        assert!(wrong.to_string().contains("refused the PIN"), "{wrong}");
        let second = Token::open(Path::new(MODULE), TOKEN, PIN).unwrap();
        assert!(Arc::ptr_eq(&second.pool, &token.pool), "one pool per token");
        drop(second);
        certificates_signed_on_the_token(dir.path(), &conf, &token);
        sealing(&token);
        hmac(&token);
        secret_keys_as_pkcs11_tool_shows_them(&conf, &token);
        imported_signing_key(dir.path(), &conf, &token);
        threads_sign_at_once(&token);
    }

    /// An unknown token label and a wrong PIN are named as such.
    fn refusals() {
        let unknown = Token::open(Path::new(MODULE), "no-such-token", PIN).unwrap_err();
        let text = unknown.to_string();
        assert!(
            matches!(unknown, PkiError::TokenState(_))
                && text.contains("no token labelled 'no-such-token'")
                && text.contains(MODULE)
                && text.contains("'other-token'")
                && text.contains(&format!("'{TOKEN}'")),
            "{text}"
        );
        let wrong = Token::open(Path::new(MODULE), TOKEN, "000000").unwrap_err();
        let text = wrong.to_string();
        assert!(
            text.contains(&format!("token '{TOKEN}' refused the PIN")),
            "{text}"
        );
        assert!(
            matches!(
                wrong,
                PkiError::Token {
                    source: CkError::Pkcs11(RvError::PinIncorrect, _),
                    ..
                }
            ),
            "{wrong:?}"
        );
        let missing = Token::open(Path::new("/no/such/module.so"), TOKEN, PIN).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("the PKCS#11 module /no/such/module.so could not be loaded"),
            "{missing}"
        );
        // The other token still opens with its own PIN.
        Token::open(Path::new(MODULE), "other-token", "111111").unwrap();
    }

    /// A CA whose key is generated on the token signs itself and a leaf; openssl accepts both,
    /// and pkcs11-tool shows the key as sensitive and never extractable.
    fn certificates_signed_on_the_token(dir: &Path, conf: &Path, token: &Token) {
        let signer = token.generate_ec_p256("cardwright-ca-1").unwrap();
        let again = token.generate_ec_p256("cardwright-ca-1").unwrap_err();
        assert!(
            again
                .to_string()
                .contains("already holds an object labelled 'cardwright-ca-1'"),
            "{again}"
        );
        let found = token.ec_p256("cardwright-ca-1").unwrap().unwrap();
        assert_eq!(found.der_bytes(), signer.der_bytes());
        assert_eq!(signer.der_bytes().len(), 65);
        assert_eq!(signer.spki_der(), signer.subject_public_key_info());
        assert!(token.ec_p256("cardwright-ca-9").unwrap().is_none());

        let params = ca_params("Cardwright Token CA");
        let ca = params.self_signed(&signer).unwrap();
        let issuer = Issuer::new(params, found);
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(vec!["leaf.example".into()]).unwrap();
        leaf_params.not_before = crate::at(NOW).unwrap();
        leaf_params.not_after = crate::at(NOW + 86_400).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        verify(dir, &ca.pem(), &ca.pem());
        verify(dir, &ca.pem(), &leaf.pem());

        let listing = list_objects(conf);
        let private = shown(
            &listing,
            "Private Key Object; EC",
            "cardwright-ca-1",
            "Access:",
        );
        // The key signs and nothing else: SoftHSM2 would allow decrypt and unwrap by default.
        assert_eq!(
            shown(
                &listing,
                "Private Key Object; EC",
                "cardwright-ca-1",
                "Usage:"
            ),
            "sign"
        );
        assert_eq!(
            shown(
                &listing,
                "Public Key Object; EC",
                "cardwright-ca-1",
                "Usage:"
            ),
            "verify"
        );
        let flags: Vec<&str> = private.split(", ").collect();
        assert!(
            flags.contains(&"sensitive")
                && flags.contains(&"always sensitive")
                && flags.contains(&"never extractable")
                && !flags.contains(&"extractable"),
            "{private}"
        );
    }

    /// AES-GCM on the token agrees with the software version under the same key.
    fn sealing(token: &Token) {
        token
            .generate_secret("cardwright-master-1", SecretKind::Aes256)
            .unwrap();
        token
            .generate_secret("cardwright-master-2", SecretKind::Aes256)
            .unwrap();
        let sealed = token
            .seal("cardwright-master-1", [9; 12], b"card 42", b"PUK 12345678")
            .unwrap();
        assert_eq!(sealed.len(), 12 + 12 + 16);
        assert_eq!(&sealed[..12], &[9; 12]);
        assert!(!sealed.windows(8).any(|w| w == b"12345678"));
        let unseal = |label, aad: &[u8], sealed: &[u8]| token.unseal(label, aad, sealed).unwrap();
        assert_eq!(
            unseal("cardwright-master-1", b"card 42", &sealed).as_deref(),
            Some(&b"PUK 12345678"[..])
        );
        assert_eq!(unseal("cardwright-master-1", b"card 43", &sealed), None);
        assert_eq!(unseal("cardwright-master-2", b"card 42", &sealed), None);
        for index in [0, 12, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[index] ^= 1;
            assert_eq!(
                unseal("cardwright-master-1", b"card 42", &flipped),
                None,
                "byte {index}"
            );
        }
        assert_eq!(
            unseal("cardwright-master-1", b"card 42", &sealed[..20]),
            None
        );
        let missing = token
            .seal("cardwright-master-9", [1; 12], b"", b"x")
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("holds no AES-256 key labelled 'cardwright-master-9'"),
            "{missing}"
        );

        // A key moved from a file onto the token seals what the software opens, and back.
        let file_key = [0x5a; 32];
        token
            .import_secret("cardwright-master-3", SecretKind::Aes256, &file_key)
            .unwrap();
        let on_token = token
            .seal("cardwright-master-3", [3; 12], b"", b"sealed on the token")
            .unwrap();
        assert_eq!(
            crate::sealing::open(&file_key, &on_token).as_deref(),
            Some(&b"sealed on the token"[..])
        );
        let in_software = crate::sealing::seal(&file_key, [4; 12], b"sealed in software");
        assert_eq!(
            unseal("cardwright-master-3", b"", &in_software).as_deref(),
            Some(&b"sealed in software"[..])
        );
    }

    /// HMAC on the token agrees with the software HMAC under the same key.
    fn hmac(token: &Token) {
        let hmac_key = [0x3c; 32];
        token
            .import_secret("cardwright-audit", SecretKind::HmacSha256, &hmac_key)
            .unwrap();
        let software = {
            use hmac::Mac as _;
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&hmac_key).unwrap();
            mac.update(b"audit head 7");
            <[u8; 32]>::from(mac.finalize().into_bytes())
        };
        assert_eq!(
            token
                .hmac_sha256("cardwright-audit", b"audit head 7")
                .unwrap(),
            software
        );
        token
            .generate_secret("cardwright-audit-2", SecretKind::HmacSha256)
            .unwrap();
        let generated = token
            .hmac_sha256("cardwright-audit-2", b"audit head 7")
            .unwrap();
        assert_eq!(
            generated,
            token
                .hmac_sha256("cardwright-audit-2", b"audit head 7")
                .unwrap()
        );
        assert_ne!(generated, software);
        assert!(
            token.seal("cardwright-audit", [1; 12], b"", b"x").is_err(),
            "an HMAC key does not seal"
        );
    }

    /// pkcs11-tool shows the secret keys as sensitive and not extractable, with the usages
    /// their kind needs and no others.
    fn secret_keys_as_pkcs11_tool_shows_them(conf: &Path, token: &Token) {
        let listing = list_objects(conf);
        for (label, kind, generated) in [
            ("cardwright-master-1", "Secret Key Object; AES", true),
            ("cardwright-master-3", "Secret Key Object; AES", false),
            (
                "cardwright-audit",
                "Secret Key Object; Generic secret",
                false,
            ),
            (
                "cardwright-audit-2",
                "Secret Key Object; Generic secret",
                true,
            ),
        ] {
            let access = shown(&listing, kind, label, "Access:");
            // pkcs11-tool lists no "sign" for secret keys, only "verify".
            let usage = if kind.contains("AES") {
                "encrypt, decrypt"
            } else {
                "verify"
            };
            assert_eq!(shown(&listing, kind, label, "Usage:"), usage, "{label}");
            let flags: Vec<&str> = access.split(", ").collect();
            assert!(
                flags.contains(&"sensitive") && !flags.contains(&"extractable"),
                "{label}: {access}"
            );
            // A key made elsewhere was once known outside the token, which the token records.
            assert_eq!(
                flags.contains(&"never extractable"),
                generated,
                "{label}: {access}"
            );
        }
        assert!(token.has("cardwright-master-2").unwrap());
        token.destroy("cardwright-master-2").unwrap();
        assert!(!token.has("cardwright-master-2").unwrap());
        token.destroy("cardwright-master-2").unwrap();
    }

    /// A P-256 key from a file moved onto the token signs as the file's key did.
    fn imported_signing_key(dir: &Path, conf: &Path, token: &Token) {
        let software = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer = token
            .import_ec_p256("cardwright-ca-2", &software.serialize_der())
            .unwrap();
        assert_eq!(signer.der_bytes(), software.public_key_raw());
        assert_eq!(signer.spki_der(), software.subject_public_key_info());
        let found = token.ec_p256("cardwright-ca-2").unwrap().unwrap();
        assert_eq!(found.der_bytes(), software.public_key_raw());

        let message = dir.join("message");
        let signature = dir.join("signature.der");
        let public = dir.join("public.pem");
        std::fs::write(&message, b"signed on the token").unwrap();
        std::fs::write(
            &signature,
            found.sign_sha256(b"signed on the token").unwrap(),
        )
        .unwrap();
        std::fs::write(&public, software.public_key_pem()).unwrap();
        let (ok, text) = run(
            "openssl",
            conf,
            &[
                "dgst",
                "-sha256",
                "-verify",
                public.to_str().unwrap(),
                "-signature",
                signature.to_str().unwrap(),
                message.to_str().unwrap(),
            ],
        );
        assert!(ok && text.contains("Verified OK"), "{text}");

        // A certificate the file key made verifies a leaf the token key signs.
        let params = ca_params("Cardwright Moved CA");
        let ca = params.self_signed(&software).unwrap();
        let issuer = Issuer::new(params, signer);
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(vec!["moved.example".into()]).unwrap();
        leaf_params.not_before = crate::at(NOW).unwrap();
        leaf_params.not_after = crate::at(NOW + 86_400).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        verify(dir, &ca.pem(), &leaf.pem());

        let listing = list_objects(conf);
        let access = shown(
            &listing,
            "Private Key Object; EC",
            "cardwright-ca-2",
            "Access:",
        );
        let flags: Vec<&str> = access.split(", ").collect();
        assert!(
            flags.contains(&"sensitive") && !flags.contains(&"extractable"),
            "{access}"
        );

        let twice = token
            .import_ec_p256("cardwright-ca-2", &software.serialize_der())
            .unwrap_err();
        assert!(twice.to_string().contains("already holds"), "{twice}");
        let rsa = token
            .import_ec_p256("cardwright-ca-3", b"not a key")
            .unwrap_err();
        assert!(
            rsa.to_string().contains("not an EC P-256 private key"),
            "{rsa}"
        );
        token.destroy("cardwright-ca-2").unwrap();
        assert!(token.ec_p256("cardwright-ca-2").unwrap().is_none());
        assert!(!token.has("cardwright-ca-2").unwrap());
    }

    /// Several threads sign with one key at once, each on a session of its own.
    fn threads_sign_at_once(token: &Arc<Token>) {
        let signer = token.ec_p256("cardwright-ca-1").unwrap().unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4u8 {
                let signer = signer.clone();
                scope.spawn(move || {
                    for round in 0..16u8 {
                        let signature = signer.sign_sha256(&[thread, round]).unwrap();
                        assert_eq!(signature[0], 0x30);
                    }
                });
            }
        });
        let idle = token.pool.idle.lock().unwrap().len();
        assert!(
            (1..=MAX_IDLE_SESSIONS).contains(&idle),
            "{idle} idle sessions"
        );
    }
}
