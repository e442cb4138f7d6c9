//! `X-Forwarded-For`: which client address to believe when a WebSocket comes through a proxy.
//!
//! The header is whatever the sender wrote, so it is believed only when the socket peer is a
//! configured trusted proxy, and then only up to the first hop that is not itself trusted
//! (reading right to left: each trusted proxy appends the address it saw). Anything that does
//! not parse fails closed: the upgrade is refused rather than guessed. A pure function: no
//! sockets, no clock; the WebSocket upgrade calls it with the header values it received.

use std::net::IpAddr;

use ipnet::IpNet;

/// Most addresses read from the header: a chain longer than this is not a real proxy path.
const MAX_HOPS: usize = 16;

/// Why a forwarded address from a trusted proxy was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// An entry that is not an IP address (`unknown`, an obfuscated name, garbage).
    #[error("X-Forwarded-For entry is not an IP address")]
    NotAnAddress,
    /// More entries than any real proxy chain has.
    #[error("X-Forwarded-For has more than {MAX_HOPS} entries")]
    TooManyHops,
}

/// The client address to use for a connection whose socket peer is `peer`.
///
/// Returns `Ok(None)` when the socket peer is the answer: it is not a trusted proxy, or it is
/// one but sent no header. Otherwise the rightmost address that is not a trusted proxy (or the
/// leftmost one if every hop is trusted). `values` are the header's values in the order received.
pub fn client_address(
    peer: IpAddr,
    values: &[&str],
    trusted: &[IpNet],
) -> Result<Option<IpAddr>, ForwardedError> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return Ok(None);
    }
    let mut hops = Vec::new();
    for entry in values.iter().flat_map(|v| v.split(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if hops.len() == MAX_HOPS {
            return Err(ForwardedError::TooManyHops);
        }
        hops.push(parse_hop(entry).ok_or(ForwardedError::NotAnAddress)?);
    }
    let first_untrusted = hops.iter().rev().find(|ip| !is_trusted(ip));
    Ok(first_untrusted.or(hops.first()).copied())
}

/// One hop: `203.0.113.7`, `2001:db8::1`, or `[2001:db8::1]` (some proxies bracket IPv6).
/// IPv4-mapped IPv6 is folded to IPv4 so rules keyed on IPv4 see it.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let bare = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn header_from_an_untrusted_peer_is_ignored() {
        // Catalogue §D.61: a direct client claiming an allow-listed address.
        let got = client_address(ip("198.51.100.9"), &["10.0.0.5"], &nets(&["10.0.0.0/8"]));
        assert_eq!(got, Ok(None));
        let got = client_address(ip("198.51.100.9"), &["10.0.0.5"], &[]);
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn trusted_proxy_without_header_means_the_socket_peer() {
        let got = client_address(ip("10.0.0.1"), &[], &nets(&["10.0.0.0/8"]));
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn rightmost_untrusted_hop_wins_so_a_client_cannot_prepend_a_spoof() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client wrote "1.2.3.4"; the trusted proxy appended the real peer 203.0.113.7.
        let got = client_address(ip("10.0.0.1"), &["1.2.3.4, 203.0.113.7"], &trusted);
        assert_eq!(got, Ok(Some(ip("203.0.113.7"))));
        // Two trusted hops, two header lines.
        let got = client_address(ip("10.0.0.1"), &["203.0.113.7", "10.0.0.2"], &trusted);
        assert_eq!(got, Ok(Some(ip("203.0.113.7"))));
        // Every hop trusted: the leftmost is the origin.
        let got = client_address(ip("10.0.0.1"), &["10.9.9.9, 10.0.0.2"], &trusted);
        assert_eq!(got, Ok(Some(ip("10.9.9.9"))));
    }

    #[test]
    fn ipv6_forms_and_mapped_addresses() {
        let trusted = nets(&["::1/128", "127.0.0.0/8"]);
        let got = client_address(ip("::ffff:127.0.0.1"), &["[2001:db8::7]"], &trusted);
        assert_eq!(got, Ok(Some(ip("2001:db8::7"))));
        let got = client_address(ip("::1"), &["::ffff:192.0.2.1"], &trusted);
        assert_eq!(got, Ok(Some(ip("192.0.2.1"))));
    }

    #[test]
    fn garbage_from_a_trusted_proxy_fails_closed() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.1"), &["unknown"], &trusted);
        assert_eq!(got, Err(ForwardedError::NotAnAddress));
        let got = client_address(ip("10.0.0.1"), &["203.0.113.7:4711"], &trusted);
        assert_eq!(got, Err(ForwardedError::NotAnAddress));
        let long = vec!["203.0.113.7"; MAX_HOPS + 1].join(",");
        let got = client_address(ip("10.0.0.1"), &[long.as_str()], &trusted);
        assert_eq!(got, Err(ForwardedError::TooManyHops));
    }
}
