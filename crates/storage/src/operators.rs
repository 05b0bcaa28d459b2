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

/// Failed logins for a username and until when logins are refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throttle {
    pub failures: u32,
    pub locked_until: Option<Timestamp>,
}

pub async fn throttle(conn: &mut Conn, username: &str) -> Result<Throttle, StoreError> {
    let row = sqlx::query("SELECT failures, locked_until FROM login_throttle WHERE username = $1")
        .bind(username)
        .fetch_optional(conn)
        .await?;
    match row {
        None => Ok(Throttle::default()),
        Some(row) => Ok(Throttle {
            failures: u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
            locked_until: opt_from_micros(row.try_get("locked_until")?)?,
        }),
    }
}

pub async fn set_throttle(conn: &mut Conn, username: &str, t: Throttle) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO login_throttle (username, failures, locked_until) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO UPDATE SET failures = $2, locked_until = $3",
    )
    .bind(username)
    .bind(i64::from(t.failures))
    .bind(t.locked_until.map(to_micros))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clear_throttle(conn: &mut Conn, username: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_throttle WHERE username = $1")
        .bind(username)
        .execute(conn)
        .await?;
    Ok(())
}
