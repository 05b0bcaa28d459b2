//! Operator administration over the API: add with a one-time password that must be changed
//! first, change roles, disable (sessions end at once), reset a password, lift a lockout; the
//! last enabled policy-admin stays; every change is audited. And the same from the CLI.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Db, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    an_operator_added_with_a_one_time_password_changes_it_first,
    roles_and_disabling_take_effect_at_once,
    the_last_policy_admin_stays,
    two_admins_disabling_each_other_at_once_leave_one,
    a_locked_out_operator_is_let_in_again,
    only_policy_admins_administer,
);

async fn login(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    let answer = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await;
    (answer.status, answer.body)
}

async fn patch(app: &TestApp, username: &str, body: Value) -> crate::helpers::Answer {
    app.call(
        Method::PATCH,
        &format!("/api/v1/operators/{username}"),
        Some(&app.policy),
        Some(body),
    )
    .await
}

async fn audit_text(app: &TestApp) -> String {
    app.get("/api/v1/audit?limit=500", &app.auditor)
        .await
        .body
        .to_string()
}

async fn an_operator_added_with_a_one_time_password_changes_it_first(db: Db) {
    let app = spawn_app(db).await;
    let added = app
        .post(
            "/api/v1/operators",
            &app.policy,
            json!({"username": "Nina", "roles": ["registration-officer"]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    assert_eq!(added.body["username"], "nina");
    assert_eq!(added.body["must_change_password"], true);
    let one_time = added.body["one_time_password"].as_str().unwrap().to_owned();

    let (status, session) = login(&app, "nina", &one_time).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["must_change_password"], true);
    let token = session["token"].as_str().unwrap().to_owned();
    // Nothing but the password change (and logout) until then.
    let refused = app.get("/api/v1/persons", &token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(
        refused.body.to_string().contains("one-time password"),
        "{refused:?}"
    );
    let wrong = app
        .post(
            "/api/v1/auth/password",
            &token,
            json!({"old_password": "not it at all", "new_password": "a new secret"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{wrong:?}");
    let changed = app
        .post(
            "/api/v1/auth/password",
            &token,
            json!({"old_password": one_time, "new_password": "nina's own secret"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{changed:?}");
    assert_eq!(
        app.get("/api/v1/persons", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, "nina", &one_time).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, again) = login(&app, "nina", "nina's own secret").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["must_change_password"], false);

    // A reset gives a new one-time password and ends the operator's sessions.
    let reset = app
        .post(
            "/api/v1/operators/nina/reset-password",
            &app.policy,
            json!({}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{reset:?}");
    let second = reset.body["one_time_password"].as_str().unwrap();
    assert_ne!(second, one_time);
    assert_eq!(
        app.get("/api/v1/persons", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "nina", "nina's own secret").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, session) = login(&app, "nina", second).await;
    assert_eq!(session["must_change_password"], true);
    let audit = audit_text(&app).await;
    for what in [
        "OperatorAdd",
        "OperatorPasswordChange",
        "OperatorPasswordReset",
    ] {
        assert!(audit.contains(what), "{what} missing: {audit}");
    }
    assert!(
        !audit.contains(second) && !audit.contains(&one_time),
        "no password in the log"
    );
}

async fn roles_and_disabling_take_effect_at_once(db: Db) {
    let app = spawn_app(db).await;
    let changed = patch(
        &app,
        "officer",
        json!({"roles": ["registration-officer", "service-admin"]}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(
        changed.body["roles"],
        json!(["registration-officer", "service-admin"])
    );
    // The officer's running session has the new role at once.
    assert_eq!(
        app.get("/api/v1/audit", &app.officer).await.status,
        StatusCode::OK
    );

    let disabled = patch(&app, "officer", json!({"enabled": false})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    assert_eq!(disabled.body["enabled"], false);
    assert_eq!(
        app.get("/api/v1/persons", &app.officer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "officer", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let enabled = patch(&app, "officer", json!({"enabled": true})).await;
    assert_eq!(enabled.body["enabled"], true);
    assert_eq!(login(&app, "officer", PASSWORD).await.0, StatusCode::OK);

    for (body, status) in [
        (json!({"roles": []}), StatusCode::BAD_REQUEST),
        (json!({"roles": ["king"]}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            patch(&app, "officer", body.clone()).await.status,
            status,
            "{body}"
        );
    }
    assert_eq!(
        patch(&app, "nobody", json!({"enabled": false}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let list = app.get("/api/v1/operators", &app.policy).await;
    let names: Vec<&str> = list.body["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auditor", "officer", "policy", "producer"]);
    let audit = audit_text(&app).await;
    assert!(audit.matches("OperatorChange").count() >= 3, "{audit}");
}

async fn the_last_policy_admin_stays(db: Db) {
    let app = spawn_app(db).await;
    for body in [
        json!({"enabled": false}),
        json!({"roles": ["service-admin"]}),
    ] {
        let refused = patch(&app, "policy", body.clone()).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{body}: {refused:?}");
        assert!(
            refused
                .body
                .to_string()
                .contains("last enabled policy-admin"),
            "{refused:?}"
        );
    }
    // With a second policy-admin, the first may go; then the second is the last.
    assert_eq!(
        patch(
            &app,
            "auditor",
            json!({"roles": ["service-admin", "policy-admin"]})
        )
        .await
        .status,
        StatusCode::OK
    );
    let policy_before = app.get("/api/v1/operators/policy", &app.policy).await;
    assert_eq!(policy_before.body["enabled"], true);
    // Nobody disables, demotes or resets themselves; another policy-admin does.
    let own = patch(&app, "policy", json!({"enabled": false})).await;
    assert_eq!(own.status, StatusCode::CONFLICT, "{own:?}");
    assert!(own.body.to_string().contains("your own account"), "{own:?}");
    let reset_own = app
        .post(
            "/api/v1/operators/policy/reset-password",
            &app.policy,
            json!({}),
        )
        .await;
    assert_eq!(reset_own.status, StatusCode::CONFLICT, "{reset_own:?}");
    let by_other = app
        .call(
            Method::PATCH,
            "/api/v1/operators/policy",
            Some(&app.auditor),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(by_other.status, StatusCode::OK, "{by_other:?}");
    let last = app
        .call(
            Method::PATCH,
            "/api/v1/operators/auditor",
            Some(&app.auditor),
            Some(json!({"roles": ["service-admin"]})),
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{last:?}");
}

async fn two_admins_disabling_each_other_at_once_leave_one(db: Db) {
    let app = spawn_app(db).await;
    let added = app
        .post(
            "/api/v1/operators",
            &app.policy,
            json!({"username": "second", "roles": ["policy-admin"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    let (_, session) = login(&app, "second", PASSWORD).await;
    let second = session["token"].as_str().unwrap().to_owned();
    let disable = |token: String, whom: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::PATCH,
                &format!("/api/v1/operators/{whom}"),
                Some(&token),
                Some(json!({"enabled": false})),
            )
            .await
            .status
        }
    };
    let (a, b) = tokio::join!(
        disable(app.policy.clone(), "second"),
        disable(second.clone(), "policy")
    );
    // One wins; the other is refused as the last policy-admin, or finds its session ended.
    let statuses = [a, b];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(
            *s,
            StatusCode::OK | StatusCode::CONFLICT | StatusCode::UNAUTHORIZED
        )),
        "{statuses:?}"
    );
    let survivor = if a == StatusCode::OK {
        app.policy.clone()
    } else {
        second
    };
    let list = app.get("/api/v1/operators", &survivor).await;
    let enabled_admins = list.body["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["enabled"] == true
                && o["roles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "policy-admin")
        })
        .count();
    assert_eq!(enabled_admins, 1, "{list:?}");
}

async fn a_locked_out_operator_is_let_in_again(db: Db) {
    let app = spawn_app_with(db, |c| c.login.max_failures = 2).await;
    for _ in 0..2 {
        assert_eq!(
            login(&app, "producer", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, "producer", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let listed = app.get("/api/v1/operators/producer", &app.policy).await;
    assert!(listed.body["locked_until"].is_string(), "{listed:?}");
    let unlocked = app
        .post("/api/v1/operators/producer/unlock", &app.policy, json!({}))
        .await;
    assert_eq!(unlocked.status, StatusCode::OK, "{unlocked:?}");
    assert!(unlocked.body["locked_until"].is_null());
    assert_eq!(login(&app, "producer", PASSWORD).await.0, StatusCode::OK);
    assert!(audit_text(&app).await.contains("OperatorUnlock"));
}

async fn only_policy_admins_administer(db: Db) {
    let app = spawn_app(db).await;
    for token in [&app.officer, &app.producer, &app.auditor] {
        assert_eq!(
            app.get("/api/v1/operators", token).await.status,
            StatusCode::FORBIDDEN
        );
        let added = app
            .post(
                "/api/v1/operators",
                token,
                json!({"username": "eve", "roles": ["policy-admin"]}),
            )
            .await;
        assert_eq!(added.status, StatusCode::FORBIDDEN);
    }
    let taken = app
        .post(
            "/api/v1/operators",
            &app.policy,
            json!({"username": "officer", "roles": ["policy-admin"]}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{taken:?}");
    let with_password = app
        .post(
            "/api/v1/operators",
            &app.policy,
            json!({"username": "sam", "roles": ["service-admin"], "password": "sam's secret"}),
        )
        .await;
    assert_eq!(
        with_password.status,
        StatusCode::CREATED,
        "{with_password:?}"
    );
    assert!(with_password.body["one_time_password"].is_null());
    assert_eq!(
        login(&app, "sam", "sam's secret").await.1["must_change_password"],
        false
    );
    // Any operator changes their own password.
    let own = app
        .post(
            "/api/v1/auth/password",
            &app.producer,
            json!({"old_password": PASSWORD, "new_password": "producer's new secret"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::NO_CONTENT, "{own:?}");
    assert_eq!(
        app.get("/api/v1/persons", &app.producer).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_command_line_administers_operators() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[pki]\nkek = \"{}\"\n",
            dir.path().join("data").display(),
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
            .args(["operator"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    assert!(
        run(
            &["add", "root", "--role", "policy-admin", "--password-stdin"],
            Some("root secret 1\n")
        )
        .0
    );
    assert!(
        run(
            &[
                "add",
                "desk",
                "--role",
                "registration-officer",
                "--password-stdin"
            ],
            Some("desk secret 1\n")
        )
        .0
    );
    let (ok, out) = run(&["disable", "root"], None);
    assert!(!ok && out.contains("last enabled policy-admin"), "{out}");
    let (ok, out) = run(
        &[
            "roles",
            "desk",
            "--role",
            "registration-officer",
            "--role",
            "service-admin",
        ],
        None,
    );
    assert!(ok, "{out}");
    assert!(out.contains("registration-officer,service-admin"), "{out}");
    let (ok, out) = run(&["disable", "desk"], None);
    assert!(ok && out.contains("disabled"), "{out}");
    let (ok, out) = run(&["reset-password", "desk"], None);
    assert!(ok && out.contains("one-time password for desk: "), "{out}");
    let (ok, out) = run(&["unlock", "desk"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["list"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("desk\tregistration-officer,service-admin\tdisabled, one-time password"),
        "{out}"
    );
    let (ok, out) = run(&["roles", "desk", "--role", "king"], None);
    assert!(!ok && out.contains("king"), "{out}");
    let (ok, out) = run(&["enable", "ghost"], None);
    assert!(!ok && out.contains("ghost"), "{out}");
}
