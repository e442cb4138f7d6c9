//! A QUIC listener: one UDP endpoint, admission on each connection attempt before any
//! handshake work, then `conn::spawn_quic`.
//!
//! Order for every attempt (catalogue §D.65): admission on the bare source address (a denied
//! address is ignored: no reply, no handshake, nothing to amplify); under load, an address that
//! has not proved it can receive is sent a Retry first; the connection cap; only then the
//! handshake, in the connection's own task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{conn, Shared};
use crate::admission::RefusalReason;
use crate::config::QuicSettings;
use crate::shutdown::Drain;
use crate::stats::{ListenerStats, Stats};
use crate::transport::peer_addr;

/// Handshakes in flight above which unvalidated source addresses must answer a Retry first.
const RETRY_ABOVE: usize = 64;

/// A bound QUIC endpoint and what it needs to serve.
pub(super) struct QuicListener {
    /// Name from the config, carried into every `Peer` and log line.
    pub(super) name: Arc<str>,
    /// The bound UDP endpoint.
    pub(super) endpoint: quinn::Endpoint,
    /// The listener's QUIC settings.
    pub(super) settings: QuicSettings,
    /// Server-wide state.
    pub(super) shared: Arc<Shared>,
    /// This listener's counters.
    pub(super) stats: Arc<ListenerStats>,
}

/// Counts a handshake in flight until dropped.
pub(super) struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The listener's own `quic.deny_sources` on top of the admission gate (network rules, bans,
/// rates, caps), which every listener asks first.
pub(super) fn admit_quic(settings: &QuicSettings, addr: SocketAddr) -> bool {
    !settings
        .deny_sources
        .iter()
        .any(|net| net.contains(&addr.ip()))
}

// === impl QuicListener ===

impl QuicListener {
    /// Accepts connection attempts until shutdown.
    pub(super) async fn run(self, mut drain: Drain) {
        let handshakes = Arc::new(AtomicUsize::new(0));
        loop {
            let incoming = tokio::select! {
                _ = drain.stop_accepting() => {
                    // New connection attempts are refused while sessions drain (the endpoint
                    // stays up for the live ones).
                    self.endpoint.set_server_config(None);
                    break;
                }
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            Stats::bump(&self.shared.stats.accepted);
            Stats::bump(&self.stats.accepted);
            let addr = peer_addr(incoming.remote_address());
            let shadow = &self.shared.stats.shadow;
            crate::ops::shadow::admission(&self.shared.policy.load(), shadow, addr, &self.name);
            // Admission on the bare address, before any crypto; the gate logs (aggregated) and
            // counts its refusals. A denied address gets no reply at all: nothing to amplify.
            let admitted = match self.shared.gate.admit(addr, &self.name) {
                Ok(a) => a,
                Err(refused) => {
                    self.stats.refused(refused.reason);
                    incoming.ignore();
                    continue;
                }
            };
            if !admit_quic(&self.settings, addr) {
                Stats::bump(&self.shared.stats.refused_at_accept);
                self.stats.refused(RefusalReason::Network);
                tracing::info!(listener = %self.name, peer = %addr, "QUIC attempt from a denied address ignored");
                incoming.ignore();
                continue;
            }
            let busy = handshakes.load(Ordering::Relaxed) >= RETRY_ABOVE;
            if busy && !incoming.remote_address_validated() && incoming.may_retry() {
                // Costs one small packet; a spoofed source never sees the token.
                let _ = incoming.retry();
                continue;
            }
            handshakes.fetch_add(1, Ordering::Relaxed);
            conn::spawn_quic(
                self.shared.clone(),
                incoming,
                addr,
                self.name.clone(),
                admitted,
                HandshakeSlot(handshakes.clone()),
                drain.clone(),
            );
        }
        // New attempts are refused while the sessions drain.
        self.endpoint.set_server_config(None);
    }
}
