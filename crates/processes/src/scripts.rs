//! The option script TempCardsScriptOptions as policy administrators edit it: read, save (checked
//! against every template and process first), history, restore.

use cardwright_domain::temp_cards::CATALOG;
use cardwright_domain::{Operator, Role};
use cardwright_scripts::DEFAULT_SCRIPT;
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::scripts::{self, ScriptVersion};
use cardwright_storage::{operators, templates, Store};

use crate::{require_any, Context, ProcessError};
use cardwright_domain::temp_cards::OPTION_SCRIPT as SCRIPT_NAME;

fn known(name: &str) -> Result<(), ProcessError> {
    if name == SCRIPT_NAME {
        Ok(())
    } else {
        Err(ProcessError::NotFound(format!(
            "no script named '{name}'; the option script is {SCRIPT_NAME}"
        )))
    }
}

/// Saves the shipped default script as version 1 when the script was never saved.
pub async fn ensure_default(ctx: &Context) -> Result<(), ProcessError> {
    let mut tx = ctx.store.begin().await?;
    if scripts::current_version(&mut tx, SCRIPT_NAME)
        .await?
        .is_none()
    {
        match scripts::save(&mut tx, SCRIPT_NAME, DEFAULT_SCRIPT, ctx.now(), "system").await {
            Ok(_) => {}
            // Another server saved it first.
            Err(e) if e.is_unique_violation() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Store::commit(tx).await?;
    Ok(())
}

/// The version in force.
pub async fn get(
    ctx: &Context,
    operator: &Operator,
    name: &str,
) -> Result<ScriptVersion, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Reading option scripts")?;
    known(name)?;
    let mut conn = ctx.store.reader().await?;
    scripts::current(&mut conn, name)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("script {name} was never saved")))
}

/// Every version, newest first.
pub async fn versions(
    ctx: &Context,
    operator: &Operator,
    name: &str,
) -> Result<Vec<ScriptVersion>, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Reading option scripts")?;
    known(name)?;
    let mut conn = ctx.store.reader().await?;
    Ok(scripts::versions(&mut conn, name).await?)
}

/// Checks and saves a new version. A script that does not compile, exceeds a limit, sets an
/// unknown option or an invalid value for any template and process is refused (the version in
/// force stays), with the line and column where they are known.
pub async fn save(
    ctx: &Context,
    operator: &Operator,
    name: &str,
    source: &str,
) -> Result<ScriptVersion, ProcessError> {
    save_version(ctx, operator, name, source, None).await
}

async fn save_version(
    ctx: &Context,
    operator: &Operator,
    name: &str,
    source: &str,
    restored_from: Option<i64>,
) -> Result<ScriptVersion, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Editing option scripts")?;
    known(name)?;
    // PostgreSQL stores no NUL character in text, and a script has no use for one.
    if source.contains('\0') {
        return Err(ProcessError::Invalid("source: no NUL characters".into()));
    }
    let mut tx = ctx.store.begin().await?;
    let template_names: Vec<String> = templates::list(&mut tx)
        .await?
        .into_iter()
        .map(|t| t.name.as_str().to_owned())
        .collect();
    let template_refs: Vec<&str> = template_names.iter().map(String::as_str).collect();
    let processes: Vec<&str> = CATALOG.iter().map(|d| d.name.as_str()).collect();
    let operator_names: Vec<String> = operators::list(&mut tx)
        .await?
        .into_iter()
        .map(|o| o.username.as_str().to_owned())
        .collect();
    let operator_refs: Vec<&str> = operator_names.iter().map(String::as_str).collect();
    // Each evaluation is bounded by the script limits (milliseconds at most), so checking every
    // template, process and operator runs here rather than on a blocking thread.
    ctx.scripts
        .engine
        .check(source, &template_refs, &processes, &operator_refs)
        .map_err(ProcessError::Script)?;
    let now = ctx.now();
    let version = scripts::save(&mut tx, name, source, now, operator.username.as_str())
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ProcessError::Conflict(
                    "someone saved the script at the same moment; reload it and try again".into(),
                )
            } else {
                e.into()
            }
        })?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            "ScriptSave",
            serde_json::json!({
                "script": name,
                "version": version,
                "restored_from": restored_from,
                "length": source.len(),
            }),
        ),
    )
    .await?;
    let saved = scripts::get(&mut tx, name, version)
        .await?
        .ok_or_else(|| ProcessError::Internal("the saved script vanished".into()))?;
    Store::commit(tx).await?;
    Ok(saved)
}

/// Restores an earlier version by saving its text again as the newest version (checked again,
/// since templates may have changed since).
pub async fn restore(
    ctx: &Context,
    operator: &Operator,
    name: &str,
    version: i64,
) -> Result<ScriptVersion, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Editing option scripts")?;
    known(name)?;
    let old = {
        let mut conn = ctx.store.reader().await?;
        scripts::get(&mut conn, name, version)
            .await?
            .ok_or_else(|| ProcessError::NotFound(format!("{name} has no version {version}")))?
    };
    save_version(ctx, operator, name, &old.source, Some(version)).await
}
