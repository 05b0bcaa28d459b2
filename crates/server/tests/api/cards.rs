//! The temporary card processes over HTTP.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{history_processes, spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    request_gives_unique_serials,
    bad_requests_are_refused_and_change_nothing,
    search_by_state_serial_and_pages,
    abort_only_from_requested,
    assign_withdraw_extend_lock,
    second_assignment_to_one_person_is_refused,
    assign_needs_an_active_existing_person,
    wrong_state_changes_nothing,
    login_and_roles_are_required,
    processes_listed_are_exactly_those_allowed,
    expiry_happens_on_its_own,
    lock_and_withdraw_take_a_reason,
);

fn ids(cards: &[Value]) -> Vec<String> {
    cards
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn request_gives_unique_serials(db: Db) {
    let app = spawn_app(db).await;
    let first = app.request_cards(5).await;
    let second = app.request_cards(3).await;
    let serials: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|c| c["serial"].as_str().unwrap())
        .collect();
    let unique: HashSet<_> = serials.iter().collect();
    assert_eq!(unique.len(), 8, "{serials:?}");
    assert_eq!(serials[0], "TMP-000001");
    assert_eq!(serials[7], "TMP-000008");
    for card in first.iter().chain(&second) {
        assert_eq!(card["state"], "requested");
        assert_eq!(card["template"]["name"], "Temporary card");
        assert!(card["holder"].is_null());
    }
    let listed = app
        .get("/api/v1/cards?state=requested&limit=500", &app.officer)
        .await;
    assert_eq!(listed.body["cards"].as_array().unwrap().len(), 8);
}

async fn bad_requests_are_refused_and_change_nothing(db: Db) {
    let app = spawn_app(db).await;
    for amount in [
        json!(0),
        json!(-4),
        json!(1001),
        json!(1_000_000_000_000_i64),
        json!("five"),
        json!(2.5),
    ] {
        let answer = app
            .post(
                "/api/v1/temporary-cards",
                &app.officer,
                json!({"template": "Temporary card", "amount": amount}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "amount {amount}: {answer:?}"
        );
        assert_eq!(answer.body["error"]["code"], "bad_request");
        assert!(!answer.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let malformed = app
        .client
        .post(format!("{}/api/v1/temporary-cards", app.base))
        .bearer_auth(&app.officer)
        .header("Content-Type", "application/json")
        .body("{\"template\": \"Temporary card\", \"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let missing = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"amount": 2}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{missing:?}");
    let unknown = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Gold card", "amount": 2}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    assert!(unknown.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Gold card"));
    let listed = app.get("/api/v1/cards", &app.officer).await;
    assert_eq!(
        listed.body["cards"],
        json!([]),
        "refused requests created cards"
    );
    let bad_id = app
        .post("/api/v1/cards/not-an-id/abort", &app.officer, json!({}))
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST, "{bad_id:?}");
    assert_eq!(
        bad_id.body["error"],
        json!({"code": "bad_request", "message": "card: 'not-an-id' is not a valid id"}),
        "{bad_id:?}"
    );
    let no_card = app
        .post(
            "/api/v1/cards/01890a5d-ac96-774b-bcce-b302099a8057/abort",
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(no_card.status, StatusCode::NOT_FOUND, "{no_card:?}");
}

async fn search_by_state_serial_and_pages(db: Db) {
    let app = spawn_app(db).await;
    let cards = ids(&app.request_cards(5).await);
    for id in &cards[..2] {
        let answer = app
            .post(
                &format!("/api/v1/cards/{id}/abort"),
                &app.officer,
                json!({}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    let requested = app
        .get("/api/v1/cards?state=requested", &app.producer)
        .await;
    assert_eq!(
        ids(requested.body["cards"].as_array().unwrap()),
        cards[2..].to_vec()
    );
    let aborted = app.get("/api/v1/cards?state=aborted", &app.auditor).await;
    assert_eq!(
        ids(aborted.body["cards"].as_array().unwrap()),
        cards[..2].to_vec()
    );
    let by_serial = app
        .get("/api/v1/cards?serial=TMP-000004", &app.officer)
        .await;
    assert_eq!(
        ids(by_serial.body["cards"].as_array().unwrap()),
        vec![cards[3].clone()]
    );
    // A serial is found by any part of it, in any case.
    for part in ["000004", "tmp-000004", "0004"] {
        let found = app
            .get(&format!("/api/v1/cards?serial={part}"), &app.officer)
            .await;
        assert_eq!(
            ids(found.body["cards"].as_array().unwrap()),
            vec![cards[3].clone()],
            "{part}"
        );
    }
    let bad_state = app.get("/api/v1/cards?state=lost", &app.officer).await;
    assert_eq!(bad_state.status, StatusCode::BAD_REQUEST, "{bad_state:?}");
    let bad_limit = app.get("/api/v1/cards?limit=0", &app.officer).await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    let bad_limit = app.get("/api/v1/cards?limit=many", &app.officer).await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_limit.body["error"]["code"], "bad_request");

    let mut seen = Vec::new();
    let mut path = "/api/v1/cards?limit=2".to_owned();
    for _ in 0..10 {
        let page = app.get(&path, &app.officer).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let got = page.body["cards"].as_array().unwrap();
        assert!(got.len() <= 2);
        seen.extend(ids(got));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/cards?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, cards, "pages must list every card once, in order");
}

async fn abort_only_from_requested(db: Db) {
    let app = spawn_app(db).await;
    let id = ids(&app.request_cards(1).await).remove(0);
    let answer = app
        .post(
            &format!("/api/v1/cards/{id}/abort"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["state"], "aborted");
    let again = app
        .post(
            &format!("/api/v1/cards/{id}/abort"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.body["error"]["code"], "conflict");
    let card = app.card(&id).await;
    assert_eq!(card["state"], "aborted");
    assert_eq!(
        history_processes(&card),
        ["TempCardsProcRequest", "TempCardsProcAbort"]
    );
}

/// max_extensions (2 by default): after the first extension a second one, then no third; the
/// refusal changes nothing.
async fn no_third_extension(app: &TestApp, id: &str, now: chrono::DateTime<chrono::Utc>) {
    // max_extensions (2 by default): a second extension, then no third.
    let extend_path = format!("/api/v1/cards/{id}/extend");
    let extend = || app.post(&extend_path, &app.officer, json!({}));
    assert_eq!(extend().await.status, StatusCode::OK);
    let third = extend().await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{third:?}");
    assert!(
        third.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_extensions allows 2"),
        "{third:?}"
    );
    assert_eq!(
        valid_until(&app.card(id).await),
        now + chrono::Duration::days(42),
        "a refused extension changes nothing"
    );
}

async fn assign_withdraw_extend_lock(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-1").await;
    let id = app.unassigned_card().await;
    let now = app.clock_now();
    let assigned = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");
    assert_eq!(assigned.body["state"], "assigned");
    assert_eq!(assigned.body["holder"]["id"], person.as_str());
    assert_eq!(
        valid_until(&assigned.body),
        now + chrono::Duration::days(14)
    );

    app.clock.advance(chrono::Duration::days(3));
    let extended = app
        .post(
            &format!("/api/v1/cards/{id}/extend"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(extended.status, StatusCode::OK, "{extended:?}");
    assert_eq!(extended.body["state"], "assigned");
    assert_eq!(
        valid_until(&extended.body),
        now + chrono::Duration::days(28)
    );
    no_third_extension(&app, &id, now).await;

    let withdrawn = app
        .post(
            &format!("/api/v1/cards/{id}/withdraw"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{withdrawn:?}");
    assert_eq!(withdrawn.body["state"], "unassigned");
    assert!(withdrawn.body["holder"].is_null());
    assert!(withdrawn.body["valid_until"].is_null());

    // The card is reusable: the same person can take it again, then it is locked for good.
    let again = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    // A new assignment may be extended again.
    let extended = app
        .post(
            &format!("/api/v1/cards/{id}/extend"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(extended.status, StatusCode::OK);
    let locked = app
        .post(&format!("/api/v1/cards/{id}/lock"), &app.officer, json!({}))
        .await;
    assert_eq!(locked.status, StatusCode::OK, "{locked:?}");
    assert_eq!(locked.body["state"], "locked");
    let card = app.card(&id).await;
    assert_eq!(
        history_processes(&card),
        [
            "TempCardsProcRequest",
            "TempCardsBoProcIssueMultiple",
            "TempCardsProcAssign",
            "TempCardsProcExtend",
            "TempCardsProcExtend",
            "TempCardsProcWithdraw",
            "TempCardsProcAssign",
            "TempCardsProcExtend",
            "TempCardsProcLock"
        ]
    );
    assert_eq!(card["processes"], json!([]));
    for action in ["abort", "withdraw", "extend", "lock"] {
        let answer = app
            .post(
                &format!("/api/v1/cards/{id}/{action}"),
                &app.officer,
                json!({}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CONFLICT,
            "{action} on a locked card: {answer:?}"
        );
    }
}

async fn second_assignment_to_one_person_is_refused(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-2").await;
    let first = app.unassigned_card().await;
    let second = app.unassigned_card().await;
    let ok = app
        .post(
            &format!("/api/v1/cards/{first}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let refused = app
        .post(
            &format!("/api/v1/cards/{second}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1"));
    let card = app.card(&second).await;
    assert_eq!(card["state"], "unassigned");
    assert!(card["holder"].is_null());
    assert_eq!(
        history_processes(&card),
        ["TempCardsProcRequest", "TempCardsBoProcIssueMultiple"],
        "the refused assignment left no event"
    );
    // Once the first card is withdrawn the person may take the second.
    app.post(
        &format!("/api/v1/cards/{first}/withdraw"),
        &app.officer,
        json!({}),
    )
    .await;
    let ok = app
        .post(
            &format!("/api/v1/cards/{second}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
}

async fn assign_needs_an_active_existing_person(db: Db) {
    let app = spawn_app(db).await;
    let id = app.unassigned_card().await;
    let inactive = app
        .post(
            "/api/v1/persons",
            &app.officer,
            json!({"employee_number": "E-9", "given_name": "Gone", "family_name": "Away", "state": "inactive"}),
        )
        .await;
    assert_eq!(inactive.status, StatusCode::CREATED, "{inactive:?}");
    let inactive_id = inactive.body["id"].as_str().unwrap();
    let refused = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": inactive_id}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    let missing = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": "01890a5d-ac96-774b-bcce-b302099a8057"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let garbage = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": "bob"}),
        )
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST, "{garbage:?}");
    let no_body = app
        .call(
            Method::POST,
            &format!("/api/v1/cards/{id}/assign"),
            Some(&app.officer),
            None,
        )
        .await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST, "{no_body:?}");
    assert_eq!(app.card(&id).await["state"], "unassigned");
}

async fn wrong_state_changes_nothing(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-3").await;
    let id = ids(&app.request_cards(1).await).remove(0);
    let before = app.card(&id).await;
    app.clock.advance(chrono::Duration::minutes(5));
    for (action, body) in [
        ("assign", json!({"person": person})),
        ("withdraw", json!({})),
        ("extend", json!({})),
        ("lock", json!({})),
    ] {
        let answer = app
            .post(&format!("/api/v1/cards/{id}/{action}"), &app.officer, body)
            .await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{action}: {answer:?}");
        assert!(answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requested"));
    }
    let after = app.card(&id).await;
    assert_eq!(
        before, after,
        "a refused process changed the card or its history"
    );
}

async fn login_and_roles_are_required(db: Db) {
    let app = spawn_app(db).await;
    let id = ids(&app.request_cards(1).await).remove(0);
    for (method, path) in [
        (Method::GET, "/api/v1/cards".to_owned()),
        (Method::GET, format!("/api/v1/cards/{id}")),
        (Method::POST, "/api/v1/temporary-cards".to_owned()),
        (Method::POST, format!("/api/v1/cards/{id}/abort")),
        (Method::GET, "/api/v1/persons".to_owned()),
        (Method::GET, "/api/v1/card-templates".to_owned()),
        (Method::GET, "/api/v1/audit".to_owned()),
    ] {
        let answer = app.call(method.clone(), &path, None, Some(json!({}))).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer:?}"
        );
        assert_eq!(answer.body["error"]["code"], "unauthorized");
        let forged = app
            .call(
                method.clone(),
                &path,
                Some("0123456789abcdef"),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            forged.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a forged token"
        );
    }
    let body = json!({"template": "Temporary card", "amount": 1});
    for token in [&app.auditor, &app.producer, &app.policy] {
        let answer = app
            .post("/api/v1/temporary-cards", token, body.clone())
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
        assert_eq!(answer.body["error"]["code"], "forbidden");
        let abort = app
            .post(&format!("/api/v1/cards/{id}/abort"), token, json!({}))
            .await;
        assert_eq!(abort.status, StatusCode::FORBIDDEN, "{abort:?}");
    }
    assert_eq!(app.card(&id).await["state"], "requested");
    let audit = app.get("/api/v1/audit", &app.officer).await;
    assert_eq!(audit.status, StatusCode::FORBIDDEN);
    let persons = app.get("/api/v1/persons", &app.producer).await;
    assert_eq!(persons.status, StatusCode::FORBIDDEN);
}

async fn processes_listed_are_exactly_those_allowed(db: Db) {
    let app = spawn_app(db).await;
    let names = |card: &Value| -> Vec<String> {
        card["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = ids(&app.request_cards(1).await).remove(0);
    assert_eq!(names(&app.card(&id).await), ["TempCardsProcAbort"]);
    let as_auditor = app.get(&format!("/api/v1/cards/{id}"), &app.auditor).await;
    assert_eq!(as_auditor.status, StatusCode::OK);
    assert_eq!(names(&as_auditor.body), Vec::<String>::new());
    app.produce(&id).await;
    let card = app.card(&id).await;
    assert_eq!(names(&card), ["TempCardsProcAssign", "TempCardsProcLock"]);
    assert_eq!(
        card["processes"][0]["path"],
        format!("/api/v1/cards/{id}/assign")
    );
    let person = app.person("E-4").await;
    app.post(
        &format!("/api/v1/cards/{id}/assign"),
        &app.officer,
        json!({"person": person}),
    )
    .await;
    assert_eq!(
        names(&app.card(&id).await),
        [
            "TempCardsProcWithdraw",
            "TempCardsProcExtend",
            "TempCardsProcLock"
        ]
    );
    let as_producer = app.get(&format!("/api/v1/cards/{id}"), &app.producer).await;
    assert_eq!(names(&as_producer.body), Vec::<String>::new());
}

async fn expiry_happens_on_its_own(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-5").await;
    let id = app.unassigned_card().await;
    let other = app.unassigned_card().await;
    let answer = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    app.clock.advance(chrono::Duration::days(13));
    // One run of the expiry job, as the server's own runs do, finds nothing due yet.
    let expired = cardwright_processes::temp_cards::expire::expire_due(app.ctx())
        .await
        .unwrap();
    assert_eq!(expired, 0);
    assert_eq!(
        app.card(&id).await["state"],
        "assigned",
        "expired before its time"
    );
    app.clock.advance(chrono::Duration::days(1));
    let mut state = String::new();
    for _ in 0..200 {
        app.card(&id).await["state"]
            .as_str()
            .unwrap()
            .clone_into(&mut state);
        if state == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(state, "expired");
    let card = app.card(&id).await;
    assert_eq!(
        history_processes(&card).last().unwrap(),
        "TempCardsSysExpire"
    );
    assert_eq!(
        card["history"].as_array().unwrap().last().unwrap()["operator"],
        "system"
    );
    assert_eq!(app.card(&other).await["state"], "unassigned");
    // An expired card comes back to the desk by withdrawal.
    let withdrawn = app
        .post(
            &format!("/api/v1/cards/{id}/withdraw"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{withdrawn:?}");
    assert_eq!(withdrawn.body["state"], "unassigned");
}

fn valid_until(card: &Value) -> chrono::DateTime<chrono::Utc> {
    card["valid_until"]
        .as_str()
        .expect("valid_until")
        .parse()
        .expect("a timestamp")
}

impl TestApp {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use cardwright_processes::Clock as _;
        self.clock.now()
    }
}

async fn lock_and_withdraw_take_a_reason(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-1").await;
    let id = app.unassigned_card().await;
    let assigned = app
        .post(
            &format!("/api/v1/cards/{id}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK);
    // Bad reasons are refused and change nothing.
    for body in [
        json!({"reason": "eaten"}),
        json!({"comment": "no reason given"}),
        json!({"reason": "lost", "comment": "x".repeat(501)}),
        json!({"reason": "lost", "why": "unknown field"}),
    ] {
        let refused = app
            .post(
                &format!("/api/v1/cards/{id}/withdraw"),
                &app.officer,
                body.clone(),
            )
            .await;
        assert!(
            refused.status == StatusCode::UNPROCESSABLE_ENTITY
                || refused.status == StatusCode::BAD_REQUEST,
            "{body}: {refused:?}"
        );
        assert_eq!(app.card(&id).await["state"], "assigned", "{body}");
    }
    let withdrawn = app
        .post(
            &format!("/api/v1/cards/{id}/withdraw"),
            &app.officer,
            json!({"reason": "returned", "comment": "back at the desk"}),
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{withdrawn:?}");
    // Without a body, as before.
    let res = app
        .client
        .post(format!("{}/api/v1/cards/{id}/lock", app.base))
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let events = app
        .get(&format!("/api/v1/audit?card={id}"), &app.auditor)
        .await;
    let events = events.body["events"].as_array().unwrap().clone();
    let withdraw = events
        .iter()
        .find(|e| e["process"] == "TempCardsProcWithdraw")
        .unwrap();
    assert_eq!(withdraw["details"]["reason"], "returned", "{withdraw}");
    assert_eq!(withdraw["details"]["comment"], "back at the desk");
    let lock = events
        .iter()
        .find(|e| e["process"] == "TempCardsProcLock")
        .unwrap();
    assert!(lock["details"].get("reason").is_none(), "{lock}");
}
