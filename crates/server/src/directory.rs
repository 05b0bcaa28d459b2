//! Persons from the LDAP directory: one search under `base_dn` with `filter`, the configured
//! attributes read from each entry, and the persons brought in line by the processes' sync. The
//! connection is TLS with an `ldaps://` URL or `starttls`, checked against `ca_file` or the
//! system's roots.

use std::time::Duration;

use anyhow::Context as _;
use cardwright_domain::{Operator, OperatorId, Role, Username};
use cardwright_processes::persons_import::{self, DirectoryEntry, ImportReport};
use cardwright_processes::Context;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::watch;

use crate::config::DirectoryConfig;

/// The most entries one sync reads.
const MAX_ENTRIES: usize = 200_000;

/// The actor a sync's changes and card processes are recorded under.
fn directory_operator() -> Operator {
    Operator {
        id: OperatorId::new(0, [0; 10]),
        username: Username::parse("directory").expect("a valid username"),
        roles: [Role::RegistrationOfficer].into_iter().collect(),
    }
}

/// The TLS client settings for the directory: the CA certificates of `ca_file`, or (without
/// one) the system's trusted roots.
fn tls_config(ca_file: &str) -> anyhow::Result<Option<std::sync::Arc<rustls_ldap::ClientConfig>>> {
    if ca_file.is_empty() {
        return Ok(None);
    }
    let pem =
        std::fs::read(ca_file).with_context(|| format!("reading directory.ca_file {ca_file}"))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .with_context(|| format!("directory.ca_file {ca_file}: not PEM"))?;
    let mut roots = rustls_ldap::RootCertStore::empty();
    for cert in certs {
        roots
            .add(&rustls_ldap::Certificate(cert))
            .with_context(|| {
                format!("directory.ca_file {ca_file}: a certificate cannot be read")
            })?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "directory.ca_file {ca_file}: holds no certificate"
    );
    Ok(Some(std::sync::Arc::new(
        rustls_ldap::ClientConfig::builder()
            .with_safe_defaults()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )))
}

/// Reads the persons from the directory.
async fn fetch(config: &DirectoryConfig) -> anyhow::Result<Vec<DirectoryEntry>> {
    let timeout = Duration::from_secs(config.timeout_secs);
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(config.starttls);
    if let Some(tls) = tls_config(&config.ca_file)? {
        settings = settings.set_config(tls);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
        .await
        .with_context(|| format!("connecting to {}", config.url))?;
    ldap3::drive!(conn);
    ldap.with_timeout(timeout)
        .simple_bind(&config.bind_dn, &config.bind_password)
        .await
        .context("binding to the directory")?
        .success()
        .with_context(|| format!("binding to the directory as '{}'", config.bind_dn))?;
    let a = &config.attributes;
    let mut wanted = vec![
        a.employee_number.as_str(),
        a.given_name.as_str(),
        a.family_name.as_str(),
        a.email.as_str(),
    ];
    if !a.photo.is_empty() {
        wanted.push(a.photo.as_str());
    }
    let (found, _) = ldap
        .with_timeout(timeout)
        .search(&config.base_dn, Scope::Subtree, &config.filter, wanted)
        .await
        .context("searching the directory")?
        .success()
        .with_context(|| format!("searching {} with {}", config.base_dn, config.filter))?;
    let _ = ldap.unbind().await;
    anyhow::ensure!(
        found.len() <= MAX_ENTRIES,
        "the directory gave more than {MAX_ENTRIES} entries"
    );
    let first = |entry: &SearchEntry, name: &str| {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
    };
    // A photo is binary, so ldap3 puts it among the binary values; a value that happens to be
    // UTF-8 is among the text ones.
    let photo = |entry: &SearchEntry| {
        if a.photo.is_empty() {
            return None;
        }
        entry
            .bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&a.photo))
            .and_then(|(_, v)| v.first().cloned())
            .or_else(|| first(entry, &a.photo).map(String::into_bytes))
    };
    Ok(found
        .into_iter()
        .map(SearchEntry::construct)
        .map(|e| DirectoryEntry {
            employee_number: first(&e, &a.employee_number),
            given_name: first(&e, &a.given_name),
            family_name: first(&e, &a.family_name),
            email: first(&e, &a.email),
            photo: photo(&e),
            origin: e.dn,
        })
        .collect())
}

/// One sync: read the directory, bring the persons in line. A directory that cannot be reached
/// or refuses the bind changes nothing.
pub async fn sync(ctx: &Context, config: &DirectoryConfig) -> anyhow::Result<ImportReport> {
    let entries = fetch(config).await?;
    persons_import::sync(ctx, &directory_operator(), entries)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Syncs every `sync_interval_secs` until shut down.
pub async fn sync_job(ctx: Context, config: DirectoryConfig, mut stop: watch::Receiver<bool>) {
    if config.url.starts_with("ldap://") && !config.starttls {
        tracing::warn!(
            url = %config.url,
            "the directory connection is plain LDAP: the bind password and the persons cross the \
             network unencrypted; use an ldaps:// URL or directory.starttls = true"
        );
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(config.sync_interval_secs));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match sync(&ctx, &config).await {
            Ok(r) => tracing::info!(
                created = r.created.len(),
                updated = r.updated.len(),
                deactivated = r.deactivated.len(),
                bad = r.bad_rows.len(),
                "directory sync"
            ),
            Err(e) => tracing::error!(error = format!("{e:#}"), "directory sync failed"),
        }
    }
}
