use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cardwright::cli::{run_admin, Cli, Command};
use cardwright::config::Config;
use cardwright_processes::SystemClock;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_env("CARDWRIGHT_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Command::Openapi) {
        println!("{}", cardwright::http::openapi_json());
        return Ok(());
    }
    if let Command::Station(command) = &cli.command {
        // A station's --config is its own file (printer and encoder), not the server's.
        init_logging(&Config::default());
        return cardwright::agent::run(command, cli.global.config.as_deref()).await;
    }
    let config = cli.config()?;
    init_logging(&config);
    match &cli.command {
        Command::Serve { demo, .. } => {
            let running = cardwright::app::start(&config, Arc::new(SystemClock), true).await?;
            if *demo {
                cardwright::demo::seed(&running.ctx, &running.addr.to_string())
                    .await
                    .context("seeding demo data")?;
            }
            let scheme = if config.tls.enabled() {
                "https"
            } else {
                "http"
            };
            println!("Cardwright listening on {scheme}://{}", running.addr);
            running.wait().await;
            Ok(())
        }
        _ => run_admin(&cli, &config).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
