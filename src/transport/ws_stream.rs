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

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Messages in a row without one MQTT byte before the connection is closed. Generous enough
/// for a client that sends WebSocket pings while idle between MQTT keep-alives.
const MAX_EMPTY_MESSAGES: u32 = 1024;

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
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let message = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                // The peer closed (tungstenite queued the close reply) or the socket ended.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Poll::Ready(Err(this.read_error(e))),
            };
            match message {
                Message::Binary(bytes) if !bytes.is_empty() => {
                    this.empty_run = 0;
                    this.pending = bytes;
                }
                // [MQTT-6.0.0-1] MQTT control packets are sent in binary data frames; a text
                // frame closes the connection.
                Message::Text(_) => {
                    return Poll::Ready(Err(this.violation(CloseCode::Unsupported, TEXT_FRAME)));
                }
                _ => this.count_empty()?,
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
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(write_error)?;
        // One write is one binary message: the session writes what one read produced at once.
        let message = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut this.ws)
            .start_send(message)
            .map_err(write_error)?;
        Poll::Ready(Ok(buf.len()))
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

fn write_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(io) => io,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other),
    }
}
