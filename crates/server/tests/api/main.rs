//! Integration tests over HTTP against a real server, on SQLite and on PostgreSQL.

mod helpers;

mod audit;
mod auth;
mod batch_orders;
mod card_sdk;
mod cards;
mod cli;
mod concurrency;
mod directory;
mod encoding;
mod hardening;
mod key_custody;
mod mail;
mod masterdata;
mod openapi;
mod operators;
mod persons_import;
mod photos;
mod pki;
mod preview_load;
mod scripts;
mod server_processes;
mod station_enrolment;
mod station_renewal;
mod stations;
mod webhooks;
mod webhooks_addresses;
mod webhooks_senders;
