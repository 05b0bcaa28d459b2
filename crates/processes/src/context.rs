//! What every process runs with: the store, a clock, a source of randomness and the settings.

use std::sync::{Arc, Mutex};

use cardwright_domain::Timestamp;
use cardwright_storage::audit::AuditKey;
use cardwright_storage::Store;
use chrono::Utc;
use rand::RngCore;

use crate::notify::NotifySettings;
use crate::services::pki::Pki;
use crate::services::previews::Previews;
use crate::services::scripts::ScriptRuntime;

/// Tells the time. Tests pass a [`ManualClock`] to move time on their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// A source of random bytes for ids and tokens.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// Login rules.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    /// Failed logins in a row before the username is locked out for a while.
    pub max_failures: u32,
    pub lockout: chrono::Duration,
    /// How long a bearer token stays valid.
    pub token_ttl: chrono::Duration,
    /// Whether operators may log in with a Cardwright password (off when everyone signs in
    /// through the identity provider).
    pub password_login: bool,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout: chrono::Duration::minutes(5),
            token_ttl: chrono::Duration::hours(8),
            password_login: true,
        }
    }
}

/// Settings the processes read. The options of the temporary card processes come from the
/// option script ([`crate::services::scripts`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub login: LoginPolicy,
}

/// Everything a process needs from outside the domain.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub settings: Settings,
    /// The option script engine and its cache.
    pub scripts: Arc<ScriptRuntime>,
    /// The certificate authority, for encoded cards.
    pub pki: Option<Arc<Pki>>,
    /// Signs the audit log.
    pub audit_key: AuditKey,
    /// How webhooks and mails are sent.
    pub notify: Arc<NotifySettings>,
    /// The server's own stations and the lease of stations elsewhere.
    pub stations: Arc<StationSettings>,
    /// The preview cache and each operator's previews under way.
    pub previews: Arc<Previews>,
}

/// What the processes know of the server's stations.
#[derive(Debug, Clone)]
pub struct StationSettings {
    /// The names of the stations the server runs itself, which a station elsewhere may not
    /// take.
    pub local: Vec<String>,
    /// How long an item stays with a station elsewhere that stopped calling.
    pub lease: chrono::Duration,
}

impl Default for StationSettings {
    fn default() -> Self {
        Self {
            local: Vec::new(),
            lease: chrono::Duration::seconds(60),
        }
    }
}

impl Context {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
        audit_key: AuditKey,
    ) -> Self {
        Self {
            store,
            clock,
            entropy: Arc::new(OsEntropy),
            settings,
            scripts: Arc::new(ScriptRuntime::default()),
            pki: None,
            audit_key,
            notify: Arc::new(NotifySettings::default()),
            stations: Arc::new(StationSettings::default()),
            previews: Arc::new(Previews::default()),
        }
    }

    /// The same context with this preview service.
    #[must_use]
    pub fn with_previews(mut self, previews: Previews) -> Self {
        self.previews = Arc::new(previews);
        self
    }

    /// The same context with these station settings.
    #[must_use]
    pub fn with_stations(mut self, stations: StationSettings) -> Self {
        self.stations = Arc::new(stations);
        self
    }

    /// The same context with these notification settings.
    #[must_use]
    pub fn with_notify(mut self, notify: NotifySettings) -> Self {
        self.notify = Arc::new(notify);
        self
    }

    /// The same context with a certificate authority.
    #[must_use]
    pub fn with_pki(mut self, pki: Pki) -> Self {
        self.pki = Some(Arc::new(pki));
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Time and ten random bytes, the makings of a fresh id.
    pub fn id_parts(&self) -> (u64, [u8; 10]) {
        let mut random = [0u8; 10];
        self.entropy.fill(&mut random);
        let millis = u64::try_from(self.now().timestamp_millis()).unwrap_or(0);
        (millis, random)
    }
}
