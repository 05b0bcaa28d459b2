//! Mail through a real SMTP server (aiosmtpd, started by each test): the assignment notice,
//! reminders once at the right time (the test's clock moves, nothing sleeps for it), the desk's
//! notice of a card that expired unreturned, sending after a SIGKILL, and two servers on one
//! PostgreSQL database sending each mail once between them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cardwright::config::SmtpTls;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{free_port, fresh_database, postgres, spawn_app_with, Db, TestApp};
use crate::on_both_databases;
use crate::server_processes::{Client, Server};

/// An aiosmtpd server writing every mail it takes into a maildir.
pub(crate) struct Smtp {
    child: Option<Child>,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// One mail as the SMTP server took it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }
}

fn aiosmtpd() -> Option<String> {
    let program = std::env::var("AIOSMTPD").unwrap_or_else(|_| "aiosmtpd".to_owned());
    cardwright_testkit::require_programs(
        &[program.as_str()],
        "run scripts/test, which installs aiosmtpd from PyPI (or: pipx install aiosmtpd, and set AIOSMTPD to it)",
    )
    .then_some(program)
}

impl Smtp {
    /// A port for an SMTP server not started yet.
    pub fn unstarted() -> Option<Self> {
        aiosmtpd()?;
        let dir = tempfile::tempdir().unwrap();
        Some(Self {
            child: None,
            port: free_port(),
            maildir: dir.path().join("maildir"),
            _dir: dir,
        })
    }

    pub fn start() -> Option<Self> {
        let mut smtp = Self::unstarted()?;
        smtp.listen();
        Some(smtp)
    }

    /// Starts the server on its port and waits (at most 20 s) until it answers.
    pub fn listen(&mut self) {
        let program = aiosmtpd().expect("aiosmtpd was found before");
        let child = Command::new(program)
            .args(["-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not answer on port {}", self.port);
    }

    /// Every mail taken so far.
    pub fn mails(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        // In the order they arrived: the Date header counts whole seconds only.
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|(_, path)| std::fs::read_to_string(path).ok())
            .map(|text| parse(&text))
            .collect()
    }

    /// Waits (at most about 30 s) until at least `count` mails arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..1200 {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{count} mails expected, got {:#?}", self.mails());
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Headers (unfolded, names in lower case) and body of a mail.
fn parse(text: &str) -> Received {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers = HashMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(name) = &last {
                headers
                    .entry(name.clone())
                    .and_modify(|v: &mut String| v.push_str(line.trim_start()));
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            headers.insert(name.clone(), value.trim().to_owned());
            last = Some(name);
        }
    }
    Received {
        headers,
        body: body.replace("=\n", ""),
    }
}

fn with_smtp(port: u16) -> impl FnOnce(&mut cardwright::config::Config) {
    move |c| {
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = port;
        c.smtp.tls = SmtpTls::None;
        c.smtp.from = "Security desk <desk@example.org>".into();
    }
}

async fn set_script(app: &TestApp, source: &str) {
    let saved = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(&app.policy),
            Some(json!({"source": source})),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
}

async fn mail_log(app: &TestApp) -> Vec<Value> {
    let answer = app.get("/api/v1/mails", &app.policy).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["mails"].as_array().unwrap().clone()
}

on_both_databases!(
    reminders_arrive_once_at_the_right_time,
    mail_texts_are_edited_in_both_languages,
);

async fn reminders_arrive_once_at_the_right_time(db: Db) {
    let Some(smtp) = Smtp::start() else { return };
    let app = spawn_app_with(db, with_smtp(smtp.port)).await;
    set_script(
        &app,
        "remind_days_before = 2;\ndesk_email = \"desk@example.org\";\n",
    )
    .await;
    let person = app.person("E-1").await;
    let id = app.unassigned_card().await;
    let serial = app.card(&id).await["serial"].as_str().unwrap().to_owned();
    let assigned = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");

    // The holder hears of the assignment.
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].header("to"), "e-1@example.com");
    assert!(mails[0].header("subject").contains(&serial), "{mails:#?}");
    assert!(mails[0].body.contains("16 March 2026"), "{mails:#?}");
    assert!(mails[0].header("from").contains("desk@example.org"));

    // Thirteen hours before the reminder is due, none is decided, however often one looks.
    app.clock
        .advance(chrono::Duration::days(11) + chrono::Duration::hours(23));
    for _ in 0..3 {
        assert_eq!(
            cardwright_processes::notify::mails::queue_reminders(app.ctx())
                .await
                .unwrap(),
            0
        );
    }
    assert!(mail_log(&app).await.iter().all(|m| m["kind"] != "reminder"));
    // Two days before the end it is.
    app.clock.advance(chrono::Duration::hours(2));
    let mails = smtp.wait_for(2).await;
    let reminder = &mails[1];
    assert_eq!(reminder.header("to"), "e-1@example.com", "{reminder:#?}");
    assert_eq!(reminder.header("cc"), "desk@example.org", "{reminder:#?}");
    assert!(
        reminder.header("subject").contains(&serial),
        "{reminder:#?}"
    );
    assert!(reminder.body.contains("2 day(s)"), "{reminder:#?}");
    // Once: more turns of the job and another look change nothing.
    assert_eq!(
        cardwright_processes::notify::mails::queue_reminders(app.ctx())
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 2);

    // An extension is a new validity with a reminder of its own, two days before its end.
    let extended = app
        .post(
            &format!("/api/v1/cards/{id}/extend"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(extended.status, StatusCode::OK, "{extended:?}");
    app.clock.advance(chrono::Duration::days(13));
    assert_eq!(
        cardwright_processes::notify::mails::queue_reminders(app.ctx())
            .await
            .unwrap(),
        0
    );
    app.clock.advance(chrono::Duration::days(1));
    let mails = smtp.wait_for(3).await;
    assert!(mails[2].header("subject").contains(&serial));
    assert!(mails[2].body.contains("30 March 2026"), "{:#?}", mails[2]);

    // Unreturned at its end, the card expires and the desk is told.
    app.clock.advance(chrono::Duration::days(2));
    let mails = smtp.wait_for(4).await;
    assert_eq!(mails[3].header("to"), "desk@example.org", "{:#?}", mails[3]);
    assert!(
        mails[3].header("subject").contains("expired"),
        "{:#?}",
        mails[3]
    );
    assert!(mails[3].body.contains("Test Person E-1"), "{:#?}", mails[3]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 4, "each mail once");
    let log = mail_log(&app).await;
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(log.iter().all(|m| m["state"] == "sent"), "{log:#?}");
}

async fn mail_texts_are_edited_in_both_languages(db: Db) {
    let Some(smtp) = Smtp::start() else { return };
    let app = spawn_app_with(db, with_smtp(smtp.port)).await;
    let texts = app.get("/api/v1/mail-templates", &app.policy).await;
    assert_eq!(texts.status, StatusCode::OK, "{texts:?}");
    assert_eq!(texts.body["templates"].as_array().unwrap().len(), 6);
    assert_eq!(
        app.get("/api/v1/mail-templates", &app.officer).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/mail-templates/assigned/de",
            Some(&app.policy),
            Some(json!({"subject": "Ausweis {{serial}}", "body": "Hallo {{name}}"})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert!(refused.body.to_string().contains("{{name}}"), "{refused:?}");
    let saved = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/mail-templates/assigned/de",
            Some(&app.policy),
            Some(json!({"subject": "Ausweis {{serial}} bis {{valid_until}}", "body": "Hallo {{holder}},\nbitte bis {{valid_until}} zurueckgeben.\n"})),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    assert_eq!(saved.body["custom"], true);
    set_script(&app, "mail_language = \"de\";\n").await;
    let person = app.person("E-2").await;
    let id = app.unassigned_card().await;
    let serial = app.card(&id).await["serial"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/cards/{id}/assign"),
        &app.officer,
        json!({"person": person}),
    )
    .await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(
        mails[0].header("subject"),
        format!("Ausweis {serial} bis 16.03.2026, 09:00 UTC")
    );
    assert!(
        mails[0].body.contains("Hallo Test Person E-2,"),
        "{:#?}",
        mails[0]
    );
    let reset = app
        .call(
            reqwest::Method::DELETE,
            "/api/v1/mail-templates/assigned/de",
            Some(&app.policy),
            None,
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{reset:?}");
    assert_eq!(reset.body["custom"], false);
    assert!(reset.body["subject"]
        .as_str()
        .unwrap()
        .contains("temporären Ausweis"));
    assert_eq!(
        app.call(
            reqwest::Method::PUT,
            "/api/v1/mail-templates/farewell/en",
            Some(&app.policy),
            Some(json!({"subject": "x", "body": "y"}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let audit = app
        .get("/api/v1/audit?limit=500", &app.auditor)
        .await
        .body
        .to_string();
    assert!(
        audit.contains("MailTextChange") && audit.contains("MailTextReset"),
        "{audit}"
    );
}

/// A configuration for a real server (with mail to `smtp_port` if given).
pub(crate) fn setup(dir: &Path, name: &str, database_url: &str, smtp_port: Option<u16>) -> PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{database_url}\"\nstation_poll_ms = 20\n\
         [pki]\nkek = \"{}\"\n\
         [notify]\ninterval_ms = 50\nretry_base_secs = 1\nretry_max_secs = 2\n",
        dir.join(format!("data-{name}")).display(),
        "ab".repeat(32),
    );
    if let Some(port) = smtp_port {
        text = format!(
            "{text}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"desk@example.org\"\n"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Adds the operator `desk` with every role.
pub(crate) fn add_operator(config: &Path) {
    crate::server_processes::add_operator_with(
        config,
        &[
            "production-admin",
            "registration-officer",
            "policy-admin",
            "service-admin",
        ],
    );
}

pub(crate) fn start(config: &Path, dir: &Path, log: &str) -> Server {
    Server::start_with(
        config,
        &[("CARDWRIGHT_LOG", "info".as_ref())],
        &dir.join(log),
    )
}

/// Produces `amount` new cards through a batch order and assigns each to a new person; returns
/// the card ids.
async fn assigned_cards(clients: &[&Client], amount: usize, prefix: &str) -> Vec<String> {
    let client = clients[0];
    let (order, cards) = client
        .order_of_new_cards(i64::try_from(amount).unwrap())
        .await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    client.wait_for(&order, |o| o["state"] == "produced").await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/complete"), json!({}))
        .await;
    for (n, card) in cards.iter().enumerate() {
        let by = clients[n % clients.len()];
        let person = by
            .post(
                "/api/v1/persons",
                json!({"employee_number": format!("{prefix}{n}"), "given_name": "Ada", "family_name": format!("Holder {n}"), "email": format!("{}{n}@example.com", prefix.to_lowercase())}),
            )
            .await;
        by.post(
            &format!("/api/v1/cards/{card}/assign"),
            json!({"person": person["id"]}),
        )
        .await;
    }
    cards
}

#[tokio::test]
async fn a_server_killed_before_sending_sends_once_after_restart() {
    let Some(mut smtp) = Smtp::unstarted() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&Db::Sqlite).await;
    let config = setup(dir.path(), "server", &database_url, Some(smtp.port));
    add_operator(&config);
    let server = start(&config, dir.path(), "first.log");
    let client = Client::login_as(&server.base, "desk").await;
    let cards = assigned_cards(&[&client], 2, "K-").await;
    // The SMTP server is not there yet: the notices are decided and wait.
    for _ in 0..400 {
        let log = client.get("/api/v1/mails").await;
        let mails = log["mails"].as_array().unwrap();
        if mails.len() == 2 && mails.iter().all(|m| m["attempts"].as_i64() >= Some(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = client.get("/api/v1/mails").await;
    assert!(
        log["mails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "pending" && m["attempts"].as_i64() >= Some(1)),
        "{log}"
    );
    drop(server); // SIGKILL

    smtp.listen();
    let server = start(&config, dir.path(), "second.log");
    let mails = smtp.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(smtp.mails().len(), 2, "each notice once: {mails:#?}");
    let to: Vec<&str> = mails.iter().map(|m| m.header("to")).collect();
    assert!(
        to.contains(&"k-0@example.com") && to.contains(&"k-1@example.com"),
        "{to:?}"
    );
    let client = Client::login_as(&server.base, "desk").await;
    let log = client.get("/api/v1/mails").await;
    assert!(
        log["mails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "sent"),
        "{log}"
    );
    assert_eq!(cards.len(), 2);
}

#[tokio::test]
async fn two_servers_on_one_postgres_send_once() {
    let Some(db) = postgres() else { return };
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&db).await;
    let config_a = setup(dir.path(), "a", &database_url, Some(smtp.port));
    let config_b = setup(dir.path(), "b", &database_url, Some(smtp.port));
    add_operator(&config_a);
    let (a, b) = (
        start(&config_a, dir.path(), "a.log"),
        start(&config_b, dir.path(), "b.log"),
    );
    let (ca, cb) = (
        Client::login_as(&a.base, "desk").await,
        Client::login_as(&b.base, "desk").await,
    );
    // Reminders are due at once: each assignment is followed by its notice and its reminder.
    let (status, body) = ca
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(json!({"source": "validity_days = 14;\nremind_days_before = 30;\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cards = assigned_cards(&[&ca, &cb], 8, "P-").await;
    let mails = smtp.wait_for(16).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails_now = smtp.mails();
    assert_eq!(
        mails_now.len(),
        16,
        "each mail once between the two servers: {mails:#?}"
    );
    let mut ids: Vec<&str> = mails_now.iter().map(|m| m.header("message-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    for n in 0..8 {
        let to = format!("p-{n}@example.com");
        let theirs: Vec<&Received> = mails_now.iter().filter(|m| m.header("to") == to).collect();
        assert_eq!(theirs.len(), 2, "{to}: {theirs:#?}");
    }
    assert_eq!(cards.len(), 8);
    // Each log names the mails its server sent: no mail is in both, and together they are the
    // sixteen received.
    let sent_by = |log: &str| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(dir.path().join(log))
            .unwrap()
            .lines()
            .filter(|line| line.contains("mail sent"))
            .filter_map(|line| {
                let id = line.split(" mail=").nth(1)?;
                Some(id.split_whitespace().next()?.to_owned())
            })
            .collect()
    };
    let (by_a, by_b) = (sent_by("a.log"), sent_by("b.log"));
    assert!(
        by_a.is_disjoint(&by_b),
        "a mail sent by both servers: {by_a:?} {by_b:?}"
    );
    assert_eq!(by_a.len() + by_b.len(), 16, "{by_a:?} {by_b:?}");
    let log = ca.get("/api/v1/mails").await;
    let ids: std::collections::BTreeSet<String> = log["mails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let logged: std::collections::BTreeSet<String> = by_a.union(&by_b).cloned().collect();
    assert_eq!(
        logged, ids,
        "the logs name exactly the mails of the mail log"
    );
}
