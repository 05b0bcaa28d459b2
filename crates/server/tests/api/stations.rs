//! Stations at the desk, on the real binaries: a server with HTTPS from its built-in CA and no
//! station of its own, two agents (`cardwright station run`) as separate processes, each with
//! its own SoftHSM2 token folder, enrolled with single-use codes. One agent is killed while it
//! holds a card, the server is restarted under running agents, a station is disabled; every card
//! is produced exactly once, each token opens with the PIN on its letter and its certificate
//! chains to the CA, and no PIN reaches the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::encoding::{
    cert_pem_from_card, files_under, pin_from_letter, pkcs11_tool, run, softhsm, MODULE,
};
use crate::helpers::{free_port, PASSWORD};
use crate::server_processes::{add_operator_with, Client, Server};

/// Seconds a card stays with a silent station.
const LEASE_SECS: u64 = 6;

/// The server's folder and configuration.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    base: String,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nstations = []\n\
                 station_lease_secs = {LEASE_SECS}\n\n[tls]\nbuiltin = true\n\
                 names = [\"localhost\", \"127.0.0.1\"]\n",
                data.display()
            ),
        )
        .unwrap();
        add_operator_with(
            &config,
            &["production-admin", "registration-officer", "policy-admin"],
        );
        let log = dir.path().join("server.log");
        Self {
            dir,
            config,
            data,
            log,
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    /// Starts `cardwright serve`; its log is appended to the site's log.
    fn serve(&self, round: u32) -> Server {
        let log = self.dir.path().join(format!("server-{round}.log"));
        let server = Server::start_with(&self.config, &[("CARDWRIGHT_LOG", "info".as_ref())], &log);
        assert_eq!(
            server.base, self.base,
            "the server listens where configured"
        );
        server
    }

    /// A connection to the server's SQLite database, beside the running server.
    async fn database(&self) -> sqlx::SqliteConnection {
        let db = self.data.join("cardwright.db");
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap()
    }

    /// `cardwright ARGS --config <the site's configuration>`, which must succeed.
    fn cli(&self, args: &[&str]) {
        let out = cardwright(args, &["--config".as_ref(), self.config.as_os_str()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every log the server wrote, in one file.
    fn gather_logs(&self) {
        let mut all = Vec::new();
        for round in 0..4 {
            if let Ok(bytes) = std::fs::read(self.dir.path().join(format!("server-{round}.log"))) {
                all.extend(bytes);
            }
        }
        std::fs::write(&self.log, all).unwrap();
    }
}

/// `cardwright ARGS MORE` (MORE being paths).
fn cardwright(args: &[&str], more: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(args)
        .args(more)
        .output()
        .unwrap()
}

/// The permission bits of a station's key.
fn key_mode(dir: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions(),
    ) & 0o777
}

/// An HTTPS client of the API that trusts the server's CA.
struct Admin {
    client: Client,
    ca_pem: String,
}

/// The API client's calls (`call`, `post`, `get`), over HTTPS.
impl std::ops::Deref for Admin {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Admin {
    async fn login(base: &str) -> Self {
        // The CA certificate is public: it is read once without checking, then pinned.
        let ca_pem = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
            .get(format!("{base}/pki/ca.pem"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        Self {
            client: Client::login_over(http, base, "desk").await,
            ca_pem,
        }
    }

    /// Registers station `name`; gives the answer (with its enrolment code).
    async fn register(&self, name: &str, description: &str) -> Value {
        let (status, reg) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/stations",
                Some(json!({"name": name, "description": description})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reg}");
        reg
    }

    async fn station(&self, name: &str) -> Value {
        self.get(&format!("/api/v1/stations/{name}")).await
    }

    /// A new order of `amount` new cards, sent to production (at `station`, if named).
    async fn produce(&self, amount: i64, station: Option<&str>) -> (String, Vec<String>) {
        let cards = self
            .post(
                "/api/v1/temporary-cards",
                json!({"template": "Temporary card", "amount": amount}),
            )
            .await;
        let ids: Vec<String> = cards["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let order = self
            .post(
                "/api/v1/batch-orders",
                json!({"process": "TempCardsBoProcIssueMultiple", "cards": ids}),
            )
            .await;
        let order = order["id"].as_str().unwrap().to_owned();
        let body = station.map_or(json!({}), |s| json!({"station": s}));
        let next = self
            .post(&format!("/api/v1/batch-orders/{order}/next"), body)
            .await;
        assert_eq!(next["station"], json!(station), "{next}");
        (order, ids)
    }

    /// Polls an order until `done` holds (at most about a minute).
    async fn wait_for(&self, order: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            last = self.get(&format!("/api/v1/batch-orders/{order}")).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the order never got there: {last}");
    }
}

/// An agent's folder, token folder and log.
struct Desk {
    name: String,
    dir: PathBuf,
    softhsm: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Desk {
    fn new(site: &Site, name: &str, delay_ms: u64) -> Self {
        let root = site.dir.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        let softhsm = softhsm(&root);
        let config = root.join("station.toml");
        std::fs::write(
            &config,
            format!(
                "printer = {{ kind = \"simulated\", delay_ms = {delay_ms} }}\n\
                 encoder = {{ kind = \"pkcs11\", module = \"{MODULE}\" }}\n"
            ),
        )
        .unwrap();
        Self {
            name: name.to_owned(),
            dir: root.join("station"),
            softhsm,
            config,
            log: root.join("agent.log"),
        }
    }

    fn enroll(base: &str, code: &str, dir: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_cardwright"))
            .args([
                "station", "enroll", "--server", base, "--code", code, "--dir",
            ])
            .arg(dir)
            .output()
            .unwrap()
    }

    /// `cardwright station run` as a process of its own.
    fn run(&self) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
            .args(["station", "run", "--dir"])
            .arg(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .env("SOFTHSM2_CONF", &self.softhsm)
            .env("CARDWRIGHT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        Agent(child)
    }

    /// A client with the station's own certificate.
    fn client(&self) -> reqwest::Client {
        let read = |name: &str| std::fs::read(self.dir.join(name)).unwrap();
        let identity =
            reqwest::Identity::from_pem(&[read("cert.pem"), read("key.pem")].concat()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).unwrap())
            .identity(identity)
            .build()
            .unwrap()
    }
}

/// A running agent; dropped, it is killed.
struct Agent(Child);

impl Agent {
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Registers and enrols both desks; enrolments that must fail change nothing.
async fn enroll_desks(site: &Site, admin: &Admin, desks: &[&Desk]) {
    let mut codes = Vec::new();
    for desk in desks {
        let reg = admin.register(&desk.name, "front desk").await;
        let code = reg["enrollment_code"].as_str().unwrap().to_owned();
        let fingerprint = reg["ca_fingerprint"]
            .as_str()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert!(code.ends_with(&fingerprint), "the code names the CA: {reg}");
        assert_eq!(admin.station(&desk.name).await["state"], "enrolling");
        codes.push(code);
    }
    // A code naming another CA: the agent does not even talk to the server.
    let (secret, fingerprint) = codes[0].split_once('-').unwrap();
    let wrong = format!("{secret}-{}", fingerprint.chars().rev().collect::<String>());
    let elsewhere = site.dir.path().join("elsewhere");
    let out = Desk::enroll(&site.base, &wrong, &elsewhere);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("does not come from the CA"),
        "{said}"
    );
    assert!(!elsewhere.exists(), "a refused enrolment writes nothing");
    assert_eq!(admin.station(&desks[0].name).await["state"], "enrolling");
    for (desk, code) in desks.iter().zip(&codes) {
        let out = Desk::enroll(&site.base, code, &desk.dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            key_mode(&desk.dir),
            0o600,
            "the station's key is its user's alone"
        );
    }
    // A code works once.
    let out = Desk::enroll(&site.base, &codes[0], &elsewhere);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("used already"),
        "{said}"
    );
    assert!(!elsewhere.exists());
}

/// `cardwright station renew`: at most once an hour (the certificate is made two hours older
/// in the database), then a new key and certificate, pending until the station calls with it;
/// from then on the old one is refused and the revocation list names it as superseded.
async fn renew_a_desk(site: &Site, admin: &Admin, a: &Desk) {
    let renew = || cardwright(&["station", "renew", "--dir"], &[a.dir.as_os_str()]);
    let first = std::fs::read(a.dir.join("cert.pem")).unwrap();
    let out = renew();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("at most once an hour"),
        "{said}"
    );
    assert_eq!(std::fs::read(a.dir.join("cert.pem")).unwrap(), first);
    let old = a.client();
    let serial = admin.station(&a.name).await["certificate_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut conn = site.database().await;
    sqlx::query(
        "UPDATE station_certificates SET issued_at = issued_at - 7200000000 WHERE serial = ?",
    )
    .bind(&serial)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let out = renew();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("renewed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read(a.dir.join("cert.pem")).unwrap(), first);
    assert!(!a.dir.join("key.pem.new").exists());
    let poll = |client: reqwest::Client| async move {
        client
            .post(format!("{}/station/v1/jobs/next", site.base))
            .json(&json!({"wait_secs": 0}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        poll(old.clone()).await,
        StatusCode::NO_CONTENT,
        "the old certificate works until the new one is used"
    );
    assert_eq!(poll(a.client()).await, StatusCode::NO_CONTENT);
    assert_eq!(poll(old).await, StatusCode::FORBIDDEN);
    let now = admin.station(&a.name).await["certificate_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(now, serial);
    let text = crl_text(site, &admin.ca_pem).await;
    let listed = text
        .split("Serial Number: ")
        .find(|entry| entry.starts_with(&serial.to_uppercase()))
        .unwrap_or_else(|| panic!("the old certificate is listed: {text}"));
    assert!(listed.contains("Superseded"), "{listed}");
    assert_eq!(
        key_mode(&a.dir),
        0o600,
        "the new key is the station's user's alone"
    );
}

/// `pki rotate-master-key` moves the stations' escrow key to the new master key too; the cards
/// made after it (the PUKs sealed to the escrow key) show it still opens.
async fn rotate_the_master_key(site: &Site) {
    site.cli(&["pki", "rotate-master-key"]);
    let mut conn = site.database().await;
    let sealed: String = sqlx::query_scalar("SELECT private_sealed FROM station_escrow")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    assert!(sealed.starts_with("m2:"), "{sealed}");
}

/// The server's revocation list as `openssl crl -text` prints it.
async fn crl_text(site: &Site, ca_pem: &str) -> String {
    let plain = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let crl = plain
        .get(format!("{}/pki/crl", site.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    crate::encoding::crl_text(&crl, site.dir.path(), site.dir.path())
}

/// The order's produced attempts per card, and the station that made each.
fn produced_by(order: &Value) -> Vec<(String, String, u64)> {
    order["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "produced")
        .map(|a| {
            (
                a["card"].as_str().unwrap().to_owned(),
                a["station"].as_str().unwrap().to_owned(),
                a["attempt"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every card of the order produced exactly once.
fn once_each(order: &Value, cards: &[String]) -> Vec<(String, String, u64)> {
    let produced = produced_by(order);
    for card in cards {
        assert_eq!(
            produced.iter().filter(|(c, ..)| c == card).count(),
            1,
            "card {card} has one produced attempt: {order}"
        );
    }
    assert_eq!(produced.len(), cards.len(), "{order}");
    produced
}

/// Both desks produce; desk B is killed with a card in hand, which fails after the lease and
/// is made by a Repeat production.
async fn kill_a_desk(
    admin: &Admin,
    a: &Desk,
    b: &Desk,
    agent_b: Agent,
) -> (String, Value, Vec<String>) {
    let (order, cards) = admin.produce(8, None).await;
    let mut held = Value::Null;
    for _ in 0..600 {
        let snapshot = admin.get(&format!("/api/v1/batch-orders/{order}")).await;
        let b_made = produced_by(&snapshot).iter().any(|(_, s, _)| *s == b.name);
        held = admin.station(&b.name).await["current_card"].clone();
        if b_made && !held.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held.is_string(), "desk B holds a card after making one");
    agent_b.kill();
    let done = admin.wait_for(&order, |o| o["state"] == "produced").await;
    let failed: Vec<&Value> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "the card in the killed desk's hand: {done}"
    );
    assert_eq!(failed[0]["card"]["serial"], held);
    assert_eq!(failed[0]["error"], "production interrupted");
    let card = failed[0]["card"]["id"].as_str().unwrap().to_owned();
    admin
        .post(
            &format!("/api/v1/batch-orders/{order}/repeat"),
            json!({"cards": [card]}),
        )
        .await;
    let done = admin
        .wait_for(&order, |o| {
            o["state"] == "produced" && o["counts"]["produced"] == 8
        })
        .await;
    let produced = once_each(&done, &cards);
    assert!(
        produced.iter().any(|(_, s, _)| *s == a.name)
            && produced.iter().any(|(_, s, _)| *s == b.name),
        "both desks produced: {done}"
    );
    assert!(
        produced
            .iter()
            .any(|(c, s, n)| *c == card && *s == a.name && *n == 2),
        "the repeat was made by desk A: {done}"
    );
    (order, done, cards)
}

/// Each produced card's token opens with the PIN on its letter, and its certificate chains to
/// the CA. Returns the PINs.
fn check_tokens(
    site: &Site,
    admin: &Admin,
    order: &str,
    done: &Value,
    desks: &[&Desk],
) -> Vec<String> {
    let ca = site.dir.path().join("ca.pem");
    std::fs::write(&ca, &admin.ca_pem).unwrap();
    let serial_of = |card: &str| {
        done["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["card"]["id"] == card)
            .unwrap()["card"]["serial"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut pins = Vec::new();
    for (card, station, attempt) in produced_by(done) {
        let desk = desks.iter().find(|d| d.name == station).unwrap();
        let serial = serial_of(&card);
        let letter = desk
            .dir
            .join("spool")
            .join(order)
            .join(format!("{serial}-attempt{attempt}-pin-letter.pdf"));
        let pin = pin_from_letter(&letter);
        assert_eq!(pin.len(), 12, "the script's PIN length");
        let (ok, objects) = pkcs11_tool(
            &desk.softhsm,
            &["--token-label", &serial, "--login", "--pin", &pin, "-O"],
        );
        assert!(
            ok && objects.contains("Private Key Object"),
            "{serial}'s PIN opens its token: {objects}"
        );
        let cert = site.dir.path().join(format!("{serial}.pem"));
        let subject = cert_pem_from_card(&desk.softhsm, &serial, "authentication", &cert);
        assert!(subject.contains(&serial), "{subject}");
        let (ok, text) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                cert.to_str().unwrap(),
            ],
            &desk.softhsm,
        );
        assert!(
            ok && text.contains("OK"),
            "{serial}'s certificate chains to the CA: {text}"
        );
        pins.push(pin);
    }
    pins
}

/// The server restarts while both desks work: they reconnect and nothing is produced twice.
async fn restart_under_agents(site: &Site, server: Server) -> (Server, Admin) {
    let admin = Admin::login(&site.base).await;
    let (order, cards) = admin.produce(6, None).await;
    admin
        .wait_for(&order, |o| {
            o["counts"]["produced"].as_u64() >= Some(1)
                && o["counts"]["producing"].as_u64() >= Some(1)
        })
        .await;
    drop(server);
    let server = site.serve(2);
    let admin = Admin::login(&site.base).await;
    let done = admin
        .wait_for(&order, |o| {
            o["state"] == "produced" && o["counts"]["queued"] == 0
        })
        .await;
    // A card whose lease ran out while the server was down is repeated; none is made twice.
    let failed: Vec<String> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .map(|i| {
            assert_eq!(i["error"], "production interrupted", "{done}");
            i["card"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    if !failed.is_empty() {
        admin
            .post(
                &format!("/api/v1/batch-orders/{order}/repeat"),
                json!({"cards": failed}),
            )
            .await;
    }
    let done = admin
        .wait_for(&order, |o| {
            o["state"] == "produced" && o["counts"]["produced"] == 6
        })
        .await;
    once_each(&done, &cards);
    (server, admin)
}

/// A disabled station is refused at once, its certificate is on the revocation list, and an
/// order named for it waits; a client without a certificate is refused.
async fn disable_a_desk(site: &Site, admin: &Admin, a: &Desk) {
    let view = admin
        .post(&format!("/api/v1/stations/{}/disable", a.name), json!({}))
        .await;
    assert_eq!(view["state"], "disabled");
    let serial = view["certificate_serial"].as_str().unwrap().to_uppercase();
    let refused = a
        .client()
        .post(format!("{}/station/v1/jobs/next", site.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let plain = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(admin.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let anonymous = plain
        .post(format!("{}/station/v1/jobs/next", site.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let text = crl_text(site, &admin.ca_pem).await;
    assert!(
        text.contains(&serial),
        "the disabled station's certificate is listed: {text}"
    );
    assert!(text.contains("Certificate Hold"), "{text}");
    let (order, _) = admin.produce(1, Some(&a.name)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = admin.get(&format!("/api/v1/batch-orders/{order}")).await;
    assert_eq!(
        waiting["counts"]["queued"], 1,
        "no other station takes it, the disabled one gets nothing: {waiting}"
    );
    admin
        .post(&format!("/api/v1/stations/{}/enable", a.name), json!({}))
        .await;
    let done = admin.wait_for(&order, |o| o["state"] == "produced").await;
    assert_eq!(
        produced_by(&done)[0].1,
        a.name,
        "enabled again, the named station made it: {done}"
    );
}

/// No PIN in the server's data folder (the database with it), nor in its log.
fn no_pin_at_the_server(site: &Site, pins: &[String]) {
    site.gather_logs();
    let mut files = vec![site.log.clone()];
    files.extend(files_under(&site.data));
    assert!(
        files.iter().any(|f| f.ends_with("cardwright.db")),
        "{files:?}"
    );
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for pin in pins {
            assert!(
                !bytes.windows(pin.len()).any(|w| w == pin.as_bytes()),
                "a PIN was found in {}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_at_the_desk_over_mutual_tls() {
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
    let site = Site::new();
    let server = site.serve(0);
    let admin = Admin::login(&site.base).await;
    let script = admin
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(json!({"source": "pin_length = 12;\npuk_length = 16;\nencode = true;\ncertificates = [\"authentication\"];\n"})),
        )
        .await;
    assert!(script.0.is_success(), "{script:?}");
    // Over HTTPS, the browser's cookies are Secure.
    let login = admin
        .http
        .get(format!("{}/login", site.base))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    let a = Desk::new(&site, "desk-a", 300);
    let b = Desk::new(&site, "desk-b", 600);
    enroll_desks(&site, &admin, &[&a, &b]).await;
    renew_a_desk(&site, &admin, &a).await;
    let agent_a = a.run();
    let agent_b = b.run();

    let (order, done, _cards) = kill_a_desk(&admin, &a, &b, agent_b).await;
    let busy = admin.station(&a.name).await;
    assert_eq!(busy["state"], "online", "{busy}");
    assert!(busy["produced_today"].as_u64() >= Some(1), "{busy}");
    assert_eq!(admin.station(&b.name).await["current_card"], Value::Null);
    let mut pins = check_tokens(&site, &admin, &order, &done, &[&a, &b]);
    rotate_the_master_key(&site).await;
    let agent_b = b.run();
    let (server, admin) = restart_under_agents(&site, server).await;
    disable_a_desk(&site, &admin, &a).await;
    let stations = admin.get("/api/v1/stations").await;
    assert_eq!(
        stations["stations"].as_array().unwrap().len(),
        2,
        "{stations}"
    );

    drop(agent_a);
    drop(agent_b);
    drop(server);
    // PINs of every card made, from the letters at both desks.
    for desk in [&a, &b] {
        for path in files_under(&desk.dir.join("spool")) {
            if path.to_string_lossy().ends_with("-pin-letter.pdf") {
                pins.push(pin_from_letter(&path));
            }
        }
    }
    pins.sort();
    pins.dedup();
    assert!(pins.len() >= 15, "{pins:?}");
    no_pin_at_the_server(&site, &pins);
}

/// `pki renew-ca --new-key`: the restarted server's certificate comes from the new CA and its
/// chain carries the earlier CA's certificate for it, so a station enrolled before still trusts
/// the server; the station learns the new CA and goes on producing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_works_on_after_the_ca_is_renewed_with_a_new_key() {
    let site = Site::new();
    let server = site.serve(0);
    let admin = Admin::login(&site.base).await;
    let root = site.dir.path().join("desk-c");
    std::fs::create_dir_all(&root).unwrap();
    let config = root.join("station.toml");
    std::fs::write(&config, "printer = { kind = \"spool\" }\n").unwrap();
    let desk = Desk {
        name: "desk-c".into(),
        dir: root.join("station"),
        softhsm: root.join("softhsm2.conf"),
        config,
        log: root.join("agent.log"),
    };
    let reg = admin.register(&desk.name, "lobby").await;
    let out = Desk::enroll(
        &site.base,
        reg["enrollment_code"].as_str().unwrap(),
        &desk.dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
    site.cli(&["pki", "renew-ca", "--new-key"]);
    let server = site.serve(1);
    let admin = Admin::login(&site.base).await;
    let poll = desk
        .client()
        .post(format!("{}/station/v1/jobs/next", site.base))
        .json(&json!({"wait_secs": 0}))
        .send()
        .await
        .expect("the station trusts the server through the earlier CA")
        .status();
    assert_eq!(poll, StatusCode::NO_CONTENT);
    let agent = desk.run();
    let (order, _) = admin.produce(2, Some(&desk.name)).await;
    let done = admin.wait_for(&order, |o| o["state"] == "produced").await;
    assert_eq!(done["counts"]["produced"], 2, "{done}");
    drop(agent);
    let trusted = std::fs::read_to_string(desk.dir.join("ca.pem")).unwrap();
    assert_eq!(
        trusted.matches("BEGIN CERTIFICATE").count(),
        2,
        "the station trusts the new CA too"
    );
    // A client that trusts only the new CA (the first of /pki/ca.pem) trusts the server too.
    let newest = admin
        .ca_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(newest.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = fresh
        .get(format!("{}/healthz", site.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    drop(server);
}

/// Registers `name` as the production-admin; returns the answer.
async fn register(
    app: &crate::helpers::TestApp,
    token: &str,
    name: &str,
) -> crate::helpers::Answer {
    app.post(
        "/api/v1/stations",
        token,
        json!({"name": name, "description": "desk"}),
    )
    .await
}

/// Registration and enrolment: roles, names, single use, expiry.
async fn registration_is_checked(db: crate::helpers::Db) {
    use cardwright_processes::stations;
    let app = crate::helpers::spawn_app_with(db, |c| c.stations = vec![]).await;
    let ctx = app.ctx();
    assert_eq!(
        register(&app, &app.officer, "desk-1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        register(&app, &app.producer, "a b").await.status,
        StatusCode::BAD_REQUEST
    );
    let created = register(&app, &app.producer, "desk-1").await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        register(&app, &app.producer, "desk-1").await.status,
        StatusCode::CONFLICT
    );
    let code = created.body["enrollment_code"].as_str().unwrap();
    let (_key, csr) = cardwright_pki::tls::key_and_request("agent").unwrap();
    let enrolled = stations::enroll(ctx, code, &csr).await.unwrap();
    assert_eq!(enrolled.station, "desk-1");
    assert!(enrolled
        .certificate_pem
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let again = stations::enroll(ctx, code, &csr)
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("used already"), "{again}");
    assert!(stations::enroll(ctx, code, "not a request").await.is_err());

    let late = register(&app, &app.producer, "desk-2").await;
    app.clock.advance(chrono::Duration::minutes(16));
    let expired = stations::enroll(ctx, late.body["enrollment_code"].as_str().unwrap(), &csr)
        .await
        .unwrap_err()
        .to_string();
    assert!(expired.contains("expired"), "{expired}");
    let list = app.get("/api/v1/stations", &app.officer).await;
    let states: Vec<(&str, &str)> = list.body["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("desk-1", "offline"), ("desk-2", "enrolling")],
        "{list:?}"
    );
    let renewed = app
        .post(
            "/api/v1/stations/desk-2/enrollment",
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
    stations::enroll(ctx, renewed.body["enrollment_code"].as_str().unwrap(), &csr)
        .await
        .unwrap();
    assert_eq!(
        app.post("/api/v1/stations/desk-9/disable", &app.producer, json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let next = app
        .post(
            "/api/v1/batch-orders/01a21bbc-e27d-70db-93f9-ac10db897715/next",
            &app.producer,
            json!({"station": "desk-9"}),
        )
        .await;
    assert_eq!(next.status, StatusCode::NOT_FOUND, "{next:?}");
    // A server whose own station has a registered station's name does not start.
    let mut config = app.config.clone();
    config.database_url = app.database_url.clone();
    config.stations = vec![crate::helpers::simulated_station("desk-1", 0, 0)];
    let refused = cardwright::app::start(&config, app.clock.clone(), false)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.contains("[[stations]] name 'desk-1'") && refused.contains("registered"),
        "{refused}"
    );
}

/// The protocol over one lease after another: a report sent twice counts once, a report after
/// the lease ended changes nothing, a disabled station claims nothing.
async fn each_outcome_counts_once(db: crate::helpers::Db) {
    use cardwright_processes::temp_cards::remote::{self, AttemptRef, RemoteOutcome, Reported};
    let app = crate::helpers::spawn_app_with(db, |c| {
        c.stations = vec![];
        c.station_lease_secs = 60;
    })
    .await;
    let ctx = app.ctx();
    let (order, cards) = two_cards_for_desk_1(&app).await;
    let next = app
        .post(
            &format!("/api/v1/batch-orders/{order}/next"),
            &app.producer,
            json!({"station": "desk-1"}),
        )
        .await;
    assert_eq!(next.body["station"], "desk-1", "{next:?}");
    assert!(
        remote::claim(ctx, "desk-2").await.unwrap().is_none(),
        "the order is desk-1's"
    );
    let job = remote::claim(ctx, "desk-1").await.unwrap().expect("a card");
    let at = |job: &remote::RemoteJob| AttemptRef {
        order: job.order,
        card: job.card,
        attempt: job.attempt,
    };
    app.clock.advance(chrono::Duration::seconds(50));
    remote::heartbeat(ctx, "desk-1", at(&job)).await.unwrap();
    app.clock.advance(chrono::Duration::seconds(50));
    assert_eq!(
        remote::expire_leases(ctx).await.unwrap(),
        0,
        "the heartbeat moved the lease"
    );
    let produced = RemoteOutcome {
        produced: true,
        error: None,
        certificates: vec![],
        puk_sealed: None,
    };
    assert!(
        remote::report(ctx, "desk-2", at(&job), &produced, false)
            .await
            .is_err(),
        "not desk-2's card"
    );
    // The report asks for the next card; sent again (its answer lost), it gets the same one.
    let (reported, handed) = remote::report(ctx, "desk-1", at(&job), &produced, true)
        .await
        .unwrap();
    assert_eq!(reported, Reported::Recorded);
    let handed = handed.expect("the next card comes with the report");
    let (reported, again) = remote::report(ctx, "desk-1", at(&job), &produced, true)
        .await
        .unwrap();
    assert_eq!(reported, Reported::AlreadyRecorded);
    let again = again.expect("the same next card");
    assert_eq!(
        (&again["card"], &again["attempt"]),
        (&handed["card"], &handed["attempt"])
    );
    assert_ne!(handed["card"], json!(job.card.to_string()));
    assert!(
        remote::claim(ctx, "desk-1").await.unwrap().is_none(),
        "both cards are handed out"
    );
    let second = AttemptRef {
        order: job.order,
        card: cardwright_domain::CardId::parse(handed["card"].as_str().unwrap()).unwrap(),
        attempt: 1,
    };
    app.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(remote::expire_leases(ctx).await.unwrap(), 1);
    let late = remote::report(ctx, "desk-1", second, &produced, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(late.contains("lease"), "{late}");
    assert!(remote::heartbeat(ctx, "desk-1", second).await.is_err());
    let done = app
        .wait_for_order(&order, |o| o["state"] == "produced")
        .await;
    let outcomes: Vec<&str> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["produced", "failed"], "one attempt each: {done}");
    assert_eq!(done["items"][1]["error"], "production interrupted");
    a_disabled_station_claims_nothing(&app, &order, &cards[1]).await;
}

/// Two stations registered, and an order of two new cards.
async fn two_cards_for_desk_1(app: &crate::helpers::TestApp) -> (String, Vec<String>) {
    register(app, &app.producer, "desk-1").await;
    register(app, &app.producer, "desk-2").await;
    let cards: Vec<String> = app
        .request_cards(2)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let order = app.order(&cards).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (order, cards)
}

/// A disabled station's claim is refused, even with a card queued for it.
async fn a_disabled_station_claims_nothing(app: &crate::helpers::TestApp, order: &str, card: &str) {
    use cardwright_processes::temp_cards::remote;
    let ctx = app.ctx();
    app.post("/api/v1/stations/desk-1/disable", &app.producer, json!({}))
        .await;
    app.post(
        &format!("/api/v1/batch-orders/{order}/repeat"),
        &app.producer,
        json!({"cards": [card]}),
    )
    .await;
    let refused = remote::claim(ctx, "desk-1").await.unwrap_err().to_string();
    assert!(refused.contains("disabled"), "{refused}");
    let view = app.get("/api/v1/stations/desk-1", &app.producer).await;
    assert_eq!(view.body["state"], "disabled", "{view:?}");
    assert_eq!(view.body["produced_today"], 1, "{view:?}");
}

crate::on_both_databases!(registration_is_checked, each_outcome_counts_once);

/// `[tls]` with a certificate of the site's own (`cert_file`, `key_file`): the server answers
/// over HTTPS with it; a key that does not fit the certificate stops the start, naming the key.
#[test]
fn a_certificate_from_files() {
    if !cardwright_testkit::require_programs(&["openssl"], "install Debian's openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let (ca, cert, key, other) = (
        file("ca.pem"),
        file("server.pem"),
        file("server.key"),
        file("ca.key"),
    );
    site_certificates(dir.path());
    let port = free_port();
    let config = dir.path().join("server.toml");
    let write = |key: &Path| {
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nstations = []\n[tls]\n\
                 cert_file = \"{}\"\nkey_file = \"{}\"\n",
                dir.path().join("data").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    write(&other);
    let refused = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("tls.cert_file"),
        "{said}"
    );

    write(&key);
    add_operator_with(&config, &["production-admin"]);
    let server = Server::start_with(&config, &[], &dir.path().join("server.log"));
    assert_eq!(server.base, format!("https://127.0.0.1:{port}"));
    let pem = std::fs::read(&ca).unwrap();
    let code = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(enrolment_code_over(&server.base, &pem));
    // The agent trusts this server through the site's CA, and still pins Cardwright's CA.
    let station = dir.path().join("station");
    let out = enroll_with(&server.base, &code, &station, None);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("does not come from the CA"),
        "{said}"
    );
    let out = enroll_with(&server.base, &code, &station, Some(&ca));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(station.join("cert.pem").exists() && station.join("server-ca.pem").exists());
}

/// A CA of a site's own (`ca.pem`, `ca.key`) and a server certificate it signed for 127.0.0.1
/// (`server.pem`, `server.key`), in `dir`.
fn site_certificates(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    // A CA of the site's own, and a server certificate it signed for 127.0.0.1.
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for step in [
        format!("req -x509 {ec} -days 30 -subj /CN=SiteCA -keyout ca.key -out ca.pem"),
        format!("req {ec} -subj /CN=127.0.0.1 -keyout server.key -out server.csr"),
        "x509 -req -days 30 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -extfile ext.cnf -out server.pem"
            .to_owned(),
    ] {
        let out = Command::new("openssl")
            .args(step.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `cardwright station enroll` into `station`, with `--server-ca` when given.
fn enroll_with(
    base: &str,
    code: &str,
    station: &Path,
    server_ca: Option<&Path>,
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardwright"));
    command
        .args(["station", "enroll", "--server", base, "--code", code])
        .arg("--dir")
        .arg(station);
    if let Some(ca) = server_ca {
        command.arg("--server-ca").arg(ca);
    }
    command.output().unwrap()
}

/// Over HTTPS trusting `ca_pem`: the server answers, and registers a station; its code.
async fn enrolment_code_over(base: &str, ca_pem: &[u8]) -> String {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "desk", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registered: Value = http
        .post(format!("{base}/api/v1/stations"))
        .bearer_auth(login["token"].as_str().unwrap())
        .json(&json!({"name": "desk-9"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    registered["enrollment_code"].as_str().unwrap().to_owned()
}
