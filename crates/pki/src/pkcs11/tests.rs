use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData as _,
};

use super::signer::{der_element, der_expect, ecdsa_signature_der};
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
    if !cardwright_testkit::require_programs(&["softhsm2-util", "pkcs11-tool", "openssl"], install)
        || !cardwright_testkit::require_file(Path::new(MODULE), install)
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
