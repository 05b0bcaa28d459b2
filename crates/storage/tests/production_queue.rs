//! The production queue's conditional updates, on SQLite and on PostgreSQL: `claim_next` hands
//! each queued item to exactly one station, and `finish` records an attempt only while the item
//! still carries that claim.

use cardwright_domain::temp_cards::states;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use cardwright_domain::temp_cards::{BatchOrder, Card, ItemStatus, OrderState, Serial};
use cardwright_domain::{
    BatchOrderId, CardId, CardTemplate, Operator, OperatorId, Role, SerialPrefix, TemplateId,
    TemplateKind, TemplateName, Timestamp, Username,
};
use cardwright_storage::batch_orders::{self, Claim};
use cardwright_storage::{cards, operators, templates, Store};
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
        let store = Store::connect(&Store::sqlite_url(&dir.path().join("queue.db")))
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
        const INSTALL: &str = "run scripts/test, which uses the PostgreSQL at 127.0.0.1:5432, or \
                               set TEST_DATABASE_URL=postgres://USER@HOST/DB";
        let url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                cardwright_testkit::skip("TEST_DATABASE_URL (a PostgreSQL server)", INSTALL);
                return None;
            }
        };
        if !cardwright_testkit::require(&[cardwright_testkit::Part::Postgres(&url)], INSTALL) {
            return None;
        }
        let admin = Store::connect(&url).await.unwrap();
        let (_, random) = id_parts();
        let schema = format!("q_{}_{}", std::process::id(), hex(&random));
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

/// An order in state producing whose `n` cards are queued, ready for stations.
async fn queued_order(store: &Store, n: u32) -> (BatchOrderId, Vec<CardId>) {
    let mut tx = store.begin().await.unwrap();
    let (ms, r) = id_parts();
    let template = CardTemplate {
        id: TemplateId::new(ms, r),
        name: TemplateName::parse(&format!("Queue {}", hex(&r))).unwrap(),
        kind: TemplateKind::Temporary,
        serial_prefix: SerialPrefix::parse(&format!("Q{}-", &hex(&r)[..6].to_uppercase())).unwrap(),
        description: String::new(),
        front_layout: None,
        back_layout: None,
    };
    templates::insert(&mut tx, &template, at(0), false)
        .await
        .unwrap();
    let (ms, r) = id_parts();
    let operator = Operator {
        id: OperatorId::new(ms, r),
        username: Username::parse(&format!("op{}", hex(&r[..4]))).unwrap(),
        roles: [Role::ProductionAdmin].into_iter().collect(),
    };
    operators::insert(&mut tx, &operator, "not a hash", at(0))
        .await
        .unwrap();
    let (ms, r) = id_parts();
    let order = BatchOrder {
        id: BatchOrderId::new(ms, r),
        state: OrderState::Open,
        operator: operator.id,
        created_at: at(0),
        updated_at: at(0),
    };
    batch_orders::insert(&mut tx, &order, "TempCardsBoProcIssueMultiple")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for position in 0..n {
        let (ms, r) = id_parts();
        let card = Card {
            id: CardId::new(ms, r),
            serial: Serial::compose(&template.serial_prefix, u64::from(position) + 1),
            template: template.id,
            state: states::REQUESTED,
            holder: None,
            valid_until: None,
            encoded: false,
            batch_order: None,
            created_at: at(0),
            updated_at: at(0),
        };
        cards::insert(&mut tx, &card).await.unwrap();
        ids.push(card.id);
    }
    let taken = batch_orders::take_cards(&mut tx, order.id, &ids, at(0))
        .await
        .unwrap();
    assert_eq!(taken, u64::from(n));
    batch_orders::insert_items(&mut tx, order.id, &ids)
        .await
        .unwrap();
    batch_orders::move_items(
        &mut tx,
        order.id,
        ItemStatus::Selected,
        ItemStatus::Queued,
        at(1),
    )
    .await
    .unwrap();
    assert!(batch_orders::set_state(
        &mut tx,
        order.id,
        OrderState::Open,
        OrderState::Producing,
        at(1)
    )
    .await
    .unwrap());
    Store::commit(tx).await.unwrap();
    (order.id, ids)
}

async fn claim(store: &Store, station: &str, now: Timestamp) -> Option<Claim> {
    let mut tx = store.begin().await.unwrap();
    let claim = batch_orders::claim_next(
        &mut tx,
        store.dialect(),
        station,
        now,
        "TempCardsScriptOptions",
    )
    .await
    .unwrap();
    Store::commit(tx).await.unwrap();
    claim
}

async fn finish(store: &Store, claim: &Claim, status: ItemStatus, now: Timestamp) -> bool {
    let mut tx = store.begin().await.unwrap();
    let error = (status == ItemStatus::Failed).then_some("printer error: ribbon out");
    let done = batch_orders::finish(&mut tx, claim, status, error, now)
        .await
        .unwrap();
    Store::commit(tx).await.unwrap();
    done
}

async fn status_of(store: &Store, order: BatchOrderId, card: CardId) -> (ItemStatus, u32) {
    let mut conn = store.reader().await.unwrap();
    let item = batch_orders::items(&mut conn, order)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.item.card == card)
        .unwrap();
    (item.item.status, item.item.attempts)
}

/// Items are claimed oldest first, once each, with the attempt numbered; an empty queue gives
/// nothing.
async fn claims_each_item_once_in_order(db: TestDb) {
    let store = &db.store;
    let (order, cards) = queued_order(store, 3).await;
    let first = claim(store, "desk-1", at(2)).await.unwrap();
    let second = claim(store, "desk-2", at(2)).await.unwrap();
    let third = claim(store, "desk-1", at(2)).await.unwrap();
    assert_eq!([first.card, second.card, third.card], cards[..]);
    assert_eq!(first.attempt, 1);
    assert_eq!(second.station, "desk-2");
    assert!(claim(store, "desk-1", at(2)).await.is_none());
    assert_eq!(
        status_of(store, order, cards[0]).await,
        (ItemStatus::Producing, 1)
    );
    db.drop().await;
}

/// A finish counts only for the current claim: a second finish of the same claim, or a finish
/// after the item was taken again (a new attempt), changes nothing.
async fn finish_counts_only_for_the_current_claim(db: TestDb) {
    let store = &db.store;
    let (order, cards) = queued_order(store, 1).await;
    let first = claim(store, "desk-1", at(2)).await.unwrap();
    assert!(finish(store, &first, ItemStatus::Failed, at(3)).await);
    assert!(
        !finish(store, &first, ItemStatus::Produced, at(3)).await,
        "the same claim was finished twice"
    );
    assert_eq!(
        status_of(store, order, cards[0]).await,
        (ItemStatus::Failed, 1)
    );
    // Repeat production: the item is queued again and claimed as attempt 2.
    let mut tx = store.begin().await.unwrap();
    assert!(
        batch_orders::requeue(&mut tx, order, cards[0], ItemStatus::Failed, at(4))
            .await
            .unwrap()
    );
    Store::commit(tx).await.unwrap();
    let second = claim(store, "desk-2", at(5)).await.unwrap();
    assert_eq!(second.attempt, 2);
    assert!(
        !finish(store, &first, ItemStatus::Produced, at(6)).await,
        "a stale claim's finish was counted"
    );
    let stolen = Claim {
        station: "desk-1".into(),
        ..second.clone()
    };
    assert!(
        !finish(store, &stolen, ItemStatus::Produced, at(6)).await,
        "another station's finish was counted"
    );
    assert!(finish(store, &second, ItemStatus::Produced, at(6)).await);
    assert_eq!(
        status_of(store, order, cards[0]).await,
        (ItemStatus::Produced, 2)
    );
    let mut conn = store.reader().await.unwrap();
    let attempts = batch_orders::attempts(&mut conn, order).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    drop(conn);
    db.drop().await;
}

/// Items left producing are found by their station after a restart, and by anyone once stale;
/// a finish after recovery of the same claim is not counted twice.
async fn interrupted_items_are_found(db: TestDb) {
    let store = &db.store;
    let (_, cards) = queued_order(store, 2).await;
    let a = claim(store, "desk-1", at(10)).await.unwrap();
    let b = claim(store, "desk-2", at(100)).await.unwrap();
    let mut conn = store.reader().await.unwrap();
    let own = batch_orders::interrupted(&mut conn, "desk-1", at(0))
        .await
        .unwrap();
    assert_eq!(own.iter().map(|c| c.card).collect::<Vec<_>>(), [cards[0]]);
    let stale = batch_orders::interrupted(&mut conn, "desk-9", at(50))
        .await
        .unwrap();
    assert_eq!(stale.iter().map(|c| c.card).collect::<Vec<_>>(), [cards[0]]);
    drop(conn);
    assert!(finish(store, &own[0], ItemStatus::Failed, at(60)).await);
    assert!(
        !finish(store, &a, ItemStatus::Produced, at(61)).await,
        "the recovered claim was counted again"
    );
    assert!(finish(store, &b, ItemStatus::Produced, at(101)).await);
    db.drop().await;
}

/// Stations racing for one queue: every item is claimed by exactly one of them.
async fn racing_stations_never_share_an_item(db: TestDb) {
    let (_, cards) = queued_order(&db.store, 40).await;
    let mut workers = Vec::new();
    for station in 0..4 {
        let store = db.store.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // Bounded: no station can claim more than the 40 items there are.
            for _ in 0..41 {
                let Some(claim) = claim(&store, &format!("desk-{station}"), at(2)).await else {
                    break;
                };
                assert!(finish(&store, &claim, ItemStatus::Produced, at(3)).await);
                mine.push(claim.card);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }
    claimed.sort();
    let mut expected = cards.clone();
    expected.sort();
    assert_eq!(claimed, expected, "each item once, none lost");
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
    claims_each_item_once_in_order,
    finish_counts_only_for_the_current_claim,
    interrupted_items_are_found,
    racing_stations_never_share_an_item,
);
