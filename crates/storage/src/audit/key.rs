//! The key that signs the audit log, and what it signs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::StoreError;

/// The key that signs the audit log. It must not live readable in the database the log is in:
/// it is kept in the installation's key store (sealed under the key-encryption key, or on a
/// PKCS#11 token), so servers sharing a database sign alike.
#[derive(Clone)]
pub struct AuditKey(KeyMaterial);

#[derive(Clone)]
enum KeyMaterial {
    /// The key's bytes, in this process's memory.
    Local([u8; 32]),
    /// A key that never leaves its token; the token computes each MAC.
    External(std::sync::Arc<dyn ExternalMac>),
}

/// HMAC-SHA-256 computed where the key is kept (a PKCS#11 token).
pub trait ExternalMac: Send + Sync {
    /// The HMAC-SHA-256 of `message`, or why the token could not compute it.
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], String>;
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// What separates the audit key from other keys derived from the same master key.
const KEY_LABEL: &[u8] = b"cardwright audit log v1";

/// What an event's MAC and the head's signature are over; the labels differ so that an event's
/// MAC can never stand in for the head's signature of the same sequence number and hash.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signed {
    Event,
    Head,
}

impl AuditKey {
    /// The audit key of an installation from before key stores: HMAC-SHA-256(master key,
    /// "cardwright audit log v1"). Moving such an installation into a key store keeps this key,
    /// so its log still verifies.
    pub fn derive(master_key: &[u8; 32]) -> Self {
        Self(KeyMaterial::Local(Self::derived_bytes(master_key)))
    }

    /// The bytes of [`AuditKey::derive`]'s key, to move it into a key store.
    pub fn derived_bytes(master_key: &[u8; 32]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(master_key).expect("HMAC takes 32-byte keys");
        mac.update(KEY_LABEL);
        mac.finalize().into_bytes().into()
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(KeyMaterial::Local(key))
    }

    /// A key kept on a token.
    pub fn external(key: std::sync::Arc<dyn ExternalMac>) -> Self {
        Self(KeyMaterial::External(key))
    }

    /// The MAC of `what` at `seq` with `hash`.
    pub(super) fn mac(&self, what: Signed, seq: i64, hash: &str) -> Result<[u8; 32], StoreError> {
        let label: &[u8] = match what {
            Signed::Event => b"event\0",
            Signed::Head => b"head\0",
        };
        let message = [label, seq.to_string().as_bytes(), b"\0", hash.as_bytes()].concat();
        match &self.0 {
            KeyMaterial::Local(key) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes 32-byte keys");
                mac.update(&message);
                Ok(mac.finalize().into_bytes().into())
            }
            KeyMaterial::External(key) => key
                .hmac_sha256(&message)
                .map_err(|e| StoreError::Key(format!("signing the audit log: {e}"))),
        }
    }

    /// The hex MAC of an event, or signature of the head, at `seq` with `hash`.
    pub(super) fn sign(&self, what: Signed, seq: i64, hash: &str) -> Result<String, StoreError> {
        Ok(hex::encode(self.mac(what, seq, hash)?))
    }

    /// Whether `mac` (hex) is the MAC or signature of `seq` and `hash`, compared in constant time.
    pub(super) fn verifies(&self, what: Signed, seq: i64, hash: &str, mac: &str) -> bool {
        let (Ok(given), Ok(expected)) = (hex::decode(mac), self.mac(what, seq, hash)) else {
            return false;
        };
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::{AuditKey, Signed};

    #[test]
    fn the_key_is_never_printed() {
        let key = AuditKey::derive(&[7; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "AuditKey(..)");
        let super::KeyMaterial::Local(bytes) = key.0 else {
            unreachable!()
        };
        assert!(!shown.contains(&hex::encode(bytes)));
    }

    #[test]
    fn the_key_depends_on_the_master_key() {
        let mac = |key: &AuditKey| key.sign(Signed::Event, 1, super::super::GENESIS).unwrap();
        let a = AuditKey::derive(&[7; 32]);
        assert_eq!(mac(&a), mac(&AuditKey::derive(&[7; 32])));
        assert_ne!(mac(&a), mac(&AuditKey::derive(&[8; 32])));
        assert_ne!(
            mac(&a),
            mac(&AuditKey::from_bytes([7; 32])),
            "the master key itself is not used"
        );
    }

    #[test]
    fn an_event_mac_is_no_head_signature() {
        let key = AuditKey::derive(&[7; 32]);
        let hash = super::super::GENESIS;
        let mac = key.sign(Signed::Event, 5, hash).unwrap();
        assert!(key.verifies(Signed::Event, 5, hash, &mac));
        assert!(!key.verifies(Signed::Head, 5, hash, &mac));
        assert!(!key.verifies(Signed::Event, 6, hash, &mac));
        assert!(!AuditKey::derive(&[8; 32]).verifies(Signed::Event, 5, hash, &mac));
        assert!(!key.verifies(Signed::Event, 5, hash, "not hex"));
    }
}
