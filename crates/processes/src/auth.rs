//! Operators and logins: argon2id password hashes, expiring bearer tokens stored only as their
//! SHA-256, and a lockout after repeated failed logins.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use cardwright_domain::operator::check_new_password;
use cardwright_domain::{Operator, OperatorId, Roles, Timestamp, Username};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::operators::{self, Throttle};
use cardwright_storage::Store;
use sha2::{Digest, Sha256};

use crate::{Actor, Context, ProcessError};

/// A fresh login.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer token. Shown once to the client, never stored or logged.
    pub token: String,
    pub expires_at: Timestamp,
    pub operator: Operator,
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn hash_password(ctx: &Context, password: String) -> Result<String, ProcessError> {
    let mut salt = [0u8; 16];
    ctx.entropy.fill(&mut salt);
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&salt).map_err(|e| ProcessError::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ProcessError::Internal(format!("hashing the password failed: {e}")))
    })
    .await
    .map_err(|e| ProcessError::Internal(e.to_string()))?
}

async fn verify_password(hash: String, password: String) -> Result<bool, ProcessError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ProcessError::Internal(format!("stored password hash is invalid: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ProcessError::Internal(e.to_string()))?
}

/// A hash of no real password, checked when the username is unknown so that a failed login
/// takes as long whether or not the user exists.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0WuVzBmFfM0b7oJrq0PRSkE0hBqC4ZpzqAkTTPdQb8A";

/// Creates an operator (from the command line). Every field is checked before anything is
/// written; the addition is audited.
pub async fn add_operator(
    ctx: &Context,
    actor: &Actor,
    username: &str,
    roles: Roles,
    password: &str,
) -> Result<Operator, ProcessError> {
    let username = Username::parse(username)?;
    if roles.is_empty() {
        return Err(ProcessError::Invalid(
            "an operator needs at least one role".into(),
        ));
    }
    check_new_password(password)?;
    let hash = hash_password(ctx, password.to_owned()).await?;
    let (millis, random) = ctx.id_parts();
    let operator = Operator {
        id: OperatorId::new(millis, random),
        username,
        roles,
    };
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    operators::insert(&mut tx, &operator, &hash, now)
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ProcessError::Conflict(format!("operator '{}' exists already", operator.username))
            } else {
                e.into()
            }
        })?;
    audit::append(
        &mut tx,
        NewEvent::admin(
            now,
            actor.audit_name(),
            "OperatorAdd",
            serde_json::json!({
                "operator": operator.username.as_str(),
                "roles": operator.roles.iter().map(cardwright_domain::Role::as_str).collect::<Vec<_>>(),
            }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(operator)
}

/// Lists operators (policy administrators' view).
pub async fn list_operators(ctx: &Context) -> Result<Vec<Operator>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(operators::list(&mut conn).await?)
}

const BAD_LOGIN: &str = "invalid username or password";

/// Checks a username and password and opens a session. After `max_failures` failed attempts in
/// a row the username is locked out for a while, whether or not it exists.
pub async fn login(ctx: &Context, username: &str, password: &str) -> Result<Session, ProcessError> {
    let policy = ctx.settings.login;
    let key = username.trim().to_ascii_lowercase();
    // A NUL is in no username, and PostgreSQL refuses one in the throttle row's key.
    if key.is_empty() || key.len() > 128 || key.contains('\0') || password.len() > 1024 {
        return Err(ProcessError::Unauthenticated(BAD_LOGIN.into()));
    }
    let now = ctx.now();
    let (throttle, found) = {
        let mut conn = ctx.store.reader().await?;
        let throttle = operators::throttle(&mut conn, &key).await?;
        let found = match Username::parse(&key) {
            Ok(name) => operators::get_with_hash(&mut conn, &name).await?,
            Err(_) => None,
        };
        (throttle, found)
    };
    if let Some(until) = throttle.locked_until.filter(|until| *until > now) {
        return Err(ProcessError::Throttled(format!(
            "too many failed logins for '{key}'; try again after {}",
            until.format("%H:%M:%S UTC")
        )));
    }
    let hash = found
        .as_ref()
        .map_or_else(|| DECOY_HASH.to_owned(), |(_, hash)| hash.clone());
    let password_ok = verify_password(hash, password.to_owned()).await?;
    let mut tx = ctx.store.begin().await?;
    let Some((operator, _)) = found.filter(|_| password_ok) else {
        let failures = throttle.failures + 1;
        let next = if failures >= policy.max_failures {
            Throttle {
                failures: 0,
                locked_until: Some(now + policy.lockout),
            }
        } else {
            Throttle {
                failures,
                locked_until: None,
            }
        };
        operators::set_throttle(&mut tx, &key, next).await?;
        Store::commit(tx).await?;
        tracing::warn!(username = %key, failures, "failed login");
        return Err(ProcessError::Unauthenticated(BAD_LOGIN.into()));
    };
    let mut raw = [0u8; 32];
    ctx.entropy.fill(&mut raw);
    let token = hex::encode(raw);
    let expires_at = now + policy.token_ttl;
    operators::clear_throttle(&mut tx, &key).await?;
    operators::purge_sessions(&mut tx, now).await?;
    operators::insert_session(&mut tx, &hash_token(&token), operator.id, now, expires_at).await?;
    Store::commit(tx).await?;
    tracing::info!(username = %operator.username, "login");
    Ok(Session {
        token,
        expires_at,
        operator,
    })
}

/// The operator a bearer token belongs to, if the token is known and unexpired.
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Operator, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    operators::session_operator(&mut conn, &hash_token(token), ctx.now())
        .await?
        .ok_or_else(|| {
            ProcessError::Unauthenticated(
                "the token is unknown or has expired; log in again".into(),
            )
        })
}

/// Keeps a browser session alive: its expiry moves to `idle` from now (rounded up to the minute,
/// so a busy page writes at most once a minute), until the session is as old as the token
/// lifetime, after which it runs out.
pub async fn keep_alive(
    ctx: &Context,
    token: &str,
    idle: chrono::Duration,
) -> Result<(), ProcessError> {
    let now = ctx.now();
    let idle_end = (now + idle).timestamp();
    let until = Timestamp::from_timestamp(idle_end - idle_end.rem_euclid(60) + 60, 0)
        .ok_or_else(|| ProcessError::Internal("session expiry out of range".into()))?;
    let oldest = now - ctx.settings.login.token_ttl;
    let mut conn = ctx.store.reader().await?;
    operators::slide_session(&mut conn, &hash_token(token), now, until, oldest).await?;
    Ok(())
}

/// Ends the session of a token.
pub async fn logout(ctx: &Context, token: &str) -> Result<(), ProcessError> {
    let mut tx = ctx.store.begin().await?;
    operators::delete_session(&mut tx, &hash_token(token)).await?;
    Store::commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn decoy_hash_parses() {
        assert!(argon2::password_hash::PasswordHash::new(super::DECOY_HASH).is_ok());
    }
}
