//! A station renews its client certificate: a new key at most once an hour, the same key asked
//! again gets the same certificate, the old one works until the new one is used and is then
//! refused and on the revocation list; a disabled station renews nothing.

use cardwright_processes::stations;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app_with, Db};
use crate::on_both_databases;

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn serial(der: &[u8]) -> Vec<u8> {
    cardwright_pki::subject_and_serial(der).unwrap().1
}

async fn a_station_renews_its_certificate(db: Db) {
    let app = spawn_app_with(db, |c| c.stations = vec![]).await;
    let ctx = app.ctx();
    let created = app
        .post(
            "/api/v1/stations",
            &app.producer,
            json!({"name": "desk-1", "description": "front desk"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let (_, csr) = cardwright_pki::tls::key_and_request("agent").unwrap();
    let first = stations::enroll(ctx, created.body["enrollment_code"].as_str().unwrap(), &csr)
        .await
        .unwrap();
    let first = der(&first.certificate_pem);
    let (new_key, new_csr) = cardwright_pki::tls::key_and_request("agent").unwrap();
    let early = stations::renew(ctx, &first, &new_csr)
        .await
        .unwrap_err()
        .to_string();
    assert!(early.contains("at most once an hour"), "{early}");
    assert!(stations::renew(ctx, b"not a certificate", &new_csr)
        .await
        .is_err());

    app.clock.advance(chrono::Duration::hours(2));
    let renewed = stations::renew(ctx, &first, &new_csr).await.unwrap();
    assert_eq!(renewed.station, "desk-1");
    let second = der(&renewed.certificate_pem);
    let (key, end) = cardwright_pki::tls::public_key_and_end(&second).unwrap();
    assert_eq!(
        key,
        cardwright_pki::tls::request_public_key(&new_csr).unwrap()
    );
    assert_eq!(
        end,
        (ctx.now() + chrono::Duration::days(365)).timestamp(),
        "a year from the renewal"
    );
    // Its answer lost, the station asks again with the same key: the same certificate.
    let again = stations::renew(ctx, &first, &new_csr).await.unwrap();
    assert_eq!(again.certificate_pem, renewed.certificate_pem);
    let request = cardwright_pki::tls::request_for(&new_key, "agent").unwrap();
    let same_key = stations::renew(ctx, &first, &request).await.unwrap();
    assert_eq!(same_key.certificate_pem, renewed.certificate_pem);
    // Another key within the hour is refused.
    let (_, other) = cardwright_pki::tls::key_and_request("agent").unwrap();
    assert!(stations::renew(ctx, &first, &other).await.is_err());

    // The old certificate works until the new one is used; then it is refused and listed.
    let crl = cardwright_processes::pki::crl(ctx).await.unwrap();
    assert!(!contains(&crl, &serial(&first)));
    stations::authenticate(ctx, &first).await.unwrap();
    let view = app.get("/api/v1/stations/desk-1", &app.producer).await;
    assert_eq!(
        view.body["certificate_serial"],
        hex::encode(serial(&first)),
        "{view:?}"
    );
    stations::authenticate(ctx, &second).await.unwrap();
    let refused = stations::authenticate(ctx, &first)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not a current station's"), "{refused}");
    let view = app.get("/api/v1/stations/desk-1", &app.producer).await;
    assert_eq!(
        view.body["certificate_serial"],
        hex::encode(serial(&second))
    );
    let until =
        chrono::DateTime::parse_from_rfc3339(view.body["certificate_expires_at"].as_str().unwrap())
            .unwrap();
    assert_eq!(until.timestamp(), end, "{view:?}");
    let crl = cardwright_processes::pki::crl(ctx).await.unwrap();
    assert!(contains(&crl, &serial(&first)), "the old one is listed");
    assert!(!contains(&crl, &serial(&second)));

    let audit = app.get("/api/v1/audit?limit=500", &app.policy).await;
    let renewals: Vec<&serde_json::Value> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "StationRenew")
        .collect();
    assert_eq!(
        renewals.len(),
        1,
        "one renewal, asked three times: {audit:?}"
    );

    // A disabled station renews nothing.
    app.clock.advance(chrono::Duration::hours(2));
    app.post("/api/v1/stations/desk-1/disable", &app.producer, json!({}))
        .await;
    let (_, later) = cardwright_pki::tls::key_and_request("agent").unwrap();
    let disabled = stations::renew(ctx, &second, &later)
        .await
        .unwrap_err()
        .to_string();
    assert!(disabled.contains("disabled"), "{disabled}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

on_both_databases!(a_station_renews_its_certificate);
