//! Logins, tokens and the failed-login lockout.

use reqwest::{Method, StatusCode};
use serde_json::json;

use cardwright_processes::Clock as _;

use crate::helpers::{spawn_app, spawn_app_with, Db, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    tokens_last_eight_hours_by_default,
    repeated_failures_lock_the_username_out,
    parallel_wrong_passwords_are_checked_at_most_max_failures_times,
    parallel_correct_logins_all_succeed,
    tokens_expire_and_logout_ends_them
);

async fn login(
    app: &crate::helpers::TestApp,
    username: &str,
    password: &str,
) -> crate::helpers::Answer {
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn repeated_failures_lock_the_username_out(db: Db) {
    let app = spawn_app(db).await;
    let ok = login(&app, "officer", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.body["roles"], json!(["registration-officer"]));
    for _ in 0..5 {
        let bad = login(&app, "officer", "not the password").await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(bad.body["error"]["message"], "invalid username or password");
    }
    let locked = login(&app, "officer", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password must wait: {locked:?}"
    );
    // Other users are not affected, and unknown names fail like wrong passwords.
    assert_eq!(
        login(&app, "auditor", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, "nobody", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.clock.advance(chrono::Duration::minutes(6));
    assert_eq!(
        login(&app, "officer", PASSWORD).await.status,
        StatusCode::OK
    );
    let malformed = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .header("Content-Type", "application/json")
        .body("{\"username\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
}

/// A password sprayer sending in parallel gets no more guesses than one sending in turn: of 25
/// wrong passwords sent at once at most `max_failures` (5) are checked, the rest are refused
/// unchecked, and a burst that holds the right password is refused too while locked.
async fn parallel_wrong_passwords_are_checked_at_most_max_failures_times(db: Db) {
    let app = spawn_app(db).await;
    let burst = |passwords: Vec<String>| {
        let mut set = tokio::task::JoinSet::new();
        for password in passwords {
            let client = app.client.clone();
            let url = format!("{}/api/v1/auth/login", app.base);
            set.spawn(async move {
                client
                    .post(url)
                    .json(&json!({"username": "officer", "password": password}))
                    .send()
                    .await
                    .expect("login answers")
                    .status()
            });
        }
        set
    };
    let statuses = burst((0..25).map(|i| format!("guess number {i}")).collect())
        .join_all()
        .await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, 25, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert!(refused >= 20, "{statuses:?}");

    // The right password, alone or hidden in a second burst, waits for the lockout to end.
    let locked = login(&app, "officer", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{locked:?}");
    let mut passwords: Vec<String> = (0..19).map(|i| format!("second guess {i}")).collect();
    passwords.insert(7, PASSWORD.to_owned());
    let statuses = burst(passwords).join_all().await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    app.clock.advance(chrono::Duration::minutes(6));
    assert_eq!(
        login(&app, "officer", PASSWORD).await.status,
        StatusCode::OK
    );
}

/// A desk whose operators share one account, or a script that logs in from several threads:
/// twelve correct logins of a fresh account sent at once all succeed (a check counts as a
/// failure only once its password turned out wrong), while the wrong passwords of a burst after
/// them are still held to `max_failures` (5).
async fn parallel_correct_logins_all_succeed(db: Db) {
    let app = spawn_app(db).await;
    cardwright_processes::auth::add_operator(
        app.ctx(),
        &cardwright_processes::Actor::System("test"),
        "fresh",
        [cardwright_domain::Role::RegistrationOfficer]
            .into_iter()
            .collect::<cardwright_domain::Roles>(),
        PASSWORD,
    )
    .await
    .unwrap();
    let burst = |passwords: Vec<String>| {
        let mut set = tokio::task::JoinSet::new();
        for password in passwords {
            let client = app.client.clone();
            let url = format!("{}/api/v1/auth/login", app.base);
            set.spawn(async move {
                client
                    .post(url)
                    .json(&json!({"username": "fresh", "password": password}))
                    .send()
                    .await
                    .expect("login answers")
                    .status()
            });
        }
        set
    };
    let statuses = burst(vec![PASSWORD.to_owned(); 12]).join_all().await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every correct login succeeds: {statuses:?}"
    );
    let statuses = burst((0..25).map(|i| format!("guess {i}")).collect())
        .join_all()
        .await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 5, "exactly max_failures are checked: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        login(&app, "fresh", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked after the fifth failure"
    );
}

/// Without a configured lifetime a token works for eight hours and not a minute longer.
async fn tokens_last_eight_hours_by_default(db: Db) {
    let app = spawn_app_with(db, |c| c.login = cardwright::config::LoginConfig::default()).await;
    let fresh = login(&app, "auditor", PASSWORD).await;
    assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
    let token = fresh.body["token"].as_str().unwrap().to_owned();
    let issued =
        chrono::DateTime::parse_from_rfc3339(fresh.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        issued.with_timezone(&chrono::Utc) - app.clock.now(),
        chrono::Duration::hours(8)
    );
    app.clock
        .advance(chrono::Duration::hours(8) - chrono::Duration::minutes(1));
    assert_eq!(
        app.get("/api/v1/cards", &token).await.status,
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(
        app.get("/api/v1/cards", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn tokens_expire_and_logout_ends_them(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(
        app.get("/api/v1/cards", &app.auditor).await.status,
        StatusCode::OK
    );
    let logout = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&app.auditor),
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{logout:?}");
    assert_eq!(
        app.get("/api/v1/cards", &app.auditor).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/cards", &app.officer).await.status,
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::days(31));
    let expired = app.get("/api/v1/cards", &app.officer).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{expired:?}");
    assert!(expired.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}
