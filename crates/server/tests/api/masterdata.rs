//! Persons and card templates.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;

on_both_databases!(
    persons_are_created_searched_and_checked,
    templates_are_managed_by_policy_admins
);

async fn persons_are_created_searched_and_checked(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.person("E-100").await;
    app.person("E-200").await;
    let duplicate = app
        .post(
            "/api/v1/persons",
            &app.officer,
            json!({"employee_number": "E-100", "given_name": "A", "family_name": "B"}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT, "{duplicate:?}");
    for bad in [
        json!({"employee_number": "E 1", "given_name": "A", "family_name": "B"}),
        json!({"employee_number": "E-1", "given_name": "", "family_name": "B"}),
        json!({"employee_number": "E-1", "given_name": "A", "family_name": "B", "email": "not-mail"}),
        json!({"employee_number": "E-1", "given_name": "A", "family_name": "B", "state": "retired"}),
        json!({"employee_number": "E-1", "given_name": "A"}),
        json!({"employee_number": "E-1", "given_name": "A", "family_name": "B", "salary": 1}),
    ] {
        let answer = app.post("/api/v1/persons", &app.officer, bad.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}: {answer:?}");
    }
    let found = app.get("/api/v1/persons?q=e-1", &app.officer).await;
    let persons = found.body["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 1, "{found:?}");
    assert_eq!(persons[0]["id"], ada.as_str());
    assert_eq!(persons[0]["state"], "active");
    let all = app.get("/api/v1/persons", &app.officer).await;
    assert_eq!(all.body["persons"].as_array().unwrap().len(), 2);
    let card = app.unassigned_card().await;
    app.post(
        &format!("/api/v1/cards/{card}/assign"),
        &app.officer,
        json!({"person": ada}),
    )
    .await;
    let profile = app
        .get(&format!("/api/v1/persons/{ada}"), &app.officer)
        .await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.body["employee_number"], "E-100");
    assert_eq!(profile.body["cards"][0]["id"], card.as_str());
    assert_eq!(profile.body["cards"][0]["state"], "assigned");
    let create_as_auditor = app
        .post(
            "/api/v1/persons",
            &app.auditor,
            json!({"employee_number": "E-3", "given_name": "A", "family_name": "B"}),
        )
        .await;
    assert_eq!(create_as_auditor.status, StatusCode::FORBIDDEN);
}

async fn templates_are_managed_by_policy_admins(db: Db) {
    let app = spawn_app(db).await;
    let list = app.get("/api/v1/card-templates", &app.officer).await;
    let templates = list.body["templates"].as_array().unwrap();
    assert_eq!(
        templates.len(),
        1,
        "every fresh database has the default template"
    );
    assert_eq!(templates[0]["name"], "Temporary card");
    assert_eq!(templates[0]["kind"], "temporary");
    assert_eq!(templates[0]["serial_prefix"], "TMP-");

    let body = json!({"name": "Visitor", "serial_prefix": "VIS-", "description": "Visitors"});
    let refused = app
        .post("/api/v1/card-templates", &app.officer, body.clone())
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let created = app
        .post("/api/v1/card-templates", &app.policy, body.clone())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let again = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Other", "serial_prefix": "VIS-"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    let bad = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Lower", "serial_prefix": "vis"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");

    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": id, "amount": 2}),
        )
        .await;
    assert_eq!(cards.status, StatusCode::CREATED, "{cards:?}");
    assert_eq!(cards.body["cards"][1]["serial"], "VIS-000002");

    let renamed = app
        .call(
            Method::PUT,
            &format!("/api/v1/card-templates/{id}"),
            Some(&app.policy),
            Some(json!({"name": "Guest", "serial_prefix": "GST-"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    let by_name = app.get("/api/v1/card-templates/Guest", &app.auditor).await;
    assert_eq!(by_name.body["id"], id.as_str());
    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Guest", "amount": 1}),
        )
        .await;
    assert_eq!(cards.body["cards"][0]["serial"], "GST-000003");
    let search = app.get("/api/v1/cards?template=Guest", &app.officer).await;
    assert_eq!(search.body["cards"].as_array().unwrap().len(), 3);
    let events = app.get("/api/v1/audit?limit=500", &app.policy).await;
    let processes: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["process"].as_str().unwrap())
        .collect();
    assert!(
        processes.contains(&"TemplateCreate") && processes.contains(&"TemplateUpdate"),
        "{processes:?}"
    );
}
