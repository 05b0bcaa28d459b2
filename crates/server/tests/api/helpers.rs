//! The test harness: a server on port 0 with a fresh database per test, a clock the test moves,
//! and logged-in operators for each role.

use cardwright_domain::temp_cards::processes;
use std::sync::Arc;

use cardwright::app::{self, Running};
use cardwright::config::Config;
use cardwright_cardsdk::SpoolPrinter;
use cardwright_domain::temp_cards::OrderState;
use cardwright_domain::{CardId, Role, Roles};
use cardwright_processes::temp_cards::issue_multiple;
use cardwright_processes::temp_cards::production::{self, Station};
use cardwright_processes::{auth, Actor, ManualClock};
use chrono::TimeZone;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor};

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite,
    /// The server URL from TEST_DATABASE_URL.
    Postgres(String),
}

/// PostgreSQL for this test, if TEST_DATABASE_URL is set; else the PostgreSQL variant is skipped
/// (a failure with CI=true).
pub fn postgres() -> Option<Db> {
    const INSTALL: &str = "run scripts/test, which uses the PostgreSQL at 127.0.0.1:5432, or set \
                           TEST_DATABASE_URL=postgres://USER@HOST/DB";
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            cardwright_testkit::require(&[cardwright_testkit::Part::Postgres(&url)], INSTALL)
                .then_some(Db::Postgres(url))
        }
        _ => {
            cardwright_testkit::skip("TEST_DATABASE_URL (a PostgreSQL server)", INSTALL);
            None
        }
    }
}

/// Whether poppler's `pdfinfo` and `pdftotext` are there to read PDFs; else the test is skipped.
pub fn have_poppler() -> bool {
    cardwright_testkit::require_programs(
        &["pdfinfo", "pdftotext"],
        "install Debian's poppler-utils (scripts/test does)",
    )
}

/// Whether `openssl` is there to check certificates; else the test is skipped.
pub fn have_openssl() -> bool {
    cardwright_testkit::require_programs(
        &["openssl"],
        "install Debian's openssl (scripts/test does)",
    )
}

/// Runs each named `async fn(Db)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::helpers::postgres() {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

pub const PASSWORD: &str = "correct horse battery";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    /// The database URL the server uses (with its own schema on PostgreSQL).
    pub database_url: String,
    /// Tokens of operators with exactly one role each, and of one with every role.
    pub officer: String,
    pub producer: String,
    pub auditor: String,
    pub policy: String,
    running: Option<Running>,
    _dir: tempfile::TempDir,
    _schema: Option<SchemaGuard>,
}

/// The shape of an answer a test looks at.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

/// The final answer to a request sent by hand ([`TestApp::send_raw`]).
#[derive(Debug)]
pub struct RawAnswer {
    pub status: StatusCode,
    /// Whether the server asked for the body with `100 Continue` first.
    pub continued: bool,
    /// The answer's head as received, for messages.
    pub head: String,
}

impl RawAnswer {
    fn new(head: &str, continued: bool) -> Self {
        Self {
            status: StatusCode::from_u16(status_of(head)).expect("a status code"),
            continued,
            head: head.to_owned(),
        }
    }
}

/// Reads one answer's head (up to the blank line) from `stream`, a byte at a time so that
/// nothing after it is taken.
fn read_head(stream: &mut std::net::TcpStream) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection ended after {:?}",
                    String::from_utf8_lossy(&received)
                ),
            ));
        }
        received.push(byte[0]);
        if received.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

/// The status code of an answer's head (`HTTP/1.1 413 Payload Too Large`).
fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"))
}

/// Drops a test's PostgreSQL schema when the test ends, passed or failed.
pub struct SchemaGuard {
    server_url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.server_url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test schema {}", self.schema);
        }
    }
}

/// A database of its own for one test: an empty URL (SQLite in the test's data folder), or the
/// URL of a fresh PostgreSQL schema and the guard that drops it.
pub async fn fresh_database(db: &Db) -> (String, Option<SchemaGuard>) {
    match db {
        Db::Sqlite => (String::new(), None),
        Db::Postgres(url) => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            conn.execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("create test schema");
            conn.close().await.ok();
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                format!("{url}{sep}options=-c%20search_path%3D{schema}"),
                Some(SchemaGuard {
                    server_url: url.clone(),
                    schema,
                }),
            )
        }
    }
}

/// Starts a server on a fresh database with the default configuration for tests.
pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// Starts a server on a fresh database after `adjust` has changed the test configuration.
pub async fn spawn_app_with(db: Db, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, schema) = fresh_database(&db).await;
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        database_url,
        expiry_interval_ms: 50,
        // Tests move the clock by days; tokens last a month so they outlive that.
        login: cardwright::config::LoginConfig {
            token_ttl_secs: 30 * 24 * 3600,
            ..cardwright::config::LoginConfig::default()
        },
        station_poll_ms: 20,
        notify: cardwright::config::NotifyConfig {
            interval_ms: 50,
            ..cardwright::config::NotifyConfig::default()
        },
        ..Config::default()
    };
    adjust(&mut config);
    let clock = Arc::new(ManualClock::new(
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let running = app::start(&config, clock.clone(), false)
        .await
        .expect("server starts");
    let base = format!("http://{}", running.addr);
    let ctx = running.ctx.clone();
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for (name, roles) in [
        ("officer", vec![Role::RegistrationOfficer]),
        ("producer", vec![Role::ProductionAdmin]),
        ("auditor", vec![Role::ServiceAdmin]),
        ("policy", vec![Role::PolicyAdmin]),
    ] {
        auth::add_operator(
            &ctx,
            &Actor::System("test"),
            name,
            roles.into_iter().collect::<Roles>(),
            PASSWORD,
        )
        .await
        .expect("add operator");
        let answer: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login answer");
        tokens.push(answer["token"].as_str().expect("token").to_owned());
    }
    let database_url = config.effective_database_url();
    TestApp {
        base,
        client,
        clock,
        config,
        database_url,
        policy: tokens.pop().unwrap(),
        auditor: tokens.pop().unwrap(),
        producer: tokens.pop().unwrap(),
        officer: tokens.pop().unwrap(),
        running: Some(running),
        _dir: dir,
        _schema: schema,
    }
}

impl TestApp {
    /// The server's process context, to drive its background work one step at a time.
    pub fn ctx(&self) -> &cardwright_processes::Context {
        &self.running.as_ref().expect("the server runs").ctx
    }

    /// Sends a request with an optional token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, body }
    }

    /// Sends a body one byte over its route's limit and checks that the server answers 413. The
    /// server has read the whole body by the time it knows it is too large, so it answers with
    /// nothing left unread on the connection: a reset or a refused connection is a failure, as is
    /// any other status.
    pub async fn send_too_large(
        &self,
        method: Method,
        path: &str,
        token: &str,
        media: &str,
        body: Vec<u8>,
    ) {
        let length = body.len();
        let answer = self
            .send_raw(method.clone(), path, token, media, body, false)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path} with {length} bytes: {}",
            answer.head
        );
    }

    /// Sends one request with a body over a connection of its own, written by hand, and reads
    /// the final answer's head. With `expect_continue`, the head asks for `100 Continue` and the
    /// body is sent only when the server asks for it; a final answer instead is returned with
    /// the body unsent. A body is otherwise written whole before the answer is read; should the
    /// server close the connection meanwhile, the answer it sent is still read. An answer that
    /// cannot be read (a reset, a refused connection) fails the test.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        media: &str,
        body: Vec<u8>,
        expect_continue: bool,
    ) -> RawAnswer {
        use std::io::Write as _;
        let addr = self.base.trim_start_matches("http://").to_owned();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {media}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if expect_continue {
            head.push_str("Expect: 100-continue\r\n");
        }
        head.push_str("\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&addr).expect("connect to the server");
            // A guard against a server that never answers, not a measure of how fast it is.
            stream
                .set_read_timeout(Some(std::time::Duration::from_mins(2)))
                .unwrap();
            stream
                .set_write_timeout(Some(std::time::Duration::from_mins(2)))
                .unwrap();
            stream.write_all(head.as_bytes()).expect("the head is sent");
            let mut continued = false;
            if expect_continue {
                let interim = read_head(&mut stream).expect("an answer to Expect: 100-continue");
                if status_of(&interim) != 100 {
                    return RawAnswer::new(&interim, false);
                }
                continued = true;
            }
            let sent = stream.write_all(&body).and_then(|()| stream.flush());
            let answer = read_head(&mut stream).unwrap_or_else(|e| {
                panic!("no answer could be read ({e}); sending the body: {sent:?}")
            });
            RawAnswer::new(&answer, continued)
        })
        .await
        .expect("the raw request ran")
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Requests `amount` temporary cards of the default template and returns them.
    pub async fn request_cards(&self, amount: i64) -> Vec<Value> {
        let answer = self
            .post(
                "/api/v1/temporary-cards",
                &self.officer,
                serde_json::json!({"template": "Temporary card", "amount": amount}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["cards"].as_array().expect("cards").clone()
    }

    pub async fn card(&self, id: &str) -> Value {
        let answer = self
            .get(&format!("/api/v1/cards/{id}"), &self.officer)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body
    }

    /// Creates an active person and returns its id.
    pub async fn person(&self, employee_number: &str) -> String {
        let answer = self
            .post(
                "/api/v1/persons",
                &self.officer,
                serde_json::json!({
                    "employee_number": employee_number,
                    "given_name": "Test",
                    "family_name": format!("Person {employee_number}"),
                    "email": format!("{}@example.com", employee_number.to_lowercase()),
                }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Runs SQL on the server's database directly (to stage states or tamper with data).
    pub async fn sql(&self, statement: &str) -> u64 {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.database_url)
            .await
            .expect("connect");
        let done = conn.execute(statement).await.expect("statement runs");
        conn.close().await.ok();
        done.rows_affected()
    }

    /// Produces a requested card the way production does: the card goes into a batch order of its
    /// own, Next queues it, a station with a spool printer prints it, and Complete order closes the
    /// order. The card ends `unassigned` and in no batch order.
    pub async fn produce(&self, id: &str) {
        let ctx = self.ctx();
        let producer = auth::authenticate(ctx, &self.producer)
            .await
            .expect("the production admin is logged in");
        let order = issue_multiple::create(
            ctx,
            &producer,
            processes::ISSUE_MULTIPLE.as_str(),
            &[CardId::parse(id).expect("a card id")],
        )
        .await
        .unwrap_or_else(|e| panic!("card {id} cannot be ordered: {e}"));
        let order = order.record.order.id;
        issue_multiple::next(ctx, &producer, order, None)
            .await
            .expect("Next queues the card");
        let spool = tempfile::tempdir().expect("spool folder");
        let station = Station {
            name: "test-helper".into(),
            printer: Arc::new(SpoolPrinter::new(spool.path())),
            encoder: None,
        };
        // The server's own stations work the same queue; whichever prints the card, the order
        // becomes produced.
        for _ in 0..400 {
            let view = issue_multiple::get(ctx, order).await.expect("the order");
            if view.record.order.state == OrderState::Produced {
                break;
            }
            if !production::produce_one(ctx, &station)
                .await
                .expect("the station produces")
            {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
        issue_multiple::complete(ctx, &producer, order)
            .await
            .expect("the order is produced and completes");
        let card = self.card(id).await;
        assert_eq!(
            card["state"], "unassigned",
            "card {id} was not produced: {card}"
        );
        assert_eq!(card["batch_order"], Value::Null, "{card}");
    }

    /// A requested card, produced into unassigned.
    pub async fn unassigned_card(&self) -> String {
        let card = self.request_cards(1).await.remove(0);
        let id = card["id"].as_str().unwrap().to_owned();
        self.produce(&id).await;
        id
    }

    /// Stops the server and keeps the database (for command-line checks).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// A station with the simulated printer.
pub fn simulated_station(
    name: &str,
    fail_every: u64,
    delay_ms: u64,
) -> cardwright::config::StationConfig {
    cardwright::config::StationConfig {
        name: name.into(),
        printer: cardwright::config::PrinterConfig::Simulated {
            fail_every,
            delay_ms,
            dir: None,
        },
        encoder: cardwright::config::EncoderConfig::None,
    }
}

impl TestApp {
    /// Reads a batch order until `done` holds for it (at most about ten seconds).
    pub async fn wait_for_order(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut order = Value::Null;
        for _ in 0..400 {
            let answer = self
                .get(&format!("/api/v1/batch-orders/{id}"), &self.producer)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            order = answer.body;
            if done(&order) {
                return order;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("batch order never reached the expected point: {order}");
    }

    /// Creates a batch order of `cards` as the production admin.
    pub async fn order(&self, cards: &[String]) -> Answer {
        self.post(
            "/api/v1/batch-orders",
            &self.producer,
            serde_json::json!({"process": "TempCardsBoProcIssueMultiple", "cards": cards}),
        )
        .await
    }
}

/// The process names of a card's history, oldest first.
pub fn history_processes(card: &Value) -> Vec<String> {
    card["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["process"].as_str().unwrap().to_owned())
        .collect()
}

/// A request body of exactly `length` bytes that creates a card template with a front layout of
/// almost that size (which, read whole, is refused as over the layout limit).
pub fn template_json(length: usize) -> Vec<u8> {
    let open = br#"{"name":"Big","serial_prefix":"BIG-","front_svg":""#;
    let close = br#""}"#;
    let mut body = open.to_vec();
    body.resize(length - close.len(), b'x');
    body.extend_from_slice(close);
    body
}

/// A loopback port free at the moment of asking, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
