//! Key custody through the real binary: one CA and one master key for every server of an
//! installation, a key-encryption key that does not fit, keys moved in from a data folder, master
//! key rotation, and keys on a SoftHSM2 token.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::encoding::{pin_from_letter, pkcs11_tool, run, softhsm, MODULE};
use crate::helpers::{fresh_database, postgres, Db, SchemaGuard, PASSWORD};
use crate::on_both_databases;
use crate::server_processes::{Client, Server};

on_both_databases!(
    servers_started_at_once_make_one_ca,
    a_wrong_key_encryption_key_is_refused_and_creates_nothing
);

const INSTALL: &str =
    "install Debian's softhsm2, opensc, openssl and poppler-utils (scripts/test does)";

fn have_softhsm() -> bool {
    cardwright_testkit::require_file(Path::new(MODULE), INSTALL)
        && cardwright_testkit::require_programs(
            &["softhsm2-util", "pkcs11-tool", "openssl", "pdftotext"],
            INSTALL,
        )
}

/// A random key-encryption key (64 hex digits).
fn new_kek() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// One installation under test: its folder, a SoftHSM2 configuration, its database and the
/// environment every server and command of it gets.
struct Install {
    dir: tempfile::TempDir,
    softhsm: PathBuf,
    database_url: String,
    env: Vec<(String, String)>,
    _schema: Option<SchemaGuard>,
}

impl Install {
    async fn new(db: &Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let softhsm = softhsm(dir.path());
        let (database_url, schema) = fresh_database(db).await;
        // SQLite: one database file that every server of the installation opens.
        let database_url = if database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("shared.db").display()
            )
        } else {
            database_url
        };
        Self {
            dir,
            softhsm,
            database_url,
            env: vec![("CARDWRIGHT_LOG".into(), "warn".into())],
            _schema: schema,
        }
    }

    fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A configuration named `name` with its own data folder; `encoder` adds a station with a
    /// simulated printer and the SoftHSM2 encoder; `extra` is appended as it is.
    fn config(&self, name: &str, encoder: bool, extra: &str) -> PathBuf {
        let data = self.dir.path().join(format!("data-{name}"));
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{}\"\nstation_poll_ms = 20\n",
            data.display(),
            self.database_url
        );
        if encoder {
            let _ = write!(
                text,
                "\n[[stations]]\nname = \"desk-{name}\"\nprinter = {{ kind = \"simulated\", fail_every = 0, delay_ms = 0 }}\n\
                 encoder = {{ kind = \"pkcs11\", module = \"{MODULE}\" }}\n"
            );
        } else {
            text.push_str("\nstations = []\n");
        }
        text.push_str(extra);
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("data-{name}"))
    }

    fn env_of<'a>(&'a self, extra: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a OsStr)> {
        let mut env: Vec<(&str, &OsStr)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), OsStr::new(v.as_str())))
            .collect();
        env.push(("SOFTHSM2_CONF", self.softhsm.as_os_str()));
        env.extend(extra.iter().map(|(k, v)| (*k, OsStr::new(*v))));
        env
    }

    /// Runs a `cardwright` command with the installation's environment (and `extra`); whether it
    /// succeeded, and what it printed.
    fn cli(
        &self,
        config: &Path,
        args: &[&str],
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> (bool, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardwright"));
        command
            .args(args)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in self.env_of(extra) {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("cardwright runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn add_admin(&self, config: &Path) {
        let (ok, text) = self.cli(
            config,
            &[
                "operator",
                "add",
                "admin",
                "--role",
                "production-admin",
                "--role",
                "registration-officer",
                "--role",
                "policy-admin",
                "--role",
                "service-admin",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
            &[],
        );
        assert!(ok, "{text}");
    }

    fn start(&self, config: &Path, name: &str) -> Server {
        Server::start_with(
            config,
            &self.env_of(&[]),
            &self.dir.path().join(format!("{name}.log")),
        )
    }
}

async fn text(url: String) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn bytes(url: String) -> Vec<u8> {
    reqwest::get(url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// What openssl reads from a DER revocation list: its issuer and the revoked serials.
fn crl_text(dir: &Path, name: &str, der: &[u8], ca: &Path, conf: &Path) -> String {
    let path = dir.join(format!("{name}.crl"));
    std::fs::write(&path, der).unwrap();
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-CAfile",
            ca.to_str().unwrap(),
            "-noout",
            "-text",
        ],
        conf,
    );
    assert!(ok && text.contains("verify OK"), "{text}");
    text
}

/// The revoked serials a CRL text lists, upper-case hex.
fn revoked_serials(crl: &str) -> Vec<String> {
    let mut serials: Vec<String> = crl
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_uppercase())
        .collect();
    serials.sort();
    serials
}

async fn set_encoding_script(client: &Client) {
    let (status, body) = client
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(json!({"source": "pin_length = 6;\npuk_length = 8;\nencode = true;\ncertificates = [\"authentication\"];\n"})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

/// Orders `amount` new cards and waits until they are produced.
async fn produce(client: &Client, amount: i64) -> (String, Vec<String>) {
    let (order, cards) = client.order_of_new_cards(amount).await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    let done = client.wait_for(&order, |o| o["state"] == "produced").await;
    assert!(
        done["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "produced"),
        "{done}"
    );
    (order, cards)
}

/// Rejects a produced card at Repeat production and waits until it is produced again; the PIN
/// of its new letter opens its token, which was initialised anew with the PUK kept sealed.
async fn repeat_opens_the_card(
    client: &Client,
    install: &Install,
    data: &Path,
    order: &str,
    card: &str,
) {
    client
        .post(
            &format!("/api/v1/batch-orders/{order}/repeat"),
            json!({"cards": [card]}),
        )
        .await;
    let done = client
        .wait_for(order, |o| {
            o["state"] == "produced"
                && o["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["card"]["id"] == card && i["attempts"] == 2)
        })
        .await;
    let item = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["card"]["id"] == card)
        .unwrap()
        .clone();
    assert_eq!(item["status"], "produced", "{done}");
    let serial = item["card"]["serial"].as_str().unwrap().to_owned();
    let letter = wait_for_file(
        &data
            .join("spool")
            .join(order)
            .join(format!("{serial}-attempt2-pin-letter.pdf")),
    );
    let pin = pin_from_letter(&letter);
    let (ok, objects) = pkcs11_tool(
        &install.softhsm,
        &["--token-label", &serial, "--login", "--pin", &pin, "-O"],
    );
    assert!(ok, "the new PIN opens {serial}: {objects}");
}

fn wait_for_file(path: &Path) -> PathBuf {
    for _ in 0..200 {
        if path.exists() {
            return path.to_owned();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

/// An EC P-256 CA named `name` made by openssl: its key and certificate (PEM).
fn openssl_ca(conf: &Path, key: &Path, certificate: &Path, name: &str) {
    let (ok, text) = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            certificate.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        conf,
    );
    assert!(ok, "{text}");
}

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Two servers on one PostgreSQL database, each with its own data folder and the same
/// key-encryption key: they publish the same CA and revocation list; a card encoded through a
/// station of server A is produced again by a station of server B, which opens its sealed PUK;
/// a holder certificate issued on B is revoked through A, and the list from either server names
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario whose steps build on each other"
)]
async fn servers_on_one_postgres_share_the_ca_and_the_master_key() {
    let Some(db) = postgres() else { return };
    if !have_softhsm() {
        return;
    }
    let install = Install::new(&db)
        .await
        .with_env("CARDWRIGHT_PKI_KEK", &new_kek());
    let config_a = install.config("a", true, "");
    let config_b = install.config("b", true, "");
    install.add_admin(&config_a);

    let a = install.start(&config_a, "a");
    let client_a = Client::login_as(&a.base, "admin").await;
    set_encoding_script(&client_a).await;
    let (order, cards) = produce(&client_a, 1).await;
    drop(a);

    // Only B runs: its station takes the repeat.
    let b = install.start(&config_b, "b");
    let client_b = Client::login_as(&b.base, "admin").await;
    repeat_opens_the_card(&client_b, &install, &install.data("b"), &order, &cards[0]).await;
    let stations: Vec<String> = client_b.get(&format!("/api/v1/cards/{}", cards[0])).await
        ["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"]["station"].as_str().map(str::to_owned))
        .collect();
    assert!(
        stations.contains(&"desk-a".to_owned()) && stations.contains(&"desk-b".to_owned()),
        "produced on A, repeated on B: {stations:?}"
    );

    // Both running: one CA, one revocation list.
    let a = install.start(&config_a, "a2");
    let client_a = Client::login_as(&a.base, "admin").await;
    let ca = text(format!("{}/pki/ca.pem", a.base)).await;
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    assert_eq!(ca, text(format!("{}/pki/ca.pem", b.base)).await, "one CA");
    assert!(
        !install.data("a").join("pki").join("ca-key.pem").exists()
            && !install.data("b").join("pki").join("ca-key.pem").exists(),
        "no CA key lies in a data folder"
    );

    // A holder certificate issued on B (at assignment), revoked through A (lock).
    let person = client_b
        .post(
            "/api/v1/persons",
            json!({"employee_number": "E-1", "given_name": "Ada", "family_name": "Lovelace", "email": "ada@example.com"}),
        )
        .await;
    client_b
        .post(
            &format!("/api/v1/cards/{}/assign", cards[0]),
            json!({"person": person["id"]}),
        )
        .await;
    let card = client_b.get(&format!("/api/v1/cards/{}", cards[0])).await;
    let holder: Vec<String> = card["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "holder" && c["status"] == "valid")
        .map(|c| c["serial"].as_str().unwrap().to_uppercase())
        .collect();
    assert_eq!(holder.len(), 1, "{card}");
    client_a
        .post(&format!("/api/v1/cards/{}/lock", cards[0]), json!({}))
        .await;
    let ca_path = install.dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let from_a = crl_text(
        install.dir.path(),
        "a",
        &bytes(format!("{}/pki/crl", a.base)).await,
        &ca_path,
        &install.softhsm,
    );
    let from_b = crl_text(
        install.dir.path(),
        "b",
        &bytes(format!("{}/pki/crl", b.base)).await,
        &ca_path,
        &install.softhsm,
    );
    let serial = holder[0].trim_start_matches('0').to_owned();
    for (server, crl) in [("A", &from_a), ("B", &from_b)] {
        assert!(
            revoked_serials(crl)
                .iter()
                .any(|s| s.trim_start_matches('0') == serial),
            "the list from {server} names the holder certificate {serial}: {crl}"
        );
    }
    assert_eq!(
        revoked_serials(&from_a),
        revoked_serials(&from_b),
        "equivalent lists"
    );
}

/// Three servers started at the same moment on an empty database create exactly one CA.
async fn servers_started_at_once_make_one_ca(db: Db) {
    let install = Install::new(&db)
        .await
        .with_env("CARDWRIGHT_PKI_KEK", &new_kek());
    let configs: Vec<PathBuf> = ["x", "y", "z"]
        .iter()
        .map(|name| install.config(name, false, ""))
        .collect();
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .zip(["x", "y", "z"])
            .map(|(config, name)| scope.spawn(|| install.start(config, name)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut published = Vec::new();
    for server in &servers {
        published.push(text(format!("{}/pki/ca.pem", server.base)).await);
    }
    assert!(published[0].contains("BEGIN CERTIFICATE"));
    assert!(
        published.iter().all(|pem| *pem == published[0]),
        "every server publishes the same CA"
    );
    drop(servers);
    let (ok, shown) = install.cli(&configs[0], &["pki", "show"], "", &[]);
    assert!(ok, "{shown}");
    assert_eq!(
        shown.lines().filter(|l| l.starts_with("CA ")).count(),
        1,
        "exactly one CA: {shown}"
    );
    assert!(shown.contains("master key 1: current"), "{shown}");
}

/// Servers of one data folder (the single-server default, no key-encryption key given) started
/// at the same moment share the key file one of them writes, and the keys open with it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_of_one_data_folder_share_its_key_file() {
    let install = Install::new(&Db::Sqlite).await;
    let config = install.config("one", false, "");
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["one-1", "one-2", "one-3"]
            .into_iter()
            .map(|log| scope.spawn(|| install.start(&config, log)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut published = Vec::new();
    for server in &servers {
        published.push(text_of(server, "/pki/ca.pem").await);
    }
    assert!(published.iter().all(|pem| *pem == published[0]));
    drop(servers);
    let key_files: Vec<PathBuf> = files(&install.data("one").join("pki"));
    assert_eq!(
        key_files,
        [install.data("one").join("pki").join("kek")],
        "one key file, no leftovers"
    );
    let (ok, shown) = install.cli(&config, &["pki", "show"], "", &[]);
    assert!(ok && shown.contains("opens every key"), "{shown}");
}

/// A server given another key-encryption key than the installation's exits non-zero and says
/// why, and creates nothing: no second CA, no key file, no data folder of its own.
async fn a_wrong_key_encryption_key_is_refused_and_creates_nothing(db: Db) {
    let install = Install::new(&db)
        .await
        .with_env("CARDWRIGHT_PKI_KEK", &new_kek());
    let first = install.config("first", false, "");
    let (ok, text) = install.cli(&first, &["migrate"], "", &[]);
    assert!(ok, "{text}");
    let (ok, before) = install.cli(&first, &["pki", "show"], "", &[]);
    assert!(ok, "{before}");

    let second = install.config("second", false, "");
    let wrong = new_kek();
    let output = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["serve", "--config"])
        .arg(&second)
        .env("CARDWRIGHT_PKI_KEK", &wrong)
        .env("CARDWRIGHT_LOG", "warn")
        .output()
        .expect("cardwright runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("key-encryption key"), "{stderr}");
    assert!(
        files(&install.data("second")).is_empty(),
        "created {:?}",
        files(&install.data("second"))
    );
    // Without any key-encryption key it is refused as well, and writes no key file.
    let output = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["serve", "--config"])
        .arg(&second)
        .env("CARDWRIGHT_LOG", "warn")
        .output()
        .expect("cardwright runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("key-encryption key"), "{stderr}");
    assert!(
        !install.data("second").join("pki").join("kek").exists(),
        "no key file was written"
    );
    let (ok, after) = install.cli(&first, &["pki", "show"], "", &[]);
    assert!(ok, "{after}");
    assert_eq!(before, after, "the installation's keys are as they were");
}

/// A data folder from before key stores (a CA in `data/pki` and a master key file) has its
/// keys moved into the key store by `migrate`, once: the same CA is published, the key files
/// are gone, and the audit log still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_data_folder_move_into_the_key_store() {
    if !cardwright_testkit::require_programs(&["openssl"], INSTALL) {
        return;
    }
    let install = Install::new(&Db::Sqlite).await;
    let config = install.config("old", false, "");
    let pki = install.data("old").join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    openssl_ca(
        &install.softhsm,
        &pki.join("ca-key.pem"),
        &pki.join("ca.pem"),
        "Old Card CA",
    );
    std::fs::write(pki.join("master.key"), new_kek()).unwrap();
    let old_ca = std::fs::read_to_string(pki.join("ca.pem")).unwrap();

    let (ok, text) = install.cli(&config, &["migrate"], "", &[("CARDWRIGHT_LOG", "info")]);
    assert!(ok, "{text}");
    assert!(text.contains("moved the certificate authority"), "{text}");
    for file in ["ca-key.pem", "master.key"] {
        assert!(!pki.join(file).exists(), "{file} was removed");
    }
    let (ok, shown) = install.cli(&config, &["pki", "show"], "", &[]);
    assert!(ok, "{shown}");
    assert!(shown.contains("CN=Old Card CA"), "{shown}");
    let (ok, again) = install.cli(&config, &["migrate"], "", &[("CARDWRIGHT_LOG", "info")]);
    assert!(ok && !again.contains("moved"), "once: {again}");

    let server = install.start(&config, "old");
    assert_eq!(text_of(&server, "/pki/ca.pem").await, old_ca, "the same CA");
    drop(server);
    let (ok, verified) = install.cli(&config, &["audit", "verify"], "", &[]);
    assert!(ok && verified.contains("audit log intact"), "{verified}");
}

async fn text_of(server: &Server, path: &str) -> String {
    text(format!("{}{path}", server.base)).await
}

/// `pki rotate-master-key` re-seals every PUK under a new master key, one batch per
/// transaction; stopped after one batch it is resumed by the next run; a card produced again
/// afterwards still opens with the PUK sealed under the new key. Then the CA is renewed with a new
/// key: the old CA stays published and revokes what it issued on a list of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one installation's keys over time, step by step"
)]
async fn master_key_rotation_reseals_every_puk_and_resumes() {
    if !have_softhsm() {
        return;
    }
    let install = Install::new(&Db::Sqlite).await;
    let config = install.config("rot", true, "");
    install.add_admin(&config);
    let server = install.start(&config, "rot");
    let client = Client::login_as(&server.base, "admin").await;
    set_encoding_script(&client).await;
    let (order, cards) = produce(&client, 3).await;

    let (ok, first) = install.cli(
        &config,
        &[
            "pki",
            "rotate-master-key",
            "--batch-size",
            "1",
            "--batches",
            "1",
        ],
        "",
        &[],
    );
    assert!(ok, "{first}");
    assert!(
        first.contains("rotation not finished: 2 PUKs left"),
        "{first}"
    );
    let (_, shown) = install.cli(&config, &["pki", "show"], "", &[]);
    assert!(
        shown.contains("master key 2: current") && shown.contains("master key 1: previous"),
        "{shown}"
    );

    let (ok, second) = install.cli(&config, &["pki", "rotate-master-key"], "", &[]);
    assert!(ok, "{second}");
    assert!(
        second.contains("resumed the unfinished rotation to master key 2")
            && second.contains("re-sealed 2 PUKs"),
        "{second}"
    );
    let (_, shown) = install.cli(&config, &["pki", "show"], "", &[]);
    assert!(
        shown.contains("PUKs not yet under the current master key: 0")
            && shown.contains("master key 1: retired"),
        "{shown}"
    );
    repeat_opens_the_card(&client, &install, &install.data("rot"), &order, &cards[1]).await;

    let audit = client.get("/api/v1/audit?limit=200").await;
    let processes: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["process"].as_str())
        .collect();
    assert!(
        processes.contains(&"PkiMasterKeyRotationStarted")
            && processes.contains(&"PkiMasterKeyRotated"),
        "{processes:?}"
    );

    // A CA renewed with a new key: what the old one issued still chains to it, and the old CA
    // signs a revocation list of its own that names the card's revoked certificate.
    let old_ca = text_of(&server, "/pki/ca.pem").await;
    let (ok, renewed) = install.cli(&config, &["pki", "renew-ca", "--new-key"], "", &[]);
    assert!(ok, "{renewed}");
    drop(server);
    let server = install.start(&config, "rot-renewed");
    let client = Client::login_as(&server.base, "admin").await;
    let bundle = text_of(&server, "/pki/ca.pem").await;
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() == 2 && bundle.ends_with(&old_ca),
        "{bundle}"
    );
    client
        .post(&format!("/api/v1/cards/{}/lock", cards[0]), json!({}))
        .await;
    let serial = client.get(&format!("/api/v1/cards/{}", cards[0])).await["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = install.dir.path();
    let (old_ca_path, crl_path, cert) = (
        dir.join("old-ca.pem"),
        dir.join("old.crl"),
        dir.join("old-card.pem"),
    );
    std::fs::write(&old_ca_path, &old_ca).unwrap();
    crate::encoding::cert_pem_from_card(&install.softhsm, &serial, "authentication", &cert);
    let old_list = bytes(format!("{}/pki/crl/1", server.base)).await;
    let listed = crl_text(dir, "old-crl", &old_list, &old_ca_path, &install.softhsm);
    assert!(!revoked_serials(&listed).is_empty(), "{listed}");
    std::fs::write(&crl_path, &old_list).unwrap();
    let (ok, checked) = run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            old_ca_path.to_str().unwrap(),
            "-CRLfile",
            crl_path.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
        &install.softhsm,
    );
    assert!(
        !ok && checked.contains("revoked"),
        "the old CA's list revokes the card: {checked}"
    );
    let missing = reqwest::get(format!("{}/pki/crl/9", server.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

/// With `key_store = "pkcs11"` the keys are generated on a SoftHSM2 token: pkcs11-tool shows the
/// CA key sensitive and not extractable; cards get certificates that chain to the CA, the
/// revocation list verifies, PUKs are sealed (a repeat opens the card) and the audit log is
/// signed through the token; the data folder holds no private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_a_softhsm_token() {
    if !have_softhsm() {
        return;
    }
    let install = Install::new(&Db::Sqlite)
        .await
        .with_env("CARDWRIGHT_PKI_PIN", "4321");
    let (ok, text) = run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "cardwright-keys",
            "--so-pin",
            "87654321",
            "--pin",
            "4321",
        ],
        &install.softhsm,
    );
    assert!(ok, "{text}");
    let config = install.config(
        "hsm",
        true,
        &format!(
            "\n[pki]\nkey_store = \"pkcs11\"\npkcs11_module = \"{MODULE}\"\ntoken_label = \"cardwright-keys\"\n"
        ),
    );
    install.add_admin(&config);
    let server = install.start(&config, "hsm");
    let client = Client::login_as(&server.base, "admin").await;
    set_encoding_script(&client).await;
    let (order, cards) = produce(&client, 1).await;

    let (ok, objects) = pkcs11_tool(
        &install.softhsm,
        &[
            "--token-label",
            "cardwright-keys",
            "--login",
            "--pin",
            "4321",
            "-O",
        ],
    );
    assert!(ok, "{objects}");
    let ca_key = objects
        .split("Private Key Object")
        .nth(1)
        .unwrap_or_else(|| panic!("a private key on the token: {objects}"));
    let ca_key = ca_key.split("Object").next().unwrap_or(ca_key);
    assert!(
        ca_key.contains("sensitive") && ca_key.contains("never extractable"),
        "the CA key is sensitive and not extractable: {ca_key}"
    );

    // The card's certificate chains to the CA signed on the token.
    let ca_path = install.dir.path().join("hsm-ca.pem");
    std::fs::write(&ca_path, text_of(&server, "/pki/ca.pem").await).unwrap();
    let serial = client.get(&format!("/api/v1/cards/{}", cards[0])).await["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert = install.dir.path().join("card.pem");
    crate::encoding::cert_pem_from_card(&install.softhsm, &serial, "authentication", &cert);
    let (ok, verified) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            ca_path.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
        &install.softhsm,
    );
    assert!(ok, "{verified}");

    // Revocation list signed on the token; sealed PUK opened through the token.
    repeat_opens_the_card(&client, &install, &install.data("hsm"), &order, &cards[0]).await;
    let crl = bytes(format!("{}/pki/crl", server.base)).await;
    let listed = crl_text(install.dir.path(), "hsm", &crl, &ca_path, &install.softhsm);
    assert!(
        !revoked_serials(&listed).is_empty(),
        "the first attempt's certificate is revoked: {listed}"
    );
    drop(server);

    let (ok, verified) = install.cli(&config, &["audit", "verify"], "", &[]);
    assert!(ok && verified.contains("audit log intact"), "{verified}");
    holds_no_private_key(&install.data("hsm"));
}

/// Searches the folder a server wrote to file by file for a private key or a key-encryption
/// key. The folder must hold what the server wrote there (its sender name and the spooled card
/// with its PIN letter), so a missing or empty folder does not pass for one without keys.
fn holds_no_private_key(data: &Path) {
    let written = files(data);
    let named = |end: &str| {
        written
            .iter()
            .any(|f| f.to_str().is_some_and(|name| name.ends_with(end)))
    };
    assert!(
        named("notify-id") && named("-attempt1.pdf") && named("-attempt1-pin-letter.pdf"),
        "the data folder holds what the server wrote: {written:?}"
    );
    for file in written {
        let content = std::fs::read(&file).expect("every file is read");
        let text = String::from_utf8_lossy(&content);
        assert!(
            !text.contains("PRIVATE KEY") && file.file_name() != Some(OsStr::new("kek")),
            "{} holds a secret",
            file.display()
        );
    }
}

/// `pki init` takes over an existing CA from a PKCS#12 file before the first start: a wrong
/// password changes nothing, the right one creates the keys with that CA (an audit event), and a
/// second `init` is refused. `pki renew-ca --new-key` then gives a new CA certificate, published
/// before the old one, which still verifies what it issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one installation's ceremony, step by step"
)]
async fn an_existing_ca_is_taken_over_and_renewed() {
    if !cardwright_testkit::require_programs(&["openssl"], INSTALL) {
        return;
    }
    let install = Install::new(&Db::Sqlite).await;
    let config = install.config("p12", false, "");
    let dir = install.dir.path();
    let openssl = |args: &[&str]| {
        let (ok, text) = run("openssl", args, &install.softhsm);
        assert!(ok, "{text}");
    };
    let (key, cert, p12) = (dir.join("k.pem"), dir.join("c.pem"), dir.join("ca.p12"));
    openssl_ca(&install.softhsm, &key, &cert, "Imported Card CA");
    openssl(&[
        "pkcs12",
        "-export",
        "-inkey",
        key.to_str().unwrap(),
        "-in",
        cert.to_str().unwrap(),
        "-out",
        p12.to_str().unwrap(),
        "-passout",
        "pass:correct horse",
    ]);
    let p12_arg = p12.to_str().unwrap();

    let (ok, text) = install.cli(
        &config,
        &["pki", "init", "--import-pkcs12", p12_arg],
        "wrong\n",
        &[],
    );
    assert!(!ok && text.contains("wrong password"), "{text}");
    let (ok, text) = install.cli(&config, &["pki", "show"], "", &[]);
    assert!(
        !ok && text.contains("no keys yet"),
        "nothing was created: {text}"
    );

    let (ok, text) = install.cli(
        &config,
        &["pki", "init", "--import-pkcs12", p12_arg],
        "correct horse\n",
        &[],
    );
    assert!(ok, "{text}");
    assert!(text.contains("CN=Imported Card CA"), "{text}");
    let (ok, text) = install.cli(&config, &["pki", "init"], "", &[]);
    assert!(!ok && text.contains("already has its keys"), "{text}");

    let server = install.start(&config, "p12");
    let published = text_of(&server, "/pki/ca.pem").await;
    assert_eq!(
        published.trim(),
        std::fs::read_to_string(&cert).unwrap().trim(),
        "the imported CA"
    );
    drop(server);

    let (ok, text) = install.cli(&config, &["pki", "renew-ca", "--new-key"], "", &[]);
    assert!(ok && text.contains("a new key"), "{text}");
    install.add_admin(&config);
    let server = install.start(&config, "p12-renewed");
    let bundle = text_of(&server, "/pki/ca.pem").await;
    let client = Client::login_as(&server.base, "admin").await;
    let audit = client.get("/api/v1/audit?limit=200").await;
    drop(server);
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    assert!(
        !bundle.starts_with(published.trim()) && bundle.contains(published.trim()),
        "the new certificate first, the old one after it: {bundle}"
    );
    let steps: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["process"].as_str())
        .filter(|p| p.starts_with("Pki"))
        .collect();
    assert_eq!(
        steps,
        ["PkiInit", "PkiCaRenewed"],
        "each step is an audit event"
    );
    let (ok, verified) = install.cli(&config, &["audit", "verify"], "", &[]);
    assert!(ok && verified.contains("audit log intact"), "{verified}");
}
