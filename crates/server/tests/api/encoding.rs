//! Chip encoding on SoftHSM2 through the real binary: tokens per card, PIN letters, certificates
//! that verify against the built-in CA, holder certificates, revocation, and PINs kept secret.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::PASSWORD;
use crate::server_processes::{Client, Server};

pub(crate) const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 configuration with its own token folder.
pub(crate) fn softhsm(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// A DER revocation list as `openssl crl -text` prints it (the file goes in `dir`).
pub(crate) fn crl_text(der: &[u8], dir: &Path, conf: &Path) -> String {
    let path = dir.join("crl.der");
    std::fs::write(&path, der).unwrap();
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-text",
        ],
        conf,
    );
    assert!(ok, "{text}");
    text
}

pub(crate) fn run(program: &str, args: &[&str], conf: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (softhsm2, opensc, openssl): {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub(crate) fn pkcs11_tool(conf: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--module", MODULE];
    all.extend_from_slice(args);
    run("pkcs11-tool", &all, conf)
}

/// Every file below `dir`, in its folders too.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The text of a PDF, by pdftotext (poppler-utils).
fn pdf_text(path: &Path) -> String {
    let out = Command::new("pdftotext")
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(out.status.success(), "pdftotext {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PIN printed on a PIN letter.
pub(crate) fn pin_from_letter(path: &Path) -> String {
    let text = pdf_text(path);
    text.split_whitespace()
        .find(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no PIN on the letter: {text}"))
        .to_owned()
}

pub(crate) fn cert_pem_from_card(conf: &Path, serial: &str, label: &str, out: &Path) -> String {
    let der = out.with_extension("der");
    let (ok, text) = pkcs11_tool(
        conf,
        &[
            "--token-label",
            serial,
            "--read-object",
            "--type",
            "cert",
            "--label",
            label,
            "-o",
            der.to_str().unwrap(),
        ],
    );
    assert!(ok, "reading certificate '{label}' from {serial}: {text}");
    let (ok, text) = run(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            der.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
        ],
        conf,
    );
    assert!(ok, "{text}");
    run(
        "openssl",
        &[
            "x509",
            "-in",
            out.to_str().unwrap(),
            "-noout",
            "-subject",
            "-serial",
        ],
        conf,
    )
    .1
}

/// What the phases of the encoding test share.
struct Bench {
    dir: tempfile::TempDir,
    conf: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

/// A server with one station whose encoder is SoftHSM2, and an operator with every role.
fn start_server() -> (Bench, Server) {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path());
    // A card that is already initialised by someone else: encoding it must fail, alone.
    let (ok, text) = run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "TMP-000002",
            "--so-pin",
            "99999999",
            "--pin",
            "1234",
        ],
        &conf,
    );
    assert!(ok, "{text}");
    let data = dir.path().join("data");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstation_poll_ms = 20\n\n[[stations]]\nname = \"encoder-desk\"\n\
             printer = {{ kind = \"simulated\", fail_every = 0, delay_ms = 0 }}\nencoder = {{ kind = \"pkcs11\", module = \"{MODULE}\" }}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut add = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args([
            "operator",
            "add",
            "admin",
            "--role",
            "production-admin",
            "--role",
            "registration-officer",
        ])
        .args([
            "--role",
            "policy-admin",
            "--role",
            "service-admin",
            "--password-stdin",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), PASSWORD.as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());
    let log = dir.path().join("server.log");
    let server = Server::start_with(
        &config,
        &[
            ("SOFTHSM2_CONF", conf.as_os_str()),
            ("CARDWRIGHT_LOG", "debug".as_ref()),
        ],
        &log,
    );
    (
        Bench {
            dir,
            conf,
            data,
            log,
        },
        server,
    )
}

/// One card's life with a chip, in order: production with one failing card, tokens and PIN
/// letters, certificates against the CA, assignment, lock and revocation list, repeat with a new
/// PIN, extension and withdrawal, and a search for leaked PINs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario whose steps build on each other"
)]
async fn encoded_cards_on_softhsm() {
    let install =
        "install Debian's softhsm2, opensc, openssl and poppler-utils (scripts/test does)";
    if !cardwright_testkit::require_file(Path::new(MODULE), install)
        || !cardwright_testkit::require_programs(
            &["softhsm2-util", "pkcs11-tool", "openssl", "pdftotext"],
            install,
        )
    {
        return;
    }
    let (bench, server) = start_server();
    let Bench {
        dir,
        conf,
        data,
        log,
    } = &bench;
    let client = Client::login_as(&server.base, "admin").await;

    let script = client
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(json!({"source": "pin_length = 12;\npuk_length = 16;\nencode = true;\ncertificates = [\"authentication\", \"signature\"];\n"})),
        )
        .await;
    assert!(script.0.is_success(), "{script:?}");
    let (order, cards) = client.order_of_new_cards(3).await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    let done = client.wait_for(&order, |o| o["state"] == "produced").await;
    let items = done["items"].as_array().unwrap();
    let status = |i: usize| items[i]["status"].as_str().unwrap();
    assert_eq!(
        (status(0), status(1), status(2)),
        ("produced", "failed", "produced"),
        "{done}"
    );
    let reason = items[1]["error"].as_str().unwrap();
    assert!(
        reason.contains("chip error"),
        "the encoder failure is the item's reason: {reason}"
    );
    assert_eq!(items[1]["card"]["state"], "failed");

    // A token per produced card, labelled with its serial.
    let (ok, slots) = pkcs11_tool(conf, &["-L"]);
    assert!(ok, "{slots}");
    assert!(
        slots.contains("TMP-000001") && slots.contains("TMP-000003"),
        "{slots}"
    );

    // The PIN from the PIN letter opens the card.
    let spool = data.join("spool").join(&order);
    let mut pins = Vec::new();
    for serial in ["TMP-000001", "TMP-000003"] {
        let pin = pin_from_letter(&spool.join(format!("{serial}-attempt1-pin-letter.pdf")));
        assert_eq!(pin.len(), 12, "the script's PIN length");
        let (ok, objects) = pkcs11_tool(
            conf,
            &["--token-label", serial, "--login", "--pin", &pin, "-O"],
        );
        assert!(ok, "login with the letter's PIN: {objects}");
        assert!(objects.contains("Private Key Object"), "{objects}");
        let (ok, _) = pkcs11_tool(
            conf,
            &[
                "--token-label",
                serial,
                "--login",
                "--pin",
                "000000000000",
                "-O",
            ],
        );
        assert!(!ok, "a wrong PIN is refused");
        pins.push(pin);
    }

    // The card's certificates verify against the published CA certificate.
    let ca = reqwest::get(format!("{}/pki/ca.pem", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    for label in ["authentication", "signature"] {
        let cert = dir.path().join(format!("{label}.pem"));
        let subject = cert_pem_from_card(conf, "TMP-000001", label, &cert);
        assert!(
            subject.contains("TMP-000001"),
            "a card certificate names the card: {subject}"
        );
        let (ok, text) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                ca_path.to_str().unwrap(),
                cert.to_str().unwrap(),
            ],
            conf,
        );
        assert!(ok, "{text}");
    }

    // Assignment puts a certificate naming the holder on the card.
    let person = client
        .post(
            "/api/v1/persons",
            json!({"employee_number": "E-77", "given_name": "Grace", "family_name": "Hopper", "email": "grace@example.com"}),
        )
        .await;
    let card = &cards[0];
    client
        .post(
            &format!("/api/v1/cards/{card}/assign"),
            json!({"person": person["id"]}),
        )
        .await;
    let holder_cert = dir.path().join("holder.pem");
    let subject = cert_pem_from_card(conf, "TMP-000001", "authentication holder", &holder_cert);
    assert!(subject.contains("Grace Hopper"), "{subject}");
    let (_, end) = run(
        "openssl",
        &[
            "x509",
            "-in",
            holder_cert.to_str().unwrap(),
            "-noout",
            "-enddate",
        ],
        conf,
    );
    let card_now = client.get(&format!("/api/v1/cards/{card}")).await;
    let valid_until: chrono::DateTime<chrono::Utc> =
        card_now["valid_until"].as_str().unwrap().parse().unwrap();
    let expected = (valid_until + chrono::Duration::days(1))
        .format("%b %e")
        .to_string();
    let same_day = valid_until.format("%b %e").to_string();
    assert!(
        end.contains(&expected) || end.contains(&same_day),
        "the holder's certificate ends with the assignment ({valid_until}): {end}"
    );
    let (ok, text) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            ca_path.to_str().unwrap(),
            holder_cert.to_str().unwrap(),
        ],
        conf,
    );
    assert!(ok, "{text}");

    // Locking revokes every certificate of the card: they are on the revocation list.
    client
        .post(&format!("/api/v1/cards/{card}/lock"), json!({}))
        .await;
    let history = client.get(&format!("/api/v1/cards/{card}")).await;
    let listed = history["certificates"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        4,
        "the card profile lists its certificates: {history}"
    );
    assert!(listed.iter().all(|c| c["status"] == "revoked"));
    assert_eq!(listed.iter().filter(|c| c["kind"] == "holder").count(), 2);
    let lock = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["process"] == "TempCardsProcLock")
        .unwrap();
    let revoked: Vec<String> = lock["details"]["revoked_certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_uppercase())
        .collect();
    assert_eq!(
        revoked.len(),
        4,
        "two card and two holder certificates: {lock}"
    );
    let crl = reqwest::get(format!("{}/pki/crl", server.base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = crl_text(&crl, dir.path(), conf);
    for serial in &revoked {
        assert!(
            text.to_uppercase().contains(serial.trim_start_matches('0')),
            "{serial} in {text}"
        );
    }

    // A card rejected as misprinted is produced again: its token is initialised anew (with the
    // PUK kept sealed since the first attempt), a new PIN letter comes out, and the earlier
    // certificates are revoked.
    let third = &cards[2];
    let repeat = client
        .post(
            &format!("/api/v1/batch-orders/{order}/repeat"),
            json!({"cards": [third]}),
        )
        .await;
    assert_eq!(repeat["state"], "producing");
    let done = client.wait_for(&order, |o| o["state"] == "produced").await;
    assert_eq!(done["items"][2]["status"], "produced", "{done}");
    assert_eq!(done["items"][2]["attempts"], 2);
    let pin = pin_from_letter(&spool.join("TMP-000003-attempt2-pin-letter.pdf"));
    assert_ne!(pin, pins[1], "a new PIN");
    let (ok, objects) = pkcs11_tool(
        conf,
        &[
            "--token-label",
            "TMP-000003",
            "--login",
            "--pin",
            &pin,
            "-O",
        ],
    );
    assert!(ok, "{objects}");
    let (ok, _) = pkcs11_tool(
        conf,
        &[
            "--token-label",
            "TMP-000003",
            "--login",
            "--pin",
            &pins[1],
            "-O",
        ],
    );
    assert!(!ok, "the old PIN no longer opens the card");
    pins.push(pin);
    let history = client.get(&format!("/api/v1/cards/{third}")).await;
    let reject = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["details"]["action"] == "reject")
        .unwrap();
    assert_eq!(
        reject["details"]["revoked_certificates"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{reject}"
    );

    // Extending re-issues the holder's certificates; withdrawing revokes them.
    let other = client
        .post(
            "/api/v1/persons",
            json!({"employee_number": "E-78", "given_name": "Alan", "family_name": "Turing"}),
        )
        .await;
    client
        .post(
            &format!("/api/v1/cards/{third}/assign"),
            json!({"person": other["id"]}),
        )
        .await;
    client
        .post(&format!("/api/v1/cards/{third}/extend"), json!({}))
        .await;
    client
        .post(&format!("/api/v1/cards/{third}/withdraw"), json!({}))
        .await;
    let history = client.get(&format!("/api/v1/cards/{third}")).await;
    let event = |process: &str| {
        history["history"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["process"] == process)
            .unwrap()
            .clone()
    };
    let count = |e: &serde_json::Value, key: &str| e["details"][key].as_array().map_or(0, Vec::len);
    assert_eq!(count(&event("TempCardsProcAssign"), "certificates"), 2);
    let extend = event("TempCardsProcExtend");
    assert_eq!(
        (
            count(&extend, "revoked_certificates"),
            count(&extend, "certificates")
        ),
        (2, 2),
        "{extend}"
    );
    assert_eq!(
        count(&event("TempCardsProcWithdraw"), "revoked_certificates"),
        2
    );
    let subject = cert_pem_from_card(
        conf,
        "TMP-000003",
        "signature holder",
        &dir.path().join("turing.pem"),
    );
    assert!(subject.contains("Alan Turing"), "{subject}");

    // A chip that refuses the holder's certificates (here: its token is gone from under the
    // encoder) leaves the card as it was, and the answer names the chip's own error.
    let before = client.get(&format!("/api/v1/cards/{third}")).await;
    let (ok, text) = run(
        "softhsm2-util",
        &["--delete-token", "--token", "TMP-000003"],
        conf,
    );
    assert!(ok, "{text}");
    let (status, refused) = client
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/cards/{third}/assign"),
            Some(json!({"person": other["id"]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("could not be written to card TMP-000003; the card is unchanged: chip error"),
        "{message}"
    );
    let after = client.get(&format!("/api/v1/cards/{third}")).await;
    assert_eq!(after["state"], "unassigned", "{after}");
    assert!(after["holder"].is_null(), "{after}");
    assert_eq!(after["history"], before["history"], "no step was recorded");
    let issued = |card: &serde_json::Value| card["certificates"].as_array().unwrap().len();
    let valid = |card: &serde_json::Value| {
        card["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "valid")
            .count()
    };
    assert_eq!(
        issued(&after),
        issued(&before) + 2,
        "the certificates issued for the chip are recorded: {after}"
    );
    assert_eq!(
        valid(&after),
        valid(&before),
        "none of them is valid: {after}"
    );

    // No PIN anywhere but on its letter: not in the database, the log, the spooled cards, their
    // previews and descriptions, or the CA's files. The letters themselves are the server
    // user's alone. Dropping the server waits until its process has exited.
    drop(server);
    let mut files = vec![log.clone()];
    files.extend(files_under(data));
    let mut letters = 0;
    let mut searched = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("-pin-letter.pdf") {
            letters += 1;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is readable by others", path.display());
            continue;
        }
        let mut bytes = std::fs::read(path).unwrap();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
        {
            // A PDF sets text as glyphs; its text comes out through pdftotext.
            bytes.extend(pdf_text(path).into_bytes());
        }
        searched += 1;
        for pin in &pins {
            let needle = pin.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a PIN was found in {}",
                path.display()
            );
        }
    }
    assert_eq!(
        letters,
        pins.len(),
        "every PIN letter was spooled: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("cardwright.db"))
            && files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "png")),
        "the database and the spooled previews were searched: {files:?}"
    );
    assert!(searched > letters, "{files:?}");
}
