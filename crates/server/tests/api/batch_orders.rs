//! The batch order "Issue multiple temporary cards" over HTTP, with real production stations.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    history_processes, simulated_station, spawn_app, spawn_app_with, Db, TestApp,
};
use crate::on_both_databases;

on_both_databases!(
    failing_station_repeat_and_complete,
    racing_orders_for_the_same_cards,
    cancel_before_next_leaves_cards_requested,
    cancel_during_production_stops_after_the_card_in_hand,
    rejected_card_is_produced_again,
    buttons_in_the_wrong_state_change_nothing,
    stations_side_by_side_produce_each_card_once_and_settle_the_order,
);

fn ids(cards: &[Value]) -> Vec<String> {
    cards
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn settled(order: &Value) -> bool {
    order["state"] == "produced"
}

fn items_with(order: &Value, status: &str) -> Vec<String> {
    order["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == status)
        .map(|i| i["card"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Complete order before anything was produced is refused and changes nothing.
async fn complete_is_refused_while_open(app: &TestApp, id: &str, card: &str) {
    let complete_early = app
        .post(
            &format!("/api/v1/batch-orders/{id}/complete"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(
        complete_early.status,
        StatusCode::CONFLICT,
        "{complete_early:?}"
    );
    let still = app
        .get(&format!("/api/v1/batch-orders/{id}"), &app.producer)
        .await;
    assert_eq!(still.body["state"], "open", "{still:?}");
    assert_eq!(app.card(card).await["batch_order"], id);
}

async fn failing_station_repeat_and_complete(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![simulated_station("desk-1", 4, 0)]).await;
    let cards = ids(&app.request_cards(20).await);
    let created = app.order(&cards).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["state"], "open");
    assert_eq!(created.body["counts"]["selected"], 20);
    assert_eq!(created.body["operator"], "producer");
    let id = created.body["id"].as_str().unwrap().to_owned();
    for card in &cards[..3] {
        assert_eq!(app.card(card).await["batch_order"], id.as_str());
    }

    complete_is_refused_while_open(&app, &id, &cards[0]).await;

    let next = app
        .post(
            &format!("/api/v1/batch-orders/{id}/next"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{next:?}");
    assert_eq!(next.body["state"], "producing");
    let order = app.wait_for_order(&id, settled).await;
    assert_eq!(order["counts"]["produced"], 15, "{order}");
    assert_eq!(order["counts"]["failed"], 5, "{order}");
    for item in order["items"].as_array().unwrap() {
        if item["status"] == "failed" {
            assert_eq!(item["error"], "printer error: ribbon out");
            assert_eq!(item["card"]["state"], "failed");
            assert_eq!(item["station"], "desk-1");
        } else {
            assert_eq!(item["card"]["state"], "unassigned");
            assert!(item["error"].is_null());
        }
        assert_eq!(item["attempts"], 1);
    }

    // Repeat production until every card is through; the station keeps failing every 4th job.
    let order = repeat_until_produced(&app, &id, order).await;
    assert_eq!(order["counts"]["produced"], 20, "{order}");
    let attempts: u64 = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["attempts"].as_u64().unwrap())
        .sum();
    assert!(attempts > 20, "repeated items count their attempts");
    assert_eq!(
        order["attempts"].as_array().unwrap().len() as u64,
        attempts,
        "every attempt is recorded"
    );
    let failed_attempts = order["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "failed")
        .count();
    assert_eq!(failed_attempts as u64, attempts - 20);

    let completed = app
        .post(
            &format!("/api/v1/batch-orders/{id}/complete"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{completed:?}");
    assert_eq!(completed.body["state"], "completed");
    let unassigned = app
        .get("/api/v1/cards?state=unassigned&limit=100", &app.officer)
        .await;
    assert_eq!(ids(unassigned.body["cards"].as_array().unwrap()), cards);
    for card in unassigned.body["cards"].as_array().unwrap() {
        assert!(
            card["batch_order"].is_null(),
            "a completed order holds no cards"
        );
    }
    check_production_history(&app, &id, &cards[3]).await;
    // The chosen cards can be assigned now.
    let person = app.person("E-42").await;
    let assigned = app
        .post(
            &format!("/api/v1/cards/{}/assign", cards[0]),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");
}

/// Repeats the failed items of an order until none is left (at most five rounds).
async fn repeat_until_produced(app: &crate::helpers::TestApp, id: &str, mut order: Value) -> Value {
    for _ in 0..5 {
        let failed = items_with(&order, "failed");
        if failed.is_empty() {
            break;
        }
        let repeat = app
            .post(
                &format!("/api/v1/batch-orders/{id}/repeat"),
                &app.producer,
                json!({"cards": failed}),
            )
            .await;
        assert_eq!(repeat.status, StatusCode::OK, "{repeat:?}");
        order = app.wait_for_order(id, settled).await;
    }
    order
}

/// The 4th card of the order failed at first (every 4th job does), then was produced; the
/// order's own events run from create to complete.
async fn check_production_history(app: &crate::helpers::TestApp, id: &str, fourth: &str) {
    let history = app.card(fourth).await;
    let produce_events: Vec<&Value> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "TempCardsBoProcIssueMultiple")
        .collect();
    assert!(
        produce_events.len() >= 2,
        "the 4th card failed first, then was produced"
    );
    assert_eq!(produce_events[0]["details"]["station"], "desk-1");
    assert_eq!(produce_events[0]["new_state"], "failed");
    assert_eq!(produce_events.last().unwrap()["new_state"], "unassigned");
    let audit = app
        .get(&format!("/api/v1/audit?order={id}&limit=500"), &app.auditor)
        .await;
    let actions: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["card"].is_null())
        .map(|e| e["details"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"create"));
    assert_eq!(actions.last(), Some(&"complete"));
    assert!(
        actions.contains(&"next") && actions.contains(&"repeat") && actions.contains(&"produced")
    );
}

async fn racing_orders_for_the_same_cards(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![]).await;
    let cards = ids(&app.request_cards(6).await);
    let first_pick = cards[..4].to_vec();
    let second_pick = cards[2..].to_vec();
    let (a, b) = tokio::join!(app.order(&first_pick), app.order(&second_pick));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{a:?} / {b:?}"
    );
    let loser = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    let message = loser.body["error"]["message"].as_str().unwrap();
    for serial in ["TMP-000003", "TMP-000004"] {
        assert!(
            message.contains(serial),
            "the taken cards are named: {message}"
        );
    }
    let orders = app.get("/api/v1/batch-orders", &app.auditor).await;
    assert_eq!(
        orders.body["batch_orders"].as_array().unwrap().len(),
        1,
        "the refused order left nothing"
    );
    let winner = if a.status == StatusCode::CREATED {
        &first_pick
    } else {
        &second_pick
    };
    for card in &cards {
        let held = app.card(card).await["batch_order"].is_string();
        assert_eq!(held, winner.contains(card), "card {card}");
    }
}

async fn cancel_before_next_leaves_cards_requested(db: Db) {
    let app = spawn_app(db).await;
    let cards = ids(&app.request_cards(3).await);
    let order = app.order(&cards).await;
    let id = order.body["id"].as_str().unwrap();
    let cancelled = app
        .post(
            &format!("/api/v1/batch-orders/{id}/cancel"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["state"], "cancelled");
    for card in &cards {
        let card = app.card(card).await;
        assert_eq!(card["state"], "requested");
        assert!(card["batch_order"].is_null());
    }
    let again = app.order(&cards).await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "cancelled cards can be ordered again: {again:?}"
    );
}

async fn cancel_during_production_stops_after_the_card_in_hand(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![simulated_station("slow", 0, 150)]).await;
    let cards = ids(&app.request_cards(8).await);
    let order = app.order(&cards).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/batch-orders/{id}/next"),
        &app.producer,
        json!({}),
    )
    .await;
    app.wait_for_order(&id, |o| o["counts"]["produced"].as_u64().unwrap() >= 1)
        .await;
    let cancelled = app
        .post(
            &format!("/api/v1/batch-orders/{id}/cancel"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    let order = app
        .wait_for_order(&id, |o| o["counts"]["producing"] == 0)
        .await;
    assert_eq!(order["state"], "cancelled");
    // A station looking for work now finds none: nothing of the order is left in the queue.
    let claim = cardwright_processes::temp_cards::production::claim(app.ctx(), "desk-probe")
        .await
        .unwrap();
    assert!(
        claim.is_none(),
        "a cancelled order's card was claimed: {claim:?}"
    );
    let order = app
        .get(&format!("/api/v1/batch-orders/{id}"), &app.producer)
        .await
        .body;
    let produced = items_with(&order, "produced");
    assert!(!produced.is_empty() && produced.len() < 8, "{order}");
    assert_eq!(
        items_with(&order, "queued"),
        Vec::<String>::new(),
        "nothing is left queued"
    );
    for card in &cards {
        let card_now = app.card(card).await;
        let expected = if produced.contains(card) {
            "unassigned"
        } else {
            "requested"
        };
        assert_eq!(card_now["state"], expected, "{card_now}");
        assert!(card_now["batch_order"].is_null());
    }
}

/// Several stations work one order at once, each recording its card in the transaction that
/// claims its next: every card is produced exactly once, and the order becomes produced even when
/// its last cards finish in two printers at the same moment.
async fn stations_side_by_side_produce_each_card_once_and_settle_the_order(db: Db) {
    use cardwright_cardsdk::SimulatedPrinter;
    use cardwright_processes::temp_cards::production::{self, Station};
    use std::sync::Arc;

    // Several rounds, so that orders also end with their last cards in different printers.
    for round in 0..3 {
        let mut app = spawn_app_with(db.clone(), |c| c.stations.clear()).await;
        let cards = ids(&app.request_cards(24).await);
        let order = app.order(&cards).await;
        let id = order.body["id"].as_str().unwrap().to_owned();
        let next = app
            .post(
                &format!("/api/v1/batch-orders/{id}/next"),
                &app.producer,
                json!({}),
            )
            .await;
        assert_eq!(next.status, StatusCode::OK, "{next:?}");
        let workers: Vec<_> = (0..3)
            .map(|n| {
                let ctx = app.ctx().clone();
                let station = Station {
                    name: format!("side-{n}"),
                    printer: Arc::new(SimulatedPrinter::discarding(0, std::time::Duration::ZERO)),
                    encoder: None,
                };
                tokio::spawn(async move {
                    production::produce_while_queued(&ctx, &station, || false).await
                })
            })
            .collect();
        let mut worked = 0;
        for worker in workers {
            worked += worker.await.unwrap().unwrap();
        }
        assert_eq!(worked, 24, "round {round}: every card was worked on once");
        let order = app
            .get(&format!("/api/v1/batch-orders/{id}"), &app.producer)
            .await
            .body;
        assert!(
            settled(&order),
            "round {round}: every card is done, yet the order is {} ({})",
            order["state"],
            order["counts"]
        );
        assert_eq!(
            items_with(&order, "produced").len(),
            24,
            "{}",
            order["counts"]
        );
        for card in &cards {
            assert_eq!(app.card(card).await["state"], "unassigned");
        }
        let attempts = order["attempts"].as_array().map_or(0, Vec::len);
        assert_eq!(attempts, 24, "one attempt per card: {}", order["counts"]);
        app.stop().await;
    }
}

async fn rejected_card_is_produced_again(db: Db) {
    let app = spawn_app(db).await;
    let cards = ids(&app.request_cards(2).await);
    let order = app.order(&cards).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/batch-orders/{id}/next"),
        &app.producer,
        json!({}),
    )
    .await;
    app.wait_for_order(&id, settled).await;
    let repeat = app
        .post(
            &format!("/api/v1/batch-orders/{id}/repeat"),
            &app.producer,
            json!({"cards": [cards[1]]}),
        )
        .await;
    assert_eq!(repeat.status, StatusCode::OK, "{repeat:?}");
    let order = app.wait_for_order(&id, settled).await;
    let item = &order["items"][1];
    assert_eq!(item["status"], "produced");
    assert_eq!(item["attempts"], 2);
    let card = app.card(&cards[1]).await;
    assert_eq!(card["state"], "unassigned");
    let states: Vec<&str> = card["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["new_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["requested", "unassigned", "failed", "unassigned"]);
    assert!(history_processes(&card)
        .iter()
        .skip(1)
        .all(|p| p == "TempCardsBoProcIssueMultiple"));
    let pdfs = std::fs::read_dir(app.config.data_dir.join("spool").join(&id))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
        .count();
    assert_eq!(pdfs, 3, "one PDF per attempt");
}

async fn buttons_in_the_wrong_state_change_nothing(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![]).await;
    let cards = ids(&app.request_cards(2).await);
    let refused = app
        .post(
            "/api/v1/batch-orders",
            &app.officer,
            json!({"process": "TempCardsBoProcIssueMultiple", "cards": cards}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"process": "TempCardsBoProcIssueMultiple", "cards": []}),
        json!({"process": "TempCardsProcAssign", "cards": cards}),
        json!({"process": "TempCardsBoProcIssueMultiple", "cards": [cards[0], cards[0]]}),
        json!({"process": "TempCardsBoProcIssueMultiple", "cards": ["nope"]}),
    ] {
        let answer = app
            .post("/api/v1/batch-orders", &app.producer, bad.clone())
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}: {answer:?}");
    }
    let order = app.order(&cards).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    let abort = app
        .post(
            &format!("/api/v1/cards/{}/abort", cards[0]),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(
        abort.status,
        StatusCode::CONFLICT,
        "a card in an open order cannot be aborted: {abort:?}"
    );
    for action in ["complete", "repeat"] {
        let answer = app
            .post(
                &format!("/api/v1/batch-orders/{id}/{action}"),
                &app.producer,
                json!({"cards": [cards[0]]}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CONFLICT,
            "{action} on an open order: {answer:?}"
        );
    }
    let repeat = app
        .post(
            &format!("/api/v1/batch-orders/{id}/repeat"),
            &app.producer,
            json!({"cards": "all"}),
        )
        .await;
    assert_eq!(repeat.status, StatusCode::BAD_REQUEST, "{repeat:?}");
    let next = app
        .post(
            &format!("/api/v1/batch-orders/{id}/next"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    let again = app
        .post(
            &format!("/api/v1/batch-orders/{id}/next"),
            &app.producer,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    let repeat_queued = app
        .post(
            &format!("/api/v1/batch-orders/{id}/repeat"),
            &app.producer,
            json!({"cards": [cards[0]]}),
        )
        .await;
    assert_eq!(
        repeat_queued.status,
        StatusCode::CONFLICT,
        "queued items are not repeated: {repeat_queued:?}"
    );
    let order = app
        .get(&format!("/api/v1/batch-orders/{id}"), &app.auditor)
        .await;
    assert_eq!(order.body["state"], "producing");
    assert_eq!(order.body["counts"]["queued"], 2);
    let unknown = app
        .get(
            "/api/v1/batch-orders/01890a5d-ac96-774b-bcce-b302099a8057",
            &app.auditor,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
