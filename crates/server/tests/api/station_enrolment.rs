//! Wrong enrolment codes: limited per station and in all, answered 429 with `Retry-After` once
//! the limit is reached, and each an audit event naming the station.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(wrong_enrolment_codes_are_limited_and_audited);

/// Sends `code` to the enrolment route as an agent would; the status and `Retry-After`.
async fn enroll(app: &TestApp, code: &str, csr: &str) -> (StatusCode, Option<u64>, Value) {
    let res = app
        .client
        .post(format!("{}/station/v1/enroll", app.base))
        .json(&json!({"code": code, "csr": csr}))
        .send()
        .await
        .expect("enrolment answers");
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, res.json().await.unwrap_or(Value::Null))
}

/// The code with the last digit of its secret changed: aimed at the same station, but wrong.
fn wrong(code: &str, n: u32) -> String {
    let (secret, fingerprint) = code.split_once('-').unwrap();
    let last = secret.chars().last().unwrap().to_digit(16).unwrap();
    let digit = char::from_digit((last + 1 + n % 15) % 16, 16).unwrap();
    format!("{}{digit}-{fingerprint}", &secret[..secret.len() - 1])
}

async fn wrong_enrolment_codes_are_limited_and_audited(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![]).await;
    let mut codes = Vec::new();
    for name in ["desk-1", "desk-2"] {
        let reg = app
            .post(
                "/api/v1/stations",
                &app.producer,
                json!({"name": name, "description": "desk"}),
            )
            .await;
        assert_eq!(reg.status, StatusCode::CREATED, "{reg:?}");
        codes.push(reg.body["enrollment_code"].as_str().unwrap().to_owned());
    }
    let (_key, csr) = cardwright_pki::tls::key_and_request("agent").unwrap();

    // Ten wrong codes for desk-1 are checked and refused; the eleventh is not checked at all.
    for n in 0..10 {
        let (status, _, body) = enroll(&app, &wrong(&codes[0], n), &csr).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "attempt {n}: {body}");
    }
    let (status, retry, body) = enroll(&app, &wrong(&codes[0], 10), &csr).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry = retry.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("station 'desk-1'") && message.contains("try again in"),
        "{message}"
    );
    // Until the minute is over not even desk-1's right code gets through; desk-2's does.
    let (status, _, _) = enroll(&app, &codes[0], &csr).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, body) = enroll(&app, &codes[1], &csr).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["station"], "desk-2");

    let events = app.get("/api/v1/audit?limit=500", &app.auditor).await;
    let failures: Vec<&Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "StationEnrollFailed")
        .collect();
    assert_eq!(failures.len(), 10, "one event per wrong code checked");
    for failure in &failures {
        let details: Value = match &failure["details"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        };
        assert_eq!(details["station"], "desk-1", "{failure}");
        assert!(
            details["reason"].as_str().unwrap().contains("not valid"),
            "{failure}"
        );
    }

    app.clock.advance(chrono::Duration::seconds(61));
    let (status, _, body) = enroll(&app, &codes[0], &csr).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a new minute lets the right code in: {body}"
    );

    // Codes that name no station count against all stations: sixty a minute, then 429.
    app.clock.advance(chrono::Duration::seconds(61));
    let fingerprint = codes[0].split_once('-').unwrap().1;
    for n in 0..60_u32 {
        let code = format!("{:032x}-{fingerprint}", u128::from(n) * 7919);
        let (status, _, body) = enroll(&app, &code, &csr).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "attempt {n}: {body}");
    }
    let (status, retry, body) = enroll(&app, "not a code at all", &csr).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(retry.is_some());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 60 enrolment attempts in a minute"),
        "{body}"
    );
}
