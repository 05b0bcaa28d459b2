//! Where a subscription may point: the URL as written, the allow-list, and no address inside
//! the network unless the allow-list names it.

use super::super::addresses::{self, Inside, Lookup};
use super::{MAX_URL_CHARS, URL_RULE};
use crate::ProcessError;
use cardwright_domain::FreeText;

/// Parses and checks a webhook URL as written: at most 2,000 characters and not blank (else
/// `Invalid`); no control or invisible formatting characters, http or https, a host after `//`,
/// no credentials, and (else `Unprocessable`) either within the
/// allow-list (each entry a URL prefix: same scheme, host and port, and a path starting with the
/// entry's) or, when the list does not name it, no address inside the network. It is checked
/// at every send too. Host names are checked by [`check_destination`] when subscribing and by the
/// sender's resolver at every connection.
pub fn check_url(url: &str, allowed: &[String]) -> Result<url::Url, ProcessError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ProcessError::Invalid(format!(
            "url: a webhook URL has at most {MAX_URL_CHARS} characters"
        )));
    }
    let url = FreeText::parse("url", URL_RULE, url)?;
    let trimmed = url.as_str();
    let no_host = || {
        ProcessError::Unprocessable(
            "url: a webhook URL names a host after http:// or https://".into(),
        )
    };
    // The parser makes a host of what follows a missing one (`http:///x` becomes `http://x/`),
    // so the text as written must name it.
    let web = trimmed.split_once(':').is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    if web && !names_a_host(trimmed) {
        return Err(no_host());
    }
    let parsed = url::Url::parse(trimmed)
        .map_err(|e| ProcessError::Unprocessable(format!("url: '{trimmed}' is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProcessError::Unprocessable(format!(
            "url: a webhook URL starts with http:// or https://, not {}:",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(no_host());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ProcessError::Unprocessable(
            "url: a webhook URL carries no user name or password; the signature proves the sender"
                .into(),
        ));
    }
    if allow_listed(&parsed, allowed) {
        return Ok(parsed);
    }
    let inside = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => addresses::inside(ip.into()).map(|why| (ip.to_string(), why)),
        Some(url::Host::Ipv6(ip)) => addresses::inside(ip.into()).map(|why| (ip.to_string(), why)),
        _ => None,
    };
    if let Some((host, why)) = inside {
        return Err(points_inside(&format!("({host}, {why})")));
    }
    if !allowed.is_empty() {
        return Err(ProcessError::Unprocessable(format!(
            "url: {parsed} is not allowed; webhook URLs must start with one of: {}",
            allowed.join(", ")
        )));
    }
    Ok(parsed)
}

fn points_inside(what: &str) -> ProcessError {
    ProcessError::Unprocessable(format!(
        "url: this URL points inside the network {what} and is not allowed; ask the \
         administrator to allow it in webhooks.allowed_urls"
    ))
}

/// Whether the URL as written has a host between `scheme://` and the path.
fn names_a_host(raw: &str) -> bool {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    !host.is_empty()
}

/// Whether a prefix of the allow-list names the URL; such a URL may point anywhere, inside the
/// network too.
pub fn allow_listed(url: &url::Url, allowed: &[String]) -> bool {
    allowed.iter().any(|prefix| url_allowed(url, prefix))
}

fn url_allowed(url: &url::Url, prefix: &str) -> bool {
    let Ok(prefix) = url::Url::parse(prefix) else {
        return false;
    };
    url.scheme() == prefix.scheme()
        && url.host_str() == prefix.host_str()
        && url.port_or_known_default() == prefix.port_or_known_default()
        && (url.path().starts_with(prefix.path())
            && (prefix.path().ends_with('/')
                || url.path().len() == prefix.path().len()
                || url.path()[prefix.path().len()..].starts_with('/')))
}

/// Refuses the host name of a URL that [`check_url`] passed when it is `localhost` (or a name
/// under it) or any of its addresses is inside the network, unless the allow-list names the URL.
/// A name that does not resolve (yet) is taken: every connection checks the addresses it is
/// about to use.
pub async fn check_destination(
    url: &url::Url,
    allowed: &[String],
    lookup: &impl Lookup,
) -> Result<(), ProcessError> {
    if allow_listed(url, allowed) {
        return Ok(());
    }
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    if addresses::is_local_name(name) {
        return Err(points_inside(&format!("({name}, {})", Inside::Loopback)));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let found = tokio::time::timeout(addresses::LOOKUP_TIMEOUT, lookup.lookup(name, port)).await;
    let Ok(Ok(found)) = found else {
        return Ok(());
    };
    if found.iter().any(|a| addresses::inside(a.ip()).is_some()) {
        // The address itself is left out: the answer should not read internal DNS to anyone.
        return Err(points_inside(&format!(
            "({name} resolves to an address inside it)"
        )));
    }
    Ok(())
}
