//! Card layouts, print-ready PDFs, previews and IPP printers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{free_port, have_poppler, spawn_app, spawn_app_with, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    spooled_cards_are_id1_pdfs_with_their_serial,
    custom_layouts_are_printed_and_previewed,
    malicious_layouts_are_refused,
    hostile_layouts_neither_crash_nor_hold_the_server,
    a_preview_is_rendered_once_for_everyone_who_asks,
    previews_over_an_operators_limit_say_when_to_ask_again,
);

/// `pdfinfo` and `pdftotext` from poppler: (page size line, page count, text).
fn inspect_pdf(path: &Path) -> (String, String, String) {
    let info = Command::new("pdfinfo")
        .arg(path)
        .output()
        .expect("pdfinfo (poppler-utils) runs");
    assert!(
        info.status.success(),
        "pdfinfo failed on {}",
        path.display()
    );
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let line = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_owned()
    };
    let text = Command::new("pdftotext")
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(text.status.success());
    (
        line("Page size:"),
        line("Pages:"),
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[1..4], b"PNG", "not a PNG");
    (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    )
}

async fn bytes(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

/// Orders `cards`, presses Next and waits until the order is produced.
async fn produce(app: &TestApp, cards: &[String]) -> (String, Value) {
    let order = app.order(cards).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let id = order.body["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/batch-orders/{id}/next"),
        &app.producer,
        json!({}),
    )
    .await;
    let done = app.wait_for_order(&id, |o| o["state"] == "produced").await;
    (id, done)
}

fn ids(cards: &[Value]) -> Vec<String> {
    cards
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn spooled_cards_are_id1_pdfs_with_their_serial(db: Db) {
    if !have_poppler() {
        return;
    }
    let app = spawn_app(db).await;
    let cards = app.request_cards(3).await;
    let (order, done) = produce(&app, &ids(&cards)).await;
    assert_eq!(done["counts"]["produced"], 3, "{done}");
    let spool = app.config.data_dir.join("spool").join(&order);
    for card in &cards {
        let serial = card["serial"].as_str().unwrap();
        let pdf = spool.join(format!("{serial}-attempt1.pdf"));
        let (size, pages, text) = inspect_pdf(&pdf);
        // ID-1: 85.60 × 53.98 mm = 242.65 × 153.01 pt.
        assert!(size.contains("242.6") && size.contains("153.0"), "{size}");
        assert!(pages.ends_with(" 2"), "front and back: {pages}");
        assert!(text.contains(serial), "the serial is real text: {text}");
        assert!(text.contains("TEMPORARY"));
        let png = std::fs::read(spool.join(format!("{serial}-attempt1.png"))).unwrap();
        let (w, h) = png_size(&png);
        assert!(
            (f64::from(w) / f64::from(h) - 85.60 / 53.98).abs() < 0.01,
            "{w}×{h}"
        );
    }
    let id = cards[0]["id"].as_str().unwrap();
    for side in ["front", "back"] {
        let (status, png) = bytes(&app, &format!("/api/v1/cards/{id}/preview?side={side}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(png_size(&png), (640, 404));
    }
    let (status, _) = bytes(&app, &format!("/api/v1/cards/{id}/preview?side=top")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, png) = bytes(&app, "/api/v1/card-templates/Temporary%20card/preview").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(png_size(&png), (640, 404));
}

const CUSTOM_FRONT: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="85.6mm" height="53.98mm" viewBox="0 0 856 540">
  <rect width="856" height="540" fill="#f1f3f5"/>
  <text x="40" y="120" font-size="60" font-family="DejaVu Sans">GUEST PASS</text>
  <text x="40" y="260" font-size="50" font-family="DejaVu Sans">No. {{serial}}</text>
  <text x="40" y="360" font-size="40" font-family="DejaVu Sans">{{holder}}</text>
  <rect data-cardwright="qr" x="600" y="300" width="200" height="200"/>
  <rect data-cardwright="photo" x="600" y="40" width="200" height="240"/>
</svg>"##;

async fn custom_layouts_are_printed_and_previewed(db: Db) {
    if !have_poppler() {
        return;
    }
    let app = spawn_app(db).await;
    let created = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Guest", "serial_prefix": "GST-", "front_svg": CUSTOM_FRONT}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["custom_layout"], true);
    assert!(
        created.body["back_svg"]
            .as_str()
            .unwrap()
            .contains("return this card"),
        "the back stays the shipped one"
    );
    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Guest", "amount": 1}),
        )
        .await;
    let cards = cards.body["cards"].as_array().unwrap().clone();
    let (order, _) = produce(&app, &ids(&cards)).await;
    let pdf = app
        .config
        .data_dir
        .join("spool")
        .join(&order)
        .join("GST-000001-attempt1.pdf");
    let (_, _, text) = inspect_pdf(&pdf);
    assert!(
        text.contains("GUEST PASS") && text.contains("No. GST-000001"),
        "{text}"
    );
    let (status, png) = bytes(&app, "/api/v1/card-templates/Guest/preview?side=front").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(png_size(&png), (640, 404));
}

async fn malicious_layouts_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let svg = |body: &str| {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"856\" height=\"540\">{body}</svg>"
        )
    };
    let cases = [
        (svg("<image href=\"http://198.51.100.7/logo.png\" width=\"10\" height=\"10\"/>"), "outside the layout"),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE svg [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><svg xmlns=\"http://www.w3.org/2000/svg\"><text>&c;</text></svg>".to_owned(),
            "DOCTYPE",
        ),
        (svg("<script>fetch('/api/v1/audit')</script>"), "<script>"),
        (svg("<rect width=\"1\" height=\"1\" onclick=\"alert(1)\"/>"), "event handler"),
        (format!("<svg xmlns=\"http://www.w3.org/2000/svg\"><!--{}--></svg>", "x".repeat(300 * 1024)), "at most"),
    ];
    for (layout, expected) in &cases {
        let answer = app
            .post(
                "/api/v1/card-templates",
                &app.policy,
                json!({"name": "Bad", "serial_prefix": "BAD-", "front_svg": layout}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expected}: {answer:?}"
        );
        assert_eq!(answer.body["error"]["code"], "unprocessable");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    // An upload one byte over the body limit (2 MiB) is refused with 413.
    let huge = crate::helpers::template_json(cardwright::state::BODY_LIMIT + 1);
    app.send_too_large(
        Method::POST,
        "/api/v1/card-templates",
        &app.policy,
        "application/json",
        huge,
    )
    .await;
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    let list = app.get("/api/v1/card-templates", &app.policy).await;
    assert_eq!(
        list.body["templates"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    // Updating an existing template with a bad layout keeps the old one.
    let templates = list.body["templates"].as_array().unwrap();
    let id = templates[0]["id"].as_str().unwrap();
    let answer = app
        .call(
            Method::PUT,
            &format!("/api/v1/card-templates/{id}"),
            Some(&app.policy),
            Some(
                json!({"name": "Temporary card", "serial_prefix": "TMP-", "back_svg": cases[2].0}),
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let after = app
        .get(&format!("/api/v1/card-templates/{id}"), &app.policy)
        .await;
    assert_eq!(after.body["custom_layout"], false);
}

/// Whether `ippeveprinter` can run here: the program (and poppler, to read what it printed),
/// and the avahi daemon it registers with; else the test is skipped.
fn have_ippeveprinter() -> bool {
    let install = "install Debian's cups-ipp-utils, dbus, avahi-daemon and poppler-utils and start dbus-daemon --system and avahi-daemon (scripts/test does)";
    cardwright_testkit::require(
        &[
            cardwright_testkit::Part::Program("ippeveprinter", &["--version"]),
            cardwright_testkit::Part::Program("pdfinfo", &["-v"]),
            // The daemon it registers with runs.
            cardwright_testkit::Part::Succeeds("avahi-daemon", &["--check"]),
        ],
        install,
    )
}

/// `ippeveprinter` (Debian's cups-ipp-utils) on a loopback port, keeping every job's document.
struct IppEvePrinter {
    child: Child,
    spool: PathBuf,
}

impl IppEvePrinter {
    /// A printer that finishes each job as soon as it is received.
    fn start(port: u16, spool: &Path) -> Self {
        Self::start_with(port, spool, Path::new("/bin/true"))
    }

    /// A printer that runs `command` on each job's document: its exit status says whether the
    /// job completed or aborted, and the job is processing while it runs.
    fn start_with(port: u16, spool: &Path, command: &Path) -> Self {
        std::fs::create_dir_all(spool).unwrap();
        let mut printer = Self {
            child: Command::new("ippeveprinter")
            // `-k` keeps each job's document in the spool folder.
            .args(["-p", &port.to_string(), "-k", "-f", "application/pdf", "-c"])
            .arg(command)
            .arg("-d")
            .arg(spool)
            .arg(format!("Cardwright test {port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ippeveprinter (cups-ipp-utils) runs; it needs dbus-daemon --system and avahi-daemon"),
            spool: spool.to_owned(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return printer;
            }
            if let Ok(Some(status)) = printer.child.try_wait() {
                panic!("ippeveprinter exited with {status}; is avahi-daemon running?");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ippeveprinter did not listen on port {port}");
    }

    /// The documents the printer received.
    fn jobs(&self) -> usize {
        std::fs::read_dir(&self.spool).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
                .count()
        })
    }
}

impl Drop for IppEvePrinter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app whose one station prints to an IPP printer on `port`.
async fn ipp_app(port: u16, job_timeout_secs: u64) -> TestApp {
    spawn_app_with(Db::Sqlite, |c| {
        c.stations = vec![cardwright::config::StationConfig {
            name: "ipp-desk".into(),
            printer: cardwright::config::PrinterConfig::Ipp {
                uri: format!("ipp://127.0.0.1:{port}/ipp/print"),
                job_timeout_secs,
            },
            encoder: cardwright::config::EncoderConfig::None,
        }];
    })
    .await
}

/// A printer that reports an error (its print command fails) fails the card with the
/// printer's words, ready for Repeat production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipp_printer_error_fails_the_card() {
    if !have_ippeveprinter() {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let _printer =
        IppEvePrinter::start_with(port, &dir.path().join("spool"), Path::new("/bin/false"));
    let app = ipp_app(port, 30).await;
    let cards = app.request_cards(1).await;
    let (_, done) = produce(&app, &ids(&cards)).await;
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    let error = done["items"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("printer error: job ") && error.contains("aborted"),
        "{error}"
    );
    assert_eq!(
        app.card(cards[0]["id"].as_str().unwrap()).await["state"],
        "failed"
    );
}

/// A printer stopped in the middle of a job (it stops answering at all) fails the card when the
/// job timeout runs out, and the station goes on with the next card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_stopped_mid_job_fails_the_card_at_the_job_timeout() {
    if !have_ippeveprinter() {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // The job stays processing while its command runs.
    let slow = dir.path().join("slow-print");
    std::fs::write(&slow, "#!/bin/sh\nsleep 60\n").unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let printer = IppEvePrinter::start_with(port, &dir.path().join("spool"), &slow);
    let app = ipp_app(port, 3).await;
    let cards = app.request_cards(1).await;
    let order = app.order(&ids(&cards)).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/batch-orders/{id}/next"),
        &app.producer,
        json!({}),
    )
    .await;
    // Once the printer has the job, it stops answering (SIGSTOP).
    for _ in 0..300 {
        if printer.jobs() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(printer.jobs(), 1, "the printer received the job");
    let stopped = Command::new("kill")
        .args(["-STOP", &printer.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let done = app.wait_for_order(&id, |o| o["state"] == "produced").await;
    let _ = Command::new("kill")
        .args(["-CONT", &printer.child.id().to_string()])
        .status();
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    let error = done["items"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("within 3 s") && error.contains("stopped answering"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipp_printer_down_then_back() {
    if !have_ippeveprinter() {
        return;
    }
    let port = free_port();
    let uri = format!("ipp://127.0.0.1:{port}/ipp/print");
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.stations = vec![cardwright::config::StationConfig {
            name: "ipp-desk".into(),
            printer: cardwright::config::PrinterConfig::Ipp {
                uri: uri.clone(),
                job_timeout_secs: 30,
            },
            encoder: cardwright::config::EncoderConfig::None,
        }];
    })
    .await;
    let cards = app.request_cards(3).await;
    let (order, done) = produce(&app, &ids(&cards)).await;
    assert_eq!(done["counts"]["failed"], 3, "the printer is down: {done}");
    for item in done["items"].as_array().unwrap() {
        let error = item["error"].as_str().unwrap();
        assert!(
            error.contains("cannot be reached") && error.contains(&uri),
            "{error}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let printer = IppEvePrinter::start(port, &dir.path().join("ipp-spool"));
    let repeat = app
        .post(
            &format!("/api/v1/batch-orders/{order}/repeat"),
            &app.producer,
            json!({"cards": ids(&cards)}),
        )
        .await;
    assert_eq!(repeat.status, StatusCode::OK, "{repeat:?}");
    let done = app
        .wait_for_order(&order, |o| o["state"] == "produced")
        .await;
    assert_eq!(done["counts"]["produced"], 3, "{done}");
    assert_eq!(printer.jobs(), 3, "one job per produced card");
    let first = std::fs::read_dir(&printer.spool)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "pdf"))
        .unwrap();
    let (size, _, text) = inspect_pdf(&first.path());
    assert!(size.contains("242.6"), "{size}");
    assert!(text.contains("TMP-00000"), "{text}");
}

fn hostile_fixture(name: &str) -> String {
    let path = format!(
        "{}/../cardsdk/tests/fixtures/hostile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Layouts that once overflowed the server's stack, held a core without end or took hundreds of
/// megabytes are refused at upload with the limit named, and a layout stored before the limits
/// existed is refused by the renderer when a preview asks for it.
async fn hostile_layouts_neither_crash_nor_hold_the_server(db: Db) {
    let app = spawn_app(db).await;
    let cases = [
        ("nested-svg.svg", "nested more than 32 levels"),
        ("nested-tspan.svg", "nested more than 32 levels"),
        ("nested-g.svg", "nested more than 32 levels"),
        ("turbulence.svg", "numOctaves may be at most 8"),
        ("filter-work.svg", "million pixel operations"),
        ("blur-huge-region.svg", "filter region"),
        ("long-text.svg", "characters of text"),
        ("css-escape-url.svg", "CSS escapes"),
        ("use-chain.svg", "itself contains <use>"),
    ];
    for (name, expected) in cases {
        let answer = app
            .post(
                "/api/v1/card-templates",
                &app.policy,
                json!({"name": "Hostile", "serial_prefix": "HOS-", "front_svg": hostile_fixture(name)}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{name}: {message}");
        assert_eq!(
            app.call(Method::GET, "/healthz", None, None).await.status,
            StatusCode::OK,
            "{name}: the server must stay up"
        );
    }

    // A template stored before these limits existed.
    let created = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Legacy", "serial_prefix": "LEG-"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    for (name, expected) in [
        ("turbulence.svg", "numOctaves"),
        ("nested-svg.svg", "nested more than 32 levels"),
    ] {
        let layout = hostile_fixture(name).replace('\'', "''");
        app.sql(&format!(
            "UPDATE card_templates SET front_svg = '{layout}' WHERE id = '{id}'"
        ))
        .await;
        let preview = app
            .get(
                &format!("/api/v1/card-templates/{id}/preview?side=front"),
                &app.policy,
            )
            .await;
        assert_eq!(
            preview.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {preview:?}"
        );
        let message = preview.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("rendering refused") && message.contains(expected),
            "{name}: {message}"
        );
    }
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

/// A template's preview is rendered once: asked for three times at once and then by another
/// operator, it is rendered once; a card's preview is rendered once for what it shows.
async fn a_preview_is_rendered_once_for_everyone_who_asks(db: Db) {
    let app = spawn_app(db).await;
    let previews = app.ctx().previews.clone();
    let before = previews.renders();
    let path = "/api/v1/card-templates/Temporary%20card/preview?side=front";
    let (first, second, third) =
        tokio::join!(bytes(&app, path), bytes(&app, path), bytes(&app, path));
    for (status, png) in [&first, &second, &third] {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(png, &first.1);
    }
    let by_policy = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&app.policy)
        .send()
        .await
        .unwrap();
    assert_eq!(by_policy.status(), StatusCode::OK);
    assert_eq!(by_policy.bytes().await.unwrap().to_vec(), first.1);
    assert_eq!(previews.renders() - before, 1);

    let cards = ids(&app.request_cards(2).await);
    let (a, b) = (
        format!("/api/v1/cards/{}/preview?side=front", cards[0]),
        format!("/api/v1/cards/{}/preview?side=front", cards[1]),
    );
    let (one, again, other) = tokio::join!(bytes(&app, &a), bytes(&app, &a), bytes(&app, &b));
    assert_eq!(one, again);
    assert_ne!(one.1, other.1, "each card shows its own serial");
    assert_eq!(previews.renders() - before, 3);
}

/// A heavy layout: a path of 600 segments drawn 100 times, a moment to render.
fn heavy_layout() -> String {
    crate::preview_load::copied_path(600)
}

/// Eight previews of different cards at once by one operator: four render, the others are
/// answered 429 with a sentence and Retry-After, and another operator is not held to the
/// first one's limit.
async fn previews_over_an_operators_limit_say_when_to_ask_again(db: Db) {
    let app = spawn_app(db).await;
    let created = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Heavy", "serial_prefix": "HVY-", "front_svg": heavy_layout()}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Heavy", "amount": 8}),
        )
        .await;
    let cards = ids(cards.body["cards"].as_array().unwrap());
    let mut burst = tokio::task::JoinSet::new();
    for card in &cards {
        let request = app
            .client
            .get(format!(
                "{}/api/v1/cards/{card}/preview?side=front",
                app.base
            ))
            .bearer_auth(&app.officer);
        burst.spawn(async move {
            let res = request.send().await.unwrap();
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, res.bytes().await.unwrap().to_vec())
        });
    }
    let other = app
        .get(
            &format!(
                "/api/v1/card-templates/{}/preview",
                created.body["id"].as_str().unwrap()
            ),
            &app.policy,
        )
        .await;
    assert_ne!(other.status, StatusCode::TOO_MANY_REQUESTS, "{other:?}");
    let answers = burst.join_all().await;
    let mut refused = 0;
    for (status, retry_after, body) in &answers {
        match *status {
            StatusCode::OK => {
                assert!(body.starts_with(b"\x89PNG"));
                continue;
            }
            // Previews of other tests in this process may fill the preview lane meanwhile.
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after.is_some());
                continue;
            }
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
        refused += 1;
        assert_eq!(retry_after.as_deref(), Some("5"));
        let error: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(error["error"]["code"], "too_many_requests");
        assert_eq!(
            error["error"]["message"],
            "you have 4 previews being rendered, as many as one operator may have at once; try again in 5 s"
        );
    }
    assert!(refused > 0 && refused <= 4, "{refused} of eight refused");
}
