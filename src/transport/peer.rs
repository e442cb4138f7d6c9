//! `Peer`: what the transport learned about the other end, handed to the session.

use std::net::SocketAddr;
use std::sync::Arc;

/// Which front door a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// MQTT over TLS (8883).
    Tls,
}

/// The transport's facts about one connection; never anything the MQTT peer claimed.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Socket peer address (IPv4-mapped IPv6 already normalised to IPv4).
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
