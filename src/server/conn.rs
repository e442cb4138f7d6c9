//! The one spawn site for connections: span, cap permit and drain handle travel with the task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::listener::Front;
use super::{Drain, Shared, Stats};
use crate::transport::tls;

/// Connection ids for log correlation.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Spawns the task that serves one accepted socket from handshake to close.
pub(super) fn spawn(
    shared: Arc<Shared>,
    front: Front,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    permit: OwnedSemaphorePermit,
    drain: Drain,
) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, peer = %addr, listener = %listener);
    tokio::spawn(
        async move {
            // Held until the task ends: the cap counts live connections, the drain counts tasks.
            let _permit = permit;
            let deadline = shared.config.timeouts.tls_handshake;
            match front {
                Front::Tls(acceptor) => {
                    // The session future is built inside the match and awaited after it, so the
                    // handshake's result does not stay in this task's state for the session.
                    let session =
                        match tls::accept(&acceptor, stream, addr, listener, deadline).await {
                            Ok((stream, peer)) => crate::session::run(stream, peer, shared, drain),
                            Err(e) => {
                                Stats::bump(&shared.stats.handshake_failures);
                                tracing::info!(error = %e, "TLS handshake refused");
                                return;
                            }
                        };
                    session.await;
                }
            }
        }
        .instrument(span),
    );
}
