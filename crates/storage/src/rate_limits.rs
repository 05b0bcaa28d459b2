//! Attempts counted per key in windows of time, in the database, so every server of an
//! installation counts against the same limit.

use cardwright_domain::Timestamp;

use crate::{from_micros, to_micros, Conn, StoreError};

/// Counts one attempt for `key` unless `max` were counted already in its window of `window`
/// (which starts with its first attempt); `Err(until)` when the window is full, with when it
/// ends. One conditional statement, so attempts sent at once are counted one by one.
pub async fn take(
    conn: &mut Conn,
    key: &str,
    max: i64,
    now: Timestamp,
    window: chrono::Duration,
) -> Result<Result<(), Timestamp>, StoreError> {
    let counted = sqlx::query(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 \
               ELSE rate_limits.window_start END, \
           count = CASE WHEN rate_limits.window_start <= $3 THEN 1 \
               ELSE rate_limits.count + 1 END \
         WHERE rate_limits.window_start <= $3 OR rate_limits.count < $4",
    )
    .bind(key)
    .bind(to_micros(now))
    .bind(to_micros(now - window))
    .bind(max)
    .execute(&mut *conn)
    .await?;
    if counted.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let start: i64 = sqlx::query_scalar("SELECT window_start FROM rate_limits WHERE key = $1")
        .bind(key)
        .fetch_one(conn)
        .await?;
    Ok(Err(from_micros(start)? + window))
}
