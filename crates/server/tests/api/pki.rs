//! The certificate authority's public documents.

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::{have_openssl, spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(revocation_list_numbers_only_grow);

/// The CRL number of a DER revocation list, read by openssl.
fn crl_number(app: &TestApp, der: &[u8]) -> u64 {
    let path = app.config.data_dir.join(format!("crl-{}.der", der.len()));
    std::fs::write(&path, der).unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-crlnumber", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .trim()
        .strip_prefix("crlNumber=0x")
        .or_else(|| text.trim().strip_prefix("crlNumber="))
        .unwrap_or_else(|| panic!("{text}"));
    u64::from_str_radix(hex, 16).unwrap()
}

async fn fetch(app: &TestApp) -> Vec<u8> {
    let res = app
        .client
        .get(format!("{}/pki/crl", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.bytes().await.unwrap().to_vec()
}

/// Every list signed gets a higher number than the one before, also when its content is the
/// same; a list whose revocations did not change is served again for an hour.
async fn revocation_list_numbers_only_grow(db: Db) {
    if !have_openssl() {
        return;
    }
    let app = spawn_app(db).await;
    let first = fetch(&app).await;
    let n1 = crl_number(&app, &first);
    assert!(n1 >= 1);
    let again = fetch(&app).await;
    assert_eq!(again, first, "an unchanged list is served again");
    app.clock.advance(chrono::Duration::hours(2));
    let later = fetch(&app).await;
    let n2 = crl_number(&app, &later);
    assert!(n2 > n1, "re-signed with the same content: {n1} then {n2}");
    app.clock.advance(chrono::Duration::hours(2));
    let n3 = crl_number(&app, &fetch(&app).await);
    assert!(n3 > n2, "{n2} then {n3}");
}
