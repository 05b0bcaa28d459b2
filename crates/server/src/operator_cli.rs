//! `cardwright operator ...`: operator administration on the server's machine, with the same
//! rules as the API (the last enabled policy-admin stays, every change is audited).

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
