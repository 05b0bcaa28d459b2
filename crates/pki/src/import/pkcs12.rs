//! PKCS#12 (RFC 7292): the file's structure, its integrity check and its bags.

use super::*;

pub(super) const P12: &str = "the PKCS#12 file";

pub(super) struct Pfx<'a> {
    /// The AuthenticatedSafe's DER, which the MAC covers.
    pub(super) auth_safe: &'a [u8],
    /// The MacData SEQUENCE's content.
    pub(super) mac_data: Option<&'a [u8]>,
}

pub(super) fn read_pfx(der: &[u8]) -> Result<Pfx<'_>, PkiError> {
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
pub(super) fn content_info(info: AnyRef<'_>) -> Result<(ObjectIdentifier, &[u8]), PkiError> {
    let mut fields = sequence(info, P12)?;
    let content_type = fields.oid()?;
    let content = fields.expect(EXPLICIT_0)?;
    Ok((content_type, content))
}

/// The password in the two forms PKCS#12 uses.
pub(super) struct Password<'p> {
    /// As typed (UTF-8): PBES2 derives its keys from these bytes.
    pub(super) text: &'p [u8],
    /// As a BMPString (UTF-16 big-endian) with a terminating zero: the PKCS#12 key derivation of
    /// the MAC and of the legacy ciphers uses these bytes.
    pub(super) bmp: Vec<u8>,
    /// Whether the MAC proved the password right; a part that does not decrypt then means a
    /// damaged file rather than a wrong password.
    pub(super) checked: bool,
}

impl Password<'_> {
    pub(super) fn undecryptable(&self) -> PkiError {
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

pub(super) fn bmp(password: &str) -> Vec<u8> {
    password
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// Checks the file's MAC with `password` and gives the password in the form that matched.
pub(super) fn verify_mac<'p>(
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
pub(super) struct Found {
    pub(super) keys: Vec<PrivateKey>,
    pub(super) certificates: Vec<Vec<u8>>,
}

impl Found {
    pub(super) fn into_ca(self) -> Result<ImportedCa, PkiError> {
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

pub(super) fn certificate_may_belong(certificate_der: &[u8], key: &PrivateKey) -> bool {
    X509Certificate::from_der(certificate_der)
        .ok()
        .and_then(|(_, certificate)| {
            certificate_public_key(certificate.tbs_certificate.subject_pki.raw).ok()
        })
        .is_some_and(|(key_type, public)| key.may_belong_to(key_type, public))
}

/// Reads the AuthenticatedSafe: a sequence of ContentInfo, each plain or encrypted.
pub(super) fn read_authenticated_safe(
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
pub(super) fn decrypt_encrypted_data(
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
pub(super) fn read_safe_contents(
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
