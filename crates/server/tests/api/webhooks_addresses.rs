//! Webhooks do not reach inside the network: a URL whose host is, or resolves to, an address
//! inside it is refused when it is subscribed, and every connection checks the addresses a name
//! resolves to, so a name that turns to loopback later reaches nothing; a prefix of
//! `webhooks.allowed_urls` is the one way in.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;
use crate::webhooks::{spawn_app_for, subscribe, Receiver};

on_both_databases!(
    urls_inside_the_network_are_refused,
    a_prefix_of_the_allow_list_reaches_inside,
    a_name_that_turns_inside_reaches_nothing,
);

async fn post_webhook(app: &TestApp, url: &str) -> crate::helpers::Answer {
    app.post(
        "/api/v1/webhooks",
        &app.policy,
        json!({"url": url, "events": ["card.requested"]}),
    )
    .await
}

async fn urls_inside_the_network_are_refused(db: Db) {
    let app = spawn_app(db).await;
    for (url, shown) in [
        (
            "http://127.0.0.1:8080/hook",
            "127.0.0.1, a loopback address",
        ),
        ("http://127.0.0.1:5432/", "127.0.0.1, a loopback address"),
        ("http://127.1/", "127.0.0.1, a loopback address"),
        ("http://2130706433/", "127.0.0.1, a loopback address"),
        ("http://0x7f.1:22/", "127.0.0.1, a loopback address"),
        ("http://[::1]:8080/", "::1, a loopback address"),
        (
            "http://[::ffff:127.0.0.1]/",
            "127.0.0.1, a loopback address",
        ),
        ("http://[::ffff:10.0.0.1]/", "10.0.0.1, a private address"),
        (
            "http://localhost:8080/hook",
            "localhost, a loopback address",
        ),
        ("http://LOCALHOST./hook", "localhost., a loopback address"),
        (
            "http://siem.localhost/hook",
            "siem.localhost, a loopback address",
        ),
        ("http://0.0.0.0:8080/", "0.0.0.0, an unspecified address"),
        ("http://0/", "0.0.0.0, an unspecified address"),
        ("http://[::]/", "::, an unspecified address"),
        ("http://10.0.0.1/", "10.0.0.1, a private address"),
        ("https://172.16.8.1/", "172.16.8.1, a private address"),
        (
            "http://192.168.1.20:8443/",
            "192.168.1.20, a private address",
        ),
        (
            "http://100.64.0.1/",
            "100.64.0.1, a shared (carrier-grade NAT) address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254, a link-local address",
        ),
        ("http://[fe80::1]/", "fe80::1, a link-local address"),
        (
            "http://[fd00:ec2::254]/",
            "fd00:ec2::254, a unique-local address",
        ),
        ("http://224.0.0.251/", "224.0.0.251, a multicast address"),
        (
            "http://255.255.255.255/",
            "255.255.255.255, the broadcast address",
        ),
    ] {
        let answer = post_webhook(&app, url).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("inside the network")
                && message.contains(shown)
                && message.contains("webhooks.allowed_urls"),
            "{url}: {message}"
        );
    }
    // The URL parser would read `http:///x` as `http://x/`: the text as written names no host.
    for url in [
        "http:///x",
        "https:///hook",
        "http:/example.com/hook",
        "http://:80/x",
    ] {
        let answer = post_webhook(&app, url).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {answer:?}"
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("names a host"),
            "{url}: {answer:?}"
        );
    }
    assert_eq!(
        app.get("/api/v1/webhooks", &app.policy).await.body["webhooks"],
        json!([]),
        "nothing refused was kept"
    );
    // An address on the internet is taken (this one is for documentation and never reached).
    let taken = subscribe(&app, "http://192.0.2.10:8080/hook", &["card.requested"]).await;
    assert_eq!(taken["url"], "http://192.0.2.10:8080/hook", "{taken}");
}

async fn a_prefix_of_the_allow_list_reaches_inside(db: Db) {
    let inbox = Receiver::start().await;
    let app = spawn_app_for(db, &[&inbox], |_| {}).await;
    let created = subscribe(&app, &inbox.url(), &["card.requested"]).await;
    assert_eq!(created["url"], inbox.url());
    app.request_cards(1).await;
    inbox
        .wait_until("the delivery to the allowed receiver", |r| r.len() == 1)
        .await;
    // The same host on another port is not named by the prefix.
    let other = format!("http://127.0.0.1:{}/hook", inbox.addr.port() ^ 1);
    let answer = post_webhook(&app, &other).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{answer:?}"
    );
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("inside the network"),
        "{answer:?}"
    );
    assert_eq!(
        app.get("/api/v1/webhooks", &app.policy).await.body["webhooks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// The newest delivery of a subscription once it was attempted (about ten seconds at most).
async fn attempted(app: &TestApp, hook: &str) -> Value {
    let mut delivery = Value::Null;
    for _ in 0..400 {
        delivery = app
            .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &app.policy)
            .await
            .body["deliveries"][0]
            .clone();
        if delivery["attempts"].as_i64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    delivery
}

async fn a_name_that_turns_inside_reaches_nothing(db: Db) {
    let app = spawn_app(db).await;
    // A receiver listening, and a port where nothing listens: the two must fail alike.
    let inbox = Receiver::start().await;
    let closed = crate::helpers::free_port();
    // A subscription made while the name pointed outside, whose name resolves to loopback now
    // (as a DNS answer that changed, rebinding, would have it): staged as a copy of one made
    // through the API, so the server never tries the address it was made with.
    let made = subscribe(&app, "http://192.0.2.10:9/hook", &["card.requested"]).await;
    let made = made["id"].as_str().unwrap();
    let mut hooks = Vec::new();
    for (port, id) in [
        (inbox.addr.port(), "01890a5d-ac96-774b-bcce-b302099a8061"),
        (closed, "01890a5d-ac96-774b-bcce-b302099a8062"),
    ] {
        app.sql(&format!(
            "INSERT INTO webhooks (id, url, events, secret_sealed, since_seq, created_at, \
             created_by, state) SELECT '{id}', 'http://localhost:{port}/hook', events, \
             secret_sealed, since_seq, created_at, created_by, state FROM webhooks \
             WHERE id = '{made}'"
        ))
        .await;
        hooks.push(id);
    }
    let removed = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{made}"),
            Some(&app.policy),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{removed:?}");
    app.request_cards(1).await;
    let mut errors = Vec::new();
    for hook in &hooks {
        let delivery = attempted(&app, hook).await;
        assert_eq!(delivery["state"], "pending", "{delivery}");
        assert_eq!(delivery["last_status"], Value::Null, "{delivery}");
        errors.push(
            delivery["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        errors[0].contains("inside the network") && errors[0].contains("webhooks.allowed_urls"),
        "{errors:?}"
    );
    assert_eq!(errors[0], errors[1], "an open and a closed port look alike");
    assert!(inbox.received().is_empty(), "nothing reached the receiver");
    assert_eq!(inbox.state.active.load(Ordering::SeqCst), 0);
}
