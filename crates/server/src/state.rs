//! What every handler of the API and of the web UI gets: the process context, the request
//! counters, the served OpenAPI document and the settings of the HTTP interface.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cardwright_processes::Context;

/// The largest request body accepted (two layouts of 256 KiB fit with room to spare).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The largest body of a photo upload (a photo of at most 8 MiB, and a form's fields around it).
pub const PHOTO_BODY_LIMIT: usize = cardwright_processes::photos::MAX_BYTES + 64 * 1024;

/// The largest body accepted on `path`.
pub fn body_limit(path: &str) -> usize {
    if path.ends_with("/photo") {
        PHOTO_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub metrics: Arc<Metrics>,
    pub openapi: Arc<String>,
    /// The bearer token a metrics scraper sends to `/metrics`, when configured.
    pub metrics_token: Option<Arc<str>>,
    /// The OpenID provider operators sign in through, when configured.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
    /// Turns true when the server shuts down (long polls end early).
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// Which station each client certificate (serial) was issued to, as looked up once. A
    /// certificate belongs to one station for good; whether it is still the station's current one
    /// and the station is enabled is checked by every call.
    pub station_certificates: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// When this server last noted each station's call (`last_seen` is written at most every
    /// ten seconds per station).
    pub station_touched: Arc<Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// Settings of the HTTP interface itself.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// `metrics_token` from the configuration; empty: only operators' tokens open `/metrics`.
    pub metrics_token: String,
    /// `[oidc]` from the configuration.
    pub oidc: crate::config::OidcConfig,
    /// Turns true when the server shuts down.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Requests are counted by method, route pattern and status.
pub type RequestKey = (&'static str, String, u16);

/// Request counters of this server process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Count and total seconds per key.
    requests: Mutex<BTreeMap<RequestKey, (u64, f64)>>,
}

impl Metrics {
    /// Counts one request that took `seconds`.
    pub fn record(&self, key: RequestKey, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            let entry = requests.entry(key).or_default();
            entry.0 += 1;
            entry.1 += seconds;
        }
    }

    /// Count and total seconds per key, as they stand now.
    pub fn snapshot(&self) -> BTreeMap<RequestKey, (u64, f64)> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
