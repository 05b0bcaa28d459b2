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

/// An operator, its password hash and whether that is a one-time password, by username;
/// disabled operators are not found.
pub async fn get_with_hash(
    conn: &mut Conn,
    username: &Username,
) -> Result<Option<(Operator, String, bool)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, username, roles, password_hash, must_change_password FROM operators \
         WHERE username = $1 AND enabled = 1",
    )
    .bind(username.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok((
            operator(&row)?,
            row.try_get("password_hash")?,
            row.try_get::<i64, _>("must_change_password")? != 0,
        ))
    })
    .transpose()
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Operator>, StoreError> {
    let rows = sqlx::query("SELECT id, username, roles FROM operators ORDER BY username")
        .fetch_all(conn)
        .await?;
    rows.iter().map(operator).collect()
}

/// An operator as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub operator: Operator,
    pub enabled: bool,
    /// The password is a one-time password a policy-admin set.
    pub must_change_password: bool,
    /// Until when failed logins lock the username out, if they do now.
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    /// The operator signs in through the organisation's OpenID provider and has no Cardwright
    /// password.
    pub single_sign_on: bool,
}

const ACCOUNT: &str = "SELECT o.id, o.username, o.roles, o.enabled, o.must_change_password, \
    o.created_at, o.oidc_subject, t.locked_until FROM operators o \
    LEFT JOIN login_throttle t ON t.username = o.username";

/// The password hash of operators who have no Cardwright password (it matches no password).
pub const NO_PASSWORD: &str = "!single-sign-on";

fn account(row: &AnyRow, now: Timestamp) -> Result<Account, StoreError> {
    let locked_until = opt_from_micros(row.try_get("locked_until")?)?.filter(|t| *t > now);
    Ok(Account {
        operator: operator(row)?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        locked_until,
        created_at: crate::from_micros(row.try_get("created_at")?)?,
        single_sign_on: row.try_get::<Option<String>, _>("oidc_subject")?.is_some(),
    })
}

/// The operator an OpenID provider's subject (issuer and `sub`) signs in as, and whether it is
/// enabled.
pub async fn by_oidc_subject(
    conn: &mut Conn,
    subject: &str,
) -> Result<Option<(Operator, bool)>, StoreError> {
    let row =
        sqlx::query("SELECT id, username, roles, enabled FROM operators WHERE oidc_subject = $1")
            .bind(subject)
            .fetch_optional(conn)
            .await?;
    row.map(|r| Ok((operator(&r)?, r.try_get::<i64, _>("enabled")? != 0)))
        .transpose()
}

/// Stores an operator who signs in through an OpenID provider (no password); a taken username
/// or subject is a unique violation.
pub async fn insert_single_sign_on(
    conn: &mut Conn,
    op: &Operator,
    subject: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operators (id, username, password_hash, roles, created_at, oidc_subject) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(op.id.to_string())
    .bind(op.username.as_str())
    .bind(NO_PASSWORD)
    .bind(op.roles.to_list())
    .bind(to_micros(now))
    .bind(subject)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every operator with its state, by username.
pub async fn accounts(conn: &mut Conn, now: Timestamp) -> Result<Vec<Account>, StoreError> {
    let rows = sqlx::query(&format!("{ACCOUNT} ORDER BY o.username"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| account(r, now)).collect()
}

/// One operator with its state; on PostgreSQL the row stays locked until the transaction ends.
pub async fn account_for_update(
    conn: &mut Conn,
    dialect: crate::Dialect,
    username: &Username,
    now: Timestamp,
) -> Result<Option<Account>, StoreError> {
    let lock = match dialect {
        crate::Dialect::Postgres => " FOR UPDATE OF o",
        crate::Dialect::Sqlite => "",
    };
    let row = sqlx::query(&format!("{ACCOUNT} WHERE o.username = $1{lock}"))
        .bind(username.as_str())
        .fetch_optional(conn)
        .await?;
    row.map(|r| account(&r, now)).transpose()
}

/// Locks every enabled operator's row (PostgreSQL; SQLite's transaction holds the database) and
/// returns the usernames of those holding `role`: changes that could take the last holder away
/// take turns.
pub async fn enabled_with_role_for_update(
    conn: &mut Conn,
    dialect: crate::Dialect,
    role: cardwright_domain::Role,
) -> Result<Vec<String>, StoreError> {
    let lock = match dialect {
        crate::Dialect::Postgres => " FOR UPDATE",
        crate::Dialect::Sqlite => "",
    };
    let rows = sqlx::query(&format!(
        "SELECT id, username, roles FROM operators WHERE enabled = 1 ORDER BY username{lock}"
    ))
    .fetch_all(conn)
    .await?;
    let mut holders = Vec::new();
    for row in &rows {
        let op = operator(row)?;
        if op.roles.contains(role) {
            holders.push(op.username.as_str().to_owned());
        }
    }
    Ok(holders)
}

pub async fn set_roles(conn: &mut Conn, id: OperatorId, roles: &Roles) -> Result<(), StoreError> {
    sqlx::query("UPDATE operators SET roles = $1 WHERE id = $2")
        .bind(roles.to_list())
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_enabled(conn: &mut Conn, id: OperatorId, enabled: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE operators SET enabled = $1 WHERE id = $2")
        .bind(i64::from(enabled))
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a new password hash; `one_time` makes it a password the operator must change.
pub async fn set_password(
    conn: &mut Conn,
    id: OperatorId,
    hash: &str,
    one_time: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE operators SET password_hash = $1, must_change_password = $2 WHERE id = $3")
        .bind(hash)
        .bind(i64::from(one_time))
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The password hash of an operator.
pub async fn password_hash(conn: &mut Conn, id: OperatorId) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM operators WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(conn)
            .await?,
    )
}

/// Ends every session of an operator but `keep` (a token hash), if given.
pub async fn end_sessions(
    conn: &mut Conn,
    id: OperatorId,
    keep: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE operator_id = $1 AND token_hash <> $2")
        .bind(id.to_string())
        .bind(keep.unwrap_or(""))
        .execute(conn)
        .await?;
    Ok(())
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

/// The enabled operator behind an unexpired session token hash, and whether its password is a
/// one-time password still to change.
pub async fn session_operator(
    conn: &mut Conn,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<(Operator, bool)>, StoreError> {
    let row = sqlx::query(
        "SELECT o.id, o.username, o.roles, o.must_change_password FROM sessions s \
         JOIN operators o ON o.id = s.operator_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND o.enabled = 1",
    )
    .bind(token_hash)
    .bind(to_micros(now))
    .fetch_optional(conn)
    .await?;
    row.as_ref()
        .map(|r| {
            Ok((
                operator(r)?,
                r.try_get::<i64, _>("must_change_password")? != 0,
            ))
        })
        .transpose()
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
    /// The attempt may check its password; `failures` failed in a row before it.
    Allowed { failures: u32 },
    /// As many checks are under way as failures are still allowed: wait for one to end.
    Busy,
    /// Too many failures: refused until `until`, the password is not checked.
    Locked { until: Option<Timestamp> },
}

/// Reserves a password check for `username` in one conditional statement, so that attempts sent
/// in parallel (to one server or to several) are counted one by one by the database: a check is
/// reserved only while the failures so far and the checks under way together stay below
/// `max_failures`, so at most `max_failures` wrong passwords are ever checked before the lockout,
/// however many arrive at once. A lockout that has run out starts the count afresh; checks not
/// finished by `checking_until` (their server died) no longer count.
pub async fn reserve_attempt(
    conn: &mut Conn,
    username: &str,
    max_failures: u32,
    now: Timestamp,
    checking_until: Timestamp,
) -> Result<Attempt, StoreError> {
    let max = i64::from(max_failures.max(1));
    let row = sqlx::query(
        "INSERT INTO login_throttle (username, failures, locked_until, checking, checking_until) \
         VALUES ($1, 0, NULL, 1, $4) \
         ON CONFLICT (username) DO UPDATE SET \
           failures = CASE WHEN login_throttle.locked_until <= $3 THEN 0 \
               ELSE login_throttle.failures END, \
           locked_until = CASE WHEN login_throttle.locked_until <= $3 THEN NULL \
               ELSE login_throttle.locked_until END, \
           checking = CASE WHEN login_throttle.checking_until IS NULL \
               OR login_throttle.checking_until <= $3 THEN 1 \
               ELSE login_throttle.checking + 1 END, \
           checking_until = $4 \
         WHERE (login_throttle.locked_until IS NULL OR login_throttle.locked_until <= $3) \
           AND (CASE WHEN login_throttle.locked_until <= $3 THEN 0 \
                ELSE login_throttle.failures END) \
             + (CASE WHEN login_throttle.checking_until IS NULL \
                OR login_throttle.checking_until <= $3 THEN 0 \
                ELSE login_throttle.checking END) < $2 \
         RETURNING failures",
    )
    .bind(username)
    .bind(max)
    .bind(to_micros(now))
    .bind(to_micros(checking_until))
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
    Ok(match until {
        Some(until) if until > now => Attempt::Locked { until: Some(until) },
        _ => Attempt::Busy,
    })
}

/// How a password check reserved by [`reserve_attempt`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The password was right: the failures and any lockout are cleared.
    Right,
    /// The password was wrong: one more failure.
    Wrong,
    /// No password was checked after all (an error, or an account without a password).
    Unchecked,
}

/// Ends a check reserved by [`reserve_attempt`]; the wrong password that reaches
/// `max_failures` locks the username until `lock_until`.
pub async fn finish_attempt(
    conn: &mut Conn,
    username: &str,
    outcome: CheckOutcome,
    max_failures: u32,
    lock_until: Timestamp,
) -> Result<(), StoreError> {
    let statement = match outcome {
        CheckOutcome::Right => {
            "UPDATE login_throttle SET failures = 0, locked_until = NULL, \
             checking = CASE WHEN checking > 0 THEN checking - 1 ELSE 0 END \
             WHERE username = $1"
        }
        CheckOutcome::Unchecked => {
            "UPDATE login_throttle SET \
             checking = CASE WHEN checking > 0 THEN checking - 1 ELSE 0 END \
             WHERE username = $1"
        }
        CheckOutcome::Wrong => {
            "UPDATE login_throttle SET failures = failures + 1, \
             locked_until = CASE WHEN failures + 1 >= $2 THEN $3 ELSE locked_until END, \
             checking = CASE WHEN checking > 0 THEN checking - 1 ELSE 0 END \
             WHERE username = $1"
        }
    };
    let query = sqlx::query(statement).bind(username);
    let query = if outcome == CheckOutcome::Wrong {
        query
            .bind(i64::from(max_failures.max(1)))
            .bind(to_micros(lock_until))
    } else {
        query
    };
    query.execute(conn).await?;
    Ok(())
}

pub async fn clear_throttle(conn: &mut Conn, username: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_throttle WHERE username = $1")
        .bind(username)
        .execute(conn)
        .await?;
    Ok(())
}
