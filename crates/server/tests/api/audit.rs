//! The audit log over HTTP and `cardwright audit verify` on the real binary.

use std::process::Command;

use cardwright::app;
use cardwright_domain::{Role, Roles};
use cardwright_processes::{auth, Actor};
use cardwright_storage::audit::{self, EventFilter};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

use crate::helpers::{spawn_app, Db, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    events_are_listed_per_card,
    verify_detects_changed_and_removed_events,
    removing_the_newest_events_and_moving_the_head_back_is_detected,
    rewriting_an_event_and_rehashing_the_chain_is_detected,
    an_emptied_log_is_detected,
    an_emptied_log_under_a_kept_empty_head_is_detected,
    a_rewritten_log_stripped_of_every_signature_is_refused,
    a_truncated_log_with_a_forged_first_event_is_refused,
    a_deleted_head_is_reported,
    a_head_moved_back_over_events_still_there_is_detected,
    a_log_written_before_signing_is_adopted_only_by_audit_adopt,
    published_checkpoints_catch_a_rewind_by_someone_holding_the_keys,
    the_server_publishes_checkpoints_in_its_log
);

async fn events_are_listed_per_card(db: Db) {
    let app = spawn_app(db).await;
    let cards = app.request_cards(2).await;
    let id = cards[0]["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/cards/{id}/abort"),
        &app.officer,
        json!({}),
    )
    .await;
    let events = app
        .get(&format!("/api/v1/audit?card={id}"), &app.auditor)
        .await;
    assert_eq!(events.status, StatusCode::OK, "{events:?}");
    let list = events.body["events"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["process"], "TempCardsProcRequest");
    assert_eq!(list[0]["operator"], "officer");
    assert_eq!(list[0]["new_state"], "requested");
    assert_eq!(list[1]["process"], "TempCardsProcAbort");
    assert_eq!(list[1]["old_state"], "requested");
    assert_eq!(list[1]["new_state"], "aborted");
    assert!(list[1]["seq"].as_i64() > list[0]["seq"].as_i64());
    // Admin changes are audited too: the four test operators were added first.
    let all = app.get("/api/v1/audit?limit=500", &app.policy).await;
    let processes: Vec<&str> = all.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["process"].as_str().unwrap())
        .collect();
    assert_eq!(processes.iter().filter(|p| **p == "OperatorAdd").count(), 4);
    assert_eq!(
        processes
            .iter()
            .filter(|p| **p == "TempCardsProcRequest")
            .count(),
        2
    );
    let page = app.get("/api/v1/audit?limit=2", &app.auditor).await;
    assert_eq!(page.body["events"].as_array().unwrap().len(), 2);
    let cursor = page.body["next_cursor"].as_str().expect("more pages");
    let next = app
        .get(
            &format!("/api/v1/audit?limit=2&cursor={cursor}"),
            &app.auditor,
        )
        .await;
    assert_eq!(
        next.body["events"][0]["seq"].as_i64().unwrap(),
        page.body["events"][1]["seq"].as_i64().unwrap() + 1
    );
}

fn verify(app: &TestApp) -> (bool, String) {
    audit_command(app, &["verify"])
}

/// `cardwright audit ARGS` on the test's database; whether it succeeded, and what it printed.
fn audit_command(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(&app.config.data_dir)
        .args(["--database-url", &app.database_url])
        .env_remove("CARDWRIGHT_CONFIG")
        .output()
        .expect("cardwright runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Requests three cards and aborts the second; the sequence numbers of that card's request and
/// abort events.
async fn request_and_abort(app: &TestApp) -> (i64, i64) {
    let cards = app.request_cards(3).await;
    let id = cards[1]["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/cards/{id}/abort"),
        &app.officer,
        json!({}),
    )
    .await;
    let events = app
        .get(&format!("/api/v1/audit?card={id}"), &app.auditor)
        .await;
    let seq = |i: usize| events.body["events"][i]["seq"].as_i64().unwrap();
    (seq(0), seq(1))
}

async fn verify_detects_changed_and_removed_events(db: Db) {
    let mut app = spawn_app(db).await;
    let (request_seq, abort_seq) = request_and_abort(&app).await;
    app.stop().await;

    let (ok, text) = verify(&app);
    assert!(ok, "an untouched log must verify: {text}");
    assert!(text.contains("intact"), "{text}");

    // Someone rewrites history: the abort is put on another operator.
    let changed = app
        .sql(&format!(
            "UPDATE audit_events SET operator = 'mallory' WHERE seq = {abort_seq}"
        ))
        .await;
    assert_eq!(changed, 1);
    let (ok, text) = verify(&app);
    assert!(!ok, "a changed event must fail verification: {text}");
    assert!(
        text.contains(&format!("event {abort_seq}")),
        "the bad event must be named: {text}"
    );
    app.sql(&format!(
        "UPDATE audit_events SET operator = 'officer' WHERE seq = {abort_seq}"
    ))
    .await;
    let (ok, text) = verify(&app);
    assert!(ok, "the restored log verifies again: {text}");

    // Someone removes the newest event: the chain's head still remembers it.
    assert_eq!(
        app.sql(&format!("DELETE FROM audit_events WHERE seq = {abort_seq}"))
            .await,
        1
    );
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("event {abort_seq}")), "{text}");

    // Someone removes an event in the middle.
    assert_eq!(
        app.sql(&format!(
            "DELETE FROM audit_events WHERE seq = {request_seq}"
        ))
        .await,
        1
    );
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("event {request_seq}")), "{text}");
}

/// The newest event's sequence number and hash.
async fn newest(app: &TestApp) -> (i64, String) {
    let events = read_log(app).await;
    let last = events.last().expect("the log has events");
    (last.seq, last.hash.clone())
}

/// The whole log, read straight from the database.
async fn read_log(app: &TestApp) -> Vec<audit::Event> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let events = audit::list(&mut conn, &EventFilter::default(), 10_000)
        .await
        .expect("log read");
    conn.close().await.ok();
    events
}

/// What someone with write access to the database can do without the key: put event `seq` on
/// another operator, recompute every hash from there on (the algorithm is public) and move the
/// head's hash along.
async fn rewrite_operator(app: &TestApp, seq: i64, operator: &str) {
    let mut events = read_log(app).await;
    let mut prev_hash = None::<String>;
    for e in events.iter_mut().filter(|e| e.seq >= seq) {
        if e.seq == seq {
            operator.clone_into(&mut e.operator);
        }
        if let Some(prev) = prev_hash.take() {
            e.prev_hash = prev;
        }
        e.hash = e.expected_hash();
        prev_hash = Some(e.hash.clone());
        let changed = app
            .sql(&format!(
                "UPDATE audit_events SET operator = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
                e.operator, e.prev_hash, e.hash, e.seq
            ))
            .await;
        assert_eq!(changed, 1);
    }
    let head_hash = prev_hash.expect("events from seq on");
    app.sql(&format!(
        "UPDATE audit_head SET hash = '{head_hash}' WHERE id = 1"
    ))
    .await;
}

/// Starts a server again on the test's database, adds an operator through it (one more audit
/// event) and stops it.
async fn restart_and_append(app: &TestApp, username: &str) {
    let running = app::start(&app.config, app.clock.clone(), false)
        .await
        .expect("server starts again");
    auth::add_operator(
        &running.ctx,
        &Actor::System("test"),
        username,
        [Role::ServiceAdmin].into_iter().collect::<Roles>(),
        PASSWORD,
    )
    .await
    .expect("add operator");
    running.stop().await;
}

async fn removing_the_newest_events_and_moving_the_head_back_is_detected(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(12).await;
    app.stop().await;
    let (head, _) = newest(&app).await;
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("last signed checkpoint at event {head}")),
        "{text}"
    );

    // The newest ten events go, and the head is set to what it was before them: the hash chain
    // itself is intact and ends where the head says.
    let kept = head - 10;
    assert_eq!(
        app.sql(&format!("DELETE FROM audit_events WHERE seq > {kept}"))
            .await,
        10
    );
    let (seq, hash) = newest(&app).await;
    assert_eq!(seq, kept);
    app.sql(&format!(
        "UPDATE audit_head SET seq = {seq}, hash = '{hash}' WHERE id = 1"
    ))
    .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "removed events must fail verification: {text}");
    assert!(
        text.contains(&format!("at event {kept}"))
            && text.contains("does not match its signature")
            && text.contains(&format!(
                "last signed checkpoint that holds is event {kept}"
            )),
        "{text}"
    );

    // No server starts on the cut log, so nothing is signed over it.
    start_refused(&app).await;

    // Nor does taking the head's signature away make the cut log look like one never signed.
    app.sql("UPDATE audit_head SET signature = NULL WHERE id = 1")
        .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("event {kept} is not signed"))
            && text.contains(&format!(
                "last signed checkpoint that holds is event {kept}"
            )),
        "{text}"
    );
    start_refused(&app).await;
}

/// A server started on the test's database refuses to start, naming `cardwright audit verify`,
/// and writes nothing to the log.
async fn start_refused(app: &TestApp) {
    let before = read_log(app).await.len();
    let head_before = head_row(app).await;
    let refused = app::start(&app.config, app.clock.clone(), false).await;
    let Err(error) = refused else {
        panic!("a server started on a log that does not verify");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("cardwright audit verify") && error.contains("audit log does not verify"),
        "{error}"
    );
    assert_eq!(read_log(app).await.len(), before, "nothing was appended");
    assert_eq!(head_row(app).await, head_before, "the head was not touched");
}

/// The head row as stored: sequence number, hash and signature; `None` when it is gone.
async fn head_row(app: &TestApp) -> Option<(i64, String, Option<String>)> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let head = audit::head(&mut conn).await.expect("head read");
    conn.close().await.ok();
    head.map(|h| (h.seq, h.hash, h.signature))
}

/// Puts the head row back as `head` was.
async fn set_head(app: &TestApp, (seq, hash, signature): &(i64, String, Option<String>)) {
    let signature = signature
        .as_ref()
        .map_or_else(|| "NULL".to_owned(), |s| format!("'{s}'"));
    app.sql("DELETE FROM audit_head").await;
    app.sql(&format!(
        "INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, {seq}, '{hash}', {signature})"
    ))
    .await;
}

async fn rewriting_an_event_and_rehashing_the_chain_is_detected(db: Db) {
    let mut app = spawn_app(db).await;
    let (request_seq, _) = request_and_abort(&app).await;
    app.stop().await;

    // The request is put on another operator and the chain is hashed again up to the head.
    rewrite_operator(&app, request_seq, "mallory").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "a rewritten event must fail verification: {text}");
    assert!(
        text.contains(&format!("broken at event {request_seq}"))
            && text.contains(&format!(
                "last signed checkpoint that holds is event {}",
                request_seq - 1
            )),
        "{text}"
    );

    // Dropping the event's MAC instead does not help either.
    app.sql(&format!(
        "UPDATE audit_events SET mac = NULL WHERE seq = {request_seq}"
    ))
    .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("event {request_seq} is not signed")),
        "{text}"
    );
}

async fn an_emptied_log_is_detected(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(3).await;
    app.stop().await;
    app.sql("DELETE FROM audit_events").await;
    app.sql(&format!(
        "UPDATE audit_head SET seq = 0, hash = '{}', signature = NULL WHERE id = 1",
        audit::GENESIS
    ))
    .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "an emptied log must fail verification: {text}");
    assert!(
        text.contains("the log is empty and its head is not signed") && !text.contains("intact"),
        "{text}"
    );
    start_refused(&app).await;
}

/// The empty log's head is signed when the keys are made. Someone who kept that row and puts it
/// back after emptying the log is caught by what the database still holds.
async fn an_emptied_log_under_a_kept_empty_head_is_detected(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = crate::helpers::fresh_database(&db).await;
    let data = dir.path().join("data");
    let cli = |args: &[&str], stdin: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardwright"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("CARDWRIGHT_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if !database_url.is_empty() {
            command.args(["--database-url", &database_url]);
        }
        let mut child = command.spawn().expect("cardwright runs");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = cli(&["migrate"], "");
    assert!(ok, "{text}");
    let (ok, text) = cli(&["audit", "verify"], "");
    assert!(ok, "a new installation's empty log verifies: {text}");
    assert!(
        text.contains("the log is empty and its head signed"),
        "{text}"
    );
    let url = if database_url.is_empty() {
        cardwright_storage::Store::sqlite_url(&data.join("cardwright.db"))
    } else {
        database_url.clone()
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let empty_head = audit::head(&mut conn).await.unwrap().expect("a head");
    assert_eq!(empty_head.seq, 0);
    assert!(empty_head.signature.is_some(), "the empty head is signed");

    let (ok, text) = cli(
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "policy-admin",
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert!(ok, "{text}");
    sqlx::query("DELETE FROM audit_events")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = 0, hash = $1, signature = $2 WHERE id = 1")
        .bind(&empty_head.hash)
        .bind(&empty_head.signature)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (ok, text) = cli(&["audit", "verify"], "");
    assert!(!ok, "an emptied log under its first head must fail: {text}");
    assert!(
        text.contains("the log is empty, but the database holds")
            && text.contains("1 operators")
            && text.contains("emptied"),
        "{text}"
    );
    let (ok, text) = cli(&["serve", "--listen", "127.0.0.1:0"], "");
    assert!(!ok, "the server refuses to start: {text}");
    assert!(text.contains("cardwright audit verify"), "{text}");
}

/// Every hash recomputed after a change, and every MAC and the head's signature removed: the log
/// looks as if written before signing. Neither verify nor a server takes it.
async fn a_rewritten_log_stripped_of_every_signature_is_refused(db: Db) {
    let mut app = spawn_app(db).await;
    let (request_seq, _) = request_and_abort(&app).await;
    app.stop().await;
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    app.sql(&format!(
        "UPDATE audit_events SET details = '{{\"forged\":true}}' WHERE seq = {request_seq}"
    ))
    .await;
    rewrite_operator(&app, request_seq, "mallory").await;
    app.sql("UPDATE audit_events SET mac = NULL").await;
    app.sql("UPDATE audit_head SET signature = NULL WHERE id = 1")
        .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "a log stripped of its signatures must fail: {text}");
    assert!(
        text.contains("broken at event 1: event 1 is not signed"),
        "{text}"
    );
    start_refused(&app).await;
    let (ok, text) = verify(&app);
    assert!(!ok, "a refused start adopts nothing: {text}");
}

/// The log cut to one forged event without a MAC, and a head naming it unsigned.
async fn a_truncated_log_with_a_forged_first_event_is_refused(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(3).await;
    app.stop().await;
    let mut forged = read_log(&app).await.remove(0);
    "mallory".clone_into(&mut forged.operator);
    forged.hash = forged.expected_hash();
    app.sql("DELETE FROM audit_events WHERE seq > 1").await;
    app.sql(&format!(
        "UPDATE audit_events SET operator = 'mallory', hash = '{}', mac = NULL WHERE seq = 1",
        forged.hash
    ))
    .await;
    app.sql(&format!(
        "UPDATE audit_head SET seq = 1, hash = '{}', signature = NULL WHERE id = 1",
        forged.hash
    ))
    .await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(text.contains("event 1 is not signed"), "{text}");
    start_refused(&app).await;
}

async fn a_deleted_head_is_reported(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(2).await;
    app.stop().await;
    let (newest_seq, _) = newest(&app).await;
    app.sql("DELETE FROM audit_head").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the log's head row is missing")
            && text.contains(&format!(
                "last signed checkpoint that holds is event {newest_seq}"
            ))
            && !text.contains("no rows returned"),
        "{text}"
    );
    start_refused(&app).await;
}

/// The head row as it was at an earlier event, signature included, put back over a log that
/// still holds the events after it (what a database backup's head row would give).
async fn a_head_moved_back_over_events_still_there_is_detected(db: Db) {
    let mut app = spawn_app(db).await;
    let earlier = head_row(&app).await.expect("a head");
    app.request_cards(3).await;
    app.stop().await;
    set_head(&app, &earlier).await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "lies past the head of the log at event {}",
            earlier.0
        )),
        "{text}"
    );
    start_refused(&app).await;
}

async fn a_log_written_before_signing_is_adopted_only_by_audit_adopt(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(3).await;
    app.stop().await;
    // A log that is signed refuses adoption: there is nothing to adopt.
    let (ok, text) = audit_command(&app, &["adopt"]);
    assert!(!ok, "{text}");
    assert!(text.contains("nothing to adopt"), "{text}");

    // The log as a server before signing left it: the new columns are empty.
    app.sql("UPDATE audit_events SET mac = NULL").await;
    app.sql("UPDATE audit_head SET signature = NULL WHERE id = 1")
        .await;
    let (legacy, _) = newest(&app).await;
    let (ok, text) = verify(&app);
    assert!(!ok, "an unsigned log is not reported intact: {text}");
    assert!(
        text.contains("not signed") && text.contains("cardwright audit adopt"),
        "{text}"
    );
    // A start does not adopt it.
    start_refused(&app).await;

    let (ok, text) = audit_command(&app, &["adopt"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("{legacy} events")), "{text}");
    let log = read_log(&app).await;
    let adoption = log.last().unwrap();
    assert_eq!(
        (
            adoption.seq,
            adoption.process.as_str(),
            adoption.operator.as_str()
        ),
        (legacy + 1, "AuditAdopt", "cli")
    );
    let (ok, text) = verify(&app);
    assert!(ok, "the adopted log verifies: {text}");
    assert!(
        text.contains(&format!(
            "{} events verified, last signed checkpoint at event {}",
            legacy + 1,
            legacy + 1
        )),
        "{text}"
    );
    restart_and_append(&app, "later").await;
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");

    // The adopted events are protected like any other: a rewrite of one is caught at once.
    rewrite_operator(&app, 2, "mallory").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(text.contains("broken at event 2"), "{text}");

    // A log with some signatures left is not one from before signing.
    let (ok, text) = audit_command(&app, &["adopt"]);
    assert!(!ok, "{text}");
}

/// Someone holding the keys (or a backup of the head row) can put the log back to an earlier
/// signed head, which the log alone cannot tell. A checkpoint published after that head can.
async fn published_checkpoints_catch_a_rewind_by_someone_holding_the_keys(db: Db) {
    let mut app = spawn_app(db).await;
    let earlier = head_row(&app).await.expect("a head");
    app.request_cards(3).await;
    let (checkpoint, at) = cardwright_processes::audit::checkpoint(app.ctx())
        .await
        .unwrap()
        .expect("a signed head");
    assert!(checkpoint.seq > earlier.0);
    app.stop().await;
    let file = app.config.data_dir.join("../checkpoints.log");
    let line = cardwright_processes::audit::checkpoint_line(&checkpoint, at);
    std::fs::write(&file, format!("2026-03-02T09:00:00Z INFO {line}\n")).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let (ok, text) = audit_command(&app, &["verify", "--checkpoint", &file]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "1 published checkpoints hold, the newest at event {}",
            checkpoint.seq
        )),
        "{text}"
    );

    app.sql(&format!(
        "DELETE FROM audit_events WHERE seq > {}",
        earlier.0
    ))
    .await;
    set_head(&app, &earlier).await;
    let (ok, text) = verify(&app);
    assert!(ok, "the rewound log alone looks whole: {text}");
    let (ok, text) = audit_command(&app, &["verify", "--checkpoint", &file]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "checkpoint on line 1 of {file}: event {} of the checkpoint is no longer in the log",
            checkpoint.seq
        )),
        "{text}"
    );

    // A checkpoint line whose signature is not the installation's is refused as such.
    let forged = line.replace(checkpoint.signature.as_deref().unwrap(), &"0".repeat(64));
    std::fs::write(&file, format!("{forged}\n")).unwrap();
    let (ok, text) = audit_command(&app, &["verify", "--checkpoint", &file]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("does not carry this installation's signature"),
        "{text}"
    );

    // A file without any checkpoint is an error, not a pass.
    std::fs::write(&file, "nothing here\n").unwrap();
    let (ok, text) = audit_command(&app, &["verify", "--checkpoint", &file]);
    assert!(!ok && text.contains("holds no checkpoint"), "{text}");
}

/// The real server writes a checkpoint line to its log when it starts, which `audit verify
/// --checkpoint` reads back from the log file as it is.
async fn the_server_publishes_checkpoints_in_its_log(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _schema) = crate::helpers::fresh_database(&db).await;
    let data = dir.path().join("data");
    let config = dir.path().join("cardwright.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{database_url}\"\n\
             stations = []\n[audit]\ncheckpoint_secs = 10\n",
            data.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let server = crate::server_processes::Server::start_with(
        &config,
        &[("CARDWRIGHT_LOG", "info".as_ref())],
        &log,
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("audit checkpoint:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(server);
    assert!(text.contains("audit checkpoint: seq="), "{text}");
    let output = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .arg("--checkpoint")
        .arg(&log)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("published checkpoints hold"), "{said}");
}
