//! `cardwright station`: the agent on an operator's computer that produces cards with the
//! printer and chip reader attached there.
//!
//! `enroll` makes a key pair in the station's folder, sends a signing request with the
//! single-use code a production-admin got when registering the station, and keeps the client
//! certificate the server's CA gives. The code carries the fingerprint of that CA: the agent
//! talks only to a server whose TLS certificate comes from it, so a wrong server learns
//! nothing. `run` then asks the server for cards over mutual TLS, produces each with the
//! `cardwright-station` code the server's own stations run, and reports how it went. PIN and
//! PUK are drawn here: the PIN goes on the chip and the PIN letter printed at the desk, the PUK
//! to the server only sealed to its escrow key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cardwright_cardsdk::encoder::{CardCertificate, CardKey, KeyKind, KeySpec, Pkcs11Encoder};
use cardwright_cardsdk::{IppPrinter, Printer, SimulatedPrinter, SpoolPrinter};
use cardwright_station::{Encoding, Issuer, Job, Outcome, Station};
use clap::Subcommand;
use rand::RngCore as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::{EncoderConfig, PrinterConfig};

/// `cardwright station ...`
#[derive(Debug, Subcommand)]
pub enum StationCommand {
    /// Enrol this computer as a registered station: make its key in DIR, get its certificate.
    Enroll {
        /// The server, as https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The enrolment code the station's registration gave (used once, within 15 minutes).
        #[arg(long, value_name = "CODE")]
        code: String,
        /// The station's folder: its key, its certificate and what it spools.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A CA file (PEM) for the server's TLS certificate, when it does not come from
        /// Cardwright's CA (tls.cert_file on the server).
        #[arg(long, value_name = "FILE")]
        server_ca: Option<PathBuf>,
    },
    /// Produce cards: ask the server for cards and print (and encode) them here. The
    /// configuration file (--config) gives `printer = {...}` and `encoder = {...}` as
    /// [[stations]] do on the server; without it cards are spooled under DIR/spool.
    Run {
        /// The folder `enroll` filled.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Renew the station's certificate now, with a new key. `run` renews it by itself when
    /// fewer than 30 days are left.
    Renew {
        /// The folder `enroll` filled.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `run` renews the station's certificate when fewer than this many days are left.
const RENEW_DAYS: i64 = 30;
/// How often `run` looks at its certificate's end.
const RENEW_CHECK: Duration = Duration::from_hours(6);

/// What `enroll` keeps besides the key and certificates.
#[derive(Debug, Serialize, Deserialize)]
struct Enrolment {
    server: String,
    station: String,
    ca_fingerprint: String,
}

/// The station's devices (`--config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationFile {
    #[serde(default = "default_printer")]
    pub printer: PrinterConfig,
    #[serde(default)]
    pub encoder: EncoderConfig,
}

fn default_printer() -> PrinterConfig {
    PrinterConfig::Spool { dir: None }
}

/// Runs `cardwright station ...`; `config` is the --config file.
pub async fn run(command: &StationCommand, config: Option<&Path>) -> anyhow::Result<()> {
    match command {
        StationCommand::Enroll {
            server,
            code,
            dir,
            server_ca,
        } => enroll(server, code, dir, server_ca.as_deref()).await,
        StationCommand::Run { dir } => run_station(dir, config).await,
        StationCommand::Renew { dir } => {
            renew(dir, true).await?;
            Ok(())
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Trusts a server whose chain holds the CA with the pinned fingerprint, checked as that CA's
/// certificate path.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| sha256_hex(c) == self.fingerprint)
        else {
            return Err(rustls::Error::General(format!(
                "the server's TLS certificate does not come from the CA the enrolment code \
                 names (SHA-256 {})",
                self.fingerprint
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("the pinned CA: {e}")))?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(format!("the pinned CA: {e}")))?
        .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn roots_from_pem(pem: &[u8], what: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(der.map_err(|e| anyhow!("{what}: {e}"))?)
            .map_err(|e| anyhow!("{what}: {e}"))?;
    }
    if roots.is_empty() {
        bail!("{what}: no certificate in it");
    }
    Ok(roots)
}

fn client(tls: rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_mins(1))
        .build()
        .context("building the HTTPS client")
}

/// The server's base URL, checked: https, a host, nothing after it.
fn server_url(server: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(server)
        .with_context(|| format!("--server: '{server}' is not a URL like https://HOST:PORT"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        bail!("--server: use https://HOST:PORT (stations talk to the server over TLS only)");
    }
    Ok(server.trim_end_matches('/').to_owned())
}

/// What an error answer says.
async fn refusal(res: reqwest::Response) -> String {
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    match body["error"]["message"].as_str() {
        Some(message) => format!("{status}: {message}"),
        None => status.to_string(),
    }
}

async fn enroll(
    server: &str,
    code: &str,
    dir: &Path,
    server_ca: Option<&Path>,
) -> anyhow::Result<()> {
    let server = server_url(server)?;
    let code = code.trim();
    let fingerprint = code
        .rsplit_once('-')
        .map(|(_, f)| f.to_ascii_lowercase())
        .filter(|f| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            anyhow!(
                "--code: not an enrolment code (SECRET-FINGERPRINT, from registering the station)"
            )
        })?;
    if dir.join("cert.pem").exists() || dir.join("key.pem").exists() {
        bail!(
            "{} holds an enrolled station already; use another folder, or remove it first",
            dir.display()
        );
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?;
    let tls = match server_ca {
        Some(file) => {
            let pem = std::fs::read(file)
                .with_context(|| format!("--server-ca: reading {}", file.display()))?;
            builder
                .with_root_certificates(roots_from_pem(&pem, "--server-ca")?)
                .with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCa {
                fingerprint: fingerprint.clone(),
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    let http = client(tls)?;
    let (key_pem, csr_pem) = cardwright_pki::tls::key_and_request("cardwright station")?;
    let res = http
        .post(format!("{server}/station/v1/enroll"))
        .json(&serde_json::json!({ "code": code, "csr": csr_pem }))
        .send()
        .await
        .map_err(|e| anyhow!("reaching {server}: {}", cardwright_processes::report(&e)))?;
    if !res.status().is_success() {
        bail!("the server refused the enrolment: {}", refusal(res).await);
    }
    let answer: serde_json::Value = res.json().await.context("reading the server's answer")?;
    let (Some(station), Some(certificate), Some(ca)) = (
        answer["station"].as_str(),
        answer["certificate"].as_str(),
        answer["ca"].as_str(),
    ) else {
        bail!("the server's answer is not an enrolment");
    };
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes())
        .map_err(|e| anyhow!("the server's CA certificate: {e}"))?;
    if sha256_hex(&ca_der) != fingerprint {
        bail!("the server's CA is not the one the enrolment code names; nothing was saved");
    }
    crate::app::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::app::write_secret(&dir.join("key.pem"), key_pem.as_bytes())
        .with_context(|| format!("writing {}", dir.join("key.pem").display()))?;
    std::fs::write(dir.join("cert.pem"), certificate)?;
    std::fs::write(dir.join("ca.pem"), ca)?;
    if let Some(file) = server_ca {
        std::fs::copy(file, dir.join("server-ca.pem"))?;
    }
    let enrolment = Enrolment {
        server: server.clone(),
        station: station.to_owned(),
        ca_fingerprint: fingerprint,
    };
    std::fs::write(
        dir.join("station.json"),
        serde_json::to_string_pretty(&enrolment)?,
    )?;
    println!(
        "enrolled as station {station} at {server}; start it with: cardwright station run --dir {}",
        dir.display()
    );
    Ok(())
}

/// Completes a renewal that stopped after the new certificate was saved: the new key and
/// certificate (`key.pem.new`, `cert.pem.new`) take the old ones' places, the key first.
fn finish_renewal(dir: &Path) -> anyhow::Result<()> {
    let (key, cert) = (dir.join("key.pem.new"), dir.join("cert.pem.new"));
    if cert.exists() {
        if key.exists() {
            std::fs::rename(&key, dir.join("key.pem"))
                .with_context(|| format!("moving {} into place", key.display()))?;
        }
        std::fs::rename(&cert, dir.join("cert.pem"))
            .with_context(|| format!("moving {} into place", cert.display()))?;
    }
    Ok(())
}

/// When the station's certificate ends (Unix seconds).
fn certificate_end(dir: &Path) -> anyhow::Result<i64> {
    let path = dir.join("cert.pem");
    let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let der =
        CertificateDer::from_pem_slice(&pem).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let (_, end) = cardwright_pki::tls::public_key_and_end(&der)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(end)
}

/// Adds the server's CA certificates (`/pki/ca.pem`: the current CA and earlier ones) that
/// `ca.pem` lacks, asked over the station's own connection, whose server the CAs already in
/// `ca.pem` vouch for. After `pki renew-ca --new-key` the station so trusts the new CA before
/// the earlier one ends. True when `ca.pem` changed.
async fn learn_cas(dir: &Path, http: &reqwest::Client, server: &str) -> anyhow::Result<bool> {
    let path = dir.join("ca.pem");
    let known = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let have: Vec<String> = CertificateDer::pem_slice_iter(&known)
        .filter_map(Result::ok)
        .map(|der| sha256_hex(&der))
        .collect();
    let res = http
        .get(format!("{server}/pki/ca.pem"))
        .send()
        .await
        .map_err(|e| anyhow!("reaching {server}: {}", cardwright_processes::report(&e)))?;
    if !res.status().is_success() {
        bail!("{server}/pki/ca.pem: {}", res.status());
    }
    let bundle = res
        .bytes()
        .await
        .context("reading the server's CA certificates")?;
    let mut added = String::new();
    for der in CertificateDer::pem_slice_iter(&bundle) {
        let der = der.map_err(|e| anyhow!("the server's CA certificates: {e}"))?;
        if !have.contains(&sha256_hex(&der)) {
            added.push_str(&cardwright_pki::certificate_pem(&der));
        }
    }
    if added.is_empty() {
        return Ok(false);
    }
    let mut all = String::from_utf8_lossy(&known).into_owned();
    if !all.ends_with('\n') {
        all.push('\n');
    }
    all.push_str(&added);
    let tmp = dir.join("ca.pem.new");
    std::fs::write(&tmp, all).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(
        server,
        "the server's new CA certificate is trusted from now on"
    );
    Ok(true)
}

/// Renews the station's certificate with a new key when fewer than [`RENEW_DAYS`] days are left
/// (at once with `force`), after learning the server's new CA certificates, and gives the
/// client that uses what changed. The new key is kept in
/// `key.pem.new` until the certificate comes, so a renewal whose answer was lost asks again
/// with the same key and gets the same certificate; the server keeps accepting the old one
/// until the station calls with the new one.
async fn renew(dir: &Path, force: bool) -> anyhow::Result<Option<reqwest::Client>> {
    finish_renewal(dir)?;
    let (http, enrolment) = station_client(dir)?;
    let learned = learn_cas(dir, &http, &enrolment.server).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let end = certificate_end(dir)?;
    if !force && end - now > RENEW_DAYS * 86_400 {
        return Ok(if learned {
            Some(station_client(dir)?.0)
        } else {
            None
        });
    }
    let key_path = dir.join("key.pem.new");
    let key_pem = if key_path.exists() {
        std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?
    } else {
        let (key_pem, _) = cardwright_pki::tls::key_and_request("cardwright station")?;
        crate::app::write_secret(&key_path, key_pem.as_bytes())
            .with_context(|| format!("writing {}", key_path.display()))?;
        key_pem
    };
    let csr = cardwright_pki::tls::request_for(&key_pem, "cardwright station")?;
    let server = &enrolment.server;
    let res = http
        .post(format!("{server}/station/v1/renew"))
        .json(&serde_json::json!({ "csr": csr }))
        .send()
        .await
        .map_err(|e| anyhow!("reaching {server}: {}", cardwright_processes::report(&e)))?;
    if !res.status().is_success() {
        bail!("the server refused the renewal: {}", refusal(res).await);
    }
    let answer: serde_json::Value = res.json().await.context("reading the server's answer")?;
    let (Some(certificate), Some(ca)) = (answer["certificate"].as_str(), answer["ca"].as_str())
    else {
        bail!("the server's answer is not a certificate");
    };
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes())
        .map_err(|e| anyhow!("the server's CA certificate: {e}"))?;
    let trusted = std::fs::read(dir.join("ca.pem"))?;
    if !CertificateDer::pem_slice_iter(&trusted)
        .filter_map(Result::ok)
        .any(|der| der == ca_der)
    {
        bail!("the server's CA is not one this station trusts; nothing was changed");
    }
    let der = CertificateDer::from_pem_slice(certificate.as_bytes())
        .map_err(|e| anyhow!("the new certificate: {e}"))?;
    let (key, end) = cardwright_pki::tls::public_key_and_end(&der)?;
    if key != cardwright_pki::tls::request_public_key(&csr)? {
        bail!("the new certificate is not for the station's new key; nothing was changed");
    }
    std::fs::write(dir.join("cert.pem.new"), certificate)
        .with_context(|| format!("writing {}", dir.join("cert.pem.new").display()))?;
    finish_renewal(dir)?;
    let (http, _) = station_client(dir)?;
    let until = chrono::DateTime::from_timestamp(end, 0).unwrap_or_default();
    tracing::info!(station = %enrolment.station, until = %until.format("%Y-%m-%d"), "station certificate renewed");
    println!(
        "station {}: certificate renewed, valid until {}",
        enrolment.station,
        until.format("%Y-%m-%d")
    );
    Ok(Some(http))
}

/// The mutual-TLS client of an enrolled station.
fn station_client(dir: &Path) -> anyhow::Result<(reqwest::Client, Enrolment)> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!(
                "reading {} (enrol first: cardwright station enroll)",
                dir.join(name).display()
            )
        })
    };
    let enrolment: Enrolment = serde_json::from_slice(&read("station.json")?)
        .with_context(|| format!("reading {}", dir.join("station.json").display()))?;
    let mut roots = roots_from_pem(&read("ca.pem")?, "ca.pem")?;
    if dir.join("server-ca.pem").exists() {
        for der in CertificateDer::pem_slice_iter(&read("server-ca.pem")?) {
            roots
                .add(der.map_err(|e| anyhow!("server-ca.pem: {e}"))?)
                .map_err(|e| anyhow!("server-ca.pem: {e}"))?;
        }
    }
    Ok((
        mtls_client(&read("cert.pem")?, &read("key.pem")?, roots)?,
        enrolment,
    ))
}

/// A client that shows the station's certificate (`cert_pem`, `key_pem`) to servers that
/// chain to `roots`.
pub(crate) fn mtls_client(
    cert_pem: &[u8],
    key_pem: &[u8],
    roots: rustls::RootCertStore,
) -> anyhow::Result<reqwest::Client> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("cert.pem: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| anyhow!("key.pem: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| anyhow!("the station's certificate and key: {e}"))?;
    client(tls)
}

/// The roots of a PEM bundle.
pub(crate) fn roots(pem: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    roots_from_pem(pem, "the CA certificate")
}

/// The station's devices, from its configuration; spool folders are under `dir`.
fn station(dir: &Path, name: &str, file: &StationFile) -> anyhow::Result<Station> {
    let under = |d: &Option<PathBuf>| match d {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => dir.join(d),
        None => dir.join("spool"),
    };
    let printer: Arc<dyn Printer> = match &file.printer {
        PrinterConfig::Spool { dir } => Arc::new(SpoolPrinter::new(under(dir))),
        PrinterConfig::Simulated {
            fail_every,
            delay_ms,
            dir,
        } => Arc::new(SimulatedPrinter::new(
            under(dir),
            *fail_every,
            Duration::from_millis(*delay_ms),
        )),
        PrinterConfig::Ipp {
            uri,
            job_timeout_secs,
        } => Arc::new(
            IppPrinter::new(uri, Duration::from_secs(*job_timeout_secs))
                .map_err(|e| anyhow!("printer: {e}"))?,
        ),
    };
    let encoder = match &file.encoder {
        EncoderConfig::None => None,
        EncoderConfig::Pkcs11 { module } => Some(Arc::new(Pkcs11Encoder::new(module.clone()))),
    };
    Ok(Station {
        name: name.to_owned(),
        printer,
        encoder,
    })
}

fn kinds(file: &StationFile) -> (&'static str, &'static str) {
    (
        match file.printer {
            PrinterConfig::Spool { .. } => "spool",
            PrinterConfig::Simulated { .. } => "simulated",
            PrinterConfig::Ipp { .. } => "ipp",
        },
        match file.encoder {
            EncoderConfig::None => "none",
            EncoderConfig::Pkcs11 { .. } => "pkcs11",
        },
    )
}

/// How the agent talks to its server.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) http: reqwest::Client,
    pub(crate) server: String,
}

impl Link {
    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, String> {
        self.http
            .post(format!("{}{path}", self.server))
            .json(body)
            .send()
            .await
            .map_err(|e| cardwright_processes::report(&e))
    }
}

async fn run_station(dir: &Path, config: Option<&Path>) -> anyhow::Result<()> {
    let file: StationFile = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: StationFile =
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
            file.printer
                .check("printer")
                .with_context(|| format!("checking {}", path.display()))?;
            file
        }
        None => StationFile {
            printer: default_printer(),
            encoder: EncoderConfig::None,
        },
    };
    finish_renewal(dir)?;
    let (http, enrolment) = station_client(dir)?;
    let station = station(dir, &enrolment.station, &file)?;
    let (printer_kind, encoder_kind) = kinds(&file);
    let mut link = Link {
        http,
        server: enrolment.server.clone(),
    };
    tracing::info!(station = %station.name, server = %link.server, printer = printer_kind, encoder = encoder_kind, "station running");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    #[cfg(unix)]
    {
        let stop = stop.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
    }
    let hello = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "printer": printer_kind,
        "encoder": encoder_kind,
        "wait_secs": 20,
    });
    work(&mut link, &station, &hello, &stop, None, Some(dir)).await;
    tracing::info!("station stopped");
    Ok(())
}

/// The station's loop: ask for a card, produce it, report; until `stop`. With `claims`, the
/// time each answered request for a card took is noted there. With `renew_in`, the station's
/// folder, its certificate is renewed there before it ends.
pub(crate) async fn work(
    link: &mut Link,
    station: &Station,
    hello: &serde_json::Value,
    stop: &std::sync::atomic::AtomicBool,
    claims: Option<&std::sync::Mutex<Vec<Duration>>>,
    renew_in: Option<&Path>,
) {
    let mut pause = Duration::from_millis(500);
    // The next card, when the server handed it with the last outcome.
    let mut handed: Option<(serde_json::Value, Duration)> = None;
    let mut look_at = tokio::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if let Some(dir) = renew_in.filter(|_| tokio::time::Instant::now() >= look_at) {
            look_at = tokio::time::Instant::now() + RENEW_CHECK;
            match renew(dir, false).await {
                Ok(Some(http)) => link.http = http,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "renewing the station's certificate failed; trying again in ten minutes"
                    );
                    look_at = tokio::time::Instant::now() + Duration::from_mins(10);
                }
            }
        }
        if let Some((job, took)) = handed.take() {
            if let Some(Ok(mut claims)) = claims.map(|c| c.lock()) {
                claims.push(took);
            }
            handed = produce(link, station, &job, stop).await;
            continue;
        }
        let asked = std::time::Instant::now();
        match link.post("/station/v1/jobs/next", hello).await {
            Ok(res) if res.status() == reqwest::StatusCode::NO_CONTENT => {
                pause = Duration::from_millis(500);
            }
            Ok(res) if res.status().is_success() => {
                pause = Duration::from_millis(500);
                match res.json::<serde_json::Value>().await {
                    Ok(job) => handed = Some((job, asked.elapsed())),
                    Err(e) => tracing::error!(error = %e, "the server's job does not read"),
                }
            }
            Ok(res) => {
                let answer = refusal(res).await;
                tracing::error!(%answer, "the server refused the station");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the server is not reachable; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn digits(n: u32) -> String {
    let mut out = String::with_capacity(n as usize);
    let mut rng = rand::rngs::OsRng;
    while out.len() < n as usize {
        let b = (rng.next_u32() & 0xff) as u8;
        if b < 250 {
            out.push(char::from(b'0' + b % 10));
        }
    }
    out
}

/// A job as the server describes it, and what the station needs of its encoding.
fn job_of(job: &serde_json::Value) -> anyhow::Result<(Job, Option<Vec<u8>>)> {
    let text = |key: &str| -> anyhow::Result<String> {
        job[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the job has no {key}"))
    };
    let mut escrow = None;
    let encoding = match job.get("encoding").filter(|e| !e.is_null()) {
        None => None,
        Some(e) => {
            let length = |key: &str| u32::try_from(e[key].as_u64().unwrap_or(0)).unwrap_or(0);
            let (pin_length, puk_length) = (length("pin_length"), length("puk_length"));
            if !(4..=32).contains(&pin_length) || !(4..=32).contains(&puk_length) {
                bail!("the job's PIN or PUK length is out of range");
            }
            let keys = e["keys"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|k| KeySpec {
                    profile: k["profile"].as_str().unwrap_or_default().to_owned(),
                    kind: if k["kind"].as_str() == Some("rsa-2048") {
                        KeyKind::Rsa2048
                    } else {
                        KeyKind::EcP256
                    },
                })
                .collect();
            escrow = Some(
                hex::decode(e["escrow_key"].as_str().unwrap_or_default())
                    .map_err(|_| anyhow!("the job's escrow key is not hex"))?,
            );
            Some(Encoding {
                pin: digits(pin_length),
                puk: digits(puk_length),
                old_puk: e["old_puk"].as_str().map(str::to_owned),
                keys,
            })
        }
    };
    Ok((
        Job {
            card_id: text("card")?,
            serial: text("serial")?,
            template: text("template")?,
            order_id: text("order")?,
            attempt: u32::try_from(job["attempt"].as_u64().unwrap_or(0)).unwrap_or(0),
            front_layout: job["front_layout"].as_str().map(str::to_owned),
            back_layout: job["back_layout"].as_str().map(str::to_owned),
            issue_date: text("issue_date")?,
            encoding,
        },
        escrow,
    ))
}

/// Asks the server to certify each key the chip generates, while the chip's session is open.
struct RemoteIssuer {
    link: Link,
    path: String,
    runtime: tokio::runtime::Handle,
}

impl Issuer for RemoteIssuer {
    fn certify(
        &self,
        _serial: &str,
        key: &CardKey,
    ) -> Result<(CardCertificate, String), Box<dyn std::error::Error + Send + Sync>> {
        let body = serde_json::json!({
            "profile": key.profile,
            "key_id": hex::encode(&key.id),
            "public_key": hex::encode(&key.spki),
        });
        // A server restarting or a network cut is waited out (about a minute) while the chip's
        // session stays open; a refusal ends the card's attempt at once.
        let answer = self.runtime.block_on(async {
            let path = format!("{}/certificates", self.path);
            let mut pause = Duration::from_millis(250);
            let mut last = String::new();
            for _ in 0..40 {
                match self.link.post(&path, &body).await {
                    Ok(res) if res.status().is_success() => {
                        return res
                            .json::<serde_json::Value>()
                            .await
                            .map_err(|e| e.to_string());
                    }
                    Ok(res) if res.status().is_client_error() => {
                        return Err(format!(
                            "the server did not certify the key: {}",
                            refusal(res).await
                        ));
                    }
                    Ok(res) => last = refusal(res).await,
                    Err(e) => last = e,
                }
                tracing::warn!(error = %last, "certifying a key failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(last)
        })?;
        let field = |k: &str| {
            answer[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the server's certificate has no {k}"))
        };
        Ok((
            CardCertificate {
                key_id: key.id.clone(),
                label: field("label")?,
                der: hex::decode(field("der")?).map_err(|e| e.to_string())?,
                subject: hex::decode(field("subject")?).map_err(|e| e.to_string())?,
            },
            field("serial")?,
        ))
    }
}

/// Produces one card and reports how it went; unless `stop` is set by then, the report asks
/// for the next card, which comes back with how long the report took.
async fn produce(
    link: &Link,
    station: &Station,
    value: &serde_json::Value,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<(serde_json::Value, Duration)> {
    let (job, escrow) = match job_of(value) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "the server's job does not read");
            return None;
        }
    };
    let path = format!(
        "/station/v1/jobs/{}/{}/{}",
        job.order_id, job.card_id, job.attempt
    );
    let lease = Duration::from_secs(value["lease_secs"].as_u64().unwrap_or(60).max(3));
    let beat = {
        let (link, path) = (link.clone(), format!("{path}/heartbeat"));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match link.post(&path, &serde_json::json!({})).await {
                    Ok(res) if res.status().is_success() => {}
                    Ok(res) => {
                        let answer = refusal(res).await;
                        tracing::warn!(%answer, "heartbeat refused");
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };
    tracing::info!(serial = %job.serial, attempt = job.attempt, "producing");
    let issuer = Arc::new(RemoteIssuer {
        link: link.clone(),
        path: path.clone(),
        runtime: tokio::runtime::Handle::current(),
    });
    let outcome = station.produce(&job, issuer).await;
    beat.abort();
    let mut body = report_body(&job, escrow.as_deref(), &outcome);
    body["next"] = serde_json::json!(!stop.load(std::sync::atomic::Ordering::SeqCst));
    report(link, &format!("{path}/outcome"), &body, &job.serial).await
}

fn report_body(job: &Job, escrow: Option<&[u8]>, outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Produced { certificates } => {
            let sealed = match (&job.encoding, escrow) {
                (Some(encoding), Some(escrow)) => {
                    let mut nonce = [0u8; 12];
                    rand::rngs::OsRng.fill_bytes(&mut nonce);
                    let mut fill = |bytes: &mut [u8]| rand::rngs::OsRng.fill_bytes(bytes);
                    match cardwright_pki::escrow::seal_to(
                        escrow,
                        &mut fill,
                        nonce,
                        encoding.puk.as_bytes(),
                    ) {
                        Ok(sealed) => Some(hex::encode(sealed)),
                        Err(e) => {
                            return serde_json::json!({"produced": false, "error": format!("sealing the PUK: {e}"), "certificates": certificates})
                        }
                    }
                }
                _ => None,
            };
            serde_json::json!({"produced": true, "certificates": certificates, "puk_sealed": sealed})
        }
        Outcome::Failed {
            error,
            certificates,
        } => {
            let reason = cardwright_station::reason(error);
            tracing::warn!(serial = %job.serial, %reason, "production failed");
            serde_json::json!({"produced": false, "error": reason, "certificates": certificates})
        }
        Outcome::Interrupted => {
            serde_json::json!({"produced": false, "error": cardwright_processes::temp_cards::production::INTERRUPTED, "certificates": []})
        }
    }
}

/// Sends an outcome until the server has it (a network cut or a restarting server is waited
/// out for up to ten minutes), or says the lease ended. Returns the next card the server handed
/// with its answer, and how long the answer took.
async fn report(
    link: &Link,
    path: &str,
    body: &serde_json::Value,
    serial: &str,
) -> Option<(serde_json::Value, Duration)> {
    let mut pause = Duration::from_millis(250);
    for _ in 0..300 {
        let sent = std::time::Instant::now();
        match link.post(path, body).await {
            Ok(res) if res.status().is_success() => {
                let took = sent.elapsed();
                tracing::info!(%serial, produced = body["produced"].as_bool().unwrap_or(false), "outcome recorded");
                let answer: serde_json::Value = res.json().await.unwrap_or_default();
                return answer
                    .get("job")
                    .filter(|job| job.is_object())
                    .map(|job| (job.clone(), took));
            }
            Ok(res) if res.status().is_client_error() => {
                let answer = refusal(res).await;
                tracing::error!(%serial, %answer, "the server did not record the outcome");
                return None;
            }
            Ok(res) => {
                let answer = refusal(res).await;
                tracing::warn!(%serial, %answer, "reporting failed; trying again");
            }
            Err(e) => tracing::warn!(%serial, error = %e, "reporting failed; trying again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    tracing::error!(%serial, "the outcome could not be reported");
    None
}
