//! Which addresses a webhook may reach. A policy-admin's URL must not turn the server into a
//! probe of the network it stands in: addresses inside it (loopback, private, link-local,
//! unique-local and the like) are refused unless `webhooks.allowed_urls` names them, both when a
//! URL is subscribed and at every connection, after its name was resolved.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why an address counts as inside the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inside {
    /// `0.0.0.0/8`, `::`: "this host", which reaches the server itself.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, and IPv6 site-local `fec0::/10`.
    Private,
    /// `100.64/10`, carrier-grade NAT: private to the provider's network.
    Shared,
    /// `169.254/16`, `fe80::/10` (cloud metadata services live here).
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Set aside and never a receiver on the internet: `192.0.0/24`, `198.18/15`, `240/4`,
    /// IPv4-compatible IPv6, local-use NAT64.
    Reserved,
}

impl Inside {
    /// The kind of address, as a sentence names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Inside::Unspecified => "an unspecified address",
            Inside::Loopback => "a loopback address",
            Inside::Private => "a private address",
            Inside::Shared => "a shared (carrier-grade NAT) address",
            Inside::LinkLocal => "a link-local address",
            Inside::UniqueLocal => "a unique-local address",
            Inside::Multicast => "a multicast address",
            Inside::Broadcast => "the broadcast address",
            Inside::Reserved => "a reserved address",
        }
    }
}

impl fmt::Display for Inside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `ip` is inside the network, and why; `None` for an address on the internet.
pub fn inside(ip: IpAddr) -> Option<Inside> {
    match ip {
        IpAddr::V4(v4) => inside_v4(v4),
        IpAddr::V6(v6) => inside_v6(v6),
    }
}

fn inside_v4(ip: Ipv4Addr) -> Option<Inside> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Inside::Unspecified,
        (127, _, _) => Inside::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Inside::Private,
        (100, 64..=127, _) => Inside::Shared,
        (169, 254, _) => Inside::LinkLocal,
        (224..=239, _, _) => Inside::Multicast,
        _ if ip.is_broadcast() => Inside::Broadcast,
        (240..=255, _, _) | (192, 0, 0) | (198, 18..=19, _) => Inside::Reserved,
        _ => return None,
    })
}

fn inside_v6(ip: Ipv6Addr) -> Option<Inside> {
    if ip.is_unspecified() {
        return Some(Inside::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Inside::Loopback);
    }
    // An IPv4 address written as IPv6 reaches that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return inside_v4(v4);
    }
    let segments = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [b0, b1] = hi.to_be_bytes();
        let [b2, b3] = lo.to_be_bytes();
        Ipv4Addr::new(b0, b1, b2, b3)
    };
    match segments {
        // IPv4-compatible (deprecated): never a receiver.
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(inside_v4(embedded(hi, lo)).unwrap_or(Inside::Reserved)),
        // NAT64 translates to the IPv4 address in the last 32 bits; 6to4 carries one in bits
        // 16 to 48.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => inside_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some(Inside::Reserved),
        // Teredo carries the client's IPv4 address inverted in the last 32 bits.
        [0x2001, 0, _, _, _, _, hi, lo] => inside_v4(embedded(!hi, !lo)),
        _ if ip.is_unique_local() => Some(Inside::UniqueLocal),
        _ if ip.is_unicast_link_local() => Some(Inside::LinkLocal),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some(Inside::Private),
        _ if ip.is_multicast() => Some(Inside::Multicast),
        _ => None,
    }
}

/// Whether a host name stands for this machine whatever the resolver says: `localhost` and the
/// names under it (RFC 6761), with or without the final dot.
pub fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// How long a subscription's host name may take to resolve; a name that does not resolve in
/// time is taken, and checked again at every connection.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves host names, so that tests can say what a name resolves to.
pub trait Lookup: Send + Sync {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;
}

/// The system's resolver (what the HTTP client would use).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<Inside> {
        inside(s.parse().unwrap())
    }

    #[test]
    fn addresses_inside_the_network_are_named() {
        for (address, why) in [
            ("0.0.0.0", Inside::Unspecified),
            ("0.1.2.3", Inside::Unspecified),
            ("127.0.0.1", Inside::Loopback),
            ("127.255.0.9", Inside::Loopback),
            ("10.0.0.1", Inside::Private),
            ("172.16.0.1", Inside::Private),
            ("172.31.255.255", Inside::Private),
            ("192.168.1.1", Inside::Private),
            ("100.64.0.1", Inside::Shared),
            ("100.127.255.254", Inside::Shared),
            ("169.254.169.254", Inside::LinkLocal),
            ("224.0.0.1", Inside::Multicast),
            ("239.255.255.250", Inside::Multicast),
            ("255.255.255.255", Inside::Broadcast),
            ("240.0.0.1", Inside::Reserved),
            ("192.0.0.170", Inside::Reserved),
            ("198.18.0.1", Inside::Reserved),
            ("::", Inside::Unspecified),
            ("::1", Inside::Loopback),
            ("::ffff:127.0.0.1", Inside::Loopback),
            ("::ffff:10.1.2.3", Inside::Private),
            ("::ffff:169.254.169.254", Inside::LinkLocal),
            ("::127.0.0.1", Inside::Loopback),
            ("::8.8.8.8", Inside::Reserved),
            ("64:ff9b::7f00:1", Inside::Loopback),
            ("64:ff9b:1::1", Inside::Reserved),
            ("2002:7f00:1::1", Inside::Loopback),
            ("2002:c0a8:101::1", Inside::Private),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Inside::Loopback),
            ("fc00::1", Inside::UniqueLocal),
            ("fd12:3456::1", Inside::UniqueLocal),
            ("fe80::1", Inside::LinkLocal),
            ("febf::1", Inside::LinkLocal),
            ("fec0::1", Inside::Private),
            ("ff02::1", Inside::Multicast),
        ] {
            assert_eq!(at(address), Some(why), "{address}");
        }
    }

    #[test]
    fn addresses_on_the_internet_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.2.10",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:db8::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(at(address), None, "{address}");
        }
    }

    #[test]
    fn localhost_names_are_local() {
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "api.localhost",
            "a.b.localhost.",
        ] {
            assert!(is_local_name(name), "{name}");
        }
        for name in ["localhost.example.com", "mylocalhost", "example.com"] {
            assert!(!is_local_name(name), "{name}");
        }
    }
}
