//! HTTPS for the server. The certificate comes from files (`tls.cert_file`, `tls.key_file`) or
//! from the built-in CA (`tls.builtin`), which issues one for `tls.names` into the data folder
//! and renews it a month before it ends. Browsers need no client certificate; a station sends
//! the one it got at enrolment, which is checked against the installation's CA during the
//! handshake and then against the station's record on every call ([`Peer`]).
//!
//! Handshakes run in tasks of their own with a time limit, so a client that never finishes its
//! handshake holds neither the accept loop nor anyone else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use cardwright_pki::tls::TlsRole;
use cardwright_processes::Context;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// Days the built-in CA's server certificate is valid.
const SERVER_CERT_DAYS: u32 = 90;
/// The built-in server certificate is renewed when it has less than this many days left.
const RENEW_DAYS_BEFORE: i64 = 30;
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once, at most.
const MAX_HANDSHAKES: usize = 512;

/// Who is on the other end of a connection: its address, whether it came over TLS, and the
/// client certificate it presented (a station's).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// DER of the client's certificate, verified against the installation's CA.
    pub certificate: Option<Arc<Vec<u8>>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            tls: false,
            certificate: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, connection) = stream.io().get_ref();
        Self {
            addr: *stream.remote_addr(),
            tls: true,
            certificate: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| Arc::new(c.to_vec())),
        }
    }
}

/// Connections whose TLS handshake is done.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts connections on `tcp` and hands each to a task of its own for its handshake.
pub fn listen(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<TlsListener> {
    let local = tcp.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = tcp.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, addr)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(TlsListener { local, ready })
}

/// The certificate the server presents, swapped when the built-in one is renewed.
#[derive(Debug)]
pub struct ServerCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|key| key.clone())
    }
}

impl ServerCertificate {
    fn set(&self, key: CertifiedKey) {
        if let Ok(mut current) = self.0.write() {
            *current = Arc::new(key);
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified(chain_pem: &[u8], key_pem: &[u8], what: &str) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{what}: the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        anyhow::bail!("{what}: no certificate in the file");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow!("{what}: the key is not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| anyhow!("{what}: the key does not fit the certificate: {e}"))
}

/// HTTPS as configured: the acceptor and, for the built-in certificate, what renews it.
pub struct Https {
    pub acceptor: TlsAcceptor,
    pub certificate: Arc<ServerCertificate>,
}

/// The server's TLS settings, or `None` when `[tls]` is not configured.
pub fn https(config: &Config, ctx: &Context) -> anyhow::Result<Option<Https>> {
    let tls = &config.tls;
    if !tls.enabled() {
        return Ok(None);
    }
    let key = if tls.builtin {
        builtin_certificate(config, ctx, false)?
    } else {
        let chain = std::fs::read(&tls.cert_file)
            .with_context(|| format!("tls.cert_file: reading {}", tls.cert_file))?;
        let key = std::fs::read(&tls.key_file)
            .with_context(|| format!("tls.key_file: reading {}", tls.key_file))?;
        certified(&chain, &key, "tls.cert_file")?
    };
    let certificate = Arc::new(ServerCertificate(RwLock::new(Arc::new(key))));
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pki) = &ctx.pki {
        let pems = std::iter::once(pki.ca.certificate_pem())
            .chain(pki.previous.iter().map(|p| p.ca.certificate_pem()));
        for pem in pems {
            for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(der.map_err(|e| anyhow!("the CA certificate: {e}"))?)
                    .map_err(|e| anyhow!("the CA certificate: {e}"))?;
            }
        }
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow!("client certificate checks: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate.clone());
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Https {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        certificate,
    }))
}

fn tls_dir(config: &Config) -> PathBuf {
    config.data_dir.join("tls")
}

/// What the built-in certificate was issued for: the names and the CA, one per line.
fn issued_for(config: &Config, ctx: &Context) -> anyhow::Result<String> {
    let (fingerprint, _) = cardwright_processes::stations::ca_fingerprint(ctx)?;
    Ok(format!(
        "{}\nca {fingerprint}\n",
        config.tls.names.join(" ")
    ))
}

/// The built-in certificate from the data folder, issued anew when it is missing, was issued
/// for other names or another CA, or ends within a month (or always, with `force`).
fn builtin_certificate(
    config: &Config,
    ctx: &Context,
    force: bool,
) -> anyhow::Result<CertifiedKey> {
    let dir = tls_dir(config);
    let (chain_path, key_path, for_path) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.for"),
    );
    let wanted = issued_for(config, ctx)?;
    if !force {
        if let Some(key) = current_builtin(&chain_path, &key_path, &for_path, &wanted, ctx) {
            return Ok(key);
        }
    }
    let pki = ctx
        .pki
        .as_ref()
        .ok_or_else(|| anyhow!("tls.builtin needs the built-in CA"))?;
    let (key_pem, spki) = cardwright_pki::tls::server_key()?;
    let mut serial = [0u8; 16];
    ctx.entropy.fill(&mut serial);
    let der = pki.ca.issue_tls(
        &spki,
        &config.tls.names[0],
        &config.tls.names,
        TlsRole::Server,
        &cardwright_processes::pki::new_serial(serial),
        ctx.now().timestamp(),
        SERVER_CERT_DAYS,
    )?;
    let mut chain = format!(
        "{}{}",
        cardwright_pki::certificate_pem(&der),
        pki.ca.certificate_pem()
    );
    // After `pki renew-ca --new-key`, each earlier CA certifies the current one, so clients
    // that trust only an earlier CA (stations enrolled before) still trust this server.
    let key = pki.ca.info()?.public_key;
    for previous in &pki.previous {
        if previous.ca.info()?.public_key == key {
            continue;
        }
        ctx.entropy.fill(&mut serial);
        let cross = previous.ca.cross_certificate(
            &pki.ca,
            &cardwright_processes::pki::new_serial(serial),
            ctx.now().timestamp(),
        )?;
        chain.push_str(&cardwright_pki::certificate_pem(&cross));
    }
    crate::app::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    replace_file(&key_path, key_pem.as_bytes())?;
    replace_file(&chain_path, chain.as_bytes())?;
    replace_file(&for_path, wanted.as_bytes())?;
    tracing::info!(names = ?config.tls.names, days = SERVER_CERT_DAYS, "the built-in CA issued the server's TLS certificate");
    certified(
        chain.as_bytes(),
        key_pem.as_bytes(),
        "the built-in TLS certificate",
    )
}

fn current_builtin(
    chain_path: &Path,
    key_path: &Path,
    for_path: &Path,
    wanted: &str,
    ctx: &Context,
) -> Option<CertifiedKey> {
    let issued_for = std::fs::read_to_string(for_path).ok()?;
    if issued_for != wanted {
        return None;
    }
    let chain = std::fs::read_to_string(chain_path).ok()?;
    let info = cardwright_pki::CaInfo::of_pem(&chain).ok()?;
    if info.not_after - ctx.now().timestamp() < RENEW_DAYS_BEFORE * 86_400 {
        return None;
    }
    let key = std::fs::read(key_path).ok()?;
    certified(chain.as_bytes(), &key, "the built-in TLS certificate").ok()
}

/// Writes `bytes` to `path` through a new file readable by the server's user only, renamed
/// over the old one.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    crate::app::write_secret(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Renews the built-in certificate when it nears its end, looking twice a day.
pub async fn renewal_job(
    config: Config,
    ctx: Context,
    certificate: Arc<ServerCertificate>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_hours(12));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match builtin_certificate(&config, &ctx, false) {
            Ok(key) => certificate.set(key),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(%error, "renewing the server's TLS certificate failed");
            }
        }
    }
}
