//! How deliveries go out: each subscription on its own, so a receiver that stalls holds up only
//! itself; a receiver that answers 410 Gone disables its subscription until a policy-admin
//! enables it; checkpoints of the audit log go to the subscriptions that list them without
//! writing to the log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cardwright_processes::notify::webhooks::{publish_checkpoint, AuditCheckpoint};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Db, TestApp};
use crate::on_both_databases;
use crate::webhooks::{spawn_app_for, subscribe, verify, Receiver};

on_both_databases!(
    a_slow_receiver_holds_up_only_itself,
    a_receiver_that_is_gone_disables_its_subscription_until_enabled,
    checkpoints_go_to_the_subscriptions_that_list_them,
    the_servers_checkpoint_reaches_receivers_and_verifies_the_log,
);

async fn a_slow_receiver_holds_up_only_itself(db: Db) {
    let slow = Receiver::start().await;
    let fast = Receiver::start().await;
    // The slow receiver is waited for as long as the settings allow, so only the test's
    // release ends its stall.
    let app = spawn_app_for(db, &[&slow, &fast], |c| c.webhooks.timeout_secs = 300).await;
    subscribe(&app, &slow.url(), &["card.requested"]).await;
    subscribe(&app, &fast.url(), &["card.requested"]).await;
    slow.state.hold.store(true, Ordering::SeqCst);
    app.request_cards(1).await;
    fast.wait_until("the first delivery", |r| r.len() == 1)
        .await;
    for _ in 0..400 {
        if slow.state.waiting.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        slow.state.waiting.load(Ordering::SeqCst),
        1,
        "the slow receiver holds its first delivery"
    );
    // Later events reach the fast receiver while the slow one still holds its first.
    app.request_cards(2).await;
    fast.wait_until("the later deliveries", |r| r.len() == 3)
        .await;
    assert_eq!(
        slow.state.waiting.load(Ordering::SeqCst),
        1,
        "the slow receiver was still stalled"
    );
    assert!(slow.received().is_empty());
    assert_eq!(slow.state.held.load(Ordering::SeqCst), 1);
    slow.state.hold.store(false, Ordering::SeqCst);
    slow.wait_until("the slow receiver's deliveries", |r| r.len() == 3)
        .await;
}

async fn webhook(app: &TestApp, hook: &str) -> Value {
    let answer = app
        .get(&format!("/api/v1/webhooks/{hook}"), &app.policy)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

async fn audit_events(app: &TestApp, process: &str) -> Vec<Value> {
    let audit = app.get("/api/v1/audit?limit=500", &app.auditor).await;
    audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == process)
        .cloned()
        .collect()
}

async fn deliveries(app: &TestApp, hook: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/webhooks/{hook}/deliveries"), &app.policy)
        .await
        .body["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

fn checkpoint(app: &TestApp, seq: i64) -> AuditCheckpoint {
    AuditCheckpoint {
        seq,
        hash: "ab".repeat(32),
        signature: "c2lnbmVk".into(),
        at: app.ctx().now(),
    }
}

async fn a_receiver_that_is_gone_disables_its_subscription_until_enabled(db: Db) {
    let inbox = Receiver::start().await;
    let app = spawn_app_for(db, &[&inbox], |_| {}).await;
    let created = subscribe(&app, &inbox.url(), &["card.requested", "audit.checkpoint"]).await;
    let hook = created["id"].as_str().unwrap().to_owned();
    inbox.state.gone.store(true, Ordering::SeqCst);
    app.request_cards(2).await;
    let mut view = Value::Null;
    for _ in 0..400 {
        view = webhook(&app, &hook).await;
        if view["state"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(view["state"], "disabled", "{view}");
    assert!(
        view["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410 Gone"),
        "{view}"
    );
    assert!(view["disabled_at"].is_string(), "{view}");
    assert_eq!(view["pending"], 2, "{view}");
    // The 410 ended the sending: the other delivery was not tried, and both wait.
    assert_eq!(inbox.state.gone_answers.load(Ordering::SeqCst), 1);
    let waiting = deliveries(&app, &hook).await;
    assert!(
        waiting.iter().all(|d| d["state"] == "pending"),
        "{waiting:?}"
    );
    assert!(
        waiting.iter().any(|d| d["last_status"] == 410),
        "{waiting:?}"
    );
    let disabled = audit_events(&app, "WebhookDisable").await;
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["operator"], "system");
    assert_eq!(disabled[0]["details"]["url"], inbox.url());
    assert_eq!(disabled[0]["details"]["answer"], "410 Gone");

    // While disabled it gets nothing new: neither events nor checkpoints.
    app.request_cards(1).await;
    cardwright_processes::notify::fan_out(app.ctx(), 500)
        .await
        .unwrap();
    assert_eq!(
        publish_checkpoint(app.ctx(), &checkpoint(&app, 1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(deliveries(&app, &hook).await.len(), 2);

    // Enabling is for policy-admins, audited, and sends what waited.
    let path = format!("/api/v1/webhooks/{hook}/enable");
    let refused = app.post(&path, &app.officer, json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    inbox.state.gone.store(false, Ordering::SeqCst);
    let enabled = app.post(&path, &app.policy, json!({})).await;
    assert_eq!(enabled.status, StatusCode::OK, "{enabled:?}");
    assert_eq!(enabled.body["state"], "enabled", "{enabled:?}");
    assert_eq!(enabled.body["disabled_reason"], Value::Null, "{enabled:?}");
    assert_eq!(enabled.body["id"], hook.as_str());
    let received = inbox
        .wait_until("the deliveries that waited", |r| r.len() == 2)
        .await;
    assert!(received
        .iter()
        .all(|r| r.json()["type"] == "card.requested"));
    let enable_events = audit_events(&app, "WebhookEnable").await;
    assert_eq!(enable_events.len(), 1, "{enable_events:?}");
    assert_eq!(enable_events[0]["operator"], "policy");
    assert_eq!(enable_events[0]["details"]["url"], inbox.url());
    // Enabling an enabled subscription changes nothing.
    let again = app.post(&path, &app.policy, json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(audit_events(&app, "WebhookEnable").await.len(), 1);
    let unknown = app
        .post(
            "/api/v1/webhooks/01890a5d-ac96-774b-bcce-b302099a8057/enable",
            &app.policy,
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
}

async fn checkpoints_go_to_the_subscriptions_that_list_them(db: Db) {
    let listing = Receiver::start().await;
    let other = Receiver::start().await;
    let app = spawn_app_for(db, &[&listing, &other], |_| {}).await;
    let created = subscribe(&app, &listing.url(), &["audit.checkpoint"]).await;
    assert_eq!(created["events"], json!(["audit.checkpoint"]));
    let secret = created["secret"].as_str().unwrap().to_owned();
    let hook = created["id"].as_str().unwrap().to_owned();
    subscribe(&app, &other.url(), &["card.requested"]).await;
    let logged = app.get("/api/v1/audit?limit=500", &app.auditor).await.body["events"]
        .as_array()
        .unwrap()
        .len();

    // Retried like every delivery: the receiver is down at first.
    listing.state.down.store(true, Ordering::SeqCst);
    let cp = checkpoint(&app, 812);
    assert_eq!(publish_checkpoint(app.ctx(), &cp).await.unwrap(), 1);
    assert_eq!(
        publish_checkpoint(app.ctx(), &cp).await.unwrap(),
        0,
        "a checkpoint is published once"
    );
    for _ in 0..400 {
        if listing.state.refused.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(listing.state.refused.load(Ordering::SeqCst) >= 1);
    listing.state.down.store(false, Ordering::SeqCst);
    for _ in 0..6 {
        app.clock.advance(chrono::Duration::minutes(10));
        if !listing.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let received = listing
        .wait_until("the checkpoint", |r| !r.is_empty())
        .await;
    assert_eq!(received.len(), 1);
    assert!(verify(&secret, &received[0]), "signed like every delivery");
    let body = received[0].json();
    let at = cp.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        body,
        json!({
            "type": "audit.checkpoint",
            "timestamp": at,
            "data": {"seq": 812, "hash": cp.hash, "signature": cp.signature, "at": at},
        })
    );
    let listed = deliveries(&app, &hook).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["event_type"], "audit.checkpoint");
    assert_eq!(listed[0]["seq"], 812);
    assert_eq!(listed[0]["state"], "delivered");
    assert!(
        other.received().is_empty(),
        "only subscriptions that list it"
    );
    let now_logged = app.get("/api/v1/audit?limit=500", &app.auditor).await.body["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        now_logged, logged,
        "publishing wrote nothing to the audit log"
    );
}

/// The server's own checkpoint of its log, as a receiver gets it: the body, kept one per line in
/// a file, is what `cardwright audit verify --checkpoint` checks the log against.
async fn the_servers_checkpoint_reaches_receivers_and_verifies_the_log(db: Db) {
    let inbox = Receiver::start().await;
    let mut app = spawn_app_for(db, &[&inbox], |_| {}).await;
    subscribe(&app, &inbox.url(), &["audit.checkpoint"]).await;
    app.request_cards(2).await;
    let published = cardwright_processes::audit::publish_checkpoint(app.ctx())
        .await
        .unwrap()
        .expect("the head is signed");
    let received = inbox.wait_until("the checkpoint", |r| !r.is_empty()).await;
    let body = received[0].json();
    assert_eq!(body["type"], "audit.checkpoint");
    assert_eq!(body["data"]["seq"], published.seq);
    assert_eq!(body["data"]["hash"], published.hash.as_str());
    assert_eq!(
        body["data"]["signature"].as_str(),
        published.signature.as_deref()
    );
    app.stop().await;
    let file = app.config.data_dir.with_file_name("checkpoints.jsonl");
    std::fs::write(&file, format!("{}\n", received[0].body.trim())).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(["audit", "verify", "--checkpoint"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&app.config.data_dir)
        .args(["--database-url", &app.database_url])
        .env_remove("CARDWRIGHT_CONFIG")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "1 published checkpoints hold, the newest at event {}",
            published.seq
        )),
        "{said}"
    );
}
