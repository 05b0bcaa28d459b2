//! Configuration: a TOML file, every key overridable by a `CARDWRIGHT_*` environment variable,
//! then by command-line flags. With no file at all the embedded default serves: SQLite under
//! the data folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Folder for the SQLite database and other local files.
    pub data_dir: PathBuf,
    /// `postgres://...` or `sqlite://...`; empty means SQLite in the data folder.
    pub database_url: String,
    /// How often the server looks for assignments whose validity has passed, in milliseconds.
    pub expiry_interval_ms: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    pub login: LoginConfig,
    /// How long an idle station waits before looking at the queue again, in milliseconds.
    pub station_poll_ms: u64,
    /// An item held by a station longer than this is taken as interrupted, in seconds.
    pub production_stale_secs: u64,
    /// Production stations; by default one local station with the spool printer. `[]`: the
    /// server produces nothing itself (stations elsewhere, `cardwright station run`, do).
    pub stations: Vec<StationConfig>,
    /// How long a card stays with a station elsewhere that stopped calling, in seconds; then
    /// it fails as "production interrupted".
    pub station_lease_secs: u64,
    /// HTTPS for the server, and client certificates for stations elsewhere.
    pub tls: TlsConfig,
    pub pki: PkiConfig,
    /// The bearer token a metrics scraper sends to `/metrics` (at least 32 characters); empty:
    /// only operators' own tokens open it.
    pub metrics_token: String,
    /// How events are announced: when, and how failed sends are retried.
    pub notify: NotifyConfig,
    /// Mail: expiry reminders and notices. No `host`: no mail is sent.
    pub smtp: SmtpConfig,
    pub webhooks: WebhooksConfig,
    /// Persons from an LDAP directory. No `url`: no sync.
    pub directory: DirectoryConfig,
    /// Operators sign in through the organisation's OpenID provider. No `issuer`: only
    /// Cardwright passwords.
    pub oidc: OidcConfig,
    pub audit: AuditConfig,
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the server publishes the log's signed head (in its log and as an
    /// `audit.checkpoint` webhook event), in seconds.
    pub checkpoint_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_secs: 300,
        }
    }
}

/// HTTPS: a certificate from files, or one the built-in CA issues (and renews) for `names`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert_file: String,
    /// The certificate's private key (PEM).
    pub key_file: String,
    /// The built-in CA issues the server's certificate for `names`, and renews it.
    pub builtin: bool,
    /// The host names and IP addresses clients reach the server by (with `builtin`).
    pub names: Vec<String>,
    /// Serve plain HTTP on an address other than loopback (behind a TLS proxy).
    pub allow_plain_http: bool,
}

impl TlsConfig {
    /// Whether the server speaks HTTPS.
    pub fn enabled(&self) -> bool {
        self.builtin || !self.cert_file.is_empty()
    }
}

/// Single sign-on for operators with OpenID Connect (authorization code flow with PKCE).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Give it in the environment, CARDWRIGHT_OIDC_CLIENT_SECRET. Empty: a public client
    /// (PKCE only).
    pub client_secret: String,
    /// Cardwright's callback as the provider knows it: `https://HOST/login/oidc/callback`.
    pub redirect_url: String,
    /// The provider's name on the login page: "Sign in with NAME".
    #[serde(alias = "display_name")]
    pub name: String,
    /// Scopes asked for; `openid` is always asked for.
    pub scopes: Vec<String>,
    /// The claim holding the username of a new operator record.
    pub username_claim: String,
    /// The claim whose values map to roles (a string or a list of strings, e.g. `groups`).
    #[serde(alias = "role_claim", alias = "groups_claim")]
    pub roles_claim: String,
    /// Value of the claim → Cardwright roles (a role name or a list of them).
    pub roles: std::collections::BTreeMap<String, RoleNames>,
    /// Whether operators may also log in with a Cardwright password (UI and API).
    pub password_login: bool,
    /// How long a call to the provider may take, in seconds.
    pub timeout_secs: u64,
}

/// One role name or a list of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RoleNames {
    One(String),
    Many(Vec<String>),
}

impl RoleNames {
    pub fn names(&self) -> Vec<&str> {
        match self {
            RoleNames::One(name) => vec![name.as_str()],
            RoleNames::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            redirect_url: String::new(),
            name: "single sign-on".into(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            roles_claim: "groups".into(),
            roles: std::collections::BTreeMap::new(),
            password_login: true,
            timeout_secs: 10,
        }
    }
}

impl OidcConfig {
    /// Whether single sign-on is configured.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &if self.client_secret.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("redirect_url", &self.redirect_url)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("roles_claim", &self.roles_claim)
            .field("roles", &self.roles)
            .field("password_login", &self.password_login)
            .finish_non_exhaustive()
    }
}

/// The LDAP directory persons are synchronised from.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldaps://HOST:PORT` (TLS), or `ldap://HOST:PORT` (plain, or TLS with `starttls`); empty:
    /// no directory.
    pub url: String,
    /// With an `ldap://` URL: upgrade the connection to TLS with StartTLS before binding.
    pub starttls: bool,
    /// A PEM file of the CA certificates the directory's certificate must chain to; empty: the
    /// system's trusted roots.
    pub ca_file: String,
    /// The DN to bind as; empty: an anonymous bind.
    pub bind_dn: String,
    /// Give it in the environment, CARDWRIGHT_DIRECTORY_BIND_PASSWORD.
    pub bind_password: String,
    /// Where persons are searched (the whole subtree).
    pub base_dn: String,
    pub filter: String,
    /// The attribute holding each value.
    pub attributes: DirectoryAttributes,
    /// How often `serve` synchronises, in seconds; 0: only `cardwright persons sync`.
    pub sync_interval_secs: u64,
    /// How long one sync may take, in seconds.
    pub timeout_secs: u64,
}

/// Which directory attribute holds what (inetOrgPerson's by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryAttributes {
    pub employee_number: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    /// The photo (JPEG or PNG bytes); empty: photos are not read from the directory.
    pub photo: String,
}

impl Default for DirectoryAttributes {
    fn default() -> Self {
        Self {
            employee_number: "employeeNumber".into(),
            given_name: "givenName".into(),
            family_name: "sn".into(),
            email: "mail".into(),
            photo: "jpegPhoto".into(),
        }
    }
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            ca_file: String::new(),
            bind_dn: String::new(),
            bind_password: String::new(),
            base_dn: String::new(),
            filter: "(objectClass=inetOrgPerson)".into(),
            attributes: DirectoryAttributes::default(),
            sync_interval_secs: 3600,
            timeout_secs: 120,
        }
    }
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &if self.bind_password.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("base_dn", &self.base_dn)
            .field("filter", &self.filter)
            .field("attributes", &self.attributes)
            .field("sync_interval_secs", &self.sync_interval_secs)
            .finish_non_exhaustive()
    }
}

/// Announcing events by mail and webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// How often the server looks for events to announce and mails and webhook deliveries to
    /// send, in milliseconds; reminders due are looked for every 20 turns.
    pub interval_ms: u64,
    /// The wait before a failed mail or delivery is tried again, in seconds; each further retry
    /// waits twice as long...
    pub retry_base_secs: u64,
    /// ...up to this many seconds.
    pub retry_max_secs: u64,
    /// How long after the event a mail or delivery is retried before it is given up (dead).
    pub give_up_after_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            interval_ms: 250,
            retry_base_secs: 5,
            retry_max_secs: 3600,
            give_up_after_secs: DAY,
        }
    }
}

/// The SMTP server mails go through.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The SMTP server's name or address; empty: mails are off.
    pub host: String,
    /// Its port; 0: the usual one for `tls` (25 for none, 587 for starttls, 465 for implicit).
    pub port: u16,
    /// The sender, e.g. `Security desk <desk@example.com>`.
    pub from: String,
    /// Login name, if the server wants one (then with `password`).
    pub username: String,
    /// Give it in the environment, CARDWRIGHT_SMTP_PASSWORD.
    pub password: String,
    /// `none`, `starttls` (required, not opportunistic) or `implicit` (TLS from the start).
    pub tls: SmtpTls,
    /// How long one mail may take to send, in seconds.
    pub timeout_secs: u64,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Implicit,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 0,
            from: String::new(),
            username: String::new(),
            password: String::new(),
            tls: SmtpTls::Starttls,
            timeout_secs: 30,
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("tls", &self.tls)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl SmtpConfig {
    /// The port in force.
    pub fn effective_port(&self) -> u16 {
        match (self.port, self.tls) {
            (0, SmtpTls::None) => 25,
            (0, SmtpTls::Starttls) => 587,
            (0, SmtpTls::Implicit) => 465,
            (port, _) => port,
        }
    }
}

/// Webhook deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// URL prefixes a subscription may point at, e.g. `["https://siem.example.com/hooks/"]`,
    /// inside the network too; empty: any http or https URL whose host is not inside the
    /// network (loopback, private, link-local and the like).
    pub allowed_urls: Vec<String>,
    /// How long a receiver may take to answer, in seconds.
    pub timeout_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allowed_urls: Vec::new(),
            timeout_secs: 10,
        }
    }
}

/// The built-in certificate authority and where the installation's keys are kept.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PkiConfig {
    /// The CA's name (its certificate's common name), used when the keys are created.
    pub ca_name: String,
    /// How long card certificates are valid, in days.
    pub certificate_days: u32,
    /// Where the CA key, the PUK master keys and the audit key are kept: `database` (sealed under
    /// the key-encryption key) or `pkcs11` (generated on a token).
    pub key_store: KeyStoreKind,
    /// The key-encryption key (64 hex digits) every server of the installation is given, e.g.
    /// from CARDWRIGHT_PKI_KEK. Empty: `kek_file`, else a file created once in the data folder.
    pub kek: String,
    /// A file holding the key-encryption key (64 hex digits).
    pub kek_file: String,
    /// The PKCS#11 module of the token (key store `pkcs11`).
    pub pkcs11_module: String,
    /// The label of the token the keys are kept on.
    pub token_label: String,
    /// The token's user PIN; give it in the environment, CARDWRIGHT_PKI_PIN.
    pub pin: String,
    /// The PUK master key (64 hex digits) of an installation from before key stores: moved into
    /// the key store once, when the keys are created.
    pub master_key: String,
}

/// Where the installation's keys are kept.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    #[default]
    Database,
    Pkcs11,
}

impl std::fmt::Debug for PkiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiConfig")
            .field("ca_name", &self.ca_name)
            .field("certificate_days", &self.certificate_days)
            .field("key_store", &self.key_store)
            .field("kek_file", &self.kek_file)
            .field("pkcs11_module", &self.pkcs11_module)
            .field("token_label", &self.token_label)
            .finish_non_exhaustive()
    }
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            ca_name: "Cardwright Card CA".into(),
            certificate_days: 365,
            key_store: KeyStoreKind::Database,
            kek: String::new(),
            kek_file: String::new(),
            pkcs11_module: String::new(),
            token_label: String::new(),
            pin: String::new(),
            master_key: String::new(),
        }
    }
}

/// A printer (and optionally a chip encoder) that produces one card at a time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Unique per server; shown in the audit log of each production attempt.
    pub name: String,
    pub printer: PrinterConfig,
    #[serde(default)]
    pub encoder: EncoderConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PrinterConfig {
    /// Writes each job under `dir` (default: the data folder's `spool`).
    Spool {
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// Sends each card's PDF to an IPP printer (CUPS queue or IPP Everywhere printer) and waits
    /// until the printer reports the job done, at most `job_timeout_secs`.
    Ipp {
        uri: String,
        #[serde(default = "default_job_timeout")]
        job_timeout_secs: u64,
    },
    /// Spools, waits `delay_ms` per card and fails every `fail_every`th job (0: never).
    Simulated {
        #[serde(default)]
        fail_every: u64,
        #[serde(default)]
        delay_ms: u64,
        #[serde(default)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EncoderConfig {
    /// Cards are printed only.
    #[default]
    None,
    /// Chips are initialised through a PKCS#11 module (OpenSC for smart cards, SoftHSM2 for
    /// tests), e.g. `/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so`.
    Pkcs11 { module: PathBuf },
}

fn default_job_timeout() -> u64 {
    120
}

impl PrinterConfig {
    /// Refuses values that cannot work, naming the key under `key` (`stations.NAME.printer` in
    /// the server's configuration, `printer` in a station's).
    pub fn check(&self, key: &str) -> anyhow::Result<()> {
        match self {
            PrinterConfig::Spool { .. } => Ok(()),
            PrinterConfig::Ipp {
                uri,
                job_timeout_secs,
            } => {
                cardwright_cardsdk::IppPrinter::new(uri, std::time::Duration::from_secs(1))
                    .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                in_range(
                    &format!("{key}.job_timeout_secs"),
                    *job_timeout_secs,
                    1,
                    DAY,
                )
            }
            PrinterConfig::Simulated {
                fail_every,
                delay_ms,
                ..
            } => {
                in_range(&format!("{key}.fail_every"), *fail_every, 0, 1_000_000)?;
                in_range(&format!("{key}.delay_ms"), *delay_ms, 0, 600_000)
            }
        }
    }
}

impl StationConfig {
    /// The embedded default: one local station with the spool printer.
    pub fn local() -> Self {
        Self {
            name: "local".into(),
            printer: PrinterConfig::Spool { dir: None },
            encoder: EncoderConfig::None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed logins in a row before a username is locked out.
    pub max_failures: u32,
    /// How long a lockout lasts, in seconds.
    pub lockout_secs: u64,
    /// How long a bearer token is valid, in seconds.
    pub token_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: String::new(),
            expiry_interval_ms: 30_000,
            log_format: "text".into(),
            login: LoginConfig::default(),
            station_poll_ms: 200,
            production_stale_secs: 900,
            stations: vec![StationConfig::local()],
            station_lease_secs: 60,
            tls: TlsConfig::default(),
            pki: PkiConfig::default(),
            metrics_token: String::new(),
            notify: NotifyConfig::default(),
            smtp: SmtpConfig::default(),
            webhooks: WebhooksConfig::default(),
            directory: DirectoryConfig::default(),
            oidc: OidcConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout_secs: 300,
            token_ttl_secs: 8 * 3600,
        }
    }
}

impl Config {
    /// Reads the file (if any) and applies the environment.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading configuration file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing configuration file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let defaults = toml::Table::try_from(Config::default()).context("serialising defaults")?;
        apply_env(&mut table, &defaults, "CARDWRIGHT", &env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        config.check()?;
        Ok(config)
    }

    /// Refuses values that cannot work, naming the key.
    pub fn check(&self) -> anyhow::Result<()> {
        self.listen.parse::<SocketAddr>().with_context(|| {
            format!(
                "listen: '{}' is not an address like 127.0.0.1:8080",
                self.listen
            )
        })?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format: use text or json, not '{}'", self.log_format);
        }
        in_range("expiry_interval_ms", self.expiry_interval_ms, 1, DAY * 1000)?;
        in_range("station_poll_ms", self.station_poll_ms, 1, 3_600_000)?;
        in_range(
            "production_stale_secs",
            self.production_stale_secs,
            1,
            30 * DAY,
        )?;
        in_range("login.lockout_secs", self.login.lockout_secs, 1, 30 * DAY)?;
        in_range(
            "login.token_ttl_secs",
            self.login.token_ttl_secs,
            1,
            365 * DAY,
        )?;
        in_range(
            "pki.certificate_days",
            u64::from(self.pki.certificate_days),
            1,
            3650,
        )?;
        if !self.metrics_token.is_empty()
            && (self.metrics_token.len() < 32
                || !self.metrics_token.bytes().all(|b| b.is_ascii_graphic()))
        {
            bail!("metrics_token: use at least 32 printable characters without spaces (e.g. from `openssl rand -hex 32`)");
        }
        let mut names = std::collections::HashSet::new();
        for station in &self.stations {
            let name = station.name.trim();
            if name.is_empty() || name.len() > 64 {
                bail!("stations: a station needs a name of 1 to 64 characters");
            }
            if !names.insert(name) {
                bail!("stations: the name '{name}' is used twice");
            }
            station.printer.check(&format!("stations.{name}.printer"))?;
        }
        if self.pki.key_store == KeyStoreKind::Pkcs11
            && (self.pki.pkcs11_module.is_empty() || self.pki.token_label.is_empty())
        {
            bail!(
                "pki.key_store = \"pkcs11\" needs pki.pkcs11_module and pki.token_label (and the \
                 token's PIN in CARDWRIGHT_PKI_PIN)"
            );
        }
        if !self.pki.kek.is_empty() && !self.pki.kek_file.is_empty() {
            bail!("pki.kek and pki.kek_file: give the key-encryption key one way, not both");
        }
        in_range(
            "login.max_failures",
            u64::from(self.login.max_failures),
            1,
            MAX_LOGIN_FAILURES,
        )?;
        in_range("station_lease_secs", self.station_lease_secs, 1, DAY)?;
        in_range("audit.checkpoint_secs", self.audit.checkpoint_secs, 10, DAY)?;
        self.check_tls()?;
        self.check_directory()?;
        self.check_oidc()?;
        self.check_notify()
    }

    fn check_tls(&self) -> anyhow::Result<()> {
        let t = &self.tls;
        if t.builtin && (!t.cert_file.is_empty() || !t.key_file.is_empty()) {
            bail!("tls: use builtin = true or cert_file and key_file, not both");
        }
        if t.cert_file.is_empty() != t.key_file.is_empty() {
            bail!("tls.cert_file and tls.key_file: give both");
        }
        if t.builtin {
            if t.names.is_empty() {
                bail!("tls.names: give the host names or addresses clients reach the server by (e.g. [\"cards.example.com\"])");
            }
            for name in &t.names {
                let ok = name.parse::<std::net::IpAddr>().is_ok()
                    || (!name.is_empty()
                        && name.len() <= 253
                        && name.split('.').all(|label| {
                            !label.is_empty()
                                && label.len() <= 63
                                && label
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        }));
                if !ok {
                    bail!("tls.names: '{name}' is not a host name or an IP address");
                }
            }
        }
        let listen: SocketAddr = self.listen.parse()?;
        if !t.enabled() && !listen.ip().is_loopback() && !t.allow_plain_http {
            bail!(
                "listen: {} is reachable from other machines, but no TLS is configured; set \
                 [tls] (builtin = true with names, or cert_file and key_file), or \
                 tls.allow_plain_http = true behind a TLS proxy",
                self.listen
            );
        }
        Ok(())
    }

    fn check_oidc(&self) -> anyhow::Result<()> {
        let o = &self.oidc;
        in_range("oidc.timeout_secs", o.timeout_secs, 1, 300)?;
        if !o.enabled() {
            if !o.password_login {
                bail!("oidc.password_login = false needs single sign-on: set oidc.issuer, client_id and redirect_url");
            }
            return Ok(());
        }
        let issuer = url::Url::parse(&o.issuer)
            .with_context(|| format!("oidc.issuer: '{}' is not a URL", o.issuer))?;
        if !matches!(issuer.scheme(), "https" | "http") {
            bail!("oidc.issuer: use an https:// URL, not '{}'", o.issuer);
        }
        if o.client_id.trim().is_empty() {
            bail!("oidc.client_id: give the client id the provider registered for Cardwright");
        }
        let redirect = url::Url::parse(&o.redirect_url).with_context(|| {
            format!(
                "oidc.redirect_url: '{}' is not a URL like https://HOST/login/oidc/callback",
                o.redirect_url
            )
        })?;
        if redirect.path() != "/login/oidc/callback" {
            bail!(
                "oidc.redirect_url: the path must be /login/oidc/callback, not '{}'",
                redirect.path()
            );
        }
        if o.name.trim().is_empty() || o.name.len() > 64 {
            bail!("oidc.name: give the provider a name of 1 to 64 characters");
        }
        if o.username_claim.trim().is_empty() || o.roles_claim.trim().is_empty() {
            bail!("oidc.username_claim and oidc.roles_claim: name the claims");
        }
        if o.roles.is_empty() {
            bail!(
                "oidc.roles: map at least one value of the claim '{}' to Cardwright roles, e.g. \
                 [oidc.roles] \"card-desk\" = [\"registration-officer\"]",
                o.roles_claim
            );
        }
        for (value, roles) in &o.roles {
            let names = roles.names();
            if names.is_empty() {
                bail!("oidc.roles.{value}: give at least one role");
            }
            for name in names {
                name.parse::<cardwright_domain::Role>()
                    .map_err(|e| anyhow::anyhow!("oidc.roles.{value}: {e}"))?;
            }
        }
        Ok(())
    }

    fn check_directory(&self) -> anyhow::Result<()> {
        let d = &self.directory;
        if d.sync_interval_secs != 0 {
            in_range(
                "directory.sync_interval_secs",
                d.sync_interval_secs,
                60,
                30 * DAY,
            )?;
        }
        in_range("directory.timeout_secs", d.timeout_secs, 1, 3600)?;
        if d.url.is_empty() {
            return Ok(());
        }
        let tls_url = d.url.starts_with("ldaps://");
        if !tls_url && !d.url.starts_with("ldap://") {
            bail!(
                "directory.url: use ldaps://HOST:PORT or ldap://HOST:PORT, not '{}'",
                d.url
            );
        }
        if tls_url && d.starttls {
            bail!("directory.starttls: an ldaps:// URL speaks TLS from the start; use starttls with ldap://");
        }
        if !d.ca_file.is_empty() && !tls_url && !d.starttls {
            bail!("directory.ca_file: only used over TLS; use an ldaps:// URL or starttls = true");
        }
        if d.base_dn.trim().is_empty() {
            bail!(
                "directory.base_dn: name where the persons are, e.g. ou=people,dc=example,dc=org"
            );
        }
        Ok(())
    }

    fn check_notify(&self) -> anyhow::Result<()> {
        let n = &self.notify;
        in_range("notify.interval_ms", n.interval_ms, 1, 3_600_000)?;
        in_range("notify.retry_base_secs", n.retry_base_secs, 1, DAY)?;
        in_range(
            "notify.retry_max_secs",
            n.retry_max_secs,
            n.retry_base_secs,
            DAY,
        )?;
        in_range(
            "notify.give_up_after_secs",
            n.give_up_after_secs,
            1,
            30 * DAY,
        )?;
        let w = &self.webhooks;
        in_range("webhooks.timeout_secs", w.timeout_secs, 1, 300)?;
        for prefix in &w.allowed_urls {
            let url = url::Url::parse(prefix).map_err(|e| {
                anyhow::anyhow!("webhooks.allowed_urls: '{prefix}' is not a URL ({e})")
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                bail!("webhooks.allowed_urls: '{prefix}' is not an http or https URL with a host");
            }
        }
        let smtp = &self.smtp;
        in_range("smtp.timeout_secs", smtp.timeout_secs, 1, 600)?;
        if !smtp.host.is_empty() {
            if smtp
                .from
                .trim()
                .parse::<lettre::message::Mailbox>()
                .is_err()
            {
                bail!(
                    "smtp.from: '{}' is not a sender address like desk@example.com or \
                     \"Security desk <desk@example.com>\"",
                    smtp.from
                );
            }
            if smtp.username.is_empty() != smtp.password.is_empty() {
                bail!("smtp.username and smtp.password: give both (the password in CARDWRIGHT_SMTP_PASSWORD) or neither");
            }
        }
        Ok(())
    }

    /// The processes' notification settings.
    pub fn notify_settings(&self) -> cardwright_processes::notify::NotifySettings {
        let (n, w) = (&self.notify, &self.webhooks);
        // A claimed batch is sent one after another; the lease covers a batch whose receiver
        // is slow. A server that dies takes back its own claims when it starts again; another
        // server takes them once the lease has run out.
        let per_send = w.timeout_secs.max(self.smtp.timeout_secs);
        cardwright_processes::notify::NotifySettings {
            mail: !self.smtp.host.is_empty(),
            allowed_urls: w.allowed_urls.clone(),
            retry_base: std::time::Duration::from_secs(n.retry_base_secs),
            retry_max: std::time::Duration::from_secs(n.retry_max_secs),
            give_up_after: std::time::Duration::from_secs(n.give_up_after_secs),
            lease: std::time::Duration::from_secs((per_send * 4).max(60)),
        }
    }

    /// Refuses `CARDWRIGHT_*` environment variables that set nothing (a misspelt key would
    /// otherwise be ignored without a word), naming the variable.
    pub fn check_environment(names: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
        let defaults = toml::Table::try_from(Config::default()).context("serialising defaults")?;
        let mut known = vec!["CARDWRIGHT_CONFIG".to_owned(), "CARDWRIGHT_LOG".to_owned()];
        env_names(&defaults, "CARDWRIGHT", &mut known);
        for name in names {
            if name.starts_with("CARDWRIGHT_") && !known.contains(&name) {
                bail!(
                    "{name}: no such setting; the environment may set {}",
                    known.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or SQLite in the data folder.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            cardwright_storage::Store::sqlite_url(&self.data_dir.join("cardwright.db"))
        } else {
            self.database_url.clone()
        }
    }

    pub fn settings(&self) -> anyhow::Result<cardwright_processes::Settings> {
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Ok(cardwright_processes::Settings {
            login: cardwright_processes::LoginPolicy {
                max_failures: self.login.max_failures,
                lockout: secs(self.login.lockout_secs),
                token_ttl: secs(self.login.token_ttl_secs),
                password_login: self.oidc.password_login,
            },
        })
    }
}

/// Seconds in a day, for the bounds of durations.
const DAY: u64 = 24 * 3600;

/// The most failed logins in a row `login.max_failures` may allow before a lockout.
const MAX_LOGIN_FAILURES: u64 = 10_000;

/// Refuses a value outside `min..=max`, naming the key.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> anyhow::Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        bail!("{key}: must be from {min} to {max}, not {value}")
    }
}

/// The environment variable of every key `apply_env` reads.
fn env_names(defaults: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, default) in defaults {
        let var = format!("{prefix}_{}", key.to_ascii_uppercase());
        match default {
            toml::Value::Array(_) => {}
            toml::Value::Table(inner) => env_names(inner, &var, out),
            _ => out.push(var),
        }
    }
}

/// Overrides every key of `defaults` found in the environment: `listen` from `CARDWRIGHT_LISTEN`,
/// `login.max_failures` from `CARDWRIGHT_LOGIN_MAX_FAILURES`, and so on.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for (key, default) in defaults {
        // Lists (the stations) come from the file only.
        if default.is_array() {
            continue;
        }
        let var = format!("{prefix}_{}", key.to_ascii_uppercase());
        if let toml::Value::Table(inner_defaults) = default {
            let inner = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = inner else {
                bail!("{key}: expected a table");
            };
            apply_env(inner, inner_defaults, &var, env)?;
            continue;
        }
        if let Some(raw) = env(&var) {
            let value = match default {
                toml::Value::Integer(_) => toml::Value::Integer(
                    raw.trim()
                        .parse()
                        .with_context(|| format!("{var}: '{raw}' is not a whole number"))?,
                ),
                toml::Value::Boolean(_) => toml::Value::Boolean(
                    raw.trim()
                        .parse()
                        .with_context(|| format!("{var}: '{raw}' is not true or false"))?,
                ),
                _ => toml::Value::String(raw),
            };
            table.insert(key.clone(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_tls_settings_are_checked() {
        let base = DirectoryConfig {
            url: "ldaps://ldap.example.org".into(),
            base_dn: "ou=people,dc=example,dc=org".into(),
            ..DirectoryConfig::default()
        };
        let check = |directory: DirectoryConfig| {
            Config {
                directory,
                ..Config::default()
            }
            .check()
        };
        assert!(check(base.clone()).is_ok());
        for (directory, names) in [
            (
                DirectoryConfig {
                    starttls: true,
                    ..base.clone()
                },
                "directory.starttls",
            ),
            (
                DirectoryConfig {
                    url: "ldap://ldap.example.org".into(),
                    ca_file: "/etc/ca.pem".into(),
                    ..base.clone()
                },
                "directory.ca_file",
            ),
            (
                DirectoryConfig {
                    url: "http://ldap.example.org".into(),
                    ..base.clone()
                },
                "directory.url",
            ),
        ] {
            let err = format!("{:#}", check(directory).unwrap_err());
            assert!(err.contains(names), "{err}");
        }
    }

    #[test]
    fn single_sign_on_settings_are_checked() {
        let env = |_: &str| None;
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), env)
        };
        let good = "[oidc]\nissuer = \"https://id.example.org\"\nclient_id = \"cw\"\n\
                    redirect_url = \"https://cards.example.org/login/oidc/callback\"\n\
                    [oidc.roles]\ndesk = \"registration-officer\"\n\
                    admins = [\"policy-admin\", \"service-admin\"]\n";
        let config = load(good).unwrap();
        assert!(config.oidc.enabled());
        assert_eq!(config.oidc.roles["admins"].names().len(), 2);
        for (text, names) in [
            ("[oidc]\npassword_login = false\n", "oidc.password_login"),
            (
                &good.replace("/login/oidc/callback", "/callback"),
                "oidc.redirect_url",
            ),
            (
                &good.replace("registration-officer", "janitor"),
                "oidc.roles.desk",
            ),
            (
                &good.replace("client_id = \"cw\"", "client_id = \"\""),
                "oidc.client_id",
            ),
            (
                "[oidc]\nissuer = \"https://id.example.org\"\nclient_id = \"cw\"\n\
                 redirect_url = \"https://cards.example.org/login/oidc/callback\"\n",
                "oidc.roles",
            ),
        ] {
            let err = format!("{:#}", load(text).unwrap_err());
            assert!(err.contains(names), "{text}: {err}");
        }
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, |_| None).unwrap();
        assert_eq!(config, Config::default());
        assert!(config
            .effective_database_url()
            .starts_with("sqlite://data/cardwright.db"));
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[login]\nmax_failures = 3\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "CARDWRIGHT_LOGIN_MAX_FAILURES" => Some("7".to_owned()),
            "CARDWRIGHT_DATABASE_URL" => Some("postgres://db/cw".to_owned()),
            _ => None,
        };
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.login.max_failures, 7);
        assert_eq!(config.database_url, "postgres://db/cw");
    }

    #[test]
    fn bad_values_name_their_key() {
        let env = |k: &str| (k == "CARDWRIGHT_LOGIN_MAX_FAILURES").then(|| "0".to_owned());
        let err = Config::load(None, env).unwrap_err();
        assert!(format!("{err:#}").contains("login.max_failures"), "{err:#}");
        let env = |k: &str| (k == "CARDWRIGHT_EXPIRY_INTERVAL_MS").then(|| "soon".to_owned());
        assert!(format!("{:#}", Config::load(None, env).unwrap_err())
            .contains("CARDWRIGHT_EXPIRY_INTERVAL_MS"));
    }

    #[test]
    fn tls_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), |_| None).map_err(|e| format!("{e:#}"))
        };
        let config = load("stations = []\n[tls]\nbuiltin = true\nnames = [\"cards.example.com\", \"10.0.0.5\"]\nlisten = \"0.0.0.0:8443\"\n");
        assert!(config.is_err(), "listen inside [tls] is not a TLS key");
        let config = load("listen = \"0.0.0.0:8443\"\nstations = []\n[tls]\nbuiltin = true\nnames = [\"cards.example.com\", \"10.0.0.5\"]\n").unwrap();
        assert!(config.tls.enabled() && config.stations.is_empty());
        let err = load("[tls]\nbuiltin = true\n").unwrap_err();
        assert!(err.contains("tls.names"), "{err}");
        let err = load("[tls]\nbuiltin = true\nnames = [\"bad name\"]\n").unwrap_err();
        assert!(err.contains("'bad name'"), "{err}");
        let err = load("[tls]\ncert_file = \"a.pem\"\n").unwrap_err();
        assert!(err.contains("give both"), "{err}");
        let err = load(
            "[tls]\nbuiltin = true\nnames = [\"a\"]\ncert_file = \"a.pem\"\nkey_file = \"k.pem\"\n",
        )
        .unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = load("listen = \"0.0.0.0:8080\"\n").unwrap_err();
        assert!(err.contains("allow_plain_http"), "{err}");
        assert!(load("listen = \"0.0.0.0:8080\"\n[tls]\nallow_plain_http = true\n").is_ok());
        let err = load("station_lease_secs = 0\n").unwrap_err();
        assert!(err.contains("station_lease_secs"), "{err}");
    }

    #[test]
    fn stations_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[stations]]\nname = \"desk-1\"\nprinter = { kind = \"simulated\", fail_every = 4, delay_ms = 0 }\nencoder = { kind = \"none\" }\n\n[[stations]]\nname = \"desk-2\"\nprinter = { kind = \"spool\" }\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.stations.len(), 2);
        assert_eq!(
            config.stations[0].printer,
            PrinterConfig::Simulated {
                fail_every: 4,
                delay_ms: 0,
                dir: None
            }
        );
        std::fs::write(
            &path,
            "[[stations]]\nname = \"a\"\nprinter = { kind = \"laser\" }\n",
        )
        .unwrap();
        assert!(Config::load(Some(&path), |_| None).is_err());
        std::fs::write(
            &path,
            "[[stations]]\nname = \"a\"\nprinter = { kind = \"spool\" }\n[[stations]]\nname = \"a\"\nprinter = { kind = \"spool\" }\n",
        )
        .unwrap();
        assert!(
            format!("{:#}", Config::load(Some(&path), |_| None).unwrap_err()).contains("twice")
        );
    }

    #[test]
    fn durations_must_be_positive_and_bounded() {
        for (var, value, key) in [
            (
                "CARDWRIGHT_LOGIN_TOKEN_TTL_SECS",
                "0",
                "login.token_ttl_secs",
            ),
            ("CARDWRIGHT_LOGIN_LOCKOUT_SECS", "0", "login.lockout_secs"),
            (
                "CARDWRIGHT_PRODUCTION_STALE_SECS",
                "0",
                "production_stale_secs",
            ),
            (
                "CARDWRIGHT_PKI_CERTIFICATE_DAYS",
                "0",
                "pki.certificate_days",
            ),
            (
                "CARDWRIGHT_LOGIN_TOKEN_TTL_SECS",
                "18446744073709551615",
                "login.token_ttl_secs",
            ),
            (
                "CARDWRIGHT_PRODUCTION_STALE_SECS",
                "9223372036854775807",
                "production_stale_secs",
            ),
        ] {
            let env = |k: &str| (k == var).then(|| value.to_owned());
            let err = format!("{:#}", Config::load(None, env).unwrap_err());
            assert!(
                err.contains(key) || err.contains(var),
                "{var}={value}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[stations]]\nname = \"a\"\nprinter = { kind = \"ipp\", uri = \"ipp://127.0.0.1:631/printers/a\", job_timeout_secs = 0 }\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(Some(&path), |_| None).unwrap_err());
        assert!(err.contains("stations.a.printer.job_timeout_secs"), "{err}");
    }

    /// The environment variable and key of every whole-number setting, found from the defaults,
    /// so a setting added later is held to the same test.
    fn numeric_settings() -> Vec<(String, String)> {
        fn walk(table: &toml::Table, var: &str, key: &str, out: &mut Vec<(String, String)>) {
            for (name, value) in table {
                let var = format!("{var}_{}", name.to_ascii_uppercase());
                let key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                match value {
                    toml::Value::Integer(_) => out.push((var, key)),
                    toml::Value::Table(inner) => walk(inner, &var, &key, out),
                    _ => {}
                }
            }
        }
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let mut out = Vec::new();
        walk(&defaults, "CARDWRIGHT", "", &mut out);
        out
    }

    #[test]
    fn every_numeric_setting_has_a_checked_range() {
        let settings = numeric_settings();
        assert!(settings.len() >= 19, "{settings:?}");
        for (var, key) in &settings {
            let last = key.rsplit('.').next().unwrap();
            for value in ["9223372036854775807", "4294967295", "0", "1", "-1"] {
                let env = |k: &str| (k == var).then(|| value.to_owned());
                match Config::load(None, env) {
                    Ok(config) => {
                        assert!(
                            !["9223372036854775807", "-1"].contains(&value),
                            "{key} = {value} was taken"
                        );
                        // What the server derives from the settings does not panic either.
                        config.settings().unwrap();
                        let _ = config.notify_settings();
                    }
                    Err(e) => {
                        let e = format!("{e:#}");
                        assert!(
                            e.contains(key.as_str())
                                || e.contains(var.as_str())
                                || e.contains(last),
                            "{var}={value}: the error does not name the setting: {e}"
                        );
                    }
                }
            }
        }
        let huge = |key: &str| {
            let env = |k: &str| (k == key).then(|| "4294967295".to_owned());
            Config::load(None, env).is_err()
        };
        assert!(
            huge("CARDWRIGHT_LOGIN_MAX_FAILURES"),
            "a lockout is never switched off"
        );
        assert!(
            huge("CARDWRIGHT_SMTP_TIMEOUT_SECS"),
            "checked without an SMTP host too"
        );
    }

    #[test]
    fn a_station_printer_is_held_to_the_same_ranges() {
        for (printer, key) in [
            (
                "{ kind = \"ipp\", uri = \"ipp://127.0.0.1:631/printers/a\", job_timeout_secs = 0 }",
                "printer.job_timeout_secs",
            ),
            (
                "{ kind = \"ipp\", uri = \"ipp://127.0.0.1:631/printers/a\", job_timeout_secs = 9223372036854775807 }",
                "printer.job_timeout_secs",
            ),
            (
                "{ kind = \"simulated\", delay_ms = 9223372036854775807 }",
                "printer.delay_ms",
            ),
        ] {
            let file: crate::agent::StationFile =
                toml::from_str(&format!("printer = {printer}\n")).unwrap();
            let err = format!("{:#}", file.printer.check("printer").unwrap_err());
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn unknown_environment_variables_are_refused() {
        let ok = [
            "CARDWRIGHT_LISTEN",
            "CARDWRIGHT_LOGIN_MAX_FAILURES",
            "CARDWRIGHT_LOG",
            "PATH",
        ];
        Config::check_environment(ok.iter().map(|s| (*s).to_owned())).unwrap();
        let err = Config::check_environment(["CARDWRIGHT_LISTN".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CARDWRIGHT_LISTN: no such setting"),
            "{err}"
        );
        assert!(Config::check_environment(["CARDWRIGHT_STATIONS".to_owned()]).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listn = \"127.0.0.1:9000\"\n").unwrap();
        assert!(
            format!("{:#}", Config::load(Some(&path), |_| None).unwrap_err()).contains("listn")
        );
    }
}
