//! Webhook storage's conditional updates, on SQLite and on PostgreSQL: a delivery is unique per
//! subscription and what it tells of (an audit event and a checkpoint of the same sequence
//! number are two), a subscription is disabled once however many servers see its receiver's 410,
//! and a disabled subscription's deliveries are not claimed until it is enabled again.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use cardwright_domain::{DeliveryId, Timestamp, WebhookId};
use cardwright_storage::webhooks::{self, NewDelivery, Webhook, WebhookState};
use cardwright_storage::Store;
use chrono::TimeZone as _;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn id_parts() -> (u64, [u8; 10]) {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&n.to_be_bytes());
    random[8..].copy_from_slice(&std::process::id().to_be_bytes()[2..]);
    (1_800_000_000_000 + n, random)
}

fn at(seconds: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_800_000_000 + seconds, 0)
        .unwrap()
}

/// A database of the test's own: a SQLite file in a temporary folder, or a fresh schema on the
/// PostgreSQL server of TEST_DATABASE_URL, dropped at the end.
struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(Store, String)>,
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url(&dir.path().join("webhooks.db")))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            _dir: Some(dir),
            schema: None,
        }
    }

    async fn postgres() -> Option<Self> {
        let url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                cardwright_testkit::skip(
                    "TEST_DATABASE_URL (a PostgreSQL server)",
                    "run scripts/test, which uses the PostgreSQL at 127.0.0.1:5432, or set TEST_DATABASE_URL=postgres://USER@HOST/DB",
                );
                return None;
            }
        };
        let admin = Store::connect(&url).await.unwrap();
        let (_, random) = id_parts();
        let schema = format!("w_{}_{}", std::process::id(), hex(&random));
        admin
            .execute_raw(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = Store::connect(&format!("{url}{sep}options=-c%20search_path%3D{schema}"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Some(Self {
            store,
            _dir: None,
            schema: Some((admin, schema)),
        })
    }

    async fn drop(self) {
        self.store.close().await;
        if let Some((admin, schema)) = self.schema {
            admin
                .execute_raw(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// A subscription to card.requested and audit.checkpoint.
async fn subscription(store: &Store) -> WebhookId {
    let (ms, r) = id_parts();
    let webhook = Webhook {
        id: WebhookId::new(ms, r),
        url: "https://hooks.example.com/in".into(),
        events: vec!["card.requested".into(), "audit.checkpoint".into()],
        secret_sealed: "sealed".into(),
        since_seq: 0,
        created_at: at(0),
        created_by: "policy".into(),
        state: WebhookState::Enabled,
        disabled: None,
    };
    let mut tx = store.begin().await.unwrap();
    webhooks::insert(&mut tx, &webhook).await.unwrap();
    Store::commit(tx).await.unwrap();
    webhook.id
}

fn delivery(webhook: WebhookId, source: &str, seq: i64) -> NewDelivery {
    let (ms, r) = id_parts();
    NewDelivery {
        id: DeliveryId::new(ms, r),
        webhook,
        source: source.to_owned(),
        event_seq: seq,
        event_type: "card.requested".into(),
        ordering_key: source.to_owned(),
        payload: "{}".into(),
        created_at: at(0),
        give_up_at: at(50),
    }
}

async fn insert(store: &Store, deliveries: &[NewDelivery]) -> u64 {
    let mut tx = store.begin().await.unwrap();
    let written = webhooks::insert_deliveries(&mut tx, deliveries)
        .await
        .unwrap();
    Store::commit(tx).await.unwrap();
    written
}

async fn claim(store: &Store, webhook: WebhookId, now: Timestamp) -> Vec<String> {
    let mut tx = store.begin().await.unwrap();
    let taken = webhooks::claim(
        &mut tx,
        store.dialect(),
        webhook,
        now,
        at(1000),
        "server-a",
        10,
    )
    .await
    .unwrap();
    Store::commit(tx).await.unwrap();
    taken.iter().map(|d| d.id.to_string()).collect()
}

async fn deliveries_are_unique_per_source(db: TestDb) {
    let store = &db.store;
    let hook = subscription(store).await;
    let first = [
        delivery(hook, "event:5", 5),
        delivery(hook, "checkpoint:5", 5),
    ];
    assert_eq!(
        insert(store, &first).await,
        2,
        "an event and a checkpoint of one seq"
    );
    let again = [
        delivery(hook, "event:5", 5),
        delivery(hook, "checkpoint:5", 5),
    ];
    assert_eq!(insert(store, &again).await, 0, "each is written once");
    db.drop().await;
}

async fn a_disabled_subscription_waits_until_enabled(db: TestDb) {
    let store = &db.store;
    let hook = subscription(store).await;
    insert(
        store,
        &[delivery(hook, "event:1", 1), delivery(hook, "event:2", 2)],
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    assert!(webhooks::disable(&mut tx, hook, at(1), "gone")
        .await
        .unwrap());
    assert!(
        !webhooks::disable(&mut tx, hook, at(2), "gone")
            .await
            .unwrap(),
        "disabled once"
    );
    Store::commit(tx).await.unwrap();
    let mut conn = store.reader().await.unwrap();
    let found = webhooks::get(&mut conn, hook).await.unwrap().unwrap();
    assert_eq!(found.state, WebhookState::Disabled);
    assert_eq!(found.disabled, Some((at(1), "gone".to_owned())));
    assert!(webhooks::list_enabled(&mut conn).await.unwrap().is_empty());
    drop(conn);
    assert!(
        claim(store, hook, at(3)).await.is_empty(),
        "nothing is claimed"
    );

    let mut tx = store.begin().await.unwrap();
    assert!(webhooks::enable(&mut tx, hook, at(100), at(200))
        .await
        .unwrap());
    assert!(!webhooks::enable(&mut tx, hook, at(101), at(201))
        .await
        .unwrap());
    Store::commit(tx).await.unwrap();
    assert_eq!(claim(store, hook, at(100)).await.len(), 2, "due at once");
    let mut conn = store.reader().await.unwrap();
    let pending = webhooks::recent(&mut conn, hook, 10).await.unwrap();
    assert!(
        pending.iter().all(|d| d.give_up_at == at(200)),
        "{pending:?}"
    );
    assert_eq!(
        webhooks::get(&mut conn, hook)
            .await
            .unwrap()
            .unwrap()
            .disabled,
        None
    );
    drop(conn);
    db.drop().await;
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both_databases!(
    deliveries_are_unique_per_source,
    a_disabled_subscription_waits_until_enabled,
);
