//! The issue's load against the real binary: a policy-admin's heavy layout, and a
//! registration-officer asking for 16 previews at once every 6 seconds, while a 3-card batch
//! order of the shipped template is produced. Before, previews took every render slot (the
//! order failed 3/3 with "renderer is busy") and 2 GiB; now production has room of its own, the
//! order is produced whole, and the server stays well under 1 GiB.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use cardwright_cardsdk::limits::MAX_PATH_SEGMENTS;

use crate::helpers::{fresh_database, Db, PASSWORD};
use crate::on_both_databases;
use crate::server_processes::{Client, Server};

on_both_databases!(previews_under_load_never_hold_up_production);

/// A path of `segments` segments in `<defs>`, drawn by 100 `<use>` elements. With 128,700
/// segments it is the issue's layout (260 KB).
pub(crate) fn copied_path(segments: usize) -> String {
    let mut copies = String::new();
    for i in 0..100 {
        let _ = write!(
            copies,
            r##"<use href="#p" x="{}" y="{}"/>"##,
            i % 10 * 8,
            i / 10 * 5
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540"><defs><path id="p" d="M10 10{}" fill="none" stroke="#1d2b45" stroke-width="0.5"/></defs>{copies}<text x="40" y="500" font-size="40">{{{{serial}}}}</text></svg>"##,
        "h1v1".repeat(segments / 2)
    )
}

/// The issue's layout: legal before the limits on copies, refused by them now.
pub(crate) fn issue_layout() -> String {
    copied_path(128_700)
}

/// Writes a configuration with one simulated station that spools each card.
fn config(dir: &Path, database_url: &str) -> PathBuf {
    let path = dir.join("cardwright.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{database_url}\"\nstation_poll_ms = 20\n\n\
             [[stations]]\nname = \"desk-1\"\nprinter = {{ kind = \"simulated\", fail_every = 0, delay_ms = 0 }}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// Adds an operator with one role through the command line.
fn add_operator(config: &Path, name: &str, role: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args([
            "operator",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--config",
        ])
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

/// The server's peak resident memory so far.
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// Requests `amount` cards of `template` and returns their ids.
async fn request(officer: &Client, template: &str, amount: i64) -> Vec<String> {
    let cards = officer
        .post(
            "/api/v1/temporary-cards",
            json!({"template": template, "amount": amount}),
        )
        .await;
    cards["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A bearer token for `username`.
async fn login(http: &reqwest::Client, base: &str, username: &str) -> String {
    let answer: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().expect("token").to_owned()
}

/// One preview's answer: its status, and the `Retry-After` and message of a refusal.
struct Answer {
    path: String,
    status: StatusCode,
    retry_after: Option<String>,
    message: String,
}

async fn preview(http: reqwest::Client, base: String, token: String, path: String) -> Answer {
    let answer = http
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: the server must answer: {e}"));
    let status = answer.status();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = answer.bytes().await.unwrap();
    let message = if status == StatusCode::OK {
        assert!(body.starts_with(b"\x89PNG"), "{path}");
        String::new()
    } else {
        let error: Value = serde_json::from_slice(&body).unwrap();
        error["error"]["message"].as_str().unwrap().to_owned()
    };
    Answer {
        path,
        status,
        retry_after,
        message,
    }
}

/// Uploads the heaviest copied path that passes the upload's checks on this machine: at the
/// segment limit, or, where rendering it took longer than a card may, lighter ones.
async fn upload_heaviest(policy: &Client) -> String {
    // 101 copies (the path and its 100 uses), the text's outlines and a margin stay under it.
    let mut segments = MAX_PATH_SEGMENTS / 101 - 20;
    for _ in 0..3 {
        let (status, body) = policy
            .call(
                reqwest::Method::POST,
                "/api/v1/card-templates",
                Some(json!({"name": "Heavy", "serial_prefix": "HVY-", "front_svg": copied_path(segments)})),
            )
            .await;
        if status == StatusCode::CREATED {
            return body["id"].as_str().unwrap().to_owned();
        }
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY
                && message.starts_with("rendering this layout took"),
            "{status} {body}"
        );
        segments /= 2;
    }
    panic!("no heavy layout passes the upload");
}

/// The server, the templates and cards of the scene, and the operators.
struct Scene {
    server: Server,
    producer: Client,
    /// The officer's bearer token, for the previews sent at once.
    officer: String,
    http: reqwest::Client,
    heavy: String,
    legacy: String,
    legacy_cards: Vec<String>,
    heavy_cards: Vec<String>,
    /// A batch order of three cards of the shipped template, not started.
    order: String,
}

async fn scene(dir: &Path, database_url: &str) -> Scene {
    let config = config(dir, database_url);
    for (name, role) in [
        ("policy", "policy-admin"),
        ("officer", "registration-officer"),
        ("producer", "production-admin"),
    ] {
        add_operator(&config, name, role);
    }
    let server = Server::start_with(
        &config,
        &[("CARDWRIGHT_LOG", "warn".as_ref())],
        &dir.join("server.log"),
    );
    let policy = Client::login_as(&server.base, "policy").await;
    let officer = Client::login_as(&server.base, "officer").await;
    let producer = Client::login_as(&server.base, "producer").await;
    let http = reqwest::Client::new();
    let token = login(&http, &server.base, "officer").await;

    let heavy = upload_heaviest(&policy).await;
    let database = if database_url.is_empty() {
        cardwright_storage::Store::sqlite_url(&dir.join("data/cardwright.db"))
    } else {
        database_url.to_owned()
    };
    let legacy = store_legacy(&policy, &database).await;
    let shipped = request(&officer, "Temporary card", 3).await;
    let order = producer
        .post(
            "/api/v1/batch-orders",
            json!({"process": "TempCardsBoProcIssueMultiple", "cards": shipped}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Scene {
        heavy_cards: request(&officer, "Heavy", 15).await,
        legacy_cards: request(&officer, "Legacy", 2).await,
        server,
        producer,
        officer: token,
        http,
        heavy,
        legacy,
        order,
    }
}

/// The issue's layout, refused at upload, stored as a template saved before the limits on
/// copies would be.
async fn store_legacy(policy: &Client, database: &str) -> String {
    let (status, refused) = policy
        .call(
            reqwest::Method::POST,
            "/api/v1/card-templates",
            Some(json!({"name": "Legacy", "serial_prefix": "LEG-", "front_svg": issue_layout()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("path segments"), "{message}");
    let legacy = policy
        .post(
            "/api/v1/card-templates",
            json!({"name": "Legacy", "serial_prefix": "LEG-"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sql(
        database,
        &format!(
            "UPDATE card_templates SET front_svg = '{}' WHERE id = '{legacy}'",
            issue_layout()
        ),
    )
    .await;
    legacy
}

/// Sixteen previews at once, every six seconds, three times: the heavy and the legacy
/// template, and cards of both, other cards of the heavy template each time so that those are
/// rendered anew. The order is started while the first ones render.
async fn bursts(scene: &Scene) -> Vec<Answer> {
    let mut answers = Vec::new();
    for round in 0..3_usize {
        let started = Instant::now();
        let (heavy, legacy) = (&scene.heavy, &scene.legacy);
        let mut paths = vec![
            format!("/api/v1/card-templates/{heavy}/preview?side=front"),
            format!("/api/v1/card-templates/{heavy}/preview?side=front"),
            format!("/api/v1/card-templates/{heavy}/preview?side=back"),
            format!("/api/v1/card-templates/{legacy}/preview?side=front"),
            format!("/api/v1/card-templates/{legacy}/preview?side=front"),
            format!(
                "/api/v1/cards/{}/preview?side=front",
                scene.legacy_cards[round % 2]
            ),
        ];
        for card in scene.heavy_cards.iter().skip(round * 5).take(5) {
            paths.push(format!("/api/v1/cards/{card}/preview?side=front"));
            paths.push(format!("/api/v1/cards/{card}/preview?side=front"));
        }
        assert_eq!(paths.len(), 16);
        let mut burst = tokio::task::JoinSet::new();
        for path in paths {
            burst.spawn(preview(
                scene.http.clone(),
                scene.server.base.clone(),
                scene.officer.clone(),
                path,
            ));
        }
        if round == 0 {
            scene
                .producer
                .post(
                    &format!("/api/v1/batch-orders/{}/next", scene.order),
                    json!({}),
                )
                .await;
        }
        answers.extend(burst.join_all().await);
        if round < 2 {
            tokio::time::sleep_until((started + Duration::from_secs(6)).into()).await;
        }
    }
    answers
}

/// Every preview is answered: a picture, a refusal of the legacy layout naming its limit, a
/// render stopped at its budget, or "not now" with when to ask again; and one operator's
/// sixteen at once are over their limit.
fn check(scene: &Scene, answers: &[Answer]) {
    let legacy = |path: &str| {
        path.contains(&scene.legacy) || scene.legacy_cards.iter().any(|c| path.contains(c))
    };
    for Answer {
        path,
        status,
        retry_after,
        message,
    } in answers
    {
        match *status {
            StatusCode::OK => assert!(!legacy(path), "{path}"),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
                assert!(secs >= 1, "{path}");
                assert!(message.contains("try again in"), "{path}: {message}");
            }
            StatusCode::UNPROCESSABLE_ENTITY if legacy(path) => {
                assert!(message.contains("path segments"), "{path}: {message}");
            }
            // On a loaded machine a render of the heaviest layout may run out of its budget:
            // it stops and says so.
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert!(
                    message.contains("took longer than 5 s"),
                    "{path}: {message}"
                );
            }
            other => panic!("{path}: {other} {message}"),
        }
    }
    assert!(
        answers
            .iter()
            .any(|a| a.status == StatusCode::TOO_MANY_REQUESTS),
        "sixteen at once are over one operator's limit"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.path.contains(&scene.heavy) && a.status == StatusCode::OK),
        "the heavy template is previewed"
    );
}

async fn previews_under_load_never_hold_up_production(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = fresh_database(&db).await;
    let scene = scene(dir.path(), &database_url).await;
    let answers = bursts(&scene).await;
    let done = scene
        .producer
        .wait_for(&scene.order, |o| o["state"] == "produced")
        .await;
    assert_eq!(
        done["counts"]["produced"], 3,
        "every card of the order is produced: {done}"
    );
    check(&scene, &answers);
    // The legacy layout is refused at once, naming the limit, when asked for on its own.
    let legacy = preview(
        scene.http.clone(),
        scene.server.base.clone(),
        scene.officer.clone(),
        format!("/api/v1/card-templates/{}/preview?side=front", scene.legacy),
    )
    .await;
    assert_eq!(legacy.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        legacy.message.contains("path segments"),
        "{}",
        legacy.message
    );
    let peak = peak_resident_bytes(scene.server.child.id());
    assert!(
        peak < 1024 * 1024 * 1024,
        "the server's memory peaked at {} MiB",
        peak / (1024 * 1024)
    );
}

/// Runs SQL on the server's database directly.
async fn sql(url: &str, statement: &str) {
    use sqlx::{Connection as _, Executor as _};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    conn.execute(statement).await.unwrap();
    conn.close().await.ok();
}
