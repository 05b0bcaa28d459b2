//! Races settled by the database, and servers starting together.

use cardwright_storage::Store;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fresh_database, spawn_app, Db};
use crate::on_both_databases;

on_both_databases!(
    racing_assignments_to_one_person,
    racing_locks_of_one_card,
    migrations_run_once_when_servers_start_together
);

async fn racing_assignments_to_one_person(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-7").await;
    for round in 0..3 {
        let a = app.unassigned_card().await;
        let b = app.unassigned_card().await;
        let body = json!({"person": person});
        let (path_a, path_b) = (
            format!("/api/v1/cards/{a}/assign"),
            format!("/api/v1/cards/{b}/assign"),
        );
        let (first, second) = tokio::join!(
            app.post(&path_a, &app.officer, body.clone()),
            app.post(&path_b, &app.officer, body.clone()),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {first:?} / {second:?}"
        );
        let held = app
            .get(&format!("/api/v1/persons/{person}"), &app.officer)
            .await;
        let assigned = held.body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "assigned")
            .count();
        assert_eq!(assigned, 1, "round {round}");
        let winner = if first.status == StatusCode::OK { a } else { b };
        app.post(
            &format!("/api/v1/cards/{winner}/withdraw"),
            &app.officer,
            json!({}),
        )
        .await;
    }
}

async fn racing_locks_of_one_card(db: Db) {
    let app = spawn_app(db).await;
    let id = app.unassigned_card().await;
    let path = format!("/api/v1/cards/{id}/lock");
    let (first, second) = tokio::join!(
        app.post(&path, &app.officer, json!({})),
        app.post(&path, &app.officer, json!({})),
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{first:?} / {second:?}"
    );
    let card = app.card(&id).await;
    let locks = card["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "TempCardsProcLock")
        .count();
    assert_eq!(locks, 1, "exactly one lock is recorded");
}

async fn migrations_run_once_when_servers_start_together(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (mut url, _schema) = fresh_database(&db).await;
    if url.is_empty() {
        url = Store::sqlite_url(&dir.path().join("cw.db"));
    }
    let start = |url: String| async move {
        let store = Store::connect(&url).await.expect("connect");
        let applied = store.migrate().await.expect("migrate");
        store.close().await;
        applied
    };
    let (a, b, c) = tokio::join!(start(url.clone()), start(url.clone()), start(url.clone()));
    let mut all: Vec<String> = a.into_iter().chain(b).chain(c).collect();
    let applied = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), applied, "no migration is applied twice: {all:?}");
    assert!(
        all.first().is_some_and(|m| m.starts_with("0001")),
        "{all:?}"
    );
    assert_eq!(
        start(url).await,
        Vec::<String>::new(),
        "a later start finds nothing to do"
    );
}
