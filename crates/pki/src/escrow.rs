//! The escrow key stations seal PUKs to: an EC P-256 key pair whose private half only the
//! server holds. A station seals with a fresh key of its own (ECDH, then AES-256-GCM under a
//! key hashed from the shared secret and both public keys), so what crosses the network opens
//! only at the server.

use sha2::{Digest as _, Sha256};

use crate::sealing;
use crate::PkiError;

const LABEL: &[u8] = b"cardwright escrow v1";

/// The server's escrow key.
pub struct EscrowKey(p256::SecretKey);

impl std::fmt::Debug for EscrowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EscrowKey").finish_non_exhaustive()
    }
}

/// A P-256 secret from random bytes: `fill` is asked again in the rare case the bytes are not
/// a valid scalar.
fn secret(fill: &mut dyn FnMut(&mut [u8])) -> p256::SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        fill(&mut bytes);
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

fn shared_key(shared: &[u8], ephemeral: &[u8], recipient: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(LABEL);
    hash.update(shared);
    hash.update(ephemeral);
    hash.update(recipient);
    hash.finalize().into()
}

impl EscrowKey {
    /// A new key from `fill`'s random bytes.
    pub fn generate(fill: &mut dyn FnMut(&mut [u8])) -> Self {
        Self(secret(fill))
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PkiError> {
        p256::SecretKey::from_slice(bytes)
            .map(Self)
            .map_err(|_| PkiError::Signing("the escrow key does not open".into()))
    }

    /// The 32 secret bytes, to be sealed for storage.
    pub fn secret_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }

    /// The public key (SEC1), as stations get it.
    pub fn public(&self) -> Vec<u8> {
        self.0.public_key().to_sec1_bytes().to_vec()
    }

    /// Opens what [`seal_to`] sealed to this key; `None` when it was sealed to another key or
    /// changed.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&len, rest) = sealed.split_first()?;
        let len = usize::from(len);
        if rest.len() < len {
            return None;
        }
        let (ephemeral, body) = rest.split_at(len);
        let ephemeral_key = p256::PublicKey::from_sec1_bytes(ephemeral).ok()?;
        let shared = self.0.diffie_hellman(&ephemeral_key);
        let key = shared_key(shared.raw_secret_bytes(), ephemeral, &self.public());
        sealing::open_bound(&key, LABEL, body)
    }
}

/// Seals `plaintext` to the escrow key `recipient` (SEC1 public key), with a fresh key from
/// `fill`'s random bytes and the 12-byte `nonce`.
pub fn seal_to(
    recipient: &[u8],
    fill: &mut dyn FnMut(&mut [u8]),
    nonce: [u8; 12],
    plaintext: &[u8],
) -> Result<Vec<u8>, PkiError> {
    let recipient_key = p256::PublicKey::from_sec1_bytes(recipient)
        .map_err(|_| PkiError::Signing("the server's escrow key is not a P-256 key".into()))?;
    let ephemeral = secret(fill);
    let ephemeral_public = ephemeral.public_key().to_sec1_bytes();
    let shared = ephemeral.diffie_hellman(&recipient_key);
    let key = shared_key(shared.raw_secret_bytes(), &ephemeral_public, recipient);
    let len = u8::try_from(ephemeral_public.len())
        .map_err(|_| PkiError::Signing("ephemeral key too long".into()))?;
    let mut out = vec![len];
    out.extend_from_slice(&ephemeral_public);
    out.extend(sealing::seal_bound(&key, nonce, LABEL, plaintext));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(start: u8) -> impl FnMut(&mut [u8]) {
        let mut n = start;
        move |bytes: &mut [u8]| {
            for b in bytes.iter_mut() {
                n = n.wrapping_mul(31).wrapping_add(7);
                *b = n;
            }
        }
    }

    #[test]
    fn only_the_escrow_key_opens_what_was_sealed_to_it() {
        let key = EscrowKey::generate(&mut counter(1));
        let other = EscrowKey::generate(&mut counter(2));
        let sealed = seal_to(&key.public(), &mut counter(3), [5; 12], b"12345678").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"12345678"));
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"12345678"[..]));
        assert_eq!(other.open(&sealed), None);
        let mut changed = sealed.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(key.open(&changed), None);
        assert_eq!(key.open(&[]), None);
        let again = EscrowKey::from_bytes(&key.secret_bytes()).unwrap();
        assert_eq!(again.open(&sealed).as_deref(), Some(&b"12345678"[..]));
        assert!(seal_to(b"not a key", &mut counter(3), [5; 12], b"x").is_err());
    }
}
