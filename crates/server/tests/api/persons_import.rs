//! Persons from a CSV file: dry run with line numbers, all or nothing unless the good rows are
//! wanted, deactivation (never deletion) with the option script's handling of their cards.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    a_dry_run_says_what_would_happen_and_changes_nothing,
    bad_rows_stop_the_import_unless_the_good_ones_are_wanted,
    persons_who_left_are_deactivated_and_their_cards_handled,
    bad_files_are_refused_with_their_line,
);

async fn import(app: &TestApp, query: &str, csv: &str) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/v1/persons/import?{query}", app.base))
        .bearer_auth(&app.officer)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn person_count(app: &TestApp) -> usize {
    app.get("/api/v1/persons?limit=500", &app.officer)
        .await
        .body["persons"]
        .as_array()
        .unwrap()
        .len()
}

async fn a_dry_run_says_what_would_happen_and_changes_nothing(db: Db) {
    let app = spawn_app(db).await;
    app.person("E-1").await;
    let csv = "employee_number,given_name,family_name,email\n\
               E-1,Test,Renamed,e-1@example.com\n\
               E-2,Grace,Hopper,grace@example.com\n\
               E-3,Alan,Turing,\n";
    let (status, report) = import(&app, "dry_run=true", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["applied"], false);
    assert_eq!(report["created"], json!(["E-2", "E-3"]));
    assert_eq!(report["updated"], json!(["E-1"]));
    assert_eq!(person_count(&app).await, 1, "a dry run writes nothing");
    let (status, report) = import(&app, "", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["applied"], true);
    assert_eq!(person_count(&app).await, 3);
    // First and last name together, in either order, with any spacing.
    for q in ["grace%20hopper", "Hopper%20%20Grace", "GRACE%20HOP"] {
        let found = app
            .get(&format!("/api/v1/persons?q={q}"), &app.officer)
            .await;
        assert_eq!(
            found.body["persons"][0]["employee_number"], "E-2",
            "{q}: {found:?}"
        );
        assert_eq!(found.body["persons"].as_array().unwrap().len(), 1, "{q}");
    }
    let found = app.get("/api/v1/persons?q=renamed", &app.officer).await;
    assert_eq!(
        found.body["persons"][0]["family_name"], "Renamed",
        "{found:?}"
    );
    // The same file again changes nothing.
    let (_, again) = import(&app, "", csv).await;
    assert_eq!(again["unchanged"], 3, "{again}");
    assert_eq!(again["created"], json!([]));
    let audit = app
        .get("/api/v1/audit?limit=500", &app.auditor)
        .await
        .body
        .to_string();
    assert!(
        audit.contains("PersonsImport") && audit.contains("PersonUpdate"),
        "{audit}"
    );
    // Not CSV, or no usable header: refused.
    let res = app
        .client
        .post(format!("{}/api/v1/persons/import", app.base))
        .bearer_auth(&app.officer)
        .json(&json!({"csv": csv}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = import(&app, "", "number,name\n1,x\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("employee_number"), "{body}");
    let res = app
        .client
        .post(format!("{}/api/v1/persons/import", app.base))
        .bearer_auth(&app.producer)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn bad_rows_stop_the_import_unless_the_good_ones_are_wanted(db: Db) {
    let app = spawn_app(db).await;
    let csv = "employeeNumber,givenName,sn,mail\n\
               E-10,Ada,Lovelace,ada@example.com\n\
               E 11,Bad,Number,\n\
               E-12,,Noname,\n\
               E-13,Mail,Wrong,not-an-email\n\
               E-10,Ada,Twice,\n\
               E-14,Katherine,Johnson,kj@example.com\n";
    let (status, report) = import(&app, "", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["applied"], false, "{report}");
    let lines: Vec<i64> = report["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 6], "{report}");
    assert!(
        report["bad_rows"][3]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{report}"
    );
    assert_eq!(person_count(&app).await, 0, "nothing half-applied");
    let (_, report) = import(&app, "skip_bad_rows=true", csv).await;
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["created"], json!(["E-10", "E-14"]));
    assert_eq!(person_count(&app).await, 2);
}

async fn persons_who_left_are_deactivated_and_their_cards_handled(db: Db) {
    let app = spawn_app(db).await;
    let kept = app.person("E-20").await;
    let leaver = app.person("E-21").await;
    let missing = app.person("E-22").await;
    let mut cards = Vec::new();
    for person in [&leaver, &missing] {
        let id = app.unassigned_card().await;
        let answer = app
            .post(
                &format!("/api/v1/cards/{id}/assign"),
                &app.officer,
                json!({"person": person}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        cards.push(id);
    }
    // Cards of the template "Temporary card" are withdrawn; the default would lock them.
    let saved = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(&app.policy),
            Some(json!({"source": "if process == \"TempCardsSysPersonDeactivated\" { on_person_deactivated = \"withdraw\"; }\n"})),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let csv = "employee_number,given_name,family_name,email,state\n\
               E-20,Test,Person E-20,e-20@example.com,active\n\
               E-21,Test,Person E-21,e-21@example.com,inactive\n";
    let (_, dry) = import(&app, "dry_run=true&deactivate_missing=true", csv).await;
    assert_eq!(dry["deactivated"], json!(["E-21", "E-22"]), "{dry}");
    let (_, report) = import(&app, "deactivate_missing=true", csv).await;
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["cards"].as_array().unwrap().len(), 2, "{report}");
    assert!(
        report["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "withdrawn"),
        "{report}"
    );
    for (person, state) in [
        (&kept, "active"),
        (&leaver, "inactive"),
        (&missing, "inactive"),
    ] {
        let p = app
            .get(&format!("/api/v1/persons/{person}"), &app.officer)
            .await;
        assert_eq!(p.status, StatusCode::OK, "deactivated, not deleted");
        assert_eq!(p.body["state"], state, "{p:?}");
    }
    for id in &cards {
        let card = app.card(id).await;
        assert_eq!(card["state"], "unassigned", "{card}");
        assert_eq!(
            crate::helpers::history_processes(&card).last().unwrap(),
            "TempCardsProcWithdraw"
        );
    }
    let audit = app
        .get("/api/v1/audit?limit=500", &app.auditor)
        .await
        .body
        .to_string();
    assert!(audit.matches("PersonDeactivate").count() == 2, "{audit}");
}

#[tokio::test]
async fn the_command_line_imports_persons() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[pki]\nkek = \"{}\"\n",
            dir.path().join("data").display(),
            "ef".repeat(32)
        ),
    )
    .unwrap();
    let file = dir.path().join("staff.csv");
    std::fs::write(
        &file,
        "employee_number,given_name,family_name\nE-1,Ada,Lovelace\nE 2,Bad,Row\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cardwright"))
            .args(["persons", "import"])
            .arg(&file)
            .args(extra)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 would be created") && out.contains("staff.csv:3:"),
        "{out}"
    );
    let (ok, out) = run(&[]);
    assert!(!ok && out.contains("nothing imported"), "{out}");
    let (ok, out) = run(&["--skip-bad-rows"]);
    assert!(ok && out.contains("1 created"), "{out}");
}

async fn bad_files_are_refused_with_their_line(db: Db) {
    let app = spawn_app(db).await;
    let post = |body: Vec<u8>| {
        app.client
            .post(format!("{}/api/v1/persons/import", app.base))
            .bearer_auth(&app.officer)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    // Latin-1, as an old spreadsheet saves it: the line that is not UTF-8 is named.
    let mut latin1 = b"employee_number,given_name,family_name\nE-1,Ada,Lovelace\nE-2,J".to_vec();
    latin1.extend_from_slice(&[0xFC]);
    latin1.extend_from_slice(b"rgen,M\xFCller\n");
    let res = post(latin1).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("line 3") && message.contains("UTF-8"),
        "{body}"
    );
    // A header without a needed column.
    let res = post(b"employee_number,given_name\nE-1,Ada\n".to_vec())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("line 1") && message.contains("family_name"),
        "{body}"
    );
    // The same employee number twice: both lines named.
    let (_, report) = import(
        &app,
        "",
        "employee_number,given_name,family_name\nE-1,Ada,Lovelace\nE-1,Ada,Again\n",
    )
    .await;
    assert_eq!(report["bad_rows"][0]["line"], 3, "{report}");
    assert!(
        report["bad_rows"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{report}"
    );
    // One byte over the body limit (2 MiB): 413, and nothing is imported.
    let mut huge = b"employee_number,given_name,family_name\n".to_vec();
    huge.resize(cardwright::state::BODY_LIMIT + 1, b'x');
    app.send_too_large(
        Method::POST,
        "/api/v1/persons/import",
        &app.officer,
        "text/csv",
        huge,
    )
    .await;
    assert_eq!(person_count(&app).await, 0, "nothing was imported");
}
