//! The audit log over HTTP and `cardwright audit verify` on the real binary.

use std::process::Command;
use std::sync::Arc;

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
    a_log_written_before_signing_is_adopted_at_start
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
    let output = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["audit", "verify", "--data-dir"])
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

    // A server started on the cut log does not sign over it: the removal stays visible after
    // more events are written.
    restart_and_append(&app, "later").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "a later append must not hide the removal: {text}");
    assert!(
        text.contains(&format!(
            "last signed checkpoint that holds is event {kept}"
        )),
        "{text}"
    );

    // Nor does taking the head's signature away make the cut log look like one never signed.
    app.sql("UPDATE audit_head SET signature = NULL WHERE id = 1")
        .await;
    restart_and_append(&app, "later2").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "last signed checkpoint that holds is event {kept}"
        )),
        "{text}"
    );
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

async fn a_log_written_before_signing_is_adopted_at_start(db: Db) {
    let mut app = spawn_app(db).await;
    app.request_cards(3).await;
    app.stop().await;
    // The log as a server before signing left it: the new columns are empty.
    app.sql("UPDATE audit_events SET mac = NULL").await;
    app.sql("UPDATE audit_head SET signature = NULL WHERE id = 1")
        .await;
    let (legacy, _) = newest(&app).await;
    let (ok, text) = verify(&app);
    assert!(!ok, "an unsigned log is not reported intact: {text}");
    assert!(text.contains("not signed"), "{text}");

    // The next start signs the head; the events written before it are covered by it.
    let running = app::start(&app.config, Arc::clone(&app.clock) as _, false)
        .await
        .expect("server starts again");
    running.stop().await;
    let (ok, text) = verify(&app);
    assert!(ok, "the adopted log verifies: {text}");
    assert!(
        text.contains(&format!(
            "{legacy} events verified, last signed checkpoint at event {legacy}"
        )),
        "{text}"
    );
    restart_and_append(&app, "later").await;
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("last signed checkpoint at event {}", legacy + 1)),
        "{text}"
    );

    // The events from before signing are still protected: a rewrite of one breaks the head.
    rewrite_operator(&app, 2, "mallory").await;
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("broken at event {}", legacy + 1)),
        "{text}"
    );
}
