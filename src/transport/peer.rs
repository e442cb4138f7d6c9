//! `Peer`: what the transport learned about the other end, handed to the session.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::TransportKind;

/// The transport's facts about one connection; never anything the MQTT peer claimed (the one
/// exception, `X-Forwarded-For`, is believed only from a configured trusted proxy, and then
/// `via` names that proxy).
#[derive(Clone, Debug)]
pub struct Peer {
    /// Client address (IPv4-mapped IPv6 already normalised to IPv4): the socket peer, or the
    /// address a trusted proxy forwarded (port 0 then: the header carries none).
    pub addr: SocketAddr,
    /// Name of the listener that accepted the connection (for policy and audit).
    pub listener: Arc<str>,
    /// Which transport it came through.
    pub kind: TransportKind,
    /// TLS server name the client asked for, if any.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol, if any.
    pub alpn: Option<Vec<u8>>,
    /// Common name of a client certificate that rustls verified against `client_ca`.
    pub cert_cn: Option<String>,
    /// The trusted proxy's socket address when `addr` came from its `X-Forwarded-For`.
    pub via: Option<SocketAddr>,
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 peer they stand for; rules keyed
/// on IPv4 must see them as such.
pub fn normalise(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}
