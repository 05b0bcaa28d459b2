//! Operator administration (policy-admin, or the command line): add, change roles, disable and
//! enable, reset a password to a one-time password, lift a lockout; and an operator changing
//! their own password. The last enabled policy-admin is never disabled or deprived of the role.
//! Every change is an audit event.

use cardwright_domain::operator::check_new_password;
use cardwright_domain::{Operator, OperatorId, Role, Roles, Username};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::operators::{self as rows, Account};
use cardwright_storage::{Conn, Store};

use crate::auth::{hash_password, hash_token, verify_password};
use crate::{require_any, Actor, Context, ProcessError};

pub use cardwright_storage::operators::Account as OperatorAccount;

/// Refuses an operator without policy-admin; the system (the command line) may.
fn may_administer(actor: &Actor) -> Result<(), ProcessError> {
    match actor {
        Actor::Operator(op) => require_any(op, &[Role::PolicyAdmin], "Managing operators"),
        Actor::System(_) => Ok(()),
    }
}

fn parse_roles(roles: &[String]) -> Result<Roles, ProcessError> {
    let roles = roles
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<Result<Roles, _>>()?;
    if roles.is_empty() {
        return Err(ProcessError::Invalid(
            "roles: an operator needs at least one role".into(),
        ));
    }
    Ok(roles)
}

fn role_names(roles: &Roles) -> Vec<&'static str> {
    roles.iter().map(Role::as_str).collect()
}

/// The most characters of a password given here.
pub const MAX_PASSWORD_CHARS: usize = 256;

fn check_password(field: &str, password: &str) -> Result<(), ProcessError> {
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ProcessError::Invalid(format!(
            "{field}: a password has at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Refuses an administrator's change to their own account: they would lock themselves out
/// with one click. Their own password has a page of its own; another policy-admin does the rest.
fn not_oneself(actor: &Actor, username: &str, what: &str) -> Result<(), ProcessError> {
    if let Actor::Operator(op) = actor {
        if op.username.as_str().eq_ignore_ascii_case(username.trim()) {
            return Err(ProcessError::Conflict(format!(
                "you cannot {what} your own account; ask another policy-admin"
            )));
        }
    }
    Ok(())
}

/// A one-time password: 24 random hex digits.
fn one_time_password(ctx: &Context) -> String {
    let mut raw = [0u8; 12];
    ctx.entropy.fill(&mut raw);
    hex::encode(raw)
}

async fn event(
    conn: &mut Conn,
    ctx: &Context,
    actor: &Actor,
    what: &str,
    details: serde_json::Value,
) -> Result<(), ProcessError> {
    audit::append(
        conn,
        &ctx.audit_key,
        NewEvent::admin(ctx.now(), actor.audit_name(), what, details),
    )
    .await?;
    Ok(())
}

/// Every operator with its state.
pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<Account>, ProcessError> {
    may_administer(actor)?;
    let mut conn = ctx.store.reader().await?;
    Ok(rows::accounts(&mut conn, ctx.now()).await?)
}

fn unknown(username: &str) -> ProcessError {
    ProcessError::NotFound(format!("operator '{username}' not found"))
}

async fn locked_account(
    conn: &mut Conn,
    ctx: &Context,
    username: &str,
) -> Result<Account, ProcessError> {
    let name = Username::parse(username).map_err(|_| unknown(username))?;
    rows::account_for_update(conn, ctx.store.dialect(), &name, ctx.now())
        .await?
        .ok_or_else(|| unknown(username))
}

/// One operator with its state.
pub async fn get(ctx: &Context, actor: &Actor, username: &str) -> Result<Account, ProcessError> {
    may_administer(actor)?;
    let mut conn = ctx.store.reader().await?;
    let name = Username::parse(username).map_err(|_| unknown(username))?;
    rows::account_for_update(&mut conn, ctx.store.dialect(), &name, ctx.now())
        .await?
        .ok_or_else(|| unknown(username))
}

/// Adds an operator. Without a password, a one-time password is made and returned: the operator
/// must change it at their first login.
pub async fn create(
    ctx: &Context,
    actor: &Actor,
    username: &str,
    roles: &[String],
    password: Option<&str>,
) -> Result<(Account, Option<String>), ProcessError> {
    may_administer(actor)?;
    let username = Username::parse(username)?;
    let roles = parse_roles(roles)?;
    let (password, one_time) = match password {
        Some(p) => {
            check_password("password", p)?;
            check_new_password(p)?;
            (p.to_owned(), false)
        }
        None => (one_time_password(ctx), true),
    };
    let hash = hash_password(ctx, password.clone()).await?;
    let (millis, random) = ctx.id_parts();
    let operator = Operator {
        id: OperatorId::new(millis, random),
        username,
        roles,
    };
    let mut tx = ctx.store.begin().await?;
    rows::insert(&mut tx, &operator, &hash, ctx.now())
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ProcessError::Conflict(format!("operator '{}' exists already", operator.username))
            } else {
                e.into()
            }
        })?;
    if one_time {
        rows::set_password(&mut tx, operator.id, &hash, true).await?;
    }
    event(
        &mut tx,
        ctx,
        actor,
        "OperatorAdd",
        serde_json::json!({
            "operator": operator.username.as_str(),
            "roles": role_names(&operator.roles),
            "one_time_password": one_time,
        }),
    )
    .await?;
    let account = locked_account(&mut tx, ctx, operator.username.as_str()).await?;
    Store::commit(tx).await?;
    Ok((account, one_time.then_some(password)))
}

/// What an administrator changes about an operator.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub roles: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Changes an operator's roles and whether it is enabled. A disabled operator's sessions end at
/// once. The last enabled policy-admin can neither be disabled nor lose the role.
pub async fn update(
    ctx: &Context,
    actor: &Actor,
    username: &str,
    change: Change,
) -> Result<Account, ProcessError> {
    may_administer(actor)?;
    let roles = change.roles.as_deref().map(parse_roles).transpose()?;
    let mut tx = ctx.store.begin().await?;
    // Every enabled operator first, in username order: two changes that could each take away
    // one of the last two policy-admins take turns.
    let admins =
        rows::enabled_with_role_for_update(&mut tx, ctx.store.dialect(), Role::PolicyAdmin).await?;
    let before = locked_account(&mut tx, ctx, username).await?;
    let name = before.operator.username.as_str().to_owned();
    let enabled = change.enabled.unwrap_or(before.enabled);
    let new_roles = roles
        .clone()
        .unwrap_or_else(|| before.operator.roles.clone());
    let stays_admin = enabled && new_roles.contains(Role::PolicyAdmin);
    if admins.len() == 1 && admins[0] == name && !stays_admin {
        return Err(ProcessError::Conflict(format!(
            "{name} is the last enabled policy-admin; give another operator that role first"
        )));
    }
    if enabled != before.enabled {
        not_oneself(actor, &name, "disable or enable")?;
    }
    if roles.as_ref().is_some_and(|r| *r != before.operator.roles) {
        not_oneself(actor, &name, "change the roles of")?;
    }
    let mut details = serde_json::json!({"operator": name});
    if let Some(roles) = &roles {
        if *roles != before.operator.roles {
            rows::set_roles(&mut tx, before.operator.id, roles).await?;
            details["roles"] = serde_json::json!(role_names(roles));
            details["roles_before"] = serde_json::json!(role_names(&before.operator.roles));
        }
    }
    if enabled != before.enabled {
        rows::set_enabled(&mut tx, before.operator.id, enabled).await?;
        if !enabled {
            rows::end_sessions(&mut tx, before.operator.id, None).await?;
        }
        details["enabled"] = serde_json::json!(enabled);
    }
    if details.as_object().is_some_and(|d| d.len() > 1) {
        event(&mut tx, ctx, actor, "OperatorChange", details).await?;
    }
    let after = locked_account(&mut tx, ctx, &name).await?;
    Store::commit(tx).await?;
    Ok(after)
}

/// Gives an operator a new one-time password (returned, shown once) and ends their sessions.
pub async fn reset_password(
    ctx: &Context,
    actor: &Actor,
    username: &str,
) -> Result<(Account, String), ProcessError> {
    may_administer(actor)?;
    not_oneself(actor, username, "reset the password of")?;
    let password = one_time_password(ctx);
    let hash = hash_password(ctx, password.clone()).await?;
    let mut tx = ctx.store.begin().await?;
    let account = locked_account(&mut tx, ctx, username).await?;
    if account.single_sign_on {
        return Err(ProcessError::Conflict(format!(
            "{} signs in through the identity provider and has no Cardwright password",
            account.operator.username
        )));
    }
    rows::set_password(&mut tx, account.operator.id, &hash, true).await?;
    rows::end_sessions(&mut tx, account.operator.id, None).await?;
    // A reset also lets the operator in at once, however many times someone guessed.
    rows::clear_throttle(&mut tx, account.operator.username.as_str()).await?;
    event(
        &mut tx,
        ctx,
        actor,
        "OperatorPasswordReset",
        serde_json::json!({"operator": account.operator.username.as_str()}),
    )
    .await?;
    let after = locked_account(&mut tx, ctx, username).await?;
    Store::commit(tx).await?;
    Ok((after, password))
}

/// Lifts a lockout after failed logins.
pub async fn unlock(ctx: &Context, actor: &Actor, username: &str) -> Result<Account, ProcessError> {
    may_administer(actor)?;
    let mut tx = ctx.store.begin().await?;
    let account = locked_account(&mut tx, ctx, username).await?;
    rows::clear_throttle(&mut tx, account.operator.username.as_str()).await?;
    event(
        &mut tx,
        ctx,
        actor,
        "OperatorUnlock",
        serde_json::json!({
            "operator": account.operator.username.as_str(),
            "was_locked": account.locked_until.is_some(),
        }),
    )
    .await?;
    let after = locked_account(&mut tx, ctx, username).await?;
    Store::commit(tx).await?;
    Ok(after)
}

/// Whether `old` is the operator's current password. An operator who signs in through the
/// identity provider has none.
async fn check_current_password(
    ctx: &Context,
    operator: &Operator,
    old: &str,
) -> Result<bool, ProcessError> {
    let current = {
        let mut conn = ctx.store.reader().await?;
        rows::password_hash(&mut conn, operator.id)
            .await?
            .ok_or_else(|| unknown(operator.username.as_str()))?
    };
    if current == rows::NO_PASSWORD {
        return Err(ProcessError::Conflict(format!(
            "{} signs in through the identity provider and has no Cardwright password",
            operator.username
        )));
    }
    Ok(old.len() <= 1024 && verify_password(current, old.to_owned()).await?)
}

/// The operator behind `token` changes their own password; the current one is required and
/// counts as a login attempt (a stolen session cannot guess it without end). Their other
/// sessions end.
pub async fn change_own_password(
    ctx: &Context,
    token: &str,
    old: &str,
    new: &str,
) -> Result<Operator, ProcessError> {
    let (operator, _) = crate::auth::authenticate_session(ctx, token).await?;
    check_password("old_password", old)?;
    check_password("new_password", new)?;
    check_new_password(new)?;
    if old == new {
        return Err(ProcessError::Unprocessable(
            "new_password: choose a password other than the current one".into(),
        ));
    }
    let key = operator.username.as_str().to_owned();
    crate::auth::reserve_attempt(ctx, &key).await?;
    let checked = check_current_password(ctx, &operator, old).await;
    if !matches!(checked, Ok(true)) {
        let outcome = match checked {
            Ok(_) => rows::CheckOutcome::Wrong,
            Err(_) => rows::CheckOutcome::Unchecked,
        };
        crate::auth::finish_attempt(ctx, &key, outcome).await?;
        checked?;
        return Err(ProcessError::Forbidden(
            "old_password: that is not your current password".into(),
        ));
    }
    let hash = hash_password(ctx, new.to_owned()).await?;
    let mut tx = ctx.store.begin().await?;
    rows::set_password(&mut tx, operator.id, &hash, false).await?;
    rows::end_sessions(&mut tx, operator.id, Some(&hash_token(token))).await?;
    rows::clear_throttle(&mut tx, &key).await?;
    event(
        &mut tx,
        ctx,
        &Actor::Operator(operator.clone()),
        "OperatorPasswordChange",
        serde_json::json!({"operator": key}),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(operator)
}
