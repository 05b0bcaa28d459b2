//! The CA's key on the token as an rcgen signing key, and the DER it needs.

use super::*;

/// An EC P-256 private key on a token, usable by rcgen to sign certificates and revocation
/// lists (as a self-signed CA's key or through `rcgen::Issuer`).
#[derive(Clone)]
pub struct TokenSigner {
    pub(super) pool: Arc<Pool>,
    pub(super) label: String,
    pub(super) key: ObjectHandle,
    pub(super) point: [u8; P256_POINT_LEN],
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
pub(super) fn ecdsa_signature_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    Some(der(0x30, &[der_unsigned(r), der_unsigned(s)].concat()))
}

/// A DER element of `tag` around `content`.
pub(super) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub(super) fn der_unsigned(value: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// Reads one DER element from the front of `input`: its tag, its content and what follows.
pub(super) fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
pub(super) fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    der_element(input).and_then(|(found, content, rest)| (found == tag).then_some((content, rest)))
}

/// The 32-byte private scalar of an EC P-256 key in PKCS#8 DER (RFC 5208 PrivateKeyInfo, or
/// RFC 5958 OneAsymmetricKey, around an RFC 5915 ECPrivateKey).
pub(super) fn p256_scalar(pkcs8: &[u8]) -> Option<[u8; 32]> {
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
