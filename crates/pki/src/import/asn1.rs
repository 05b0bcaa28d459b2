//! Reading DER, and the object identifiers the import knows.

use super::*;

pub(super) const EXPLICIT_0: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber::N0,
};
pub(super) const IMPLICIT_0: Tag = Tag::ContextSpecific {
    constructed: false,
    number: TagNumber::N0,
};
pub(super) const EXPLICIT_1: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber::N1,
};
pub(super) const IMPLICIT_1: Tag = Tag::ContextSpecific {
    constructed: false,
    number: TagNumber::N1,
};

/// The value of the one DER element that `bytes` must be, of type `tag`.
pub(super) fn element<'a>(bytes: &'a [u8], tag: Tag, what: &str) -> Result<&'a [u8], PkiError> {
    let any = AnyRef::from_der(bytes).map_err(|_| damaged(what))?;
    if any.tag() != tag {
        return Err(damaged(what));
    }
    Ok(any.value())
}

/// The fields of a SEQUENCE.
pub(super) fn sequence<'a>(any: AnyRef<'a>, what: &'static str) -> Result<Elements<'a>, PkiError> {
    if any.tag() != Tag::Sequence {
        return Err(damaged(what));
    }
    Elements::of(any.value(), what)
}

/// An AlgorithmIdentifier's OID and parameters.
pub(super) fn algorithm_identifier<'a>(
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
pub(super) fn bit_string<'a>(value: &'a [u8], what: &str) -> Result<&'a [u8], PkiError> {
    match value.split_first() {
        Some((0, bits)) if !bits.is_empty() => Ok(bits),
        _ => Err(damaged(what)),
    }
}

pub(super) fn encode(tag: Tag, value: &[u8]) -> Result<Vec<u8>, PkiError> {
    AnyRef::new(tag, value)
        .and_then(|any| any.to_der())
        .map_err(|e| refused(format!("the private key cannot be re-encoded ({e})")))
}

pub(super) fn encode_oid(oid: ObjectIdentifier) -> Result<Vec<u8>, PkiError> {
    encode(Tag::ObjectIdentifier, oid.as_bytes())
}

/// Reads the DER elements inside a constructed value one by one.
pub(super) struct Elements<'a> {
    pub(super) reader: SliceReader<'a>,
    pub(super) what: &'static str,
}

impl<'a> Elements<'a> {
    pub(super) fn of(value: &'a [u8], what: &'static str) -> Result<Self, PkiError> {
        let reader = SliceReader::new(value).map_err(|_| damaged(what))?;
        Ok(Self { reader, what })
    }

    pub(super) fn is_done(&self) -> bool {
        self.reader.is_finished()
    }

    pub(super) fn next(&mut self) -> Result<AnyRef<'a>, PkiError> {
        if self.is_done() {
            return Err(damaged(self.what));
        }
        self.reader.decode().map_err(|_| damaged(self.what))
    }

    /// The next element if it has type `tag`; `None` at the end or for another type.
    pub(super) fn next_if(&mut self, tag: Tag) -> Result<Option<AnyRef<'a>>, PkiError> {
        if self.is_done() {
            return Ok(None);
        }
        match self.reader.peek_tag() {
            Ok(next) if next == tag => self.next().map(Some),
            Ok(_) => Ok(None),
            Err(_) => Err(damaged(self.what)),
        }
    }

    pub(super) fn next_tagged(&mut self, tag: Tag) -> Result<AnyRef<'a>, PkiError> {
        let any = self.next()?;
        if any.tag() != tag {
            return Err(damaged(self.what));
        }
        Ok(any)
    }

    /// The value of the next element, which must have type `tag`.
    pub(super) fn expect(&mut self, tag: Tag) -> Result<&'a [u8], PkiError> {
        self.next_tagged(tag).map(AnyRef::value)
    }

    pub(super) fn sequence(&mut self) -> Result<Elements<'a>, PkiError> {
        let value = self.expect(Tag::Sequence)?;
        Elements::of(value, self.what)
    }

    pub(super) fn integer(&mut self) -> Result<u64, PkiError> {
        self.next()?
            .decode_as::<u64>()
            .map_err(|_| damaged(self.what))
    }

    pub(super) fn oid(&mut self) -> Result<ObjectIdentifier, PkiError> {
        self.next()?
            .decode_as::<ObjectIdentifier>()
            .map_err(|_| damaged(self.what))
    }
}

// ---------------------------------------------------------------------------------------------
// Object identifiers

pub(super) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(super) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(super) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(super) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

pub(super) const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
pub(super) const SIGNED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub(super) const ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
pub(super) const ENCRYPTED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");

pub(super) const KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
pub(super) const SHROUDED_KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
pub(super) const CERT_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
pub(super) const SAFE_CONTENTS_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.6");
pub(super) const X509_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");

pub(super) const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
pub(super) const PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
pub(super) const SCRYPT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.4.11");
pub(super) const HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
pub(super) const HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
pub(super) const HMAC_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.2.10");
pub(super) const HMAC_SHA512: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");
pub(super) const AES128_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
pub(super) const AES192_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
pub(super) const AES256_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
pub(super) const DES_EDE3_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");

pub(super) const PBE_SHA1_3DES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");
pub(super) const PBE_SHA1_2DES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.4");
pub(super) const PBE_SHA1_RC2_128: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.5");
pub(super) const PBE_SHA1_RC2_40: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.6");

pub(super) const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
pub(super) const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
pub(super) const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
pub(super) const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// A name for an algorithm a refusal mentions, so that the admin can tell what the file uses.
pub(super) fn oid_name(oid: ObjectIdentifier) -> String {
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
