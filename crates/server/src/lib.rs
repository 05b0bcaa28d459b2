//! The Cardwright server and command line: configuration, the REST API, the operator web UI,
//! background jobs.

pub mod agent;
pub mod app;
pub mod bench;
mod bench_encode;
mod bench_pki;
mod bench_stations;
mod bench_webhooks;
pub mod cli;
pub mod config;
pub mod demo;
pub mod directory;
pub mod error;
pub mod http;
pub mod keys;
mod layers;
pub mod notify;
pub mod oidc;
mod operator_cli;
mod pki_cli;
pub mod router;
pub mod state;
pub mod tls;
pub mod ui;
