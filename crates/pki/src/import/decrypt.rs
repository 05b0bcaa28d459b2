//! Password-based decryption of PKCS#12 contents: PBES2 and the legacy PKCS#12 schemes.

use super::*;

/// The key-derivation work a file may still ask for.
pub(super) struct Work {
    pub(super) left: u64,
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
    pub(super) fn charge(&mut self, iterations: u64, rounds: u64) -> Result<NonZeroU32, PkiError> {
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
pub(super) enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(super) fn from_digest_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (SHA1, Self::Sha1),
            (SHA256, Self::Sha256),
            (SHA384, Self::Sha384),
            (SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(known, hash)| (known == oid).then_some(hash))
    }

    pub(super) fn from_hmac_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (HMAC_SHA1, Self::Sha1),
            (HMAC_SHA256, Self::Sha256),
            (HMAC_SHA384, Self::Sha384),
            (HMAC_SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(known, hash)| (known == oid).then_some(hash))
    }

    pub(super) fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    pub(super) fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            Self::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => ring::hmac::HMAC_SHA256,
            Self::Sha384 => ring::hmac::HMAC_SHA384,
            Self::Sha512 => ring::hmac::HMAC_SHA512,
        }
    }

    pub(super) fn pbkdf2(self) -> ring::pbkdf2::Algorithm {
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
pub(super) enum Pbes2Cipher {
    Aes128,
    Aes192,
    Aes256,
    DesEde3,
}

impl Pbes2Cipher {
    pub(super) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (AES128_CBC, Self::Aes128),
            (AES192_CBC, Self::Aes192),
            (AES256_CBC, Self::Aes256),
            (DES_EDE3_CBC, Self::DesEde3),
        ]
        .into_iter()
        .find_map(|(known, cipher)| (known == oid).then_some(cipher))
    }

    pub(super) fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 | Self::DesEde3 => 24,
            Self::Aes256 => 32,
        }
    }
}

/// The legacy password-based ciphers of PKCS#12 itself (RFC 7292, appendix C).
#[derive(Debug, Clone, Copy)]
pub(super) enum LegacyCipher {
    DesEde3,
    DesEde2,
    Rc2With128BitKey,
    Rc2With40BitKey,
}

impl LegacyCipher {
    pub(super) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (PBE_SHA1_3DES, Self::DesEde3),
            (PBE_SHA1_2DES, Self::DesEde2),
            (PBE_SHA1_RC2_128, Self::Rc2With128BitKey),
            (PBE_SHA1_RC2_40, Self::Rc2With40BitKey),
        ]
        .into_iter()
        .find_map(|(known, cipher)| (known == oid).then_some(cipher))
    }

    pub(super) fn key_len(self) -> usize {
        match self {
            Self::DesEde3 => 24,
            Self::DesEde2 | Self::Rc2With128BitKey => 16,
            Self::Rc2With40BitKey => 5,
        }
    }
}

/// Decrypts `ciphertext` as the AlgorithmIdentifier `algorithm` says.
pub(super) fn decrypt(
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
pub(super) fn pbes2(
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
pub(super) fn pkcs12_pbe(
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

pub(super) fn cbc_decrypt<C: BlockDecryptMut + BlockCipher>(
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
pub(super) fn pkcs12_kdf(
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
