//! The real binary as separate server processes: killed during production and restarted, and
//! two servers draining one order on one PostgreSQL database.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fresh_database, postgres, Db, PASSWORD};

/// A `cardwright serve` child process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Server {
    /// Starts the binary with `config` and waits (at most 30 s) until it says where it listens.
    fn start(config: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardwright"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("CARDWRIGHT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::spawned(command)
    }

    fn spawned(mut command: Command) -> Self {
        let mut child = command.spawn().expect("cardwright starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Cardwright listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports its address");
        Self { child, base }
    }

    /// Starts the binary with extra environment and its log (standard error) going to `log`.
    pub(crate) fn start_with(config: &Path, env: &[(&str, &std::ffi::OsStr)], log: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardwright"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"));
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawned(command)
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a configuration with the given stations, and adds an operator with every role.
fn setup(dir: &Path, database_url: &str, stations: &[(&str, u64, u64)], name: &str) -> PathBuf {
    let data = dir.join("data");
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{database_url}\"\nstation_poll_ms = 20\n",
        data.display()
    );
    for (station, fail_every, delay_ms) in stations {
        let _ = write!(
            text,
            "\n[[stations]]\nname = \"{station}\"\nprinter = {{ kind = \"simulated\", fail_every = {fail_every}, delay_ms = {delay_ms} }}\n"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn add_operator(config: &Path) {
    add_operator_with(config, &["production-admin", "registration-officer"]);
}

/// Adds the operator `desk` with `roles` through the command line.
pub(crate) fn add_operator_with(config: &Path, roles: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardwright"));
    child.args(["operator", "add", "desk"]);
    for role in roles {
        child.args(["--role", role]);
    }
    let mut child = child
        .args(["--password-stdin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: String,
}

impl Client {
    async fn login(base: &str) -> Self {
        Self::login_as(base, "desk").await
    }

    pub(crate) async fn login_as(base: &str, username: &str) -> Self {
        Self::login_over(reqwest::Client::new(), base, username).await
    }

    /// Logs in as `username` with `http` (an HTTPS client that trusts the server, say).
    pub(crate) async fn login_over(http: reqwest::Client, base: &str, username: &str) -> Self {
        let answer: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
            token: answer["token"].as_str().expect("token").to_owned(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Polls an order until `done` holds (at most about 30 s).
    pub(crate) async fn wait_for(&self, order: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..1200 {
            last = self.get(&format!("/api/v1/batch-orders/{order}")).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order never got there: {last}");
    }

    pub(crate) async fn order_of_new_cards(&self, amount: i64) -> (String, Vec<String>) {
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
        (order["id"].as_str().unwrap().to_owned(), ids)
    }
}

fn item_statuses(order: &Value) -> Vec<(String, String, String)> {
    order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["status"].as_str().unwrap().to_owned(),
                i["card"]["state"].as_str().unwrap().to_owned(),
                i["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn killed_during_production(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&db).await;
    let config = setup(dir.path(), &database_url, &[("desk-1", 0, 400)], "server");
    add_operator(&config);
    let server = Server::start(&config);
    let client = Client::login(&server.base).await;
    let (order, cards) = client.order_of_new_cards(10).await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    client
        .wait_for(&order, |o| {
            o["counts"]["produced"].as_u64() >= Some(1) && o["counts"]["producing"] == 1
        })
        .await;
    server.kill();

    let server = Server::start(&config);
    let client = Client::login(&server.base).await;
    let order_now = client.wait_for(&order, |o| o["state"] == "produced").await;
    let statuses = item_statuses(&order_now);
    for (status, card_state, _) in &statuses {
        let expected = if status == "produced" {
            "unassigned"
        } else {
            "failed"
        };
        assert_eq!(card_state, expected, "{order_now}");
    }
    let interrupted = statuses
        .iter()
        .filter(|(_, _, e)| e == "production interrupted")
        .count();
    assert_eq!(
        interrupted, 1,
        "the card in the printer at the kill is failed as interrupted: {order_now}"
    );
    let produced_attempts = order_now["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "produced")
        .count();
    assert_eq!(produced_attempts, 9, "no card is counted produced twice");

    let failed: Vec<String> = order_now["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .map(|i| i["card"]["id"].as_str().unwrap().to_owned())
        .collect();
    client
        .post(
            &format!("/api/v1/batch-orders/{order}/repeat"),
            json!({"cards": failed}),
        )
        .await;
    client.wait_for(&order, |o| o["state"] == "produced").await;
    let done = client
        .post(&format!("/api/v1/batch-orders/{order}/complete"), json!({}))
        .await;
    assert_eq!(done["state"], "completed");
    for card in &cards {
        assert_eq!(
            client.get(&format!("/api/v1/cards/{card}")).await["state"],
            "unassigned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_during_production_recovers() {
    killed_during_production(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_during_production_recovers() {
    if let Some(db) = postgres() {
        killed_during_production(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_produce_every_card_once() {
    let Some(db) = postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&db).await;
    let config_a = setup(dir.path(), &database_url, &[("desk-a", 0, 40)], "a");
    let config_b = setup(dir.path(), &database_url, &[("desk-b", 0, 40)], "b");
    add_operator(&config_a);
    let (a, b) = (Server::start(&config_a), Server::start(&config_b));
    let client = Client::login(&a.base).await;
    let (order, _) = client.order_of_new_cards(30).await;
    client
        .post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    let other = Client::login(&b.base).await;
    let done = other.wait_for(&order, |o| o["state"] == "produced").await;
    assert_eq!(done["counts"]["produced"], 30, "{done}");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        30,
        "every card produced exactly once: {done}"
    );
    let mut cards: Vec<&str> = attempts
        .iter()
        .map(|a| a["card"].as_str().unwrap())
        .collect();
    cards.sort_unstable();
    cards.dedup();
    assert_eq!(cards.len(), 30);
    for station in ["desk-a", "desk-b"] {
        let n = attempts.iter().filter(|a| a["station"] == station).count();
        assert!(
            n > 0,
            "both servers' stations worked on the order ({station}: {n})"
        );
    }
    for item in done["items"].as_array().unwrap() {
        assert_eq!(item["attempts"], 1);
        assert_eq!(item["card"]["state"], "unassigned");
    }
}

/// A password sprayer sending to two servers of one PostgreSQL database at once gets no more
/// guesses than one sending to one server in turn: the lockout is counted in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockout_holds_across_two_servers_on_postgres() {
    let Some(db) = postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&db).await;
    let config_a = setup(dir.path(), &database_url, &[("desk-a", 0, 0)], "a");
    let config_b = setup(dir.path(), &database_url, &[("desk-b", 0, 0)], "b");
    add_operator(&config_a);
    let (a, b) = (Server::start(&config_a), Server::start(&config_b));
    let http = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..24 {
        let url = format!(
            "{}/api/v1/auth/login",
            if i % 2 == 0 { &a.base } else { &b.base }
        );
        let http = http.clone();
        set.spawn(async move {
            http.post(url)
                .json(&json!({"username": "desk", "password": format!("guess {i}")}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = set.join_all().await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        24 - checked,
        "{statuses:?}"
    );
    for server in [&a, &b] {
        let right = http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({"username": "desk", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

/// Two server processes on one SQLite file: races between them are settled by the database
/// (its write lock and the conditional updates), not by either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_sqlite_file_settle_races() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.db").display()
    );
    let config_a = setup(dir.path(), &database_url, &[("desk-a", 0, 0)], "a");
    let config_b = setup(dir.path(), &database_url, &[("desk-b", 0, 0)], "b");
    add_operator(&config_a);
    let (a, b) = (Server::start(&config_a), Server::start(&config_b));
    let (on_a, on_b) = (Client::login(&a.base).await, Client::login(&b.base).await);
    let (order, cards) = on_a.order_of_new_cards(12).await;
    on_a.post(&format!("/api/v1/batch-orders/{order}/next"), json!({}))
        .await;
    let done = on_b.wait_for(&order, |o| o["state"] == "produced").await;
    assert_eq!(done["counts"]["produced"], 12, "{done}");
    on_b.post(&format!("/api/v1/batch-orders/{order}/complete"), json!({}))
        .await;

    // Two officers at two servers assign a card each to the same person at once; a person may
    // hold one temporary card.
    for (round, pair) in cards.chunks(2).take(4).enumerate() {
        let person = on_a
            .post(
                "/api/v1/persons",
                json!({"employee_number": format!("E-R{round}"), "given_name": "Ann", "family_name": "Race"}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = json!({ "person": person });
        let (path_a, path_b) = (
            format!("/api/v1/cards/{}/assign", pair[0]),
            format!("/api/v1/cards/{}/assign", pair[1]),
        );
        let (first, second) = tokio::join!(
            on_a.call(reqwest::Method::POST, &path_a, Some(body.clone())),
            on_b.call(reqwest::Method::POST, &path_b, Some(body.clone())),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {first:?} {second:?}"
        );
    }

    // Two locks of one card at two servers: one locks it, the other finds it locked.
    for card in &cards[8..12] {
        let path = format!("/api/v1/cards/{card}/lock");
        let (first, second) = tokio::join!(
            on_a.call(reqwest::Method::POST, &path, Some(json!({}))),
            on_b.call(reqwest::Method::POST, &path, Some(json!({}))),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{card}");
        assert_eq!(
            on_b.get(&format!("/api/v1/cards/{card}")).await["state"],
            "locked"
        );
    }
}
