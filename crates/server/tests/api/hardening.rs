//! What strangers and hostile clients can do to a running server: grow its metrics, read cached
//! answers, smuggle other media types as JSON, send bodies at and past their limits, reset
//! connections, forge log lines, hide characters in names and other free text, and what files it
//! leaves readable to other local users.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Db, PASSWORD};
use crate::on_both_databases;
use crate::server_processes::Server;

on_both_databases!(
    metrics_need_a_token_and_keep_a_fixed_label_set,
    answers_are_not_cached_or_sniffed_and_cookies_over_https_are_secure,
    json_bodies_must_be_sent_as_application_json,
    an_unread_request_body_does_not_reset_the_connection,
    names_with_hidden_characters_are_refused,
    free_text_with_control_or_bidirectional_characters_is_refused_not_trimmed,
    the_bearer_scheme_is_read_in_any_case,
    request_bodies_are_taken_up_to_their_limit_and_refused_past_it,
    a_body_announced_too_large_is_refused_before_it_is_sent,
);

const METRICS_TOKEN: &str = "0123456789abcdef0123456789abcdef-scraper";

async fn metrics_need_a_token_and_keep_a_fixed_label_set(db: Db) {
    let app = spawn_app_with(db, |c| c.metrics_token = METRICS_TOKEN.into()).await;
    let metrics = |token: Option<&str>| {
        let mut req = app.client.get(format!("{}/metrics", app.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let stranger = metrics(None).await.unwrap();
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    let body = stranger.text().await.unwrap();
    assert!(!body.contains("cardwright_cards"), "{body}");
    assert_eq!(
        metrics(Some("not-the-token")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Requests with made-up methods of every length fold into one label.
    for i in 0..200 {
        let method = Method::from_bytes(format!("X{}{i}", "Y".repeat(2000)).as_bytes()).unwrap();
        let res = app
            .client
            .request(method, format!("{}/api/v1/cards", app.base))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let scraped = metrics(Some(METRICS_TOKEN)).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains("YYYY"), "a request's method became a label");
    assert!(
        text.len() < 64 * 1024,
        "metrics grew to {} bytes",
        text.len()
    );
    assert!(text.contains("cardwright_cards{state=\"requested\"}"));
    for line in text.lines().filter(|l| l.contains("method=")) {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(
            ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other"].contains(&method),
            "{line}"
        );
    }
    // An operator may look with their own token.
    assert_eq!(
        metrics(Some(&app.auditor)).await.unwrap().status(),
        StatusCode::OK
    );
}

async fn answers_are_not_cached_or_sniffed_and_cookies_over_https_are_secure(db: Db) {
    let app = spawn_app(db).await;
    for (path, token) in [
        ("/api/v1/cards", Some(app.officer.as_str())),
        ("/api/v1/cards", None),
        ("/login", None),
    ] {
        let mut req = app.client.get(format!("{}{path}", app.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        assert_eq!(
            res.headers().get(CACHE_CONTROL).unwrap(),
            "no-store",
            "{path}"
        );
        assert_eq!(
            res.headers().get(X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff",
            "{path}"
        );
    }
    let cookie = |https: bool| {
        let mut req = app.client.get(format!("{}/login", app.base));
        if https {
            req = req.header("X-Forwarded-Proto", "https");
        }
        async move {
            let res = req.send().await.unwrap();
            res.headers()
                .get_all(SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let plain = cookie(false).await;
    assert!(!plain.is_empty());
    assert!(plain.iter().all(|c| !c.contains("Secure")), "{plain:?}");
    let secure = cookie(true).await;
    assert!(!secure.is_empty());
    assert!(
        secure
            .iter()
            .all(|c| c.ends_with("; Secure") && c.contains("HttpOnly")),
        "{secure:?}"
    );
}

async fn json_bodies_must_be_sent_as_application_json(db: Db) {
    let app = spawn_app(db).await;
    let send = |content_type: &'static str| {
        app.client
            .post(format!("{}/api/v1/temporary-cards", app.base))
            .bearer_auth(&app.officer)
            .header(CONTENT_TYPE, content_type)
            .body(r#"{"template":"Temporary card","amount":1}"#)
            .send()
    };
    for refused in [
        "application/vnd.evil+json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let res = send(refused).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{refused}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    let cards = app.get("/api/v1/cards", &app.officer).await;
    assert_eq!(
        cards.body["cards"].as_array().unwrap().len(),
        0,
        "nothing was requested"
    );
    let ok = send("application/json; charset=utf-8").await.unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
}

/// Reads one HTTP/1.1 answer with a `Content-Length` from `stream`: its status code.
fn read_answer(stream: &mut TcpStream) -> std::io::Result<u16> {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        received.push(byte[0]);
        if received.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(head[9..12].parse().unwrap())
}

/// A client that sends a body to a route that needs none (`{}` to Complete order), in two
/// writes as many HTTP libraries do, keeps its connection: the server reads the body before it
/// answers instead of closing the connection with the body unread (which the client sees as a
/// reset).
async fn an_unread_request_body_does_not_reset_the_connection(db: Db) {
    let app = spawn_app(db).await;
    let card = app.request_cards(1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app.order(&[card]).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let token = app.producer.clone();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        write!(
            stream,
            "POST /api/v1/batch-orders/{id}/complete HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        )
        .unwrap();
        // Until the body is sent, the server must wait for it rather than answer and hang up.
        let mut early = [0u8; 1];
        match stream.read(&mut early) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            other => panic!("the server answered before reading the body: {other:?}"),
        }
        stream.write_all(b"{}").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let status = read_answer(&mut stream).expect("the answer arrives whole");
        assert!(status == 200 || status == 409, "{status}");
        // The same connection serves the next request.
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        )
        .unwrap();
        assert_eq!(read_answer(&mut stream).expect("kept alive"), 200);
    })
    .await
    .unwrap();
}

async fn names_with_hidden_characters_are_refused(db: Db) {
    let app = spawn_app(db).await;
    for (field, value) in [
        ("given_name", "Ann\u{202E}eL"),
        ("given_name", "Jo\u{200B}hn"),
        ("family_name", "\u{FEFF}Lee"),
        ("family_name", "Lee\u{2028}Admin"),
    ] {
        let mut person = json!({
            "employee_number": "E-7001",
            "given_name": "Ann",
            "family_name": "Lee",
        });
        person[field] = json!(value);
        let answer = app.post("/api/v1/persons", &app.officer, person).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{value:?}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(field) && message.contains("invisible formatting"),
            "{message}"
        );
    }
    let persons = app.get("/api/v1/persons?q=E-7001", &app.officer).await;
    assert_eq!(
        persons.body["persons"].as_array().unwrap().len(),
        0,
        "{persons:?}"
    );
    let ok = app
        .post(
            "/api/v1/persons",
            &app.officer,
            json!({"employee_number": "E-7001", "given_name": "Åsa", "family_name": "O'Brien"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok:?}");
}

/// Characters a free text may not hold, at its start, in it and at its end: control characters
/// (a vertical tab, which `str::trim` would have removed from either end) and the invisible
/// formatting ones (bidirectional overrides, embeddings, isolates and marks).
const REFUSED_TEXTS: [&str; 8] = [
    "\u{b}front desk",
    "front desk\u{b}",
    "\tfront desk",
    "front \u{202E}ksed",
    "\u{202A}front desk",
    "front desk\u{2069}",
    "\u{200F}front desk",
    "front\u{061C} desk",
];

/// Checks a refusal of free text: 422, and a message that names the field and the kind of
/// character.
fn assert_text_refused(answer: &crate::helpers::Answer, field: &str, value: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{field} = {value:?}: {answer:?}"
    );
    assert_eq!(answer.body["error"]["code"], "unprocessable", "{answer:?}");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{field} may not contain "))
            && (message.contains("control characters")
                || message.contains("invisible formatting characters")),
        "{field} = {value:?}: {message}"
    );
}

/// Every free-text field of the API follows one rule: a control or invisible formatting
/// character anywhere in it is refused with 422 naming the field, never trimmed away; plain
/// spaces around the text are trimmed.
async fn free_text_with_control_or_bidirectional_characters_is_refused_not_trimmed(db: Db) {
    let app = spawn_app(db).await;
    let card = app.unassigned_card().await;
    for value in REFUSED_TEXTS {
        let station = app
            .post(
                "/api/v1/stations",
                &app.producer,
                json!({"name": "desk-9", "description": value}),
            )
            .await;
        assert_text_refused(&station, "description", value);
        for field in ["given_name", "family_name"] {
            let mut person =
                json!({"employee_number": "E-7002", "given_name": "Ann", "family_name": "Lee"});
            person[field] = json!(value);
            let answer = app.post("/api/v1/persons", &app.officer, person).await;
            assert_text_refused(&answer, field, value);
        }
        for (field, body) in [
            ("name", json!({"name": value, "serial_prefix": "GST-"})),
            (
                "description",
                json!({"name": "Guest", "serial_prefix": "GST-", "description": value}),
            ),
        ] {
            let answer = app.post("/api/v1/card-templates", &app.policy, body).await;
            assert_text_refused(&answer, field, value);
        }
        let lock = app
            .post(
                &format!("/api/v1/cards/{card}/lock"),
                &app.officer,
                json!({"reason": "other", "comment": value}),
            )
            .await;
        assert_text_refused(&lock, "comment", value);
        let mail = app
            .call(
                Method::PUT,
                "/api/v1/mail-templates/assigned/en",
                Some(&app.policy),
                Some(json!({"subject": value, "body": "Hello {{holder}}"})),
            )
            .await;
        assert_text_refused(&mail, "subject", value);
        let url = format!("https://siem.example.com/{value}");
        let webhook = app
            .post(
                "/api/v1/webhooks",
                &app.policy,
                json!({"url": url, "events": ["card.locked"]}),
            )
            .await;
        assert_text_refused(&webhook, "url", &url);
    }
    // Nothing refused was kept.
    let stations = app.get("/api/v1/stations", &app.producer).await;
    assert_eq!(stations.body["stations"], json!([]), "{stations:?}");
    let templates = app.get("/api/v1/card-templates", &app.policy).await;
    assert_eq!(templates.body["templates"].as_array().unwrap().len(), 1);
    assert_eq!(app.card(&card).await["state"], "unassigned");
    let webhooks = app.get("/api/v1/webhooks", &app.policy).await;
    assert_eq!(webhooks.body["webhooks"], json!([]), "{webhooks:?}");

    // Plain spaces around a text are trimmed; a comment keeps the lines inside it.
    let station = app
        .post(
            "/api/v1/stations",
            &app.producer,
            json!({"name": "desk-9", "description": " \u{a0}front desk, hall B  "}),
        )
        .await;
    assert_eq!(station.status, StatusCode::CREATED, "{station:?}");
    let station = app.get("/api/v1/stations/desk-9", &app.producer).await;
    assert_eq!(station.body["description"], "front desk, hall B");
    let lock = app
        .post(
            &format!("/api/v1/cards/{card}/lock"),
            &app.officer,
            json!({"reason": "other", "comment": "left on the train\r\nat 9 "}),
        )
        .await;
    assert_eq!(lock.status, StatusCode::OK, "{lock:?}");
    let history = app.card(&card).await["history"].clone();
    let locked = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["new_state"] == "locked")
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(
        locked["details"]["comment"], "left on the train\r\nat 9",
        "{locked}"
    );
}

/// The authentication scheme's name is not case-sensitive (RFC 9110 section 11.1): the API, the
/// logout and the metrics read `bearer` and `BEARER` as `Bearer`.
async fn the_bearer_scheme_is_read_in_any_case(db: Db) {
    let app = spawn_app_with(db, |c| c.metrics_token = METRICS_TOKEN.into()).await;
    let get = |path: &str, authorization: String| {
        app.client
            .get(format!("{}{path}", app.base))
            .header(AUTHORIZATION, authorization)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let cards = get("/api/v1/cards", format!("{scheme} {}", app.officer))
            .await
            .unwrap();
        assert_eq!(cards.status(), StatusCode::OK, "{scheme}");
        let scraped = get("/metrics", format!("{scheme} {METRICS_TOKEN}"))
            .await
            .unwrap();
        assert_eq!(scraped.status(), StatusCode::OK, "{scheme}");
        let own = get("/metrics", format!("{scheme} {}", app.auditor))
            .await
            .unwrap();
        assert_eq!(own.status(), StatusCode::OK, "{scheme}");
    }
    for refused in [
        format!("Basic {}", app.officer),
        format!("Bearer{}", app.officer),
        "bearer ".to_owned(),
    ] {
        let cards = get("/api/v1/cards", refused.clone()).await.unwrap();
        assert_eq!(cards.status(), StatusCode::UNAUTHORIZED, "{refused}");
    }
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "officer", "password": PASSWORD})),
        )
        .await;
    let token = login.body["token"].as_str().unwrap().to_owned();
    let logout = app
        .client
        .post(format!("{}/api/v1/auth/logout", app.base))
        .header(AUTHORIZATION, format!("BEARER {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = get("/api/v1/cards", format!("bearer {token}"))
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

/// A route with a body limit, and what it answers to a body of exactly the limit.
struct LimitedRoute<'a> {
    method: Method,
    path: &'a str,
    token: &'a str,
    media: &'a str,
    limit: usize,
    /// A body of the given length.
    body: fn(usize) -> Vec<u8>,
    at_limit: StatusCode,
}

/// A CSV file of the given length: a header and one row with a long family name.
fn csv_of_length(length: usize) -> Vec<u8> {
    let mut body = b"employee_number,given_name,family_name\nE-1,Ann,".to_vec();
    body.resize(length, b'x');
    body
}

/// Bytes of the given length that are no image.
fn no_image_of_length(length: usize) -> Vec<u8> {
    vec![0xFF; length]
}

/// Each body limit holds at its edge: a body of exactly the limit is read and reaches the
/// handler (which answers for itself, here mostly refusing what it was sent), one byte more is
/// 413. The requests are written by hand, so a reset connection could not pass for a refusal.
async fn request_bodies_are_taken_up_to_their_limit_and_refused_past_it(db: Db) {
    use cardwright::state::{BODY_LIMIT, PHOTO_BODY_LIMIT};
    let app = spawn_app(db).await;
    let person = app.person("E-7003").await;
    let photo = format!("/api/v1/persons/{person}/photo");
    let routes = [
        LimitedRoute {
            method: Method::POST,
            path: "/api/v1/card-templates",
            token: &app.policy,
            media: "application/json",
            limit: BODY_LIMIT,
            body: crate::helpers::template_json,
            at_limit: StatusCode::UNPROCESSABLE_ENTITY,
        },
        LimitedRoute {
            method: Method::POST,
            path: "/api/v1/persons/import?dry_run=true",
            token: &app.officer,
            media: "text/csv",
            limit: BODY_LIMIT,
            body: csv_of_length,
            at_limit: StatusCode::OK,
        },
        LimitedRoute {
            method: Method::PUT,
            path: &photo,
            token: &app.officer,
            media: "image/jpeg",
            limit: PHOTO_BODY_LIMIT,
            body: no_image_of_length,
            at_limit: StatusCode::UNPROCESSABLE_ENTITY,
        },
    ];
    for route in routes {
        let LimitedRoute {
            method,
            path,
            token,
            media,
            limit,
            ..
        } = route;
        let answer = app
            .send_raw(
                method.clone(),
                path,
                token,
                media,
                (route.body)(limit),
                false,
            )
            .await;
        assert_eq!(
            answer.status, route.at_limit,
            "{method} {path} with exactly {limit} bytes: {}",
            answer.head
        );
        app.send_too_large(method, path, token, media, (route.body)(limit + 1))
            .await;
    }
    let found = app.get("/api/v1/persons?q=E-7003", &app.officer).await;
    assert_eq!(
        found.body["persons"].as_array().unwrap().len(),
        1,
        "{found:?}"
    );
    let photo = app.get(&photo, &app.officer).await;
    assert_eq!(photo.status, StatusCode::NOT_FOUND, "no photo was set");
}

/// A client that asks for `100 Continue` is told 413 before it sends a body over the limit, and
/// is asked for a body within it.
async fn a_body_announced_too_large_is_refused_before_it_is_sent(db: Db) {
    use cardwright::state::{BODY_LIMIT, PHOTO_BODY_LIMIT};
    let app = spawn_app(db).await;
    let person = app.person("E-7004").await;
    let photo = format!("/api/v1/persons/{person}/photo");
    let refused = app
        .send_raw(
            Method::PUT,
            &photo,
            &app.officer,
            "image/jpeg",
            vec![0xFF; 50 * 1024 * 1024],
            true,
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.head
    );
    assert!(!refused.continued, "the body was asked for: {refused:?}");
    let refused = app
        .send_raw(
            Method::POST,
            "/api/v1/card-templates",
            &app.policy,
            "application/json",
            crate::helpers::template_json(BODY_LIMIT + 1),
            true,
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.head
    );
    assert!(!refused.continued, "the body was asked for: {refused:?}");
    let taken = app
        .send_raw(
            Method::PUT,
            &photo,
            &app.officer,
            "image/jpeg",
            vec![0xFF; PHOTO_BODY_LIMIT],
            true,
        )
        .await;
    assert!(taken.continued, "{taken:?}");
    assert_eq!(
        taken.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        taken.head
    );
}

/// The real binary on the embedded default in `dir`, logging at `level` to the file it returns.
fn embedded_server(dir: &std::path::Path, level: &str) -> (Server, std::path::PathBuf) {
    let config = dir.join("cardwright.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let server = Server::start_with(&config, &[("CARDWRIGHT_LOG", level.as_ref())], &log);
    (server, log)
}

/// A failed login's username is logged escaped: a newline or a terminal escape sequence in it
/// cannot start a line of its own or reach an operator's terminal.
#[tokio::test]
async fn usernames_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = embedded_server(dir.path(), "info");
    let forged =
        "nobody\n2026-03-02T09:00:00.000000Z  INFO cardwright: login username=admin\u{1b}[2J";
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": forged, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("failed login"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-03-02T09:00:00")),
        "a forged line: {text}"
    );
}

/// The embedded default keeps its data folder and database to the server's user.
#[cfg(unix)]
#[test]
fn the_data_folder_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["--data-dir"])
        .arg(&data)
        .args([
            "operator",
            "add",
            "ann",
            "--role",
            "service-admin",
            "--password-stdin",
        ])
        .env_remove("CARDWRIGHT_CONFIG")
        .env_remove("CARDWRIGHT_DATABASE_URL")
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
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cardwright.db")), 0o600);
    assert_eq!(mode(&data.join("pki")), 0o700);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is readable by others",
                path.display()
            );
        }
    }
}

/// The server's peak resident memory so far, from `/proc`.
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// 120 logins at once (for 120 usernames, so the lockout does not cut them short) each need an
/// argon2id hash of about 19 MiB. Computed all at once they took the server to 3 GB, kept after
/// the burst; taking turns on two hashing threads it stays a few hundred MiB at most.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_logins_take_turns_at_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = embedded_server(dir.path(), "error");
    let client = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..120 {
        let client = client.clone();
        let url = format!("{}/api/v1/auth/login", server.base);
        set.spawn(async move {
            client
                .post(url)
                .json(&json!({"username": format!("sprayed-{i}"), "password": "Winter2026!"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = set.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let peak = peak_resident_bytes(server.child.id());
    assert!(
        peak < 400 * 1024 * 1024,
        "the server's memory peaked at {} MiB",
        peak / (1024 * 1024)
    );
}
