//! Operators, their login sessions and the failed-login throttle.

use cardwright_domain::{Operator, OperatorId, Roles, Timestamp, Username};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::opt_from_micros;
use crate::{to_micros, Conn, StoreError};

fn operator(row: &AnyRow) -> Result<Operator, StoreError> {
    Ok(Operator {
        id: OperatorId::parse(&row.try_get::<String, _>("id")?)?,
        username: Username::parse(&row.try_get::<String, _>("username")?)?,
        roles: Roles::parse_list(&row.try_get::<String, _>("roles")?)?,
    })
}

/// Stores a new operator; a taken username is a unique violation.
pub async fn insert(
    conn: &mut Conn,
    op: &Operator,
    password_hash: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operators (id, username, password_hash, roles, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(op.id.to_string())
    .bind(op.username.as_str())
    .bind(password_hash)
    .bind(op.roles.to_list())
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// An operator and its password hash, by username.
pub async fn get_with_hash(
    conn: &mut Conn,
    username: &Username,
) -> Result<Option<(Operator, String)>, StoreError> {
    let row =
        sqlx::query("SELECT id, username, roles, password_hash FROM operators WHERE username = $1")
            .bind(username.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(|row| Ok((operator(&row)?, row.try_get("password_hash")?)))
        .transpose()
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Operator>, StoreError> {
    let rows = sqlx::query("SELECT id, username, roles FROM operators ORDER BY username")
        .fetch_all(conn)
        .await?;
    rows.iter().map(operator).collect()
}

/// Records a login session under the hash of its token.
pub async fn insert_session(
    conn: &mut Conn,
    token_hash: &str,
    operator: OperatorId,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, operator_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(operator.to_string())
    .bind(to_micros(now))
    .bind(to_micros(expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The operator behind an unexpired session token hash.
pub async fn session_operator(
    conn: &mut Conn,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<Operator>, StoreError> {
    let row = sqlx::query(
        "SELECT o.id, o.username, o.roles FROM sessions s JOIN operators o ON o.id = s.operator_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash)
    .bind(to_micros(now))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(operator).transpose()
}

/// Sets an unexpired session's expiry to `until`, unless the session was created at or before
/// `created_after` (a session past that age keeps its expiry and runs out). Returns whether the
/// expiry changed; an expiry already at `until` is not written again.
pub async fn slide_session(
    conn: &mut Conn,
    token_hash: &str,
    now: Timestamp,
    until: Timestamp,
    created_after: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE sessions SET expires_at = $3 \
         WHERE token_hash = $1 AND expires_at > $2 AND expires_at <> $3 AND created_at > $4",
    )
    .bind(token_hash)
    .bind(to_micros(now))
    .bind(to_micros(until))
    .bind(to_micros(created_after))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Ends a session.
pub async fn delete_session(conn: &mut Conn, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes expired sessions; returns how many.
pub async fn purge_sessions(conn: &mut Conn, now: Timestamp) -> Result<u64, StoreError> {
    let result = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(to_micros(now))
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// What the throttle says about one more login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt may check its password; it is already counted as a failure (the
    /// `failures`-th in a row) until a success clears the count.
    Allowed { failures: u32 },
    /// Too many attempts: refused until `until`, the password is not checked.
    Locked { until: Option<Timestamp> },
}

/// Counts one login attempt for `username` before its password is checked, in one conditional
/// statement, so that attempts sent in parallel (to one server or to several) are counted one
/// by one by the database and at most `max_failures` of them ever reach the password check.
/// The attempt that reaches `max_failures` locks the username until `now + lockout`; a
/// lockout that has run out starts the count afresh.
pub async fn reserve_attempt(
    conn: &mut Conn,
    username: &str,
    max_failures: u32,
    now: Timestamp,
    lock_until: Timestamp,
) -> Result<Attempt, StoreError> {
    let max = i64::from(max_failures.max(1));
    let row = sqlx::query(
        "INSERT INTO login_throttle (username, failures, locked_until) \
         VALUES ($1, 1, CASE WHEN 1 >= $2 THEN $4 ELSE NULL END) \
         ON CONFLICT (username) DO UPDATE SET \
           failures = CASE WHEN login_throttle.locked_until IS NULL \
               THEN login_throttle.failures + 1 ELSE 1 END, \
           locked_until = CASE WHEN (CASE WHEN login_throttle.locked_until IS NULL \
               THEN login_throttle.failures + 1 ELSE 1 END) >= $2 THEN $4 ELSE NULL END \
         WHERE login_throttle.locked_until IS NULL OR login_throttle.locked_until <= $3 \
         RETURNING failures",
    )
    .bind(username)
    .bind(max)
    .bind(to_micros(now))
    .bind(to_micros(lock_until))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        let failures = u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX);
        return Ok(Attempt::Allowed { failures });
    }
    let row = sqlx::query("SELECT locked_until FROM login_throttle WHERE username = $1")
        .bind(username)
        .fetch_optional(conn)
        .await?;
    let until = match row {
        Some(row) => opt_from_micros(row.try_get("locked_until")?)?,
        None => None,
    };
    Ok(Attempt::Locked { until })
}

pub async fn clear_throttle(conn: &mut Conn, username: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_throttle WHERE username = $1")
        .bind(username)
        .execute(conn)
        .await?;
    Ok(())
}
