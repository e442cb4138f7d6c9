//! The socket of one session's broker connection, and the pacer that acknowledges what all of
//! them receive.
//!
//! What it owns: [`connect`] (resolving a broker's host name with tokio's resolver, under a
//! timeout; a TCP connection, `TCP_NODELAY` on, put in delayed-ACK mode; TLS toward the broker
//! with tokio-rustls when `broker.upstream.tls` asks for it), [`memory_pair`] (the embedded
//! broker's in-process link: a `tokio::io::duplex` pair, no socket), their two halves
//! [`BrokerRead`] and [`BrokerWrite`], and [`AckPacer`], the one task that acknowledges every
//! plain broker socket once per tick. Why it is here: it is the
//! broker segment's transport, the same for every session and every broker; the session only
//! speaks MQTT over it (`session/upstream.rs`). What it must not do: read or write MQTT, or know
//! about sessions and refusals.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, Interest, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::route::Endpoint;
use super::UpstreamTlsClient;

/// Longest a host name may take to resolve (the session's own connect deadline may cut it
/// shorter).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most socket addresses of one host name tried for one session.
const MAX_RESOLVED: usize = 8;

/// Why one broker address could not be reached; says which address and which step.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The host name did not resolve (or to nothing) in time.
    #[error("resolve {host}: {reason}")]
    Resolve {
        /// As written in moat.yaml.
        host: String,
        /// The resolver's answer, or the timeout.
        reason: String,
    },
    /// TCP connect failed.
    #[error("connect {addr}: {source}")]
    Connect {
        /// The socket address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake with the broker failed (its certificate, name, protocol).
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The socket address.
        addr: SocketAddr,
        /// rustls' reason.
        source: std::io::Error,
    },
}

/// Opens a connection to the broker at `endpoint` (resolving its host name if it has one, and
/// trying each address it resolved to), over TLS when `tls` says so, and splits it (see
/// [`BrokerRead`]): from now on `pacer` decides when what a plain socket receives is
/// acknowledged. Returns the socket address reached.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&UpstreamTlsClient>,
    pacer: &Arc<AckPacer>,
) -> Result<(BrokerRead, BrokerWrite, SocketAddr), LinkError> {
    let addrs = resolve(endpoint).await?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let Some(tls) = tls else {
                    let (rd, wr) = split(stream, pacer.clone());
                    return Ok((rd, wr, addr));
                };
                let _ = stream.set_nodelay(true);
                let name = match &tls.server_name {
                    Some(name) => name.clone(),
                    None => server_name(endpoint, addr),
                };
                let connector = TlsConnector::from(tls.config.load_full());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|source| LinkError::Tls { addr, source })?;
                let (rd, wr) = tokio::io::split(stream);
                return Ok((
                    BrokerRead(ReadInner::Tls(rd)),
                    BrokerWrite(WriteInner::Tls(wr)),
                    addr,
                ));
            }
            Err(source) => last = Some(LinkError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| LinkError::Resolve {
        host: endpoint.addr.host.clone(),
        reason: "no address".into(),
    }))
}

/// The socket addresses of `endpoint`: its IP literal, what its name resolved to recently, or
/// a fresh answer of the system resolver (tokio's `lookup_host`), bounded in time and count.
pub(crate) async fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>, LinkError> {
    if let Some(addr) = endpoint.literal() {
        return Ok(vec![addr]);
    }
    let now = Instant::now();
    if let Some(addrs) = endpoint.cached(now) {
        return Ok(addrs);
    }
    let host = &endpoint.addr.host;
    let failed = |reason: String| LinkError::Resolve {
        host: host.clone(),
        reason,
    };
    let lookup = tokio::net::lookup_host((host.as_str(), endpoint.addr.port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| failed(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?
        .take(MAX_RESOLVED)
        .collect();
    if addrs.is_empty() {
        return Err(failed("no address".into()));
    }
    endpoint.remember(now, addrs.clone());
    Ok(addrs)
}

/// The name the broker's certificate must carry when `server_name` is not set: the host as
/// written, or the IP address reached.
fn server_name(endpoint: &Endpoint, addr: SocketAddr) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from(endpoint.addr.host.clone())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(addr.ip().into()))
}

/// The broker socket of one session, shared by its two halves and (weakly) by the ACK pacer.
pub(crate) struct BrokerSocket {
    stream: TcpStream,
    /// Set while this socket waits in the pacer's list, so it is listed once per tick.
    ack_due: AtomicBool,
}

/// The read half of a broker connection; on a plain socket every read that returns data asks
/// the pacer to acknowledge it within one tick (see [`AckPacer`]).
pub(crate) struct BrokerRead(ReadInner);

enum ReadInner {
    /// Plain TCP, paced.
    Plain {
        socket: Arc<BrokerSocket>,
        pacer: Arc<AckPacer>,
    },
    /// TLS toward the broker. Not paced: a broker that needs TLS is not on loopback, where
    /// the delayed-ACK stall the pacer removes is what the round trip costs anyway.
    Tls(ReadHalf<TlsStream<TcpStream>>),
    /// The embedded broker in memory: no TCP, so nothing to acknowledge or pace.
    Memory(ReadHalf<DuplexStream>),
}

/// The write half of a broker connection.
pub(crate) struct BrokerWrite(WriteInner);

enum WriteInner {
    Plain(Arc<BrokerSocket>),
    Tls(WriteHalf<TlsStream<TcpStream>>),
    Memory(WriteHalf<DuplexStream>),
}

/// Most bytes one read from the broker takes (and initialises first): a loopback socket rarely
/// holds more at once.
const MAX_READ: usize = 64 * 1024;

/// Bytes the in-memory link holds per direction before the writer waits for the reader: the
/// most rumqttd writes at once for small messages (a batch of up to 200 deliveries, about
/// 16 KiB of 64-byte ones) fits several times, so a busy subscriber's batch goes in one write
/// and is taken by a few of moat's reads, as a loopback socket's buffer would take it. Each
/// direction's buffer grows only to the largest backlog it held (an idle session holds its
/// CONNECT's or CONNACK's worth).
pub(crate) const MEMORY_LINK_BUFFER: usize = 64 * 1024;

/// A session's in-process link to the embedded broker: moat's halves, and the broker's end
/// (for `rumqttd::Connector::connect`). Either end dropped is a close for the other, a
/// shutdown of moat's write half a half-close, as on a socket.
pub(crate) fn memory_pair() -> (BrokerRead, BrokerWrite, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(MEMORY_LINK_BUFFER);
    let (rd, wr) = tokio::io::split(ours);
    (
        BrokerRead(ReadInner::Memory(rd)),
        BrokerWrite(WriteInner::Memory(wr)),
        theirs,
    )
}

/// Splits a connected broker socket into its halves and puts it in delayed-ACK mode: from now
/// on the pacer decides when what it received is acknowledged.
fn split(stream: TcpStream, pacer: Arc<AckPacer>) -> (BrokerRead, BrokerWrite) {
    let _ = stream.set_nodelay(true);
    let _ = SockRef::from(&stream).set_tcp_quickack(false);
    let socket = Arc::new(BrokerSocket {
        stream,
        ack_due: AtomicBool::new(false),
    });
    (
        BrokerRead(ReadInner::Plain {
            socket: socket.clone(),
            pacer,
        }),
        BrokerWrite(WriteInner::Plain(socket)),
    )
}

impl AsyncRead for BrokerRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let (socket, pacer) = match &mut self.get_mut().0 {
            ReadInner::Tls(rd) => return Pin::new(rd).poll_read(cx, buf),
            ReadInner::Memory(rd) => return Pin::new(rd).poll_read(cx, buf),
            ReadInner::Plain { socket, pacer } => (socket, pacer),
        };
        let stream = &socket.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            // Safe code must initialise what it reads into: at most one read's worth, so that a
            // large packet's spare capacity is not zeroed again on every read.
            let room = buf.remaining().min(MAX_READ);
            let area = buf.initialize_unfilled_to(room);
            // A read that did not fill `area` emptied the socket: its readiness is cleared
            // then, as tokio's own `TcpStream::poll_read` does, instead of learning it from one
            // more read that fails with EAGAIN (`try_read` clears only on WouldBlock; one such
            // read per broker segment, measured in BENCHMARKS.md "the floor"). The WouldBlock
            // returned for that is this function's own: `short` holds what was read. Data that
            // arrives later raises a new readiness event, which this clearing cannot erase.
            let mut short = None;
            let read = stream.try_io(Interest::READABLE, || {
                let n = std::io::Read::read(&mut &*SockRef::from(stream), area)?;
                if n > 0 && n < room {
                    short = Some(n);
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match (read, short) {
                (_, Some(n)) | (Ok(n), None) if n > 0 => {
                    buf.advance(n);
                    if !socket.ack_due.swap(true, Ordering::AcqRel) {
                        pacer.due(Arc::downgrade(socket));
                    }
                    return Poll::Ready(Ok(()));
                }
                (Ok(_), _) => return Poll::Ready(Ok(())),
                (Err(e), _) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                (Err(e), _) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for BrokerWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let socket = match &mut self.get_mut().0 {
            WriteInner::Tls(wr) => return Pin::new(wr).poll_write(cx, buf),
            WriteInner::Memory(wr) => return Pin::new(wr).poll_write(cx, buf),
            WriteInner::Plain(socket) => socket,
        };
        let stream = &socket.stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let socket = match &mut self.get_mut().0 {
            WriteInner::Tls(wr) => return Pin::new(wr).poll_write_vectored(cx, bufs),
            WriteInner::Memory(wr) => return Pin::new(wr).poll_write_vectored(cx, bufs),
            WriteInner::Plain(socket) => socket,
        };
        let stream = &socket.stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            WriteInner::Plain(_) => true,
            WriteInner::Tls(wr) => wr.is_write_vectored(),
            // One copy of every slice into the pipe's buffer, one wake of the broker's link.
            WriteInner::Memory(wr) => wr.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            WriteInner::Plain(_) => Poll::Ready(Ok(())),
            WriteInner::Tls(wr) => Pin::new(wr).poll_flush(cx),
            WriteInner::Memory(wr) => Pin::new(wr).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            WriteInner::Plain(socket) => {
                Poll::Ready(SockRef::from(&socket.stream).shutdown(std::net::Shutdown::Write))
            }
            WriteInner::Tls(wr) => Pin::new(wr).poll_shutdown(cx),
            WriteInner::Memory(wr) => Pin::new(wr).poll_shutdown(cx),
        }
    }
}

/// Acknowledges what broker sockets received, for all sessions at once, once per tick.
///
/// Brokers rarely disable Nagle's algorithm (mosquitto's `set_tcp_nodelay` is off by default;
/// rumqttd never sets it): a broker holds a small delivery back until its previous segment is
/// acknowledged. A receiver that only reads (QoS 0 deliveries) is in Linux's delayed-ACK mode
/// after the CONNECT exchange, and acknowledges 10-40 ms late: deliveries then come in bursts
/// that far apart. Acknowledging after every read (`TCP_QUICKACK`) removes the stall but makes
/// the broker send each delivery on its own segment, and every extra segment costs moat a read,
/// a TLS record and a write. The pacer sits between: each broker socket stays in delayed-ACK
/// mode, and whatever it received is acknowledged within one tick (1-2 ms: the runtime timer's
/// resolution), by one task for every session. The broker's Nagle then waits at most a tick,
/// and everything it queued meanwhile arrives in one segment.
///
/// Measured through moat → mosquitto, QoS 0, 64-byte messages (BENCHMARKS.md): at 55,000 msg/s
/// the median delivery was 9 ms late with the kernel's delayed ACKs, 0.8 ms with an ACK after
/// every read (7.0 s CPU per million messages) and 2.1 ms with the pacer (4.3 s); at peak rate
/// the per-read ACK cost 3.9 s per million, the pacer 2.7.
pub(crate) struct AckPacer {
    due: Mutex<Vec<Weak<BrokerSocket>>>,
    wake: Notify,
}

/// How long a received segment may wait for its acknowledgement.
const ACK_TICK: Duration = Duration::from_millis(1);

// === impl AckPacer ===

impl AckPacer {
    pub(crate) fn new() -> Self {
        AckPacer {
            due: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    fn due(&self, socket: Weak<BrokerSocket>) {
        let Ok(mut due) = self.due.lock() else {
            return;
        };
        due.push(socket);
        if due.len() == 1 {
            // `notify_one` keeps a permit if the pacer is still busy with the previous tick.
            self.wake.notify_one();
        }
    }

    /// Runs until `stop` completes: at most one tick after a socket became due, acknowledges
    /// every due socket.
    pub(crate) async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
            }
            tokio::time::sleep(ACK_TICK).await;
            match self.due.lock() {
                Ok(mut due) => std::mem::swap(&mut *due, &mut batch),
                Err(_) => return,
            }
            for socket in batch.drain(..) {
                let Some(socket) = socket.upgrade() else {
                    continue;
                };
                // Cleared first: a read after the ACK lists the socket again.
                socket.ack_due.store(false, Ordering::Release);
                // QUICKACK on sends the delayed ACK now (and leaves delayed-ACK mode); off
                // again returns to it, so the next segment waits for the next tick.
                let sock = SockRef::from(&socket.stream);
                let _ = sock.set_tcp_quickack(true);
                let _ = sock.set_tcp_quickack(false);
            }
            // A burst of sessions must not pin its peak size for the life of the server.
            if batch.capacity() > 4096 {
                batch = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Like a broker with Nagle's algorithm on (mosquitto's default): the second of two small
    /// writes waits until the first is acknowledged. Returns how long it took to arrive.
    async fn second_delivery_delay(reader: &mut BrokerRead, broker: &mut TcpStream) -> Duration {
        let mut buf = [0u8; 64];
        broker.write_all(b"first").await.unwrap();
        reader.read_exact(&mut buf[..5]).await.unwrap();
        broker.write_all(b"second").await.unwrap();
        let sent = Instant::now();
        reader.read_exact(&mut buf[..6]).await.unwrap();
        sent.elapsed()
    }

    /// The longest any second write of `rounds` waited, on a fresh connection.
    async fn longest_wait(rounds: usize) -> Duration {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_broker, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut broker = accepted.unwrap().0;
        broker.set_nodelay(false).unwrap();
        let pacer = Arc::new(AckPacer::new());
        let (mut reader, _writer) = split(to_broker.unwrap(), pacer.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            pacer
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let mut longest = Duration::ZERO;
        for _ in 0..rounds {
            longest = longest.max(second_delivery_delay(&mut reader, &mut broker).await);
        }
        stop_tx.send(()).unwrap();
        running.await.unwrap();
        longest
    }

    /// A short read clears the socket's readiness without a failed read; what the broker sends
    /// afterwards must still wake the reader (a lost wake-up would hang the session).
    #[tokio::test]
    async fn a_short_read_does_not_lose_what_comes_next() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_broker, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut broker = accepted.unwrap().0;
        let (mut reader, _writer) = split(to_broker.unwrap(), Arc::new(AckPacer::new()));
        let mut buf = [0u8; 256];
        for round in 0u8..50 {
            let sent = [round; 7];
            broker.write_all(&sent).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
                .await
                .expect("the next segment woke the reader")
                .unwrap();
            assert_eq!(buf.get(..n), Some(&sent[..]), "round {round}");
        }
        drop(broker);
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("end of stream woke the reader")
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn deliveries_held_by_a_nagle_broker_are_acknowledged_within_a_tick() {
        // Linux acknowledges a connection's first segments at once, then delays ACKs by 40 ms
        // on a socket in delayed-ACK mode (where `split` puts it); the first delayed ACK shows
        // within a dozen rounds. With the pacer each round waits a 1-2 ms tick. A fresh
        // connection is tried again (three at most) only so that one scheduling hiccup of a
        // busy machine does not fail the test: without the pacer every connection stalls.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let longest = longest_wait(16).await;
            if longest < Duration::from_millis(30) {
                return;
            }
            seen.push(longest);
        }
        panic!("a delivery waited for the delayed ACK on every connection: {seen:?}");
    }
}
