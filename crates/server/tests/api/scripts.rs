//! The option script TempCardsScriptOptions: refusals, versions, and processes reading it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    bad_scripts_are_refused_and_the_old_one_stays,
    validity_per_template_comes_from_the_script,
    two_cards_per_person_when_the_script_says_so,
    earlier_versions_can_be_restored,
    a_script_failing_at_run_time_never_stops_a_process,
    a_bad_branch_for_one_operator_is_refused_at_save,
);

/// The save check runs the script for every operator's username too, so a branch on one
/// operator cannot slip through and fall back to the defaults when that operator works.
async fn a_bad_branch_for_one_operator_is_refused_at_save(db: Db) {
    let app = spawn_app(db).await;
    let before = version(&app).await;
    let refused = put(&app, "if operator == \"officer\" { validity_days = 0; }").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("operator \"officer\""), "{message}");
    assert_eq!(version(&app).await, before, "the script in force stays");
    let accepted = put(&app, "if operator == \"officer\" { validity_days = 3; }").await;
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
}

const PATH: &str = "/api/v1/scripts/TempCardsScriptOptions";

async fn put(app: &TestApp, source: &str) -> crate::helpers::Answer {
    app.call(
        Method::PUT,
        PATH,
        Some(&app.policy),
        Some(json!({ "source": source })),
    )
    .await
}

async fn version(app: &TestApp) -> i64 {
    app.get(PATH, &app.policy).await.body["version"]
        .as_i64()
        .unwrap()
}

/// A card of `template`, produced into unassigned.
async fn unassigned_of(app: &TestApp, template: &str) -> String {
    let answer = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": template, "amount": 1}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let id = answer.body["cards"][0]["id"].as_str().unwrap().to_owned();
    app.produce(&id).await;
    id
}

fn days_valid(app: &TestApp, card: &Value) -> i64 {
    let until: chrono::DateTime<chrono::Utc> =
        card["valid_until"].as_str().unwrap().parse().unwrap();
    (until - app.clock_now()).num_days()
}

async fn bad_scripts_are_refused_and_the_old_one_stays(db: Db) {
    let app = spawn_app(db).await;
    let shipped = app.get(PATH, &app.policy).await;
    assert_eq!(shipped.status, StatusCode::OK, "{shipped:?}");
    assert_eq!(shipped.body["version"], 1);
    assert_eq!(shipped.body["saved_by"], "system");
    assert!(shipped.body["source"]
        .as_str()
        .unwrap()
        .contains("pin_length = 6;"));
    let cases = [
        (
            "pin_length = 6;\nvalidity_days = 14;\nencode = (;\n",
            "line 3, column",
            Some(3),
        ),
        ("loop { }\n", "more than", None),
        (
            "let s = \"x\";\nloop { s += s; }\n",
            "longer than 4096 bytes",
            Some(2),
        ),
        ("pin_lenght = 6;\n", "pin_lenght", Some(1)),
        ("let pin_lenght = 6;\n", "pin_lenght", None),
        ("pin_length = 3;\n", "pin_length", None),
        ("puk_length = 17;\n", "puk_length", None),
        ("validity_days = 366;\n", "validity_days", None),
        (
            "encode = true;\ncertificates = [\"authentication\", \"wifi\"];\n",
            "wifi",
            None,
        ),
        ("certificates = [\"vpn\"];\n", "vpn", None),
        ("pin_length = \"6\";\n", "pin_length", None),
        (
            "if template == \"Temporary card\" { validity_days = 0; }\n",
            "validity_days",
            None,
        ),
    ];
    for (source, expected, line) in cases {
        let started = std::time::Instant::now();
        let answer = put(&app, source).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{source}: {answer:?}"
        );
        assert_eq!(answer.body["error"]["code"], "unprocessable");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&expected.to_lowercase()),
            "{source}: {message}"
        );
        if let Some(line) = line {
            assert_eq!(answer.body["error"]["line"], line, "{source}: {answer:?}");
            assert!(answer.body["error"]["column"].as_u64().is_some());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "refusals come quickly"
        );
        assert_eq!(
            version(&app).await,
            1,
            "the script in force stays after {source}"
        );
    }
    let forbidden = app.get(PATH, &app.officer).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let unknown = app.get("/api/v1/scripts/Other", &app.policy).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn validity_per_template_comes_from_the_script(db: Db) {
    let app = spawn_app(db).await;
    let created = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Visitor", "serial_prefix": "VIS-"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let saved = put(
        &app,
        "validity_days = 9;\nif template == \"Visitor\" {\n    validity_days = 5;\n}\n",
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    assert_eq!(saved.body["version"], 2);
    assert_eq!(saved.body["saved_by"], "policy");
    let visitor = unassigned_of(&app, "Visitor").await;
    let temporary = unassigned_of(&app, "Temporary card").await;
    let first = app.person("E-1").await;
    let second = app.person("E-2").await;
    let a = app
        .post(
            &format!("/api/v1/cards/{visitor}/assign"),
            &app.officer,
            json!({"person": first}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(days_valid(&app, &a.body), 5);
    let b = app
        .post(
            &format!("/api/v1/cards/{temporary}/assign"),
            &app.officer,
            json!({"person": second}),
        )
        .await;
    assert_eq!(days_valid(&app, &b.body), 9);
    let extended = app
        .post(
            &format!("/api/v1/cards/{visitor}/extend"),
            &app.officer,
            json!({}),
        )
        .await;
    assert_eq!(
        days_valid(&app, &extended.body),
        10,
        "extensions use the template's validity too"
    );
    let card = app.card(&visitor).await;
    let assign = card["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["process"] == "TempCardsProcAssign")
        .unwrap();
    assert_eq!(
        assign["details"]["options"]["validity_days"], 5,
        "the options in force are audited"
    );
    assert_eq!(assign["details"]["options"]["script_version"], 2);
}

async fn two_cards_per_person_when_the_script_says_so(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-3").await;
    let cards = [
        app.unassigned_card().await,
        app.unassigned_card().await,
        app.unassigned_card().await,
    ];
    let ok = app
        .post(
            &format!("/api/v1/cards/{}/assign", cards[0]),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = app
        .post(
            &format!("/api/v1/cards/{}/assign", cards[1]),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::CONFLICT,
        "the shipped script allows one"
    );
    let saved = put(&app, "max_active_per_person = 2;\n").await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let ok = app
        .post(
            &format!("/api/v1/cards/{}/assign", cards[1]),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let third = app
        .post(
            &format!("/api/v1/cards/{}/assign", cards[2]),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{third:?}");
    assert!(third.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
}

async fn earlier_versions_can_be_restored(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(
        put(&app, "validity_days = 3;\n").await.status,
        StatusCode::OK
    );
    assert_eq!(
        put(&app, "validity_days = 4;\n").await.status,
        StatusCode::OK
    );
    let restored = app
        .post(
            &format!("{PATH}/versions/2/restore"),
            &app.policy,
            json!({}),
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{restored:?}");
    assert_eq!(restored.body["version"], 4);
    assert_eq!(restored.body["source"], "validity_days = 3;\n");
    let versions = app.get(&format!("{PATH}/versions"), &app.policy).await;
    let numbers: Vec<i64> = versions.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    let card = app.unassigned_card().await;
    let person = app.person("E-4").await;
    let assigned = app
        .post(
            &format!("/api/v1/cards/{card}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(days_valid(&app, &assigned.body), 3);
    let missing = app
        .post(
            &format!("{PATH}/versions/99/restore"),
            &app.policy,
            json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let audit = app.get("/api/v1/audit?limit=500", &app.auditor).await;
    let saves: Vec<&Value> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "ScriptSave")
        .collect();
    assert_eq!(saves.len(), 3, "every save is audited");
    assert_eq!(saves[2]["details"]["restored_from"], 2);
}

async fn a_script_failing_at_run_time_never_stops_a_process(db: Db) {
    let app = spawn_app(db).await;
    // The save-time check runs for every operator there is; this branch fails only for an
    // operator added after the save.
    let saved = put(&app, "if operator == \"late\" { validity_days = 0; }\n").await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    cardwright_processes::auth::add_operator(
        app.ctx(),
        &cardwright_processes::Actor::System("test"),
        "late",
        [cardwright_domain::Role::RegistrationOfficer]
            .into_iter()
            .collect(),
        crate::helpers::PASSWORD,
    )
    .await
    .unwrap();
    let late = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "late", "password": crate::helpers::PASSWORD})),
        )
        .await;
    let late = late.body["token"].as_str().unwrap().to_owned();
    let card = app.unassigned_card().await;
    let person = app.person("E-5").await;
    let assigned = app
        .post(
            &format!("/api/v1/cards/{card}/assign"),
            &late,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");
    assert_eq!(
        days_valid(&app, &assigned.body),
        14,
        "the shipped defaults apply"
    );
    let history = app.card(&card).await;
    let event = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["process"] == "TempCardsProcAssign")
        .unwrap();
    assert!(
        event["details"]["options"]["script_error"]
            .as_str()
            .unwrap()
            .contains("validity_days"),
        "{event}"
    );
}
