//! Batch orders, their items and production attempts.

use cardwright_domain::temp_cards::states;
use cardwright_domain::temp_cards::{BatchOrder, CardState, ItemStatus, OrderItem, OrderState};
use cardwright_domain::{BatchOrderId, CardId, OperatorId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{opt_from_micros, Arg, QueryBuilder};
use crate::{from_micros, to_micros, Conn, Dialect, StoreError};

/// An item with the card facts shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub item: OrderItem,
    pub serial: String,
    pub card_state: CardState,
}

/// Items per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub selected: u64,
    pub queued: u64,
    pub producing: u64,
    pub produced: u64,
    pub failed: u64,
}

impl Counts {
    fn add(&mut self, status: ItemStatus, n: u64) {
        match status {
            ItemStatus::Selected => self.selected += n,
            ItemStatus::Queued => self.queued += n,
            ItemStatus::Producing => self.producing += n,
            ItemStatus::Produced => self.produced += n,
            ItemStatus::Failed => self.failed += n,
        }
    }
}

/// An order with the name of the operator who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order: BatchOrder,
    pub process: String,
    pub operator_name: String,
    pub counts: Counts,
    /// The station named to produce the order (`None`: any station).
    pub station: Option<String>,
}

const SELECT_ORDER: &str =
    "SELECT b.id, b.process, b.state, b.operator_id, b.created_at, b.updated_at, \
    o.username, b.station FROM batch_orders b JOIN operators o ON o.id = b.operator_id";

fn order(row: &AnyRow) -> Result<(BatchOrder, String, String, Option<String>), StoreError> {
    Ok((
        BatchOrder {
            id: BatchOrderId::parse(&row.try_get::<String, _>("id")?)?,
            state: row.try_get::<String, _>("state")?.parse()?,
            operator: OperatorId::parse(&row.try_get::<String, _>("operator_id")?)?,
            created_at: from_micros(row.try_get("created_at")?)?,
            updated_at: from_micros(row.try_get("updated_at")?)?,
        },
        row.try_get("process")?,
        row.try_get("username")?,
        row.try_get("station")?,
    ))
}

pub async fn insert(conn: &mut Conn, order: &BatchOrder, process: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO batch_orders (id, process, state, operator_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(order.id.to_string())
    .bind(process)
    .bind(order.state.as_str())
    .bind(order.operator.to_string())
    .bind(to_micros(order.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ties every card of `cards` that is free and in state requested or failed to the order, in
/// one statement. Returns how many were taken; the caller compares it with the number asked for.
pub async fn take_cards(
    conn: &mut Conn,
    order: BatchOrderId,
    cards: &[CardId],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut taken = 0;
    for chunk in cards.chunks(500) {
        let mut q = QueryBuilder::new("UPDATE cards SET batch_order_id = ");
        let order_arg = q.arg(Arg::Text(order.to_string()));
        q.push(&order_arg);
        let now_arg = q.arg(Arg::Int(to_micros(now)));
        q.push(&format!(
            ", updated_at = {now_arg} WHERE batch_order_id IS NULL AND state IN ("
        ));
        let requested = q.arg(Arg::Text(states::REQUESTED.as_str().to_owned()));
        let failed = q.arg(Arg::Text(states::FAILED.as_str().to_owned()));
        q.push(&format!("{requested}, {failed}) AND id IN ("));
        let ids: Vec<String> = chunk
            .iter()
            .map(|c| q.arg(Arg::Text(c.to_string())))
            .collect();
        q.push(&ids.join(", "));
        q.push(")");
        taken += q.query().execute(&mut *conn).await?.rows_affected();
    }
    Ok(taken)
}

/// Adds the order's items, selected, in the order given.
pub async fn insert_items(
    conn: &mut Conn,
    order: BatchOrderId,
    cards: &[CardId],
) -> Result<(), StoreError> {
    for (start, chunk) in (0..).step_by(500).zip(cards.chunks(500)) {
        let mut q = QueryBuilder::new(
            "INSERT INTO batch_order_items (order_id, card_id, position, status, attempts) VALUES ",
        );
        let order_arg = q.arg(Arg::Text(order.to_string()));
        let status = q.arg(Arg::Text(ItemStatus::Selected.as_str().to_owned()));
        for (i, card) in chunk.iter().enumerate() {
            let card_arg = q.arg(Arg::Text(card.to_string()));
            let position = q.arg(Arg::Int(start + i64::try_from(i).unwrap_or(i64::MAX)));
            q.push(if i == 0 { "(" } else { ", (" });
            q.push(&format!(
                "{order_arg}, {card_arg}, {position}, {status}, 0)"
            ));
        }
        q.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Item counts per status of the given orders.
async fn counts(
    conn: &mut Conn,
    orders: &[BatchOrderId],
) -> Result<Vec<(BatchOrderId, Counts)>, StoreError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::new(
        "SELECT order_id, status, COUNT(*) AS n FROM batch_order_items WHERE order_id IN (",
    );
    let placeholders: Vec<String> = orders
        .iter()
        .map(|o| q.arg(Arg::Text(o.to_string())))
        .collect();
    q.push(&placeholders.join(", "));
    q.push(") GROUP BY order_id, status");
    let rows = q.query().fetch_all(conn).await?;
    let mut out: Vec<(BatchOrderId, Counts)> =
        orders.iter().map(|o| (*o, Counts::default())).collect();
    for row in rows {
        let id = BatchOrderId::parse(&row.try_get::<String, _>("order_id")?)?;
        let status: ItemStatus = row.try_get::<String, _>("status")?.parse()?;
        let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
        if let Some((_, c)) = out.iter_mut().find(|(o, _)| *o == id) {
            c.add(status, n);
        }
    }
    Ok(out)
}

/// One order with its counts.
pub async fn get(conn: &mut Conn, id: BatchOrderId) -> Result<Option<OrderRecord>, StoreError> {
    let row = sqlx::query(&format!("{SELECT_ORDER} WHERE b.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (order, process, operator_name, station) = order(&row)?;
    let counts = counts(conn, &[id])
        .await?
        .pop()
        .map(|(_, c)| c)
        .unwrap_or_default();
    Ok(Some(OrderRecord {
        order,
        process,
        operator_name,
        counts,
        station,
    }))
}

/// Locks an order until the transaction ends; every change to an order's state takes this lock
/// first, so changes to one order take turns. Stations recording their cards take the shared
/// lock ([`lock_shared`]): they wait for a change of the order's state and it waits for them,
/// but they do not wait for each other.
pub async fn lock(
    conn: &mut Conn,
    dialect: Dialect,
    id: BatchOrderId,
) -> Result<Option<BatchOrder>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT b.id, b.process, b.state, b.operator_id, b.created_at, b.updated_at, '' AS username, b.station \
         FROM batch_orders b WHERE b.id = $1{}",
        dialect.for_update()
    ))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(|r| order(r).map(|(o, ..)| o)).transpose()
}

/// The order, locked against changes of its state (Next, Cancel, Complete, Repeat production)
/// but not against other stations recording their cards of it at the same time, with what
/// [`in_progress`] tells, read in the same statement.
pub async fn lock_shared(
    conn: &mut Conn,
    dialect: Dialect,
    id: BatchOrderId,
) -> Result<Option<(BatchOrder, u64, u64)>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT b.id, b.process, b.state, b.operator_id, b.created_at, b.updated_at, '' AS username, b.station, \
         {IN_PROGRESS} FROM batch_orders b WHERE b.id = $1{}",
        dialect.for_share()
    ))
    .bind(id.to_string())
    .bind(ItemStatus::Queued.as_str())
    .bind(ItemStatus::Producing.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (queued, producing) = progress(&row)?;
    Ok(Some((order(&row)?.0, queued, producing)))
}

/// Orders, newest first, optionally in one state.
pub async fn list(
    conn: &mut Conn,
    state: Option<OrderState>,
    before: Option<BatchOrderId>,
    limit: u32,
) -> Result<Vec<OrderRecord>, StoreError> {
    let mut q = QueryBuilder::new(SELECT_ORDER);
    let mut clauses = Vec::new();
    if let Some(state) = state {
        clauses.push(format!(
            "b.state = {}",
            q.arg(Arg::Text(state.as_str().into()))
        ));
    }
    if let Some(before) = before {
        clauses.push(format!("b.id < {}", q.arg(Arg::Text(before.to_string()))));
    }
    if !clauses.is_empty() {
        q.push(" WHERE ");
        q.push(&clauses.join(" AND "));
    }
    let limit = q.arg(Arg::Int(i64::from(limit)));
    q.push(&format!(" ORDER BY b.id DESC LIMIT {limit}"));
    let rows = q.query().fetch_all(&mut *conn).await?;
    let orders = rows.iter().map(order).collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<BatchOrderId> = orders.iter().map(|(o, ..)| o.id).collect();
    let counts = counts(conn, &ids).await?;
    Ok(orders
        .into_iter()
        .zip(counts)
        .map(
            |((order, process, operator_name, station), (_, counts))| OrderRecord {
                order,
                process,
                operator_name,
                counts,
                station,
            },
        )
        .collect())
}

/// Moves an order from `expected` to `new`; false when it was not in `expected`.
pub async fn set_state(
    conn: &mut Conn,
    id: BatchOrderId,
    expected: OrderState,
    new: OrderState,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE batch_orders SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
    )
    .bind(new.as_str())
    .bind(to_micros(now))
    .bind(id.to_string())
    .bind(expected.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

fn item(row: &AnyRow) -> Result<ItemRecord, StoreError> {
    Ok(ItemRecord {
        item: OrderItem {
            card: CardId::parse(&row.try_get::<String, _>("card_id")?)?,
            position: u32::try_from(row.try_get::<i64, _>("position")?).unwrap_or(u32::MAX),
            status: row.try_get::<String, _>("status")?.parse()?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            error: row.try_get("error")?,
            station: row.try_get("station")?,
        },
        serial: row.try_get("serial")?,
        card_state: row.try_get::<String, _>("card_state")?.parse()?,
    })
}

/// The items of an order in the order they were chosen.
pub async fn items(conn: &mut Conn, order: BatchOrderId) -> Result<Vec<ItemRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.card_id, i.position, i.status, i.attempts, i.error, i.station, c.serial, c.state AS card_state \
         FROM batch_order_items i JOIN cards c ON c.id = i.card_id WHERE i.order_id = $1 ORDER BY i.position",
    )
    .bind(order.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(item).collect()
}

/// Sets the status of every item of an order that is in `from` to `to`; returns how many.
pub async fn move_items(
    conn: &mut Conn,
    order: BatchOrderId,
    from: ItemStatus,
    to: ItemStatus,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "UPDATE batch_order_items SET status = $1, queued_at = $2 WHERE order_id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(to_micros(now))
    .bind(order.to_string())
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// Puts one item back in the queue for another attempt.
pub async fn requeue(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    from: ItemStatus,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE batch_order_items SET status = $1, queued_at = $2, error = NULL \
         WHERE order_id = $3 AND card_id = $4 AND status = $5",
    )
    .bind(ItemStatus::Queued.as_str())
    .bind(to_micros(now))
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The columns `queued` (0 or 1) and `producing` (at most 64) of order `$1`, with `$2` the queued
/// and `$3` the producing status.
const IN_PROGRESS: &str = "(SELECT COUNT(*) FROM (SELECT 1 FROM batch_order_items \
     WHERE order_id = $1 AND status = $2 LIMIT 1) q) AS queued, \
     (SELECT COUNT(*) FROM (SELECT 1 FROM batch_order_items \
     WHERE order_id = $1 AND status = $3 LIMIT 64) p) AS producing";

/// The `queued` and `producing` columns of [`IN_PROGRESS`].
fn progress(row: &AnyRow) -> Result<(u64, u64), StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok((count("queued")?, count("producing")?))
}

/// Whether any item of the order is still queued (0 or 1), and how many are in a printer (at
/// most 64 are counted). Enough to tell whether the order is done or nearly so, without counting
/// a large order's whole queue for every card.
pub async fn in_progress(conn: &mut Conn, order: BatchOrderId) -> Result<(u64, u64), StoreError> {
    let row = sqlx::query(&format!("SELECT {IN_PROGRESS}"))
        .bind(order.to_string())
        .bind(ItemStatus::Queued.as_str())
        .bind(ItemStatus::Producing.as_str())
        .fetch_one(conn)
        .await?;
    progress(&row)
}

/// Frees an order's cards for other orders, except those whose item is in `keep`.
pub async fn release_cards(
    conn: &mut Conn,
    order: BatchOrderId,
    keep: Option<ItemStatus>,
) -> Result<u64, StoreError> {
    let keep = keep.map_or("", ItemStatus::as_str);
    let result = sqlx::query(
        "UPDATE cards SET batch_order_id = NULL WHERE batch_order_id = $1 AND id NOT IN \
         (SELECT card_id FROM batch_order_items WHERE order_id = $1 AND status = $2)",
    )
    .bind(order.to_string())
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// An item a station took from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub order: BatchOrderId,
    pub card: CardId,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    pub station: String,
    /// What the printer needs besides the ids.
    pub serial: String,
    pub template: String,
    /// The template's layouts; `None` for the shipped one.
    pub front_layout: Option<String>,
    pub back_layout: Option<String>,
    /// The username of the operator who made the order.
    pub operator: String,
    /// The version in force of the option script named at the claim (`None`: none saved, or not
    /// asked for), read in the claim's statement so the options cost no query of their own.
    pub script_version: Option<i64>,
}

/// Takes the oldest queued item of a producing order for `station`, marks it producing and
/// records the attempt. On PostgreSQL, items another station is taking are skipped, so stations
/// of several servers drain one queue without ever taking the same item.
pub async fn claim_next(
    conn: &mut Conn,
    dialect: Dialect,
    station: &str,
    now: Timestamp,
    option_script: &str,
) -> Result<Option<Claim>, StoreError> {
    claim_next_leased(conn, dialect, station, now, option_script, None).await
}

/// As [`claim_next`], for a station elsewhere: the item is leased to it until `lease_until`
/// (heartbeats move it, see [`extend_lease`]). Orders that name another station are skipped.
pub async fn claim_next_leased(
    conn: &mut Conn,
    dialect: Dialect,
    station: &str,
    now: Timestamp,
    option_script: &str,
    lease_until: Option<Timestamp>,
) -> Result<Option<Claim>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    // The item is chosen alone, in the queue index's order, and only then joined with what the
    // printer needs: a join first would read every queued item before taking the oldest.
    let row = sqlx::query(&format!(
        "WITH next AS (SELECT order_id, card_id, attempts FROM batch_order_items \
         WHERE status = $1 AND order_id IN (SELECT id FROM batch_orders WHERE state = $2 \
         AND (station IS NULL OR station = $4)) \
         ORDER BY status, queued_at, position LIMIT 1{lock}) \
         SELECT next.order_id, next.card_id, next.attempts, c.serial, t.name AS template, \
         t.front_svg, t.back_svg, o.username AS operator, \
         (SELECT MAX(version) FROM scripts WHERE name = $3) AS script_version FROM next \
         JOIN batch_orders b ON b.id = next.order_id JOIN cards c ON c.id = next.card_id \
         JOIN operators o ON o.id = b.operator_id JOIN card_templates t ON t.id = c.template_id"
    ))
    .bind(ItemStatus::Queued.as_str())
    .bind(OrderState::Producing.as_str())
    .bind(option_script)
    .bind(station)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let script_version: Option<i64> = row.try_get("script_version")?;
    let order = BatchOrderId::parse(&row.try_get::<String, _>("order_id")?)?;
    let card = CardId::parse(&row.try_get::<String, _>("card_id")?)?;
    let attempt = u32::try_from(row.try_get::<i64, _>("attempts")? + 1).unwrap_or(u32::MAX);
    let serial: String = row.try_get("serial")?;
    let template: String = row.try_get("template")?;
    let front_layout: Option<String> = row.try_get("front_svg")?;
    let back_layout: Option<String> = row.try_get("back_svg")?;
    let operator: String = row.try_get("operator")?;
    let updated = sqlx::query(
        "UPDATE batch_order_items SET status = $1, attempts = $2, station = $3, claimed_at = $4, \
         error = NULL, lease_until = $8 WHERE order_id = $5 AND card_id = $6 AND status = $7",
    )
    .bind(ItemStatus::Producing.as_str())
    .bind(i64::from(attempt))
    .bind(station)
    .bind(to_micros(now))
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(ItemStatus::Queued.as_str())
    .bind(lease_until.map(to_micros))
    .execute(conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(Claim {
        order,
        card,
        attempt,
        station: station.to_owned(),
        serial,
        template,
        front_layout,
        back_layout,
        operator,
        script_version,
    }))
}

/// Records the outcome of a claimed attempt, and the attempt itself. Returns false when the
/// claim is no longer current (the item was recovered as interrupted meanwhile): then nothing is
/// written.
pub async fn finish(
    conn: &mut Conn,
    claim: &Claim,
    status: ItemStatus,
    error: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let recorded = sqlx::query(
        "INSERT INTO production_attempts (order_id, card_id, attempt, station, started_at, finished_at, \
         outcome, error) SELECT order_id, card_id, attempts, station, claimed_at, $1, $2, $3 \
         FROM batch_order_items WHERE order_id = $4 AND card_id = $5 AND status = $6 AND attempts = $7 \
         AND station = $8",
    )
    .bind(to_micros(now))
    .bind(status.as_str())
    .bind(error.map(str::to_owned))
    .bind(claim.order.to_string())
    .bind(claim.card.to_string())
    .bind(ItemStatus::Producing.as_str())
    .bind(i64::from(claim.attempt))
    .bind(claim.station.as_str())
    .execute(&mut *conn)
    .await?;
    if recorded.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE batch_order_items SET status = $1, error = $2, claimed_at = NULL, lease_until = NULL \
         WHERE order_id = $3 AND card_id = $4",
    )
    .bind(status.as_str())
    .bind(error.map(str::to_owned))
    .bind(claim.order.to_string())
    .bind(claim.card.to_string())
    .execute(conn)
    .await?;
    Ok(true)
}

/// Overwrites a finished item as failed with `error` (for a card found in an unexpected state).
pub async fn finish_anyway(conn: &mut Conn, claim: &Claim, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE batch_order_items SET status = $1, error = $2 WHERE order_id = $3 AND card_id = $4",
    )
    .bind(ItemStatus::Failed.as_str())
    .bind(error)
    .bind(claim.order.to_string())
    .bind(claim.card.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Items left in a printer of the server's own stations: those of `station`, and those of any
/// such station claimed before `stale_before`. Items leased to stations elsewhere are left to
/// their lease ([`lease_expired`]).
pub async fn interrupted(
    conn: &mut Conn,
    station: &str,
    stale_before: Timestamp,
) -> Result<Vec<Claim>, StoreError> {
    let rows = sqlx::query(&format!(
        "{CLAIM_SELECT} WHERE i.status = $1 AND i.lease_until IS NULL \
         AND (i.station = $2 OR i.claimed_at < $3)"
    ))
    .bind(ItemStatus::Producing.as_str())
    .bind(station)
    .bind(to_micros(stale_before))
    .fetch_all(conn)
    .await?;
    rows.iter().map(claim_of).collect()
}

/// Items leased to stations elsewhere whose lease ran out before `now`.
pub async fn lease_expired(conn: &mut Conn, now: Timestamp) -> Result<Vec<Claim>, StoreError> {
    let rows = sqlx::query(&format!(
        "{CLAIM_SELECT} WHERE i.status = $1 AND i.lease_until IS NOT NULL AND i.lease_until < $2"
    ))
    .bind(ItemStatus::Producing.as_str())
    .bind(to_micros(now))
    .fetch_all(conn)
    .await?;
    rows.iter().map(claim_of).collect()
}

/// The item `card` of `order` as `station` holds it in attempt `attempt`, while it does.
pub async fn held_claim(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    attempt: u32,
    station: &str,
) -> Result<Option<Claim>, StoreError> {
    let row = sqlx::query(&format!(
        "{CLAIM_SELECT} WHERE i.order_id = $1 AND i.card_id = $2 AND i.attempts = $3 \
         AND i.station = $4 AND i.status = $5"
    ))
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(i64::from(attempt))
    .bind(station)
    .bind(ItemStatus::Producing.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(claim_of).transpose()
}

/// Moves the lease of an item `station` holds in attempt `attempt` to `until`. False when the
/// station no longer holds it.
pub async fn extend_lease(
    conn: &mut Conn,
    claim: &Claim,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE batch_order_items SET lease_until = $1 WHERE order_id = $2 AND card_id = $3 \
         AND attempts = $4 AND station = $5 AND status = $6 AND lease_until IS NOT NULL",
    )
    .bind(to_micros(until))
    .bind(claim.order.to_string())
    .bind(claim.card.to_string())
    .bind(i64::from(claim.attempt))
    .bind(claim.station.as_str())
    .bind(ItemStatus::Producing.as_str())
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// How an attempt ended, as recorded: its station and outcome.
pub async fn recorded_attempt(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    attempt: u32,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT station, outcome FROM production_attempts WHERE order_id = $1 AND card_id = $2 \
         AND attempt = $3",
    )
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(i64::from(attempt))
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok((row.try_get("station")?, row.try_get("outcome")?)))
        .transpose()
}

const CLAIM_SELECT: &str =
    "SELECT i.order_id, i.card_id, i.attempts, i.station, c.serial, t.name AS template, \
     t.front_svg, t.back_svg, o.username AS operator \
     FROM batch_order_items i JOIN cards c ON c.id = i.card_id \
     JOIN batch_orders b ON b.id = i.order_id JOIN operators o ON o.id = b.operator_id \
     JOIN card_templates t ON t.id = c.template_id";

fn claim_of(row: &sqlx::any::AnyRow) -> Result<Claim, StoreError> {
    Ok(Claim {
        order: BatchOrderId::parse(&row.try_get::<String, _>("order_id")?)?,
        card: CardId::parse(&row.try_get::<String, _>("card_id")?)?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        station: row
            .try_get::<Option<String>, _>("station")?
            .unwrap_or_default(),
        serial: row.try_get("serial")?,
        template: row.try_get("template")?,
        front_layout: row.try_get("front_svg")?,
        back_layout: row.try_get("back_svg")?,
        operator: row.try_get("operator")?,
        script_version: None,
    })
}

/// Names the station that produces an order (`None`: any station).
pub async fn set_station(
    conn: &mut Conn,
    order: BatchOrderId,
    station: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE batch_orders SET station = $1 WHERE id = $2")
        .bind(station.map(str::to_owned))
        .bind(order.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// One production attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub card: CardId,
    pub attempt: u32,
    pub station: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: String,
    pub error: Option<String>,
}

/// Every attempt of an order, in order.
pub async fn attempts(conn: &mut Conn, order: BatchOrderId) -> Result<Vec<Attempt>, StoreError> {
    let rows = sqlx::query(
        "SELECT card_id, attempt, station, started_at, finished_at, outcome, error FROM production_attempts \
         WHERE order_id = $1 ORDER BY started_at, card_id, attempt",
    )
    .bind(order.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Attempt {
                card: CardId::parse(&row.try_get::<String, _>("card_id")?)?,
                attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
                station: row.try_get("station")?,
                started_at: from_micros(row.try_get("started_at")?)?,
                finished_at: opt_from_micros(row.try_get("finished_at")?)?,
                outcome: row.try_get("outcome")?,
                error: row.try_get("error")?,
            })
        })
        .collect()
}

/// The names of the templates of an order's cards.
pub async fn template_names(
    conn: &mut Conn,
    order: BatchOrderId,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT t.name FROM batch_order_items i JOIN cards c ON c.id = i.card_id \
         JOIN card_templates t ON t.id = c.template_id WHERE i.order_id = $1 ORDER BY t.name",
    )
    .bind(order.to_string())
    .fetch_all(conn)
    .await?)
}
