//! `Peer`: what the transport learned about the other end, handed to the session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Issuer and serial of that certificate, kept only where CRLs are configured (a reload
    /// that revokes it ends the session). Boxed: a session without one pays a pointer.
    pub cert: Option<Box<ClientCert>>,
    /// The trusted balancer or proxy whose PROXY protocol header or `X-Forwarded-For` gave
    /// `addr` (its socket address, or the address its own PROXY header named).
    pub via: Option<SocketAddr>,
}

/// What a CRL names a verified client certificate by, and the revocation epoch the session
/// last checked it against (`transport/material.rs` moves the epoch when CRLs change).
#[derive(Debug)]
pub struct ClientCert {
    /// The issuer's distinguished name, DER as in the certificate (a CRL's issuer must equal it).
    issuer: Box<[u8]>,
    /// The serial number's content octets.
    serial: Box<[u8]>,
    /// Revocation epoch this certificate was last checked at; 0: not yet (the handshake checked
    /// it against the material it used, which a reload may have replaced since).
    checked: AtomicU64,
}

// === impl ClientCert ===

impl ClientCert {
    /// A certificate named by its issuer (DER name) and serial (content octets).
    pub fn new(issuer: &[u8], serial: &[u8]) -> Self {
        ClientCert {
            issuer: issuer.into(),
            serial: serial.into(),
            checked: AtomicU64::new(0),
        }
    }

    /// Reads the issuer and serial of a DER certificate.
    pub fn of(der: &[u8]) -> Result<Self, super::CertInfoError> {
        let facts = super::cert_facts(der)?;
        Ok(Self::new(&facts.issuer, &facts.serial))
    }

    /// The issuer's distinguished name (DER).
    pub fn issuer(&self) -> &[u8] {
        &self.issuer
    }

    /// The serial's content octets.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The serial as colon-separated hex, as `openssl x509 -serial` and CRL dumps show it.
    pub fn serial_hex(&self) -> String {
        let hex: Vec<String> = self.serial.iter().map(|b| format!("{b:02x}")).collect();
        hex.join(":")
    }

    /// The revocation epoch last checked (0: never); what the session's drain wait compares.
    pub fn checked(&self) -> &AtomicU64 {
        &self.checked
    }

    /// Records that the certificate was checked against revocation epoch `epoch`.
    pub fn mark_checked(&self, epoch: u64) {
        self.checked.store(epoch, Ordering::Release);
    }
}

impl Clone for ClientCert {
    fn clone(&self) -> Self {
        ClientCert {
            issuer: self.issuer.clone(),
            serial: self.serial.clone(),
            checked: AtomicU64::new(self.checked.load(Ordering::Acquire)),
        }
    }
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
