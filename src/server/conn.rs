//! The one spawn site for connections: span, admission slot and drain handle travel with the task.
//!
//! Each task runs its front's transport steps (TLS handshake, WebSocket upgrade, QUIC handshake
//! and stream) under their deadlines, then the session. Transports report what they learned in
//! a `Peer`; nothing here looks at MQTT.
//!
//! A task's future is allocated once, at the size of its largest state, and this one can become
//! any of several transport stacks. Every step below is therefore boxed where it starts: the
//! handshakes are freed when they finish and an idle session holds exactly its own stack's
//! future (an unboxed WebSocket branch made every TLS session pay 14 KiB, BENCHMARKS.md).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::listener::Front;
use super::quic::HandshakeSlot;
use super::Shared;
use crate::admission::Admitted;
use crate::config::WsSettings;
use crate::shutdown::Drain;
use crate::stats::{Stats, TLS_PEER_GONE, WS_UPGRADE_REFUSED};
use crate::transport::{quic, tls, ws, Peer, ServerTls, TransportKind};

/// Connection ids for log correlation.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// How long a finished QUIC session waits for the client to close, so the last bytes moat sent
/// (CONNACK refusal, DISCONNECT) are acknowledged before the connection is torn down.
const QUIC_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Spawns the task that serves one accepted TCP socket from handshake to close.
pub(super) fn spawn(
    shared: Arc<Shared>,
    front: Front,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    permit: Admitted,
    drain: Drain,
) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, peer = %addr, listener = %listener);
    // The future of `serve_tcp` itself is the task: an `async` block around it would hold every
    // argument twice (its own captures and the call's) for the connection's whole life.
    let conn = Box::new(Accepted {
        shared,
        front,
        stream,
        addr,
        listener,
        drain,
    });
    tokio::spawn(serve_tcp(conn, permit).instrument(span));
}

/// Spawns the task that serves one admitted QUIC connection attempt.
pub(super) fn spawn_quic(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    addr: SocketAddr,
    listener: Arc<str>,
    permit: Admitted,
    slot: HandshakeSlot,
    drain: Drain,
) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, peer = %addr, listener = %listener);
    tokio::spawn(
        async move {
            let _permit = permit;
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    drop(slot);
                    shared.stats.handshake_failed(TLS_PEER_GONE);
                    tracing::info!(error = %e, "QUIC connection refused");
                    return;
                }
            };
            let timeouts = shared.config.timeouts;
            let accepted = Box::pin(quic::accept(
                connecting,
                listener.clone(),
                timeouts.tls_handshake,
                timeouts.connect,
                shared.tls.revocable(),
            ))
            .await;
            drop(slot);
            let (session, conn): (Step, _) = match accepted {
                Ok((stream, peer, conn)) => {
                    Stats::bump(&shared.stats.tls_handshakes);
                    let session: Step = Box::pin(crate::session::run(
                        stream,
                        peer,
                        shared.session.clone(),
                        drain,
                    ));
                    (session, conn)
                }
                Err(e) => {
                    shared
                        .stats
                        .handshake_failed(e.refusal().map_or(TLS_PEER_GONE, |c| c as usize));
                    if let Some(cause) = e.refusal() {
                        shared.gate.handshake_refused(
                            addr,
                            &listener,
                            cause.as_str(),
                            cause.rule(),
                        );
                    }
                    tracing::info!(error = %e, "QUIC connection refused");
                    return;
                }
            };
            drop(listener);
            session.await;
            // The client closes once it has read the end of the stream; a client that does not
            // is closed after a short grace.
            let _ = tokio::time::timeout(QUIC_CLOSE_GRACE, conn.closed()).await;
            conn.close(quic::code::DONE, b"session ended");
        }
        .instrument(span),
    );
}

/// What a TCP task starts from, boxed until the handshake has taken it apart: as arguments of
/// `serve_tcp` they would keep their slots in the task for the connection's whole life.
struct Accepted {
    shared: Arc<Shared>,
    front: Front,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    drain: Drain,
}

/// A transport step still to run, boxed (see the module docs).
type Step = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The transport steps of a TCP listener's front, then the session.
///
/// The task holds only the admission permit, the boxed step it is awaiting and the span: what
/// the steps need travels in boxes that are taken apart by plain functions (`begin`,
/// `after_tls`). Values moved out of an `async fn`'s own variables into a future it then awaits
/// can keep their slots in its state across that await (a known limit of the compiler's
/// layout), and this future lives as long as the connection.
async fn serve_tcp(conn: Box<Accepted>, permit: Admitted) {
    let next = match begin(*conn) {
        Begin::Step(step) => step,
        Begin::Tls(handshake, rest) => match handshake.await {
            Ok((stream, peer)) => {
                Stats::bump(&rest.shared.stats.tls_handshakes);
                after_tls(*rest, stream, peer)
            }
            Err(e) => {
                handshake_failed(&rest, &e);
                return;
            }
        },
    };
    next.await;
    // Held until the task ends (not moved into a variable of its own, which would be a second
    // slot): admission counts live connections, the drain counts tasks.
    drop(permit);
}

/// The first step of a TCP front.
enum Begin {
    /// Plain WebSocket: the upgrade, then the session.
    Step(Step),
    /// A TLS handshake, and what is needed after it.
    Tls(Handshake, Box<AfterTls>),
}

/// A TLS handshake in progress (boxed: a whole TLS connection in mid-handshake).
type Handshake = Pin<Box<dyn Future<Output = Result<(ServerTls, Peer), tls::TlsError>> + Send>>;

/// What the steps after a TLS handshake need (and, if it fails, its audit line).
struct AfterTls {
    front: Front,
    shared: Arc<Shared>,
    drain: Drain,
    addr: SocketAddr,
    listener: Arc<str>,
}

/// Counts a failed TLS handshake; one moat refused (certificate, version, ALPN, timeout) is
/// audited, aggregated per source by the gate. A peer that just went away is only logged.
fn handshake_failed(rest: &AfterTls, error: &tls::TlsError) {
    let cause = error.refusal().map_or(TLS_PEER_GONE, |c| c as usize);
    rest.shared.stats.handshake_failed(cause);
    if let Some(cause) = error.refusal() {
        rest.shared
            .gate
            .handshake_refused(rest.addr, &rest.listener, cause.as_str(), cause.rule());
    }
    tracing::info!(error = %error, "TLS handshake refused");
}

fn begin(conn: Accepted) -> Begin {
    let Accepted {
        shared,
        front,
        stream,
        addr,
        listener,
        drain,
    } = conn;
    match front {
        Front::Ws(settings) => {
            let peer = Peer {
                addr,
                listener,
                kind: TransportKind::Ws,
                sni: None,
                alpn: None,
                cert_cn: None,
                cert: None,
                via: None,
            };
            Begin::Step(Box::pin(websocket(
                stream,
                peer,
                settings,
                TransportKind::Ws,
                shared,
                drain,
            )))
        }
        Front::Tls(ref handshakes)
        | Front::Wss(ref handshakes, _)
        | Front::Routed(ref handshakes, _) => {
            let deadline = shared.config.timeouts.tls_handshake;
            // The configuration in force now: a TLS reload reaches the next handshake.
            let handshake = Box::pin(tls::accept(
                handshakes.config(),
                stream,
                addr,
                listener.clone(),
                deadline,
                shared.tls.revocable(),
            ));
            Begin::Tls(
                handshake,
                Box::new(AfterTls {
                    front,
                    shared,
                    drain,
                    addr,
                    listener,
                }),
            )
        }
    }
}

/// What runs on a TLS stream: WebSocket for a WSS front (or a routed one without ALPN `mqtt`),
/// the MQTT session otherwise.
fn after_tls(rest: AfterTls, stream: ServerTls, peer: Peer) -> Step {
    let AfterTls {
        front,
        shared,
        drain,
        ..
    } = rest;
    let mqtt_alpn = peer.alpn.as_deref() == Some(tls::ALPN_MQTT);
    let websocket_settings = match front {
        Front::Wss(_, settings) => Some(settings),
        // One port for both: ALPN `mqtt` is raw MQTT, `http/1.1` or none is WebSocket.
        Front::Routed(_, settings) if !mqtt_alpn => Some(settings),
        _ => None,
    };
    match websocket_settings {
        Some(settings) => Box::pin(websocket(
            stream,
            peer,
            settings,
            TransportKind::Wss,
            shared,
            drain,
        )),
        None => Box::pin(crate::session::run(
            stream,
            peer,
            shared.session.clone(),
            drain,
        )),
    }
}

/// Upgrades to WebSocket under the listener's deadline, then runs the session on the frames.
async fn websocket<S>(
    stream: S,
    peer: Peer,
    settings: Arc<WsSettings>,
    kind: TransportKind,
    shared: Arc<Shared>,
    drain: Drain,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session: Step = match Box::pin(ws::upgrade(stream, peer, &settings, kind)).await {
        Ok((stream, peer)) => {
            if let Some(proxy) = peer.via {
                tracing::debug!(client = %peer.addr, %proxy, "client address from X-Forwarded-For");
            }
            Box::pin(crate::session::run(
                stream,
                peer,
                shared.session.clone(),
                drain,
            ))
        }
        Err(e) => {
            shared.stats.handshake_failed(WS_UPGRADE_REFUSED);
            tracing::info!(error = %e, "WebSocket upgrade refused");
            return;
        }
    };
    drop(settings);
    session.await;
}
