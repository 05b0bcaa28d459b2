//! Certificates for TLS: the server's own (for the names it is reached by) and stations' client
//! certificates, issued for a certificate signing request.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateSigningRequestDer;

use crate::{at, sign_err, CertificateAuthority, PkiError};

/// What a TLS certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRole {
    /// The server, for the names clients reach it by.
    Server,
    /// A client (a station) authenticating itself.
    Client,
}

/// A new EC P-256 key (PKCS#8 PEM) and a signing request for it naming `common_name` (PEM).
pub fn key_and_request(common_name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let request = params.serialize_request(&key).map_err(sign_err)?;
    Ok((key.serialize_pem(), request.pem().map_err(sign_err)?))
}

/// A signing request (PEM) for the key `key_pem` (PKCS#8 PEM), naming `common_name`.
pub fn request_for(key_pem: &str, common_name: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| PkiError::Signing(format!("the key does not read: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .serialize_request(&key)
        .map_err(sign_err)?
        .pem()
        .map_err(sign_err)
}

/// A certificate's public key (DER SubjectPublicKeyInfo) and the end of its validity (Unix
/// seconds).
pub fn public_key_and_end(certificate_der: &[u8]) -> Result<(Vec<u8>, i64), PkiError> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(certificate_der)
        .map_err(|e| PkiError::Signing(format!("certificate does not parse: {e}")))?;
    Ok((
        cert.tbs_certificate.subject_pki.raw.to_vec(),
        cert.validity().not_after.timestamp(),
    ))
}

/// The public key (DER SubjectPublicKeyInfo) of a signing request (PEM), once its signature
/// verifies.
pub fn request_public_key(request_pem: &str) -> Result<Vec<u8>, PkiError> {
    let der = pem::parse(request_pem.trim())
        .map_err(|e| PkiError::Signing(format!("the signing request is not PEM: {e}")))?;
    if der.tag() != "CERTIFICATE REQUEST" {
        return Err(PkiError::Signing(format!(
            "expected a CERTIFICATE REQUEST, found {}",
            der.tag()
        )));
    }
    let request = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
        der.contents(),
    ))
    .map_err(|e| PkiError::Signing(format!("the signing request is refused: {e}")))?;
    Ok(request.public_key.subject_public_key_info())
}

/// A new EC P-256 key for the server's own certificate (PKCS#8 PEM) and its public key (DER).
pub fn server_key() -> Result<(String, Vec<u8>), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
    Ok((key.serialize_pem(), key.subject_public_key_info()))
}

impl CertificateAuthority {
    /// Issues a TLS certificate for `spki_der` naming `common_name`: for a server, valid for
    /// `names` (host names or IP addresses); for a client, for client authentication only.
    /// Valid from `now` for `days`.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one fact of the certificate"
    )]
    pub fn issue_tls(
        &self,
        spki_der: &[u8],
        common_name: &str,
        names: &[String],
        role: TlsRole,
        serial: &[u8],
        now: i64,
        days: u32,
    ) -> Result<Vec<u8>, PkiError> {
        let public_key =
            rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(PkiError::PublicKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            TlsRole::Server => ExtendedKeyUsagePurpose::ServerAuth,
            TlsRole::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if role == TlsRole::Server {
            params.subject_alt_names = names
                .iter()
                .map(|name| match name.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => name
                        .as_str()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|_| PkiError::Signing(format!("'{name}' is not a host name"))),
                })
                .collect::<Result<_, _>>()?;
        }
        params.not_before = at(now - 300)?;
        params.not_after = at(now + i64::from(days) * 86_400)?;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&public_key, &self.issuer)
            .map_err(sign_err)?;
        Ok(certificate.der().to_vec())
    }
}

impl CertificateAuthority {
    /// A certificate for `newer` (the installation's CA after `pki renew-ca` with a new key)
    /// signed by this, earlier, authority: its name, key and CA extensions, valid from `now`
    /// while both are. A server's chain that carries it is trusted by clients that trust
    /// either authority.
    pub fn cross_certificate(
        &self,
        newer: &CertificateAuthority,
        serial: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, PkiError> {
        use x509_parser::prelude::FromDer as _;
        let pem = pem::parse(newer.certificate_pem().trim())
            .map_err(|e| PkiError::Signing(format!("the CA certificate is not PEM: {e}")))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(pem.contents())
            .map_err(|e| PkiError::Signing(format!("the CA certificate does not parse: {e}")))?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| PkiError::Signing("the CA certificate names no CN".into()))?;
        // As `create` makes a CA certificate, for the newer CA's name and key.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let (newer_info, own) = (newer.info()?, self.info()?);
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&newer_info.public_key)
            .map_err(PkiError::PublicKey)?;
        params.not_before = at(now - 300)?;
        params.not_after = at(newer_info.not_after.min(own.not_after))?;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&public_key, &self.issuer)
            .map_err(sign_err)?;
        Ok(certificate.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaKey;

    #[test]
    fn a_cross_certificate_names_the_newer_ca_and_its_key() {
        let older =
            CertificateAuthority::create("Card CA", CaKey::generate().unwrap(), 1, 0, 5).unwrap();
        let newer = CertificateAuthority::create("Card CA", CaKey::generate().unwrap(), 2, 1000, 5)
            .unwrap();
        let cross = older.cross_certificate(&newer, &[7], 2000).unwrap();
        let info = crate::CaInfo::of_pem(&crate::certificate_pem(&cross)).unwrap();
        let newer_info = newer.info().unwrap();
        assert_eq!(info.public_key, newer_info.public_key);
        assert_eq!(info.subject, newer_info.subject);
        assert_eq!(info.not_after, older.info().unwrap().not_after);
        assert_ne!(info.fingerprint, newer_info.fingerprint);
    }

    #[test]
    fn a_request_becomes_a_client_certificate_for_its_key() {
        let ca =
            CertificateAuthority::create("Test CA", CaKey::generate().unwrap(), 1, 0, 1).unwrap();
        let (_key, request) = key_and_request("desk-7").unwrap();
        let spki = request_public_key(&request).unwrap();
        let der = ca
            .issue_tls(&spki, "desk-7", &[], TlsRole::Client, &[1, 2, 3], 1000, 30)
            .unwrap();
        let (_, serial) = crate::subject_and_serial(&der).unwrap();
        assert_eq!(serial, vec![1, 2, 3]);
        let mut tampered = request.clone();
        tampered.replace_range(100..104, "AAAA");
        assert!(request_public_key(&tampered).is_err());
        assert!(request_public_key("not a request").is_err());
    }

    #[test]
    fn server_certificates_name_hosts_and_addresses() {
        let ca =
            CertificateAuthority::create("Test CA", CaKey::generate().unwrap(), 1, 0, 1).unwrap();
        let (_key, spki) = server_key().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        assert!(ca
            .issue_tls(&spki, "localhost", &names, TlsRole::Server, &[9], 1000, 90)
            .is_ok());
        assert!(ca
            .issue_tls(
                &spki,
                "x",
                &["bäd.example".into()],
                TlsRole::Server,
                &[9],
                1000,
                90
            )
            .is_err());
    }
}
