//! One listener: accepts sockets, asks admission, hands each admitted one to `conn::spawn`.
//!
//! Admission (`admission::Gate::admit`: network rules, bans, rates, caps) runs on the bare
//! address *before* any TLS work, so a refused connection costs an accept and a close.
//! (QUIC listeners have their own loop in `quic.rs`: UDP has no accept.)
//!
//! A connection from a balancer or reverse proxy the listener trusts (`trusted_proxies` on a
//! PROXY protocol listener, `ws.trusted_proxies` for `X-Forwarded-For`) is not judged as a
//! source: it gets a relay slot (`Gate::admit_relay`, memory and total caps only), and the
//! connection task runs the whole admission on the client's address once the header names it.
//! On a PROXY protocol listener a peer that is not trusted is refused here, before a byte is
//! read: every client of such a listener comes through a balancer.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{conn, Shared};
use crate::admission::RefusalReason;
use crate::config::{ProxySettings, WsSettings};
use crate::shutdown::Drain;
use crate::stats::{ListenerStats, Stats};
use crate::transport::peer_addr;
use crate::transport::Handshakes;

/// Longest pause after repeated accept errors (EMFILE and friends).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What a TCP listener puts in front of the session. The TLS fronts hold the listener's
/// [`Handshakes`], which a TLS reload updates in place: each accept reads the configuration in
/// force.
#[derive(Clone)]
pub(super) enum Front {
    /// MQTT over TLS.
    Tls(Arc<Handshakes>),
    /// MQTT over WebSocket over TLS.
    Wss(Arc<Handshakes>, Arc<WsSettings>),
    /// MQTT over plain WebSocket (enabled explicitly).
    Ws(Arc<WsSettings>),
    /// TLS routed by ALPN: `mqtt` → MQTT over TLS, `http/1.1` or none → WebSocket.
    Routed(Arc<Handshakes>, Arc<WsSettings>),
}

// === impl Front ===

impl Front {
    /// Whether `ip` is a reverse proxy whose `X-Forwarded-For` this front believes.
    pub(super) fn forwarded_by(&self, ip: std::net::IpAddr) -> bool {
        match self {
            Front::Wss(_, ws) | Front::Ws(ws) | Front::Routed(_, ws) => {
                let ip = ip.to_canonical();
                ws.trusted_proxies.iter().any(|net| net.contains(&ip))
            }
            Front::Tls(_) => false,
        }
    }
}

/// A bound listener and what it needs to serve.
pub(super) struct Listener {
    /// Name from the config, carried into every `Peer` and log line.
    pub(super) name: Arc<str>,
    /// The bound socket.
    pub(super) socket: TcpListener,
    /// The transport to run on accepted sockets.
    pub(super) front: Front,
    /// PROXY protocol: the versions accepted and the balancers trusted to send them.
    pub(super) proxy: Option<Arc<ProxySettings>>,
    /// Server-wide state.
    pub(super) shared: Arc<Shared>,
    /// This listener's counters.
    pub(super) stats: Arc<ListenerStats>,
}

// === impl Listener ===

impl Listener {
    /// Accepts until shutdown.
    pub(super) async fn run(self, mut drain: Drain) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                // Dropping the socket refuses new connections while sessions drain.
                _ = drain.stop_accepting() => return,
                a = self.socket.accept() => a,
            };
            let (stream, addr) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(listener = %self.name, error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            };
            Stats::bump(&self.shared.stats.accepted);
            Stats::bump(&self.stats.accepted);
            let addr = peer_addr(addr);
            let gate = &self.shared.gate;
            let admission = match &self.proxy {
                Some(proxy) if !proxy.trusts(addr.ip()) => {
                    Stats::bump(&self.shared.stats.proxy_untrusted);
                    gate.proxy_refused(
                        addr,
                        &self.name,
                        "peer is not a trusted proxy",
                        "moat.yaml listeners[].trusted_proxies",
                    );
                    Err(RefusalReason::Network)
                }
                Some(_) => gate.admit_relay(addr, &self.name).map_err(|r| r.reason),
                None if self.front.forwarded_by(addr.ip()) => {
                    gate.admit_relay(addr, &self.name).map_err(|r| r.reason)
                }
                None => {
                    let shadow = &self.shared.stats.shadow;
                    crate::ops::shadow::admission(
                        &self.shared.policy.load(),
                        shadow,
                        addr,
                        &self.name,
                    );
                    gate.admit(addr, &self.name).map_err(|r| r.reason)
                }
            };
            let permit = match admission {
                Ok(permit) => permit,
                Err(reason) => {
                    // Counted and logged (aggregated) by the gate. Closed with a reset, as a
                    // firewall rejects: no FIN handshake and no TIME_WAIT entry per refused
                    // connection, so a flood from a denied source costs the kernel as little as
                    // it costs moat.
                    let _ = stream.set_zero_linger();
                    Stats::bump(&self.shared.stats.refused_at_accept);
                    self.stats.refused(reason);
                    continue;
                }
            };
            if self.shared.config.limits.kernel_filter {
                crate::admission::kernel::detach(&stream);
            }
            // Small MQTT packets must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            conn::spawn(
                self.shared.clone(),
                self.front.clone(),
                stream,
                addr,
                self.name.clone(),
                permit,
                self.proxy.as_ref().map(|p| p.version),
                drain.clone(),
            );
        }
    }
}
