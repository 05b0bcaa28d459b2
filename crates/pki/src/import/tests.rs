use std::process::Command;

use rcgen::{CertificateParams, Issuer, KeyPair};

use super::*;

const OPENSSL: &str = "install Debian's openssl (scripts/test does)";
const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
/// A password with a space and letters outside ASCII, so that the UTF-8 form (PBES2) and the
/// BMPString form (MAC, legacy ciphers) differ.
const PASSWORD: &str = "pässwörd 1";

/// A temporary folder in which openssl makes the inputs.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs openssl in the folder with the words of `command` and then `extra` (arguments
    /// that may hold spaces) and gives what it printed; it must succeed.
    fn openssl(&self, command: &str, extra: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(command.split_whitespace())
            .args(extra)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "openssl {command}: {text}");
        text
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// A self-signed certificate `{name}.pem` and its PKCS#8 key `{name}-key.pem`, made with
    /// the `-newkey` words `new_key`, with `basicConstraints` as openssl spells it.
    fn self_signed(&self, name: &str, new_key: &str, basic_constraints: &str) {
        self.openssl(
            &format!(
                "req -x509 -new {new_key} -nodes -keyout {name}-key.pem -out {name}.pem \
                 -subj /CN={name} -days 3650"
            ),
            &["-addext", &format!("basicConstraints={basic_constraints}")],
        );
    }

    /// `{file}.p12` from `words` (what goes in and any options), with `password`.
    fn pkcs12(&self, file: &str, words: &str, password: &str) -> Vec<u8> {
        let name = format!("{file}.p12");
        self.openssl(
            &format!("pkcs12 -export {words} -out {name}"),
            &["-passout", &format!("pass:{password}")],
        );
        self.bytes(&name)
    }

    /// Signs a leaf certificate through rcgen with the imported CA and has openssl verify
    /// it against the imported CA certificate.
    fn signs_verifiable_leaf(&self, ca: &ImportedCa, label: &str) {
        let key = KeyPair::try_from(ca.key_pkcs8_der.as_slice()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem, key).unwrap();
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["card.example".to_owned()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let (ca_file, leaf_file) = (format!("{label}-ca.pem"), format!("{label}-leaf.pem"));
        std::fs::write(self.dir.path().join(&ca_file), &ca.certificate_pem).unwrap();
        std::fs::write(self.dir.path().join(&leaf_file), leaf.pem()).unwrap();
        let text = self.openssl(&format!("verify -CAfile {ca_file} {leaf_file}"), &[]);
        assert!(text.contains(": OK"), "{label}: {text}");
        let debug = format!("{ca:?}");
        assert!(debug.contains("not shown"), "{debug}");
    }
}

fn certificate_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

/// Imports a CA made with `new_key` from PKCS#8 PEM, from the traditional PEM that the
/// openssl command `traditional` writes (its first line holds `tag`), and from PKCS#12 files
/// in the default and the legacy form, one with another CA's certificate beside it; each
/// import signs a leaf that openssl verifies.
fn imports_in_every_form(new_key: &str, traditional: &str, tag: &str) {
    let folder = Folder::new();
    folder.self_signed("ca", new_key, "critical,CA:TRUE");
    folder.self_signed("other", P256, "critical,CA:TRUE");
    let certificate = folder.text("ca.pem");

    let ca = from_pem(&certificate, &folder.text("ca-key.pem")).unwrap();
    assert_eq!(
        certificate_der(&ca.certificate_pem),
        certificate_der(&certificate),
        "the certificate comes out unchanged"
    );
    folder.signs_verifiable_leaf(&ca, "pkcs8");

    folder.openssl(
        &format!("{traditional} -in ca-key.pem -out traditional.pem"),
        &[],
    );
    let key = folder.text("traditional.pem");
    assert!(key.starts_with(tag), "{key}");
    let ca = from_pem(&certificate, &key).unwrap();
    folder.signs_verifiable_leaf(&ca, "traditional");

    for (label, options) in [
        ("default", ""),
        ("chain", "-certfile other.pem"),
        ("legacy", "-legacy"),
    ] {
        let words = format!("-in ca.pem -inkey ca-key.pem {options}");
        let p12 = folder.pkcs12(label, &words, PASSWORD);
        let ca = from_pkcs12(&p12, PASSWORD).unwrap();
        assert_eq!(
            certificate_der(&ca.certificate_pem),
            certificate_der(&certificate),
            "{label}"
        );
        folder.signs_verifiable_leaf(&ca, label);
    }
}

#[test]
fn an_ec_p256_ca_imports_from_pem_and_pkcs12() {
    if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        imports_in_every_form(P256, "ec", "-----BEGIN EC PRIVATE KEY-----");
    }
}

#[test]
fn an_ec_p384_ca_imports_from_pem_and_pkcs12() {
    if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        imports_in_every_form(
            "-newkey ec -pkeyopt ec_paramgen_curve:P-384",
            "ec",
            "-----BEGIN EC PRIVATE KEY-----",
        );
    }
}

#[test]
fn an_rsa_2048_ca_imports_from_pem_and_pkcs12() {
    if cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        imports_in_every_form(
            "-newkey rsa:2048",
            "rsa -traditional",
            "-----BEGIN RSA PRIVATE KEY-----",
        );
    }
}

#[test]
fn unusual_but_sound_files_import() {
    if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        return;
    }
    let folder = Folder::new();
    folder.self_signed("ca", P256, "critical,CA:TRUE");
    let certificate = folder.text("ca.pem");

    // A SEC1 key without its public key: the public key is taken from the certificate, and
    // ring checks that it is the private key's.
    folder.openssl("ec -in ca-key.pem -no_public -out bare.pem", &[]);
    let ca = from_pem(&certificate, &folder.text("bare.pem")).unwrap();
    folder.signs_verifiable_leaf(&ca, "bare");

    // The certificate that belongs to the key is picked wherever it stands among others.
    folder.self_signed("other", P256, "critical,CA:TRUE");
    let found = Found {
        keys: vec![key_from_pem(&folder.text("ca-key.pem")).unwrap()],
        certificates: vec![
            certificate_der(&folder.text("other.pem")),
            certificate_der(&certificate),
        ],
    };
    let ca = found.into_ca().unwrap();
    assert_eq!(
        certificate_der(&ca.certificate_pem),
        certificate_der(&certificate)
    );

    // Certificate and key in one file, as some servers keep them.
    let both = format!("{certificate}{}", folder.text("ca-key.pem"));
    let ca = from_pem(&both, &both).unwrap();
    folder.signs_verifiable_leaf(&ca, "both");

    let p12 = folder.pkcs12("empty", "-in ca.pem -inkey ca-key.pem", "");
    let ca = from_pkcs12(&p12, "").unwrap();
    folder.signs_verifiable_leaf(&ca, "empty");

    let p12 = folder.pkcs12("nomac", "-in ca.pem -inkey ca-key.pem -nomac", PASSWORD);
    let ca = from_pkcs12(&p12, PASSWORD).unwrap();
    folder.signs_verifiable_leaf(&ca, "nomac");
    let error = from_pkcs12(&p12, "wrong").unwrap_err();
    assert!(matches!(error, PkiError::WrongPassword), "{error}");
}

fn refusal(result: Result<ImportedCa, PkiError>) -> String {
    match result {
        Ok(_) => panic!("the import was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn pem_refusals_name_the_problem() {
    if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        return;
    }
    let folder = Folder::new();
    folder.self_signed("ca", P256, "critical,CA:TRUE");
    folder.self_signed("other", P256, "critical,CA:TRUE");
    folder.self_signed("leaf", P256, "critical,CA:FALSE");
    let (ca, ca_key) = (folder.text("ca.pem"), folder.text("ca-key.pem"));

    let text = refusal(from_pem(
        &folder.text("leaf.pem"),
        &folder.text("leaf-key.pem"),
    ));
    assert!(text.contains("not a CA certificate"), "{text}");

    let text = refusal(from_pem(&ca, &folder.text("other-key.pem")));
    assert!(
        text.contains("does not belong to the certificate"),
        "{text}"
    );
    // Without its public key, the other key is caught when ring derives the public key.
    folder.openssl("ec -in other-key.pem -no_public -out bare.pem", &[]);
    let text = refusal(from_pem(&ca, &folder.text("bare.pem")));
    assert!(
        text.contains("does not belong to the certificate"),
        "{text}"
    );

    let text = refusal(from_pem(&ca, &ca));
    assert!(text.contains("no private key"), "{text}");
    let text = refusal(from_pem(&ca_key, &ca_key));
    assert!(text.contains("no certificate"), "{text}");

    for command in ["pkey", "ec"] {
        folder.openssl(
            &format!("{command} -in ca-key.pem -aes256 -passout pass:pw -out locked.pem"),
            &[],
        );
        let text = refusal(from_pem(&ca, &folder.text("locked.pem")));
        assert!(
            text.contains("private key is encrypted"),
            "{command}: {text}"
        );
    }

    folder.openssl("genpkey -algorithm ed25519 -out ed.pem", &[]);
    let text = refusal(from_pem(&ca, &folder.text("ed.pem")));
    assert!(text.contains("unsupported key type (Ed25519)"), "{text}");
    folder.openssl(
        "genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024 -out weak.key",
        &[],
    );
    folder.self_signed("weak", "-key weak.key", "critical,CA:TRUE");
    let text = refusal(from_pem(&folder.text("weak.pem"), &folder.text("weak.key")));
    assert!(text.contains("too weak"), "{text}");
}

#[test]
fn pkcs12_refusals_name_the_problem() {
    if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        return;
    }
    let folder = Folder::new();
    folder.self_signed("ca", P256, "critical,CA:TRUE");
    folder.self_signed("leaf", P256, "critical,CA:FALSE");

    let p12 = folder.pkcs12("ca", "-in ca.pem -inkey ca-key.pem", PASSWORD);
    let text = refusal(from_pkcs12(&p12, "pässwörd 2"));
    assert!(text.contains("wrong password"), "{text}");
    let text = refusal(from_pkcs12(&p12, ""));
    assert!(text.contains("wrong password"), "{text}");

    let p12 = folder.pkcs12("leaf", "-in leaf.pem -inkey leaf-key.pem", "pw");
    let text = refusal(from_pkcs12(&p12, "pw"));
    assert!(text.contains("not a CA certificate"), "{text}");

    let p12 = folder.pkcs12("nokey", "-nokeys -in ca.pem", "pw");
    let text = refusal(from_pkcs12(&p12, "pw"));
    assert!(text.contains("no private key"), "{text}");
    let p12 = folder.pkcs12("nocert", "-nocerts -inkey ca-key.pem", "pw");
    let text = refusal(from_pkcs12(&p12, "pw"));
    assert!(text.contains("no certificate"), "{text}");
}

#[test]
fn damaged_pkcs12_files_give_errors_not_panics() {
    if !cardwright_testkit::require_programs(&["openssl"], OPENSSL) {
        return;
    }
    let folder = Folder::new();
    folder.self_signed("ca", P256, "critical,CA:TRUE");
    // Without a MAC, changed bytes reach the decryption and the parsing of the contents. One
    // iteration of each key derivation keeps the many tries quick.
    for (file, options) in [
        ("mac", "-nomaciter"),
        ("nomac", "-nomac"),
        ("legacy", "-legacy -nomac"),
    ] {
        let words = format!("-in ca.pem -inkey ca-key.pem -iter 1 {options}");
        let p12 = folder.pkcs12(file, &words, "pw");
        let original = from_pkcs12(&p12, "pw").unwrap();
        for at in 0..p12.len() {
            let mut changed = p12.clone();
            changed[at] ^= 0x5a;
            if let Ok(ca) = from_pkcs12(&changed, "pw") {
                assert_eq!(ca.key_pkcs8_der, original.key_pkcs8_der, "{file} at {at}");
            }
        }
        for cut in 0..p12.len() {
            assert!(
                from_pkcs12(&p12[..cut], "pw").is_err(),
                "{file} cut at {cut}"
            );
        }
    }
}

#[test]
fn garbage_and_oversized_files_are_refused() {
    let text = refusal(from_pkcs12(b"this is not a PKCS#12 file at all", "pw"));
    assert!(text.contains("PKCS#12 file is damaged"), "{text}");
    let text = refusal(from_pkcs12(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0], "pw"));
    assert!(text.contains("PKCS#12 file is damaged"), "{text}");
    let text = refusal(from_pkcs12(b"-----BEGIN CERTIFICATE-----\n", "pw"));
    assert!(text.contains("PEM text"), "{text}");
    let text = refusal(from_pem("garbage", "garbage"));
    assert!(text.contains("no certificate"), "{text}");
    let text = refusal(from_pem(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ));
    assert!(text.contains("private key (PKCS#8) is damaged"), "{text}");

    let big = vec![0x30; MAX_FILE_BYTES + 1];
    let text = refusal(from_pkcs12(&big, "pw"));
    assert!(text.contains("above the limit of 1 MiB"), "{text}");
    let big = "A".repeat(MAX_FILE_BYTES + 1);
    let text = refusal(from_pem(&big, "x"));
    assert!(text.contains("above the limit of 1 MiB"), "{text}");
    let text = refusal(from_pem("x", &big));
    assert!(text.contains("above the limit of 1 MiB"), "{text}");
}

/// A PBES2 AlgorithmIdentifier (the key derivation `kdf_oid` with PBKDF2's parameters and
/// HMAC-SHA-256, AES-256-CBC) asking for the iteration count whose DER integer value is
/// `iterations`.
fn pbes2_algorithm(kdf_oid: ObjectIdentifier, iterations: &[u8]) -> Vec<u8> {
    let seq = |parts: &[Vec<u8>]| encode(Tag::Sequence, &parts.concat()).unwrap();
    let kdf_parameters = seq(&[
        encode(Tag::OctetString, &[1; 8]).unwrap(),
        encode(Tag::Integer, iterations).unwrap(),
        seq(&[
            encode_oid(HMAC_SHA256).unwrap(),
            encode(Tag::Null, &[]).unwrap(),
        ]),
    ]);
    let kdf = seq(&[encode_oid(kdf_oid).unwrap(), kdf_parameters]);
    let scheme = seq(&[
        encode_oid(AES256_CBC).unwrap(),
        encode(Tag::OctetString, &[2; 16]).unwrap(),
    ]);
    seq(&[encode_oid(PBES2).unwrap(), seq(&[kdf, scheme])])
}

fn decrypt_with(kdf_oid: ObjectIdentifier, iterations: &[u8]) -> Result<Vec<u8>, PkiError> {
    let password = Password {
        text: b"pw",
        bmp: bmp("pw"),
        checked: false,
    };
    let algorithm = pbes2_algorithm(kdf_oid, iterations);
    let algorithm = AnyRef::from_der(&algorithm).unwrap();
    decrypt(algorithm, &[0; 32], &password, &mut Work::default())
}

#[test]
fn key_derivation_work_is_bounded() {
    // 0x01312d01 is 20,000,001.
    let text = decrypt_with(PBKDF2, &[0x01, 0x31, 0x2d, 0x01])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("20000001 key-derivation iterations"),
        "{text}"
    );
    let text = decrypt_with(PBKDF2, &[0]).unwrap_err().to_string();
    assert!(text.contains("zero key-derivation iterations"), "{text}");
    // A count within the bounds runs; the padding then gives the wrong key away.
    let error = decrypt_with(PBKDF2, &[0x08, 0x00]).unwrap_err();
    assert!(matches!(error, PkiError::WrongPassword), "{error}");

    let text = decrypt_with(SCRYPT, &[0x08, 0x00]).unwrap_err().to_string();
    assert!(text.contains("scrypt, which is not supported"), "{text}");

    // Three derivations at the limit are allowed, and then nothing more.
    let mut work = Work::default();
    for _ in 0..3 {
        work.charge(MAX_ITERATIONS, 1).unwrap();
    }
    let text = work.charge(1, 1).unwrap_err().to_string();
    assert!(text.contains("in all"), "{text}");
}

#[test]
fn pkcs12_key_derivation_matches_a_known_answer() {
    // A published test vector (Bouncy Castle's PKCS12Test): password "smeg", salt
    // 0A58CF64530D823F, one iteration, SHA-1, ID 1 (key), 24 bytes.
    let key = pkcs12_kdf(
        Hash::Sha1,
        1,
        &bmp("smeg"),
        &[0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f],
        NonZeroU32::MIN,
        24,
    );
    assert_eq!(
        key,
        [
            0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
            0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
        ]
    );
}
