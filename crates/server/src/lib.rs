//! The Cardwright server and command line: configuration, the REST API, background jobs.

pub mod app;
pub mod bench;
mod bench_encode;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod ui;
