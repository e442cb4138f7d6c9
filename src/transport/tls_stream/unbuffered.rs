//! The server side of a TLS connection on rustls' *unbuffered* API (the default seam): a byte stream that holds no
//! buffer while it is idle.
//!
//! rustls' buffered API (what tokio-rustls wraps) keeps a receive buffer per connection for the
//! connection's whole life: 4 KiB, zero-filled on the first read, never released. With the
//! unbuffered API the caller owns every buffer, so [`ServerTls`] keeps three, each empty and
//! unallocated whenever nothing is in flight:
//! - `rx`: ciphertext read but not yet a whole record (a record that spans reads);
//! - `plain`: decrypted bytes the reader has not taken yet;
//! - `tx`: ciphertext the socket has not taken yet.
//!
//! A read lands in an area on the stack of the poll that makes it; rustls decrypts the records
//! there, in place, and hands out each record's plaintext (rustls 0.23 copies it into a `Vec`
//! of its own on the way), which goes into the caller's buffer. Only what is left over is kept
//! on the heap: the start of a record that spans reads (`rx`, bounded by the TLS record limit)
//! or plaintext the caller had no room for (`plain`). A write encrypts one record
//! (up to 16 KiB of plaintext, the slices of a vectored write joined) into `tx` and hands it to
//! the socket at once; `tx` is freed as soon as the socket has taken it all.
//!
//! What the stream does not do: client connections (tokio-rustls serves those), early data
//! (moat's server config refuses it), session tickets. The handshake runs here too
//! ([`ServerTls::accept`]); `transport/tls.rs` puts it under its deadline and reads the peer's
//! identity from [`ServerTls::connection`].
//!
//! Borrowing rules of the unbuffered API that this file relies on (rustls 0.23,
//! `src/conn/unbuffered.rs`):
//! - every call of `process_tls_records` gets the whole of `rx`, minus exactly the bytes rustls
//!   said to discard: rustls remembers how far into that buffer it has read (a handshake message
//!   that spans records is joined in place), so an empty slice while it holds such a part would
//!   make it slice out of bounds (`conn.rs`, `process_more_input`: `buffer[processed..]`);
//! - `WriteTraffic` is only reached once no whole record is left in the buffer, so after any
//!   call that reached it, `rx` holds at most one partial record;
//! - after an error, rustls hands out the alert it queued before it looks at the input again
//!   (`sendable_tls` is checked before `deframe`), so the alert is fetched only while
//!   `wants_write()` says one is queued, and the record that failed is never parsed twice.
//!
//! Both halves of the stream (after `tokio::io::split`) are polled from the session's one task
//! (`session/driver.rs`, `ws_stream.rs`); the read side may therefore also write (an alert, a
//! TLS 1.2 warning) with the reader's waker.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::server::{Acceptor, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Plaintext per record: the TLS maximum (RFC 8446 §5.1, 2^14). A write takes at most this much,
/// so one write is one record and `tx` never holds more than one record of application data.
pub(super) const MAX_PLAINTEXT: usize = 16 * 1024;

/// The largest record rustls accepts: a 5-byte header and a payload shorter than 2^14 + 2048
/// (`msgs/message/outbound.rs`, `read_opaque_message_header`: `len >= MAX_PAYLOAD` is refused
/// with `MessageTooLarge` as soon as the header is in). After the handshake `rx` holds at most
/// one partial record, so it never needs more than this.
pub(super) const MAX_RECORD: usize = 5 + 16 * 1024 + 2048 - 1;

/// `rx` during the handshake: a handshake message may span records and rustls joins them in
/// the buffer before any is discarded. rustls caps a handshake message at 64 KiB
/// (`MAX_HANDSHAKE_SIZE`) and its buffered API stops reading at that much buffered; here the
/// cap is that plus the record being read. The handshake runs under a deadline.
const MAX_HANDSHAKE_RX: usize = 0xffff + MAX_RECORD;

/// Bytes read from the socket at once, into an area on the poll's stack (not initialised, so
/// it costs nothing to set up): a full TLS record's worth, enough for a burst of small MQTT
/// records in one system call.
const READ_AREA: usize = 16 * 1024 + 2048;

/// Room offered for a record's overhead on top of its plaintext: header (5), TLS 1.2 explicit
/// nonce (8), tag (16), TLS 1.3 content type (1). When rustls needs more (a queued key update
/// goes first) it says exactly how much and the buffer is grown once.
const RECORD_SLACK: usize = 64;

/// The most rustls may ask for in one encode or encrypt: a record and whatever handshake or
/// alert records it queued before it. Only rustls' own output is sized against it; it bounds a
/// bug, not the peer.
const MAX_TX_STEP: usize = 4 * MAX_RECORD;

/// A server-side TLS stream over `IO` (a TCP socket in moat) on rustls' unbuffered API.
pub struct ServerTls<IO = TcpStream> {
    /// The socket.
    io: IO,
    /// The TLS state machine (keys, sequence numbers, what the handshake established).
    conn: UnbufferedServerConnection,
    /// Ciphertext received that is not a whole record yet; empty and unallocated otherwise.
    rx: Vec<u8>,
    /// Decrypted bytes not yet handed to the reader; freed once taken.
    plain: BytesMut,
    /// Ciphertext not yet taken by the socket; freed once flushed.
    tx: BytesMut,
    /// The peer sent close_notify, or closed TCP: reads return end of stream.
    read_closed: bool,
    /// close_notify is queued: nothing more may be written.
    close_sent: bool,
    /// rustls refused the peer's data (the alert is sent if the socket takes it); every later
    /// read and write fails.
    failed: bool,
}

/// What a call of [`ServerTls::advance`] is for.
enum Goal<'a, 'b> {
    /// Complete the handshake.
    Handshake,
    /// Decrypt what arrived: into the reader's buffer first, the rest into `plain`.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this plaintext into `tx`.
    Encrypt(&'a [u8]),
    /// Queue close_notify into `tx`.
    CloseNotify,
}

/// Where [`ServerTls::advance`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Reached {
    /// The goal is met (handshake complete, record or close_notify encrypted).
    Done,
    /// rustls needs more bytes from the peer first.
    NeedInput,
    /// Both sides have sent close_notify: nothing more can be written.
    Closed,
}

/// Whether rustls' loop goes on after one state was handled.
enum Flow {
    Continue,
    Stop(Reached),
}

// === impl ServerTls ===

impl<IO: AsyncRead + AsyncWrite + Unpin> ServerTls<IO> {
    /// Runs the server handshake on `io` and returns the stream with the server name the client
    /// asked for (SNI). The caller bounds it in time. On failure the alert rustls chose is sent
    /// before the error is returned.
    pub async fn accept(
        config: Arc<ServerConfig>,
        io: IO,
    ) -> io::Result<(ServerTls<IO>, Option<String>)> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid_data)?;
        let mut tls = ServerTls {
            io,
            conn,
            rx: Vec::new(),
            plain: BytesMut::new(),
            tx: BytesMut::new(),
            read_closed: false,
            close_sent: false,
            failed: false,
        };
        let mut sni = SniProbe::new();
        let done = std::future::poll_fn(|cx| tls.poll_handshake(cx, &mut sni)).await;
        if let Err(e) = done {
            // The alert, if rustls queued one; the caller's deadline bounds this wait.
            let _ = std::future::poll_fn(|cx| tls.poll_flush_tx(cx)).await;
            return Err(e);
        }
        Ok((tls, sni.into_name()))
    }

    /// What the handshake established: negotiated ALPN, verified client certificates.
    pub fn connection(&self) -> &CommonState {
        &self.conn
    }

    /// Bytes of buffer the stream holds now (capacity of `rx`, `plain` and `tx`): 0 while idle.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.rx.capacity() + self.plain.capacity() + self.tx.capacity()
    }

    /// Ciphertext read that waits for the rest of its record.
    #[cfg(test)]
    pub(super) fn waiting_bytes(&self) -> usize {
        self.rx.len()
    }

    /// The socket.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>, sni: &mut SniProbe) -> Poll<io::Result<()>> {
        loop {
            let reached = self.advance_rx(&mut Goal::Handshake)?;
            // Whatever the handshake produced goes out before anything else is read: the
            // client waits for it.
            ready!(self.poll_flush_tx(cx))?;
            match reached {
                Reached::Done => return Poll::Ready(Ok(())),
                Reached::Closed => return Poll::Ready(Err(closed_in_handshake())),
                Reached::NeedInput if self.read_closed => {
                    return Poll::Ready(Err(closed_in_handshake()))
                }
                Reached::NeedInput => {}
            }
            ready!(self.poll_read_with(cx, |this, filled| {
                if filled.is_empty() {
                    return Err(closed_in_handshake());
                }
                sni.feed(filled);
                this.rx.reserve_exact(filled.len());
                this.rx.extend_from_slice(filled);
                Ok(())
            }))?;
        }
    }

    /// Reads from the socket into an area on this poll's stack, at most as much as `rx` may
    /// still grow by, and hands the bytes read (none at end of stream) to `then`.
    fn poll_read_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        then: impl FnOnce(&mut Self, &mut [u8]) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let limit = if self.conn.is_handshaking() {
            MAX_HANDSHAKE_RX
        } else {
            MAX_RECORD
        };
        let room = limit.saturating_sub(self.rx.len()).min(READ_AREA);
        if room == 0 {
            // Unreachable for a well-behaved peer: a record fits, and rustls refuses a larger
            // one from its header. What is left is a handshake message spread over too many
            // records.
            self.failed = true;
            return Poll::Ready(Err(invalid_data("TLS input exceeds the record limit")));
        }
        let mut area = [MaybeUninit::<u8>::uninit(); READ_AREA];
        let (head, _) = area.split_at_mut(room);
        let mut rb = ReadBuf::uninit(head);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        Poll::Ready(then(self, rb.filled_mut()))
    }

    /// Runs rustls over `rx` toward `goal` and drops what rustls is done with.
    fn advance_rx(&mut self, goal: &mut Goal<'_, '_>) -> io::Result<Reached> {
        let mut rx = std::mem::take(&mut self.rx);
        let result = self.advance(&mut rx, goal);
        let used = match &result {
            Ok((_, used)) => *used,
            Err(_) => 0,
        };
        rx.drain(..used.min(rx.len()));
        if !rx.is_empty() {
            // What stays is the start of one record; a buffer that held several is trimmed to it.
            if rx.capacity() > 2 * rx.len() {
                rx.shrink_to_fit();
            }
            self.rx = rx;
        }
        result.map(|(reached, _)| reached)
    }

    /// Runs rustls over `incoming` until `goal` is met or more input is needed. Returns where it
    /// stopped and how many leading bytes of `incoming` rustls is done with.
    fn advance(
        &mut self,
        incoming: &mut [u8],
        goal: &mut Goal<'_, '_>,
    ) -> io::Result<(Reached, usize)> {
        if self.failed {
            return Err(failed());
        }
        let result = self.advance_until(incoming, goal);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn advance_until(
        &mut self,
        incoming: &mut [u8],
        goal: &mut Goal<'_, '_>,
    ) -> io::Result<(Reached, usize)> {
        let mut used = 0;
        loop {
            let pending = incoming.get_mut(used..).unwrap_or_default();
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(pending);
            let flow = match state {
                Err(e) => {
                    used += discard;
                    return Err(self.fail(incoming, used, e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid_data)?;
                        discard += record.discard;
                        deliver(goal, &mut self.plain, record.payload);
                    }
                    Flow::Continue
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    fill_tx(&mut self.tx, 0, |out| match encode.encode(out) {
                        Ok(n) => Fill::Wrote(n),
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => Fill::Needs(required_size),
                        Err(e) => Fill::Failed(invalid_data(e)),
                    })?;
                    Flow::Continue
                }
                // The bytes are in `tx`, ahead of anything written later; the caller flushes.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Flow::Continue
                }
                Ok(ConnectionState::BlockedHandshake) => Flow::Stop(Reached::NeedInput),
                Ok(ConnectionState::PeerClosed) => {
                    self.read_closed = true;
                    Flow::Continue
                }
                Ok(ConnectionState::Closed) => {
                    self.read_closed = true;
                    Flow::Stop(Reached::Closed)
                }
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    // moat's config sets max_early_data_size = 0, so rustls never accepts any.
                    return Err(invalid_data("TLS early data is not accepted"));
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match goal {
                    Goal::Handshake => Flow::Stop(Reached::Done),
                    Goal::Read(_) => Flow::Stop(Reached::NeedInput),
                    Goal::Encrypt(data) => {
                        let room = data.len() + RECORD_SLACK;
                        fill_tx(&mut self.tx, room, |out| {
                            encrypt_result(traffic.encrypt(data, out))
                        })?;
                        Flow::Stop(Reached::Done)
                    }
                    Goal::CloseNotify => {
                        fill_tx(&mut self.tx, RECORD_SLACK, |out| {
                            encrypt_result(traffic.queue_close_notify(out))
                        })?;
                        Flow::Stop(Reached::Done)
                    }
                },
                Ok(other) => {
                    return Err(invalid_data(format!("unexpected TLS state {other:?}")));
                }
            };
            used += discard;
            match flow {
                Flow::Continue => {}
                // TLS 1.3 lets the server write before the client's Finished (and certificate)
                // arrived; the handshake is complete only when both directions are keyed.
                Flow::Stop(Reached::Done)
                    if matches!(goal, Goal::Handshake) && self.conn.is_handshaking() =>
                {
                    return Ok((Reached::NeedInput, used));
                }
                Flow::Stop(reached) => return Ok((reached, used)),
            }
        }
    }

    /// Marks the stream failed, queues the alert rustls chose (if any) into `tx` and returns
    /// the error. `incoming[used..]` is what rustls has not discarded.
    fn fail(&mut self, incoming: &mut [u8], used: usize, error: rustls::Error) -> io::Error {
        self.failed = true;
        // Each call hands out one queued record before rustls would look at the input again,
        // so asking only while one is queued never parses the offending record a second time.
        // Bounded: a fatal alert is one record; anything before it is one flight at most.
        for _ in 0..16 {
            if !self.conn.wants_write() {
                break;
            }
            let pending = incoming.get_mut(used..).unwrap_or_default();
            let status = self.conn.process_tls_records(pending);
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state else {
                break;
            };
            let queued = fill_tx(&mut self.tx, 0, |out| match encode.encode(out) {
                Ok(n) => Fill::Wrote(n),
                Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Fill::Needs(required_size)
                }
                Err(e) => Fill::Failed(invalid_data(e)),
            });
            if queued.is_err() {
                break;
            }
        }
        invalid_data(error)
    }

    /// Writes `tx` to the socket until it is empty, then frees it.
    fn poll_flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.tx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx.advance(n.min(self.tx.len()));
        }
        self.tx = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Sends what the read side queued (an alert) if the socket takes it now; otherwise it
    /// stays in `tx`, in order, for the next write or flush.
    fn flush_from_read_side(&mut self, cx: &mut Context<'_>) {
        if !self.tx.is_empty() {
            let _ = self.poll_flush_tx(cx);
        }
    }

    /// Hands `plain` to the reader, freeing it once it is all taken.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.plain.len());
        buf.put_slice(self.plain.split_to(n).as_ref());
        if self.plain.is_empty() {
            self.plain = BytesMut::new();
        }
    }
}

// === impl AsyncRead for ServerTls ===

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                this.take_plain(buf);
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(failed()));
            }
            if this.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let read = ready!(this.poll_read_with(cx, |this, filled| {
                if filled.is_empty() {
                    // TCP closed without close_notify: end of stream all the same (the session
                    // notices a truncated MQTT packet itself). `rx` stays: rustls may still
                    // refer to it when the write side asks for WriteTraffic.
                    this.read_closed = true;
                    return Ok(());
                }
                if this.rx.is_empty() {
                    // The common case: decrypt in the read area itself, keep only a partial
                    // record that ends it.
                    let (_, used) = this.advance(filled, &mut Goal::Read(buf))?;
                    let rest = filled.get(used..).unwrap_or_default();
                    if !rest.is_empty() {
                        this.rx = rest.to_vec();
                    }
                } else {
                    this.rx.reserve_exact(filled.len());
                    this.rx.extend_from_slice(filled);
                    this.advance_rx(&mut Goal::Read(buf))?;
                }
                Ok(())
            }));
            this.flush_from_read_side(cx);
            read?;
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

// === impl AsyncWrite for ServerTls ===

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Encrypts up to one record's worth of the slices as one record.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(failed()));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // At most one record waits for the socket: a reader that does not read makes the
        // writer wait here, not moat buffer.
        ready!(this.poll_flush_tx(cx))?;
        // Slices are joined on this poll's stack (not initialised first), not on the heap.
        let mut area = [MaybeUninit::<u8>::uninit(); MAX_PLAINTEXT];
        let mut staged = ReadBuf::uninit(&mut area);
        let plaintext = stage(bufs, &mut staged);
        if plaintext.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.advance_rx(&mut Goal::Encrypt(plaintext))? {
            Reached::Done => {}
            Reached::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Reached::NeedInput => {
                return Poll::Ready(Err(invalid_data("the TLS connection cannot send")))
            }
        }
        // The record is taken: the socket gets it now, or on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_flush_tx(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(plaintext.len()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_tx(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends close_notify (unless the connection failed), then closes the TCP write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            if !this.failed {
                // A connection rustls can no longer write on is closed without it.
                let _ = this.advance_rx(&mut Goal::CloseNotify);
            }
        }
        ready!(this.poll_flush_tx(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The plaintext of one record: the first slice itself when it holds all that is wanted,
/// otherwise up to [`MAX_PLAINTEXT`] bytes of the slices copied into `staged`.
fn stage<'a>(bufs: &'a [IoSlice<'a>], staged: &'a mut ReadBuf<'_>) -> &'a [u8] {
    let total = bufs.iter().fold(0usize, |n, b| n.saturating_add(b.len()));
    let want = total.min(staged.remaining());
    let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
        return &[];
    };
    if first.len() >= want {
        return first.get(..want).unwrap_or_default();
    }
    for b in bufs {
        let n = staged.remaining().min(b.len());
        if n == 0 && staged.remaining() == 0 {
            break;
        }
        staged.put_slice(b.get(..n).unwrap_or_default());
    }
    staged.filled()
}

/// Reads the server name (SNI) from the ClientHello. `UnbufferedServerConnection` has no
/// `server_name()` in rustls 0.23 (only the buffered `ServerConnection` has one,
/// `server/server_conn.rs`), so rustls' own ClientHello reader, `Acceptor`, reads the same
/// bytes until the ClientHello is complete; it is dropped then. Whatever it concludes, the
/// handshake is decided by the unbuffered connection alone.
enum SniProbe {
    /// The ClientHello is not complete yet.
    Reading(Box<Acceptor>),
    /// The name, if the client sent one.
    Done(Option<String>),
}

// === impl SniProbe ===

impl SniProbe {
    fn new() -> Self {
        SniProbe::Reading(Box::default())
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        let SniProbe::Reading(acceptor) = self else {
            return;
        };
        let name = loop {
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    break accepted.client_hello().server_name().map(str::to_owned)
                }
                Ok(None) if !bytes.is_empty() => {}
                Ok(None) => return,
                Err(_) => break None,
            }
            match acceptor.read_tls(&mut bytes) {
                Ok(n) if n > 0 => {}
                _ => break None,
            }
        };
        *self = SniProbe::Done(name);
    }

    fn into_name(self) -> Option<String> {
        match self {
            SniProbe::Done(name) => name,
            SniProbe::Reading(_) => None,
        }
    }
}

/// Copies a decrypted record to the reader's buffer if the goal has one, the rest to `plain`.
/// `plain` is bounded by what one read brought in: it only grows while `rx` or the read area
/// is decrypted, and the reader empties it before anything more is read.
fn deliver(goal: &mut Goal<'_, '_>, plain: &mut BytesMut, payload: &[u8]) {
    let rest = match goal {
        Goal::Read(buf) if plain.is_empty() => {
            let (now, later) = payload.split_at(buf.remaining().min(payload.len()));
            buf.put_slice(now);
            later
        }
        _ => payload,
    };
    if !rest.is_empty() {
        plain.extend_from_slice(rest);
    }
}

/// What one attempt to write into `tx` came to.
enum Fill {
    /// This many bytes were written.
    Wrote(usize),
    /// rustls needs this much room.
    Needs(usize),
    /// rustls refused.
    Failed(io::Error),
}

/// Appends what `fill` writes to `tx`, offering `room` bytes first and, if rustls says it needs
/// more, exactly what it asked for (rustls reports the size it needs and writes nothing then).
fn fill_tx(
    tx: &mut BytesMut,
    mut room: usize,
    mut fill: impl FnMut(&mut [u8]) -> Fill,
) -> io::Result<()> {
    let start = tx.len();
    for _ in 0..2 {
        if room > MAX_TX_STEP {
            break;
        }
        tx.resize(start + room, 0);
        let out = tx.get_mut(start..).unwrap_or_default();
        match fill(out) {
            Fill::Wrote(n) => {
                tx.truncate(start + n);
                return Ok(());
            }
            Fill::Needs(needed) if needed > room => room = needed,
            Fill::Needs(_) => break,
            Fill::Failed(e) => {
                tx.truncate(start);
                return Err(e);
            }
        }
    }
    tx.truncate(start);
    Err(io::Error::other("TLS output does not fit the record bound"))
}

fn encrypt_result(result: Result<usize, EncryptError>) -> Fill {
    match result {
        Ok(n) => Fill::Wrote(n),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Fill::Needs(required_size)
        }
        Err(e) => Fill::Failed(io::Error::other(e)),
    }
}

fn invalid_data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn failed() -> io::Error {
    invalid_data("the TLS connection failed earlier")
}

fn closed_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection during the TLS handshake",
    )
}
