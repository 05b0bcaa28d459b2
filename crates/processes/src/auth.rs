//! Operators and logins: argon2id password hashes, expiring bearer tokens stored only as their
//! SHA-256, and a lockout after repeated failed logins.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use cardwright_domain::operator::check_new_password;
use cardwright_domain::{Operator, OperatorId, Roles, Timestamp, Username};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::operators::{self, Attempt, CheckOutcome};
use cardwright_storage::Store;
use sha2::{Digest, Sha256};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use crate::{Actor, Context, ProcessError};

/// A fresh login.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer token. Shown once to the client, never stored or logged.
    pub token: String,
    pub expires_at: Timestamp,
    pub operator: Operator,
    /// The operator logged in with a one-time password and must change it before anything else.
    pub must_change_password: bool,
}

/// A fresh random bearer token: 256 bits from the context's entropy, as hex.
fn new_token(ctx: &Context) -> String {
    let mut raw = [0u8; 32];
    ctx.entropy.fill(&mut raw);
    hex::encode(raw)
}

/// Role names, for audit events.
fn role_names(roles: &Roles) -> Vec<&'static str> {
    roles.iter().map(cardwright_domain::Role::as_str).collect()
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Threads that compute password hashes. Each argon2id computation takes about 19 MiB and a
/// core for tens of milliseconds. Run on the runtime's blocking pool, a burst of logins would
/// compute them all at once on as many threads, and the allocator keeps the memory of each
/// thread afterwards (120 parallel logins: 3 GB, kept). On two threads of their own, logins take
/// turns and the memory stays that of two hashes.
const HASHING_THREADS: usize = 2;

type HashJob = Box<dyn FnOnce() + Send>;

/// Runs `work` on one of the hashing threads and waits for its result.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProcessError> + Send + 'static,
) -> Result<T, ProcessError> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<HashJob>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..HASHING_THREADS {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("cardwright-hash-{n}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("the hashing threads start");
        }
        Mutex::new(tx)
    });
    let (done, result) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = done.send(work());
    });
    queue
        .lock()
        .map_err(|_| ProcessError::Internal("the hashing queue is poisoned".into()))?
        .send(job)
        .map_err(|_| ProcessError::Internal("the hashing threads stopped".into()))?;
    result
        .await
        .map_err(|_| ProcessError::Internal("a password hash was not computed".into()))?
}

pub(crate) async fn hash_password(ctx: &Context, password: String) -> Result<String, ProcessError> {
    let mut salt = [0u8; 16];
    ctx.entropy.fill(&mut salt);
    hashing(move || {
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ProcessError::failed("salting the password", e))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ProcessError::Internal(format!("hashing the password failed: {e}")))
    })
    .await
}

pub(crate) async fn verify_password(hash: String, password: String) -> Result<bool, ProcessError> {
    // An operator who signs in through the identity provider has no password; the decoy is
    // checked so that the answer takes as long as for anyone else.
    let hash = if hash == operators::NO_PASSWORD {
        DECOY_HASH.to_owned()
    } else {
        hash
    };
    hashing(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ProcessError::Internal(format!("stored password hash is invalid: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
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
        &ctx.audit_key,
        NewEvent::admin(
            now,
            actor.audit_name(),
            "OperatorAdd",
            serde_json::json!({
                "operator": operator.username.as_str(),
                "roles": role_names(&operator.roles),
            }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(operator)
}

const BAD_LOGIN: &str = "invalid username or password";

/// Checks a username and password and opens a session. A check is reserved before the password
/// is checked, and only while the failures so far and the checks under way stay below
/// `max_failures`, so at most `max_failures` wrong passwords are ever checked for a username,
/// however many arrive at once; then it is locked out for a while, whether or not it exists.
/// Correct passwords sent at once take turns and all succeed.
pub async fn login(ctx: &Context, username: &str, password: &str) -> Result<Session, ProcessError> {
    let policy = ctx.settings.login;
    if !policy.password_login {
        return Err(ProcessError::Forbidden(
            "password login is switched off: sign in through the organisation's identity \
             provider (the login page's single sign-on)"
                .into(),
        ));
    }
    let key = username.trim().to_ascii_lowercase();
    // A NUL is in no username, and PostgreSQL refuses one in the throttle row's key.
    if key.is_empty() || key.len() > 128 || key.contains('\0') || password.len() > 1024 {
        return Err(ProcessError::Unauthenticated(BAD_LOGIN.into()));
    }
    let failures = reserve_attempt(ctx, &key).await?;
    // The check and its outcome run to the end even when the client goes away meanwhile, so a
    // reserved check is always counted.
    let (ctx, password) = (ctx.clone(), password.to_owned());
    tokio::spawn(async move { check_login(&ctx, key, password, failures).await })
        .await
        .map_err(|e| ProcessError::Internal(format!("a login check stopped: {e}")))?
}

/// The password check of a reserved login attempt, and its outcome.
async fn check_login(
    ctx: &Context,
    key: String,
    password: String,
    failures: u32,
) -> Result<Session, ProcessError> {
    let policy = ctx.settings.login;
    let now = ctx.now();
    let found = {
        let mut conn = ctx.store.reader().await?;
        match Username::parse(&key) {
            Ok(name) => operators::get_with_hash(&mut conn, &name).await?,
            Err(_) => None,
        }
    };
    let hash = found
        .as_ref()
        .map_or_else(|| DECOY_HASH.to_owned(), |(_, hash, _)| hash.clone());
    let password_ok = verify_password(hash, password).await;
    let Some((operator, _, must_change_password)) =
        found.filter(|_| matches!(password_ok, Ok(true)))
    else {
        let outcome = match password_ok {
            Err(_) => CheckOutcome::Unchecked,
            Ok(_) => CheckOutcome::Wrong,
        };
        finish_attempt(ctx, &key, outcome).await?;
        password_ok?;
        tracing::warn!(username = ?key, failures = failures + 1, "failed login");
        return Err(ProcessError::Unauthenticated(BAD_LOGIN.into()));
    };
    let token = new_token(ctx);
    let expires_at = now + policy.token_ttl;
    let mut tx = ctx.store.begin().await?;
    operators::finish_attempt(&mut tx, &key, CheckOutcome::Right, policy.max_failures, now).await?;
    operators::purge_sessions(&mut tx, now).await?;
    operators::insert_session(&mut tx, &hash_token(&token), operator.id, now, expires_at).await?;
    Store::commit(tx).await?;
    tracing::info!(username = %operator.username, "login");
    Ok(Session {
        token,
        expires_at,
        operator,
        must_change_password,
    })
}

/// An operator as the organisation's OpenID provider vouches for them at sign-in.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    /// The provider's issuer and the ID token's `sub`: what links the operator record.
    pub subject: String,
    /// The username for a new operator record (the provider's `preferred_username` or the
    /// configured claim).
    pub username: String,
    /// The roles the provider's claim maps to; empty when none maps.
    pub roles: Roles,
    /// The provider's name, for the audit log.
    pub provider: String,
}

/// Opens a session for an operator the identity provider signed in. The operator record is
/// created at the first sign-in; its roles follow the provider's claim at every sign-in (each
/// change an audit event). Refused when no role maps, when the operator is disabled, and when
/// the username belongs to an operator who signs in with a password.
pub async fn sign_in_external(
    ctx: &Context,
    who: &ExternalIdentity,
) -> Result<Session, ProcessError> {
    let username = Username::parse(&who.username.to_ascii_lowercase()).map_err(|e| {
        ProcessError::Forbidden(format!(
            "the identity provider's username '{}' cannot be a Cardwright username: {e}",
            who.username
        ))
    })?;
    if who.roles.is_empty() {
        tracing::warn!(%username, provider = %who.provider, "sign-in refused: no role maps");
        return Err(ProcessError::Forbidden(format!(
            "{username} has no Cardwright role: none of your groups at {} gives one. Ask your \
             administrator to add you to a group that does.",
            who.provider
        )));
    }
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let (operator, change) = match operators::by_oidc_subject(&mut tx, &who.subject).await? {
        Some((_, false)) => {
            return Err(ProcessError::Forbidden(format!(
                "{username} is disabled in Cardwright"
            )));
        }
        Some((mut operator, true)) => {
            let change = (operator.roles != who.roles).then(|| {
                (
                    "OperatorRoles",
                    serde_json::json!({
                        "operator": operator.username.as_str(),
                        "roles": role_names(&who.roles),
                        "was": role_names(&operator.roles),
                        "source": "single sign-on",
                    }),
                )
            });
            if change.is_some() {
                operators::set_roles(&mut tx, operator.id, &who.roles).await?;
                operator.roles = who.roles.clone();
            }
            (operator, change)
        }
        None => {
            let (millis, random) = ctx.id_parts();
            let operator = Operator {
                id: OperatorId::new(millis, random),
                username,
                roles: who.roles.clone(),
            };
            operators::insert_single_sign_on(&mut tx, &operator, &who.subject, now)
                .await
                .map_err(|e| {
                    if e.is_unique_violation() {
                        ProcessError::Forbidden(format!(
                            "an operator named {} exists already and signs in with a password; \
                             the identity provider cannot sign in as them",
                            operator.username
                        ))
                    } else {
                        e.into()
                    }
                })?;
            let change = (
                "OperatorAdd",
                serde_json::json!({
                    "operator": operator.username.as_str(),
                    "roles": role_names(&operator.roles),
                    "source": "single sign-on",
                }),
            );
            (operator, Some(change))
        }
    };
    if let Some((what, details)) = change {
        audit::append(
            &mut tx,
            &ctx.audit_key,
            NewEvent::admin(now, who.provider.clone(), what, details),
        )
        .await?;
    }
    let token = new_token(ctx);
    let expires_at = now + ctx.settings.login.token_ttl;
    operators::purge_sessions(&mut tx, now).await?;
    operators::insert_session(&mut tx, &hash_token(&token), operator.id, now, expires_at).await?;
    Store::commit(tx).await?;
    tracing::info!(username = %operator.username, provider = %who.provider, "single sign-on");
    Ok(Session {
        token,
        expires_at,
        operator,
        must_change_password: false,
    })
}

/// A new bearer token for the operator of a live session (the UI's "API token"), valid for the
/// login policy's token lifetime. Operators who sign in through the identity provider get
/// their API tokens this way.
pub async fn issue_token(ctx: &Context, session_token: &str) -> Result<Session, ProcessError> {
    let operator = authenticate(ctx, session_token).await?;
    let now = ctx.now();
    let token = new_token(ctx);
    let expires_at = now + ctx.settings.login.token_ttl;
    let mut tx = ctx.store.begin().await?;
    operators::insert_session(&mut tx, &hash_token(&token), operator.id, now, expires_at).await?;
    Store::commit(tx).await?;
    Ok(Session {
        token,
        expires_at,
        operator,
        must_change_password: false,
    })
}

/// How long a reserved password check counts as under way; a server that dies while checking
/// gives its checks back after this.
const CHECK_RESERVED_SECS: i64 = 30;

/// How long an attempt waits for a free check while others for the same username are under way.
const WAIT_FOR_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Reserves a password check for `key` (a lower-case username) before it is made, waiting while
/// as many checks are under way as failures are still allowed, and refuses it while the username
/// is locked out; returns the failures in a row so far. Every reserved check must be ended with
/// [`finish_attempt`].
pub(crate) async fn reserve_attempt(ctx: &Context, key: &str) -> Result<u32, ProcessError> {
    let policy = ctx.settings.login;
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let now = ctx.now();
        let mut tx = ctx.store.begin().await?;
        let attempt = operators::reserve_attempt(
            &mut tx,
            key,
            policy.max_failures,
            now,
            now + chrono::Duration::seconds(CHECK_RESERVED_SECS),
        )
        .await?;
        Store::commit(tx).await?;
        match attempt {
            Attempt::Allowed { failures } => return Ok(failures),
            Attempt::Busy if started.elapsed() < WAIT_FOR_CHECK => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Attempt::Busy => {
                tracing::warn!(username = ?key, "password check refused: too many at once");
                return Err(ProcessError::Throttled(
                    "too many logins for this username are being checked at once; try again in \
                     a moment"
                        .into(),
                ));
            }
            Attempt::Locked { until } => {
                tracing::warn!(username = ?key, "password check refused: locked out");
                return Err(ProcessError::Throttled(match until {
                    Some(until) => format!(
                        "too many failed logins for this username; try again after {}",
                        until.format("%H:%M:%S UTC")
                    ),
                    None => "too many failed logins for this username; try again later".into(),
                }));
            }
        }
    }
}

/// Ends a check [`reserve_attempt`] reserved: a wrong password counts as a failure (the one that
/// reaches `max_failures` locks the username out), a right one clears the failures, and a check
/// that did not happen only gives its turn back.
pub(crate) async fn finish_attempt(
    ctx: &Context,
    key: &str,
    outcome: CheckOutcome,
) -> Result<(), ProcessError> {
    let policy = ctx.settings.login;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    operators::finish_attempt(
        &mut tx,
        key,
        outcome,
        policy.max_failures,
        now + policy.lockout,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(())
}

/// The operator a bearer token belongs to, if the token is known and unexpired and the
/// operator enabled. An operator whose password is a one-time password is refused until they
/// changed it ([`authenticate_session`] lets them).
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Operator, ProcessError> {
    let (operator, must_change) = authenticate_session(ctx, token).await?;
    if must_change {
        return Err(ProcessError::Forbidden(format!(
            "{} logged in with a one-time password: change it first (POST /api/v1/auth/password)",
            operator.username
        )));
    }
    Ok(operator)
}

/// The operator a token belongs to, and whether they must change their one-time password before
/// anything else.
pub async fn authenticate_session(
    ctx: &Context,
    token: &str,
) -> Result<(Operator, bool), ProcessError> {
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
