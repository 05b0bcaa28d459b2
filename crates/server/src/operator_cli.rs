//! `cardwright operator ...`: operator administration on the server's machine, with the same
//! rules as the API (the last enabled policy-admin stays, every change is audited); and
//! `cardwright persons import`.

use std::io::Read as _;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use cardwright_processes::operators::{self, Change, OperatorAccount};
use cardwright_processes::{Actor, SystemClock};

use crate::cli::OperatorCommand;
use crate::config::Config;

const CLI: Actor = Actor::System("cli");

fn describe(a: &OperatorAccount) -> String {
    let mut state = vec![if a.enabled { "enabled" } else { "disabled" }.to_owned()];
    if a.must_change_password {
        state.push("one-time password".into());
    }
    if let Some(until) = a.locked_until {
        state.push(format!(
            "locked out until {}",
            until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    format!(
        "{}\t{}\t{}",
        a.operator.username,
        a.operator.roles.to_list(),
        state.join(", ")
    )
}

fn roles(given: &[String]) -> Vec<String> {
    given
        .iter()
        .flat_map(|r| r.split(','))
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect()
}

pub(crate) async fn run(command: &OperatorCommand, config: &Config) -> anyhow::Result<()> {
    let password = if let OperatorCommand::Add { .. } = command {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("reading the password from standard input")?;
        let password = password.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            bail!("no password on standard input");
        }
        Some(password)
    } else {
        None
    };
    let ctx = crate::app::context(config, Arc::new(SystemClock)).await?;
    let outcome = async {
        match command {
            OperatorCommand::Add {
                username,
                roles: given,
                ..
            } => {
                let (account, _) = operators::create(
                    &ctx,
                    &CLI,
                    username,
                    &roles(given),
                    password.as_deref(),
                )
                .await?;
                println!(
                    "added operator {} with roles {}",
                    account.operator.username,
                    account.operator.roles.to_list()
                );
            }
            OperatorCommand::List => {
                for account in operators::list(&ctx, &CLI).await? {
                    println!("{}", describe(&account));
                }
            }
            OperatorCommand::Roles {
                username,
                roles: given,
            } => {
                let change = Change {
                    roles: Some(roles(given)),
                    enabled: None,
                };
                println!("{}", describe(&operators::update(&ctx, &CLI, username, change).await?));
            }
            OperatorCommand::Disable { username } | OperatorCommand::Enable { username } => {
                let change = Change {
                    roles: None,
                    enabled: Some(matches!(command, OperatorCommand::Enable { .. })),
                };
                println!("{}", describe(&operators::update(&ctx, &CLI, username, change).await?));
            }
            OperatorCommand::ResetPassword { username } => {
                let (account, password) = operators::reset_password(&ctx, &CLI, username).await?;
                println!(
                    "one-time password for {}: {password}\n(the operator changes it at the next login)",
                    account.operator.username
                );
            }
            OperatorCommand::Unlock { username } => {
                println!("{}", describe(&operators::unlock(&ctx, &CLI, username).await?));
            }
        }
        Ok::<(), cardwright_processes::ProcessError>(())
    }
    .await;
    ctx.store.close().await;
    outcome.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `persons import FILE`: as the API's import, by the command line (named `cli` in the audit
/// log, with the registration officer's role the import and the card processes need).
pub(crate) async fn import_persons(
    file: &std::path::Path,
    options: cardwright_processes::persons_import::ImportOptions,
    config: &Config,
) -> anyhow::Result<()> {
    use cardwright_processes::persons_import;
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > persons_import::MAX_BYTES as u64 {
        bail!(
            "{}: the file has more than {} bytes",
            file.display(),
            persons_import::MAX_BYTES
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text =
        persons_import::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let ctx = crate::app::context(config, Arc::new(SystemClock)).await?;
    let operator = cardwright_domain::Operator {
        id: cardwright_domain::OperatorId::new(0, [0; 10]),
        username: cardwright_domain::Username::parse("cli").expect("a valid username"),
        roles: [cardwright_domain::Role::RegistrationOfficer]
            .into_iter()
            .collect(),
    };
    let result = persons_import::import(&ctx, &operator, text, options).await;
    ctx.store.close().await;
    let report = result.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for bad in &report.bad_rows {
        eprintln!("{}:{}: {}", file.display(), bad.line, bad.message);
    }
    let verb = if report.applied { "" } else { "would be " };
    println!(
        "{} {verb}created, {} {verb}updated, {} {verb}deactivated, {} unchanged, {} bad rows",
        report.created.len(),
        report.updated.len(),
        report.deactivated.len(),
        report.unchanged,
        report.bad_rows.len()
    );
    for card in &report.cards {
        println!("card {}: {}", card.serial, card.outcome);
    }
    if !report.applied && !report.dry_run {
        bail!(
            "nothing imported: {} bad rows (fix them, or import the others with --skip-bad-rows)",
            report.bad_rows.len()
        );
    }
    Ok(())
}
