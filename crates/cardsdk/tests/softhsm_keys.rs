//! Key generation on SoftHSM2 for both key kinds; a test binary of its own, because a PKCS#11
//! module reads its configuration once per process.

use std::process::Command;

use cardwright_cardsdk::encoder::{CardCertificate, EncodeError, KeyKind, KeySpec, Pkcs11Encoder};

#[test]
fn ec_and_rsa_keys_are_generated_on_the_card() {
    let install = "install Debian's softhsm2 and openssl (scripts/test does)";
    if !cardwright_testkit::require_file(
        std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"),
        install,
    ) || !cardwright_testkit::require_programs(&["openssl"], install)
    {
        return;
    }
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
    // Before the module is loaded, in this test's own process.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let encoder = Pkcs11Encoder::new("/usr/lib/softhsm/libsofthsm2.so");
    let specs = [
        KeySpec {
            profile: "authentication".into(),
            kind: KeyKind::EcP256,
        },
        KeySpec {
            profile: "signature".into(),
            kind: KeyKind::Rsa2048,
        },
    ];
    let mut seen = Vec::new();
    let keys = encoder
        .encode(
            "KEYS-000001",
            "12345678",
            "123456",
            None,
            &specs,
            &mut |key| {
                seen.push(key.clone());
                Err(EncodeError::Certificate(
                    "no certificate in this test".into(),
                ))
            },
        )
        .unwrap_err();
    assert!(matches!(keys, EncodeError::Certificate(_)));
    assert_eq!(seen.len(), 1, "encoding stops at the first failure");
    let mut with_certs = Vec::new();
    let keys = encoder
        .encode(
            "KEYS-000002",
            "12345678",
            "123456",
            None,
            &specs,
            &mut |key| {
                with_certs.push(key.clone());
                Ok(CardCertificate {
                    key_id: key.id.clone(),
                    label: key.profile.clone(),
                    der: vec![0x30, 0x00],
                    subject: vec![0x30, 0x00],
                })
            },
        )
        .unwrap();
    assert_eq!(keys.len(), 2);
    for (key, bits) in keys.iter().zip(["256 bit", "2048 bit"]) {
        let path = dir.path().join(format!("{}.der", key.profile));
        std::fs::write(&path, &key.spki).unwrap();
        let out = Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&path)
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(bits),
            "{}: {text}",
            key.profile
        );
    }
    assert_ne!(keys[0].id, keys[1].id, "each key has its own CKA_ID");
    // A card that is not in the encoder cannot be written to.
    assert!(
        matches!(
            encoder.write_certificates("NOT-THERE", &[]),
            Err(EncodeError::CardNotFound(ref serial)) if serial == "NOT-THERE"
        ),
        "a card that is not in the encoder is named"
    );
}
