//! The one spawn site for connections: span, admission slot and drain handle travel with the task.
//!
//! Each task runs its front's transport steps (PROXY protocol header, TLS handshake, WebSocket
//! upgrade, QUIC handshake and stream) under their deadlines, then the session. Transports
//! report what they learned in a `Peer`; nothing here looks at MQTT.
//!
//! A TCP task holds its admission slot until it ends. A relay slot (a trusted balancer's
//! connection, `listener.rs`) is replaced by admission on the client's address as soon as that
//! address is known: after the PROXY header, or, when the address so far is a trusted
//! `X-Forwarded-For` proxy, at the WebSocket upgrade (a refusal is an HTTP 403) or after TLS
//! for raw MQTT; only then does the slot travel with the step that replaces it. A balancer's own `LOCAL` connection (a health check) keeps its
//! relay slot: the balancer is trusted, and the session judges it at CONNECT like anyone.
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
use crate::config::ProxyProtocol;
use crate::config::WsSettings;
use crate::shutdown::Drain;
use crate::stats::{Stats, TLS_PEER_GONE, WS_UPGRADE_REFUSED};
use crate::transport::proxy_header::{self, HeaderError, Origin};
use crate::transport::{peer_addr, quic, tls, ws, Peer, ServerTls, TransportKind};

/// Connection ids for log correlation.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// How long a finished QUIC session waits for the client to close, so the last bytes moat sent
/// (CONNACK refusal, DISCONNECT) are acknowledged before the connection is torn down.
const QUIC_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Spawns the task that serves one accepted TCP socket from handshake to close. `proxy`: the
/// PROXY protocol versions the listener requires (the peer is already known to be trusted).
#[allow(clippy::too_many_arguments)] // one spawn site; a struct would only be taken apart again
pub(super) fn spawn(
    shared: Arc<Shared>,
    front: Front,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    permit: Admitted,
    proxy: Option<ProxyProtocol>,
    drain: Drain,
) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    // Behind a balancer or reverse proxy the client is not known yet: `peer` is recorded
    // when it is (`settle`), and `via` names the proxy.
    let span = match permit.is_relay() {
        false => tracing::info_span!("conn", id, peer = %addr, listener = %listener),
        true => tracing::info_span!(
            "conn",
            id,
            peer = tracing::field::Empty,
            via = %addr,
            listener = %listener
        ),
    };
    let readmit = permit.is_relay();
    // The future of `serve_tcp` itself is the task: an `async` block around it would hold every
    // argument twice (its own captures and the call's) for the connection's whole life.
    let conn = Box::new(Accepted {
        shared,
        front,
        stream,
        addr,
        via: None,
        listener,
        permit: Some(permit),
        readmit,
        proxy,
        drain,
    });
    tokio::spawn(serve_tcp(conn).instrument(span));
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
    /// The client's address as far as known: the socket peer, or a PROXY header's source.
    addr: SocketAddr,
    /// The balancer's address when `addr` came from its PROXY header.
    via: Option<SocketAddr>,
    listener: Arc<str>,
    /// The connection's admission slot: taken by the task, or left here for the step that
    /// replaces a relay slot (`readmit`), which then holds it until the session ends.
    permit: Option<Admitted>,
    /// `permit` is a relay slot to replace by admission on the client's address once known.
    readmit: bool,
    /// The PROXY protocol versions to read a header of first (a PROXY listener).
    proxy: Option<ProxyProtocol>,
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
/// layout), and this future lives as long as the connection. So the session future is never
/// wrapped in one that also holds the permit: that would keep its arguments twice (measured:
/// 3.8 instead of 2.3 KiB per idle session).
async fn serve_tcp(conn: Box<Accepted>) {
    let mut conn = match conn.proxy {
        Some(version) => match Box::pin(proxy_header(conn, version)).await {
            Some(conn) => conn,
            None => return,
        },
        None => conn,
    };
    // Left in the box only when a later step must replace a relay slot.
    let permit = match conn.readmit {
        true => None,
        false => conn.permit.take(),
    };
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
    // Held until the task ends: admission counts live connections, the drain counts tasks.
    drop(permit);
}

/// Reads the PROXY protocol header under the handshake deadline and, when it names a client,
/// admits that client (unless a WebSocket upgrade from a trusted `X-Forwarded-For` proxy is
/// still to name the real one). `None`: refused, counted, audited; the socket is reset, so
/// the balancer sees the refusal at once and no TLS alert is sent.
async fn proxy_header(conn: Box<Accepted>, version: ProxyProtocol) -> Option<Box<Accepted>> {
    let mut conn = *conn;
    let deadline = conn.shared.config.timeouts.tls_handshake;
    let stats = &conn.shared.stats;
    match proxy_header::read(&mut conn.stream, version, deadline).await {
        Ok(Origin::Client(client)) => {
            conn.via = Some(conn.addr);
            conn.addr = peer_addr(client);
            if conn.front.forwarded_by(conn.addr.ip()) {
                // An HTTP proxy behind the balancer: its X-Forwarded-For names the client (and
                // the span's `peer` is recorded then).
                return Some(Box::new(conn));
            }
            tracing::Span::current().record("peer", tracing::field::display(conn.addr));
            let relay = conn.permit.take()?;
            match conn.shared.gate.readmit(relay, conn.addr, &conn.listener) {
                Ok(permit) => conn.permit = Some(permit),
                Err(_) => {
                    // Counted and logged (aggregated) by the gate, with the client's address.
                    Stats::bump(&stats.refused_at_accept);
                    let _ = conn.stream.set_zero_linger();
                    return None;
                }
            }
            conn.readmit = false;
            Some(Box::new(conn))
        }
        Ok(Origin::Peer) => {
            // The balancer's own connection (LOCAL, UNKNOWN): trusted, keeps its relay slot,
            // unless it is also an X-Forwarded-For proxy here: then its header names someone.
            conn.readmit = conn.front.forwarded_by(conn.addr.ip());
            if !conn.readmit {
                tracing::Span::current().record("peer", tracing::field::display(conn.addr));
            }
            Some(Box::new(conn))
        }
        Err(e) => {
            Stats::bump(match e {
                HeaderError::Timeout(_) => &stats.proxy_header_timeout,
                _ => &stats.proxy_header_invalid,
            });
            if let Some(cause) = e.cause() {
                conn.shared.gate.proxy_refused(
                    conn.addr,
                    &conn.listener,
                    cause,
                    "moat.yaml listeners[].proxy_protocol",
                );
            }
            tracing::info!(error = %e, "PROXY protocol header refused");
            let _ = conn.stream.set_zero_linger();
            None
        }
    }
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
    via: Option<SocketAddr>,
    listener: Arc<str>,
    /// A relay slot to replace (when `readmit`); otherwise the task holds the permit.
    permit: Option<Admitted>,
    readmit: bool,
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
        via,
        listener,
        permit,
        readmit,
        drain,
        ..
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
                via,
            };
            let slot = Slot {
                relay: permit.filter(|_| readmit),
            };
            Begin::Step(Box::pin(websocket(
                stream,
                peer,
                settings,
                TransportKind::Ws,
                shared,
                slot,
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
                    via,
                    listener,
                    permit,
                    readmit,
                }),
            )
        }
    }
}

/// A relay slot on its way to the step that replaces it (`None`: the task holds the permit).
struct Slot {
    relay: Option<Admitted>,
}

/// What runs on a TLS stream: WebSocket for a WSS front (or a routed one without ALPN `mqtt`),
/// the MQTT session otherwise.
fn after_tls(rest: AfterTls, stream: ServerTls, mut peer: Peer) -> Step {
    let AfterTls {
        front,
        shared,
        drain,
        via,
        permit,
        readmit,
        ..
    } = rest;
    peer.via = via;
    let mqtt_alpn = peer.alpn.as_deref() == Some(tls::ALPN_MQTT);
    let websocket_settings = match front {
        Front::Wss(_, settings) => Some(settings),
        // One port for both: ALPN `mqtt` is raw MQTT, `http/1.1` or none is WebSocket.
        Front::Routed(_, settings) if !mqtt_alpn => Some(settings),
        _ => None,
    };
    let slot = Slot {
        relay: permit.filter(|_| readmit),
    };
    match websocket_settings {
        Some(settings) => Box::pin(websocket(
            stream,
            peer,
            settings,
            TransportKind::Wss,
            shared,
            slot,
            drain,
        )),
        None => match slot.relay {
            None => Box::pin(crate::session::run(
                stream,
                peer,
                shared.session.clone(),
                drain,
            )),
            // Raw MQTT from a trusted X-Forwarded-For proxy: no header will name anyone else,
            // so the proxy's own address is admitted. Rare enough to pay for the wrapper.
            Some(relay) => match shared.gate.readmit(relay, peer.addr, &peer.listener) {
                Ok(permit) => {
                    tracing::Span::current().record("peer", tracing::field::display(peer.addr));
                    let session = crate::session::run(stream, peer, shared.session.clone(), drain);
                    Box::pin(holding(permit, session))
                }
                Err(_) => {
                    Stats::bump(&shared.stats.refused_at_accept);
                    Box::pin(std::future::ready(()))
                }
            },
        },
    }
}

/// Runs `session` holding `permit` until it ends.
async fn holding(permit: Admitted, session: impl Future<Output = ()>) {
    session.await;
    drop(permit);
}

/// Upgrades to WebSocket under the listener's deadline, then runs the session on the frames.
/// A relay slot is replaced inside the upgrade, by admission on the address the request names
/// (its trusted `X-Forwarded-For`, or the proxy itself without one): a refusal is a 403.
async fn websocket<S>(
    stream: S,
    peer: Peer,
    settings: Arc<WsSettings>,
    kind: TransportKind,
    shared: Arc<Shared>,
    slot: Slot,
    drain: Drain,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let readmit = slot.relay.is_some();
    let upgraded = {
        // Scoped: nothing of the readmission stays in this future while the session runs.
        let mut relay = slot.relay;
        let gate = shared.gate.clone();
        let stats = shared.stats.clone();
        let listener = peer.listener.clone();
        let mut admit = |client: SocketAddr| -> Option<Admitted> {
            let relay = relay.take()?;
            match gate.readmit(relay, client, &listener) {
                Ok(admitted) => {
                    tracing::Span::current().record("peer", tracing::field::display(client));
                    Some(admitted)
                }
                Err(_) => {
                    // Counted and logged (aggregated) by the gate, with the client's address.
                    Stats::bump(&stats.refused_at_accept);
                    None
                }
            }
        };
        let readmission: Option<ws::Admit<'_, Admitted>> = match readmit {
            true => Some(&mut admit),
            false => None,
        };
        Box::pin(ws::upgrade(stream, peer, &settings, kind, readmission)).await
    };
    let (session, permit): (Step, _) = match upgraded {
        Ok((stream, peer, readmitted)) => {
            if let Some(proxy) = peer.via {
                tracing::debug!(client = %peer.addr, %proxy, "client address from X-Forwarded-For");
            }
            if readmit && readmitted.is_none() {
                // A relay slot the upgrade did not replace: never serve it unadmitted.
                return;
            }
            let session = crate::session::run(stream, peer, shared.session.clone(), drain);
            (Box::pin(session), readmitted)
        }
        Err(e) => {
            shared.stats.handshake_failed(WS_UPGRADE_REFUSED);
            tracing::info!(error = %e, "WebSocket upgrade refused");
            return;
        }
    };
    drop(settings);
    session.await;
    drop(permit);
}
