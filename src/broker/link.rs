//! The socket of one session's broker connection, and the pacer that acknowledges what all of
//! them receive.
//!
//! What it owns: [`connect`] (a TCP connection to the broker, `TCP_NODELAY` on, put in
//! delayed-ACK mode), its two halves [`BrokerRead`] and [`BrokerWrite`], and [`AckPacer`], the
//! one task that acknowledges every broker socket once per tick. Why it is here: it is the
//! broker segment's transport, the same for every session and every broker; the session only
//! speaks MQTT over it (`session/upstream.rs`). What it must not do: read or write MQTT, or know
//! about sessions and refusals.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Opens a connection to the broker at `addr` and splits it (see [`BrokerRead`]): from now on
/// `pacer` decides when what it receives is acknowledged.
pub(crate) async fn connect(
    addr: SocketAddr,
    pacer: &Arc<AckPacer>,
) -> std::io::Result<(BrokerRead, BrokerWrite)> {
    let stream = TcpStream::connect(addr).await?;
    Ok(split(stream, pacer.clone()))
}

/// The broker socket of one session, shared by its two halves and (weakly) by the ACK pacer.
pub(crate) struct BrokerSocket {
    stream: TcpStream,
    /// Set while this socket waits in the pacer's list, so it is listed once per tick.
    ack_due: AtomicBool,
}

/// The read half of a broker connection; every read that returns data asks the pacer to
/// acknowledge it within one tick (see [`AckPacer`]).
pub(crate) struct BrokerRead {
    socket: Arc<BrokerSocket>,
    pacer: Arc<AckPacer>,
}

/// The write half of a broker connection.
pub(crate) struct BrokerWrite(Arc<BrokerSocket>);

/// Most bytes one read from the broker takes (and initialises first): a loopback socket rarely
/// holds more at once.
const MAX_READ: usize = 64 * 1024;

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
        BrokerRead {
            socket: socket.clone(),
            pacer,
        },
        BrokerWrite(socket),
    )
}

impl AsyncRead for BrokerRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let stream = &self.socket.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            // `try_read` clears the readiness it consumed on WouldBlock, so the loop polls again.
            // Safe code must initialise what it reads into: at most one read's worth, so that a
            // large packet's spare capacity is not zeroed again on every read.
            let room = buf.remaining().min(MAX_READ);
            match stream.try_read(buf.initialize_unfilled_to(room)) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(n) => {
                    buf.advance(n);
                    if !self.socket.ack_due.swap(true, Ordering::AcqRel) {
                        self.pacer.due(Arc::downgrade(&self.socket));
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
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
        let stream = &self.0.stream;
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
        let stream = &self.0.stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(SockRef::from(&self.0.stream).shutdown(std::net::Shutdown::Write))
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
