//! WebSocket frames ↔ MQTT byte stream: the adapter that lets the session read a WebSocket like
//! a socket. It works for either role (tungstenite masks a client's frames), so `moat-bench`
//! reads its WebSocket connections through it too.
//!
//! MQTT over WebSocket is just the MQTT byte stream cut into binary messages at arbitrary
//! points: a packet may span messages and a message may carry several packets
//! ([MQTT-6.0.0-2]), so the adapter only concatenates message payloads; the session's frame
//! reader finds the packet boundaries as it does for TLS. What the adapter enforces:
//! - binary messages only: a text message ends the connection with close code 1003
//!   ([MQTT-6.0.0-1]);
//! - a bounded run of messages that carry no MQTT byte (empty binary messages, pings, pongs), so
//!   a peer cannot keep the connection busy without ever sending MQTT (catalogue §D.57);
//! - the close code that explains the end (1003, 1009 too big, 1002 protocol, 1008 policy) is sent
//!   when the session shuts the stream down.
//!
//! Frame and message size limits, masking and fragment reassembly are tungstenite's (configured
//! by the upgrade); ping frames are answered by tungstenite.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Messages in a row without one MQTT byte before the connection is closed. Generous enough
/// for a client that sends WebSocket pings while idle between MQTT keep-alives.
const MAX_EMPTY_MESSAGES: u32 = 1024;

/// Most bytes of several packets joined into one outgoing message: one TLS record's worth, so
/// the frame and its header go out in one record.
const MAX_MESSAGE: usize = 16 * 1024 - 16;

/// Close reason for a text frame.
const TEXT_FRAME: &str = "MQTT-6.0.0-1: MQTT travels in binary frames only";

/// An upgraded WebSocket seen as one duplex byte stream.
pub struct WsBytes<S> {
    /// The upgraded connection.
    ws: WebSocketStream<S>,
    /// What is left of the binary message being read.
    pending: Bytes,
    /// The close frame to send on shutdown; set when reading found a violation.
    close_with: Option<CloseFrame>,
    /// Messages in a row that carried no MQTT byte.
    empty_run: u32,
    /// The read error found after bytes that were handed up first; the next read returns it.
    deferred: Option<io::Error>,
    /// The peer closed or the socket ended: reads return end of stream.
    ended: bool,
}

// === impl WsBytes ===

impl<S> WsBytes<S> {
    /// Wraps an upgraded WebSocket, server side (moat's listeners) or client side (moat-bench).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            close_with: None,
            empty_run: 0,
            deferred: None,
            ended: false,
        }
    }

    /// Remembers why the connection ends and returns the matching read error.
    fn violation(&mut self, code: CloseCode, reason: &'static str) -> io::Error {
        self.close_with = Some(CloseFrame {
            code,
            reason: reason.into(),
        });
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }

    fn count_empty(&mut self) -> Result<(), io::Error> {
        self.empty_run = self.empty_run.saturating_add(1);
        if self.empty_run > MAX_EMPTY_MESSAGES {
            return Err(self.violation(
                CloseCode::Policy,
                "too many WebSocket messages without MQTT data",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    /// Fills `buf` with as many messages as are ready: a client that sends one message per MQTT
    /// packet still hands the session a batch per read, as a TLS client's records do.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
            }
            if buf.remaining() == 0 || this.ended {
                return Poll::Ready(Ok(()));
            }
            let got = buf.filled().len() > start;
            let next = match Pin::new(&mut this.ws).poll_next(cx) {
                // What was read goes up now; the waker stays registered for the rest.
                Poll::Pending if got => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            };
            let outcome = match next {
                // The peer closed (tungstenite queued the close reply) or the socket ended.
                None | Some(Ok(Message::Close(_))) => {
                    this.ended = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Binary(bytes))) if !bytes.is_empty() => {
                    this.empty_run = 0;
                    this.pending = bytes;
                    Ok(())
                }
                // [MQTT-6.0.0-1] MQTT control packets are sent in binary data frames; a text
                // frame closes the connection.
                Some(Ok(Message::Text(_))) => {
                    Err(this.violation(CloseCode::Unsupported, TEXT_FRAME))
                }
                Some(Ok(_)) => this.count_empty(),
                Some(Err(e)) => Err(this.read_error(e)),
            };
            if let Err(e) = outcome {
                // The bytes before the violation are the session's; the error comes next.
                if got {
                    this.deferred = Some(e);
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl<S> WsBytes<S> {
    /// Maps a tungstenite read error to an I/O error and the close code that explains it.
    fn read_error(&mut self, e: WsError) -> io::Error {
        match e {
            WsError::Capacity(_) => self.violation(CloseCode::Size, "WebSocket message too big"),
            // Only a text frame is checked for UTF-8: it is the same violation as a valid one.
            WsError::Utf8(_) => self.violation(CloseCode::Unsupported, TEXT_FRAME),
            WsError::Protocol(_) => {
                self.violation(CloseCode::Protocol, "WebSocket protocol violation")
            }
            WsError::Io(io) => io,
            other => io::Error::other(other),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// One write is one binary message: the session's batch of packets (one read's worth)
    /// goes out as one frame, so one TLS record and one send instead of one per packet.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(write_error)?;
        let payload = join(bufs);
        let n = payload.len();
        let message = Message::Binary(payload);
        Pin::new(&mut this.ws)
            .start_send(message)
            .map_err(write_error)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.ws).poll_flush(cx).map_err(write_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.close_with.is_some() {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(write_error)?;
            let frame = this.close_with.take();
            Pin::new(&mut this.ws)
                .start_send(Message::Close(frame))
                .map_err(write_error)?;
        }
        Pin::new(&mut this.ws).poll_close(cx).map_err(write_error)
    }
}

/// The slices' bytes as one payload: whole slices up to [`MAX_MESSAGE`] bytes, and at least the
/// first non-empty slice whatever its size (a packet the session already bounded).
fn join(bufs: &[IoSlice<'_>]) -> Bytes {
    let mut slices = bufs.iter().filter(|b| !b.is_empty());
    let Some(first) = slices.next() else {
        return Bytes::new();
    };
    let (mut len, mut count) = (first.len(), 1);
    for b in slices {
        match len.checked_add(b.len()) {
            Some(sum) if sum <= MAX_MESSAGE => (len, count) = (sum, count + 1),
            _ => break,
        }
    }
    if count == 1 {
        return Bytes::copy_from_slice(first);
    }
    let mut out = BytesMut::with_capacity(len);
    for b in bufs.iter().filter(|b| !b.is_empty()).take(count) {
        out.extend_from_slice(b);
    }
    out.freeze()
}

fn write_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(io) => io,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    /// moat's side as `WsBytes` (server) and a raw client WebSocket over one in-memory pipe.
    async fn pair() -> (WsBytes<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsBytes::new(server), client)
    }

    #[tokio::test]
    async fn a_vectored_batch_goes_out_as_one_message() {
        let (mut moat, mut client) = pair().await;
        let parts: [&[u8]; 4] = [b"\x30\x03a", b"", b"\x30\x03b", b"\x30\x03c"];
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let n = moat.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 9);
        moat.flush().await.unwrap();
        let got = client.next().await.unwrap().unwrap();
        assert_eq!(
            got,
            Message::Binary(Bytes::from_static(b"\x30\x03a\x30\x03b\x30\x03c"))
        );
    }

    #[tokio::test]
    async fn a_batch_is_cut_at_the_message_cap_but_a_big_packet_goes_whole() {
        let big = vec![7u8; MAX_MESSAGE + 100];
        let small = [1u8; 10];
        let slices = [IoSlice::new(&small), IoSlice::new(&big)];
        assert_eq!(join(&slices).len(), 10);
        let slices = [IoSlice::new(&big), IoSlice::new(&small)];
        assert_eq!(join(&slices).len(), big.len());
        let (mut moat, _client) = pair().await;
        assert_eq!(moat.write_vectored(&[IoSlice::new(&[])]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_read_takes_every_message_that_is_ready() {
        let (mut moat, mut client) = pair().await;
        for p in [&b"\x30\x03a"[..], b"\x30\x03b", b"\x30\x03c"] {
            client
                .feed(Message::Binary(Bytes::from_static(p)))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let mut buf = [0u8; 64];
        let n = moat.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"\x30\x03a\x30\x03b\x30\x03c");
        // A buffer smaller than the messages keeps the rest for the next read.
        client
            .send(Message::Binary(Bytes::from_static(b"0123456789")))
            .await
            .unwrap();
        let mut small = [0u8; 4];
        assert_eq!(moat.read(&mut small).await.unwrap(), 4);
        assert_eq!(moat.read(&mut buf).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn bytes_before_a_text_frame_come_first_then_the_refusal_mqtt_6_0_0_1() {
        let (mut moat, mut client) = pair().await;
        client
            .feed(Message::Binary(Bytes::from_static(b"\x30\x03a")))
            .await
            .unwrap();
        client.feed(Message::text("hello")).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(moat.read(&mut buf).await.unwrap(), 3);
        let e = moat.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        moat.shutdown().await.unwrap();
        let Some(Ok(Message::Close(Some(frame)))) = client.next().await else {
            panic!("no close frame")
        };
        assert_eq!(frame.code, CloseCode::Unsupported);
    }

    #[tokio::test]
    async fn bytes_before_a_close_come_first_then_the_end() {
        let (mut moat, mut client) = pair().await;
        client
            .feed(Message::Binary(Bytes::from_static(b"\x30\x03a")))
            .await
            .unwrap();
        client.close(None).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(moat.read(&mut buf).await.unwrap(), 3);
        assert_eq!(moat.read(&mut buf).await.unwrap(), 0);
        assert_eq!(moat.read(&mut buf).await.unwrap(), 0);
    }
}
