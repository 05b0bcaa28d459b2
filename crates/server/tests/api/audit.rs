//! The audit log over HTTP and `cardwright audit verify` on the real binary.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    events_are_listed_per_card,
    verify_detects_changed_and_removed_events
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

async fn verify_detects_changed_and_removed_events(db: Db) {
    let mut app = spawn_app(db).await;
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
    let abort_seq = events.body["events"][1]["seq"].as_i64().unwrap();
    let request_seq = events.body["events"][0]["seq"].as_i64().unwrap();
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
