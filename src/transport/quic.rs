//! MQTT over QUIC (quinn, ring): the EMQX-compatible single-stream mode.
//!
//! The client opens one bidirectional stream and sends the ordinary MQTT byte stream on it,
//! CONNECT first, nothing framed around it; that stream is the session's socket. Everything
//! that is not that one stream is refused by the transport parameters rather than by code: one
//! bidirectional stream (and none again once it is taken), no unidirectional streams, no
//! datagrams. A client that opens a second stream finds it blocked by the stream limit (a QUIC
//! stack that fails blocked opens, such as msquic, reports STREAM_LIMIT_REACHED; one that sends
//! on a stream anyway gets STREAM_LIMIT_ERROR and the connection is closed).
//!
//! TLS is the `tls:` section's material with TLS 1.3 only (QUIC has nothing older), ALPN `mqtt`
//! mandatory (rustls answers anything else with no_application_protocol), and no 0-RTT
//! (`max_early_data_size` 0, so quinn never accepts early data: replayed CONNECT + PUBLISH is
//! an attack). Connection migration is off: a connection is admitted for the address it came
//! from, and packets from any other address are dropped (catalogue §D.64).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tls::{self, Profile, TlsError};
use super::{peer_addr, Peer, TransportKind};
use crate::config::{QuicSettings, TlsSettings};

/// Connection attempts quinn keeps waiting for the accept loop; beyond this it refuses them.
const MAX_INCOMING: usize = 1024;
/// Bytes buffered for one connection attempt that has not been accepted yet.
const INCOMING_BUFFER: u64 = 64 * 1024;
/// Bytes buffered for all connection attempts not accepted yet.
const INCOMING_BUFFER_TOTAL: u64 = 16 * 1024 * 1024;
/// Most bytes moat queues towards one client before its writes wait.
const SEND_WINDOW: u64 = 1024 * 1024;

/// Application error codes moat closes QUIC connections with (the reason text says more).
pub mod code {
    use quinn::VarInt;
    /// The session ended normally.
    pub const DONE: VarInt = VarInt::from_u32(0);
    /// No stream was opened in time.
    pub const NO_STREAM: VarInt = VarInt::from_u32(1);
    /// The server is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(2);
}

/// Why a QUIC listener could not be configured or a connection did not become a session.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS material could not be turned into a QUIC configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// rustls has no TLS 1.3 suite QUIC can use for its Initial packets.
    #[error("QUIC configuration: {0}")]
    Config(String),
    /// The handshake did not finish in time.
    #[error("QUIC handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake failed (ALPN, certificate, version, closed by the peer, …).
    #[error("QUIC handshake failed: {0}")]
    Handshake(quinn::ConnectionError),
    /// The client did not open its MQTT stream in time.
    #[error("no MQTT stream opened within {0:?}")]
    NoStream(Duration),
    /// The connection ended before the stream was opened.
    #[error("QUIC connection ended before the MQTT stream: {0}")]
    Stream(quinn::ConnectionError),
}

/// The quinn server configuration for a QUIC listener with these TLS settings, from `material`
/// (the `tls:` files as loaded).
pub fn server_config(
    material: &tls::Material,
    tls: &TlsSettings,
    quic: &QuicSettings,
    max_packet_size: usize,
) -> Result<quinn::ServerConfig, QuicError> {
    let rustls = material.server_config(tls, Profile::Quic)?;
    let crypto =
        QuicServerConfig::try_from(rustls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    // Flow control bounds what a client can make moat buffer: about two maximal packets.
    let window = VarInt::from_u32(window_for(max_packet_size));
    let idle = quinn::IdleTimeout::try_from(quic.idle_timeout)
        .map_err(|e| QuicError::Config(format!("idle_timeout: {e}")))?;
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        .stream_receive_window(window)
        .receive_window(window)
        .send_window(SEND_WINDOW)
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(None);
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(Arc::new(transport))
        .migration(false)
        .max_incoming(MAX_INCOMING)
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
    Ok(config)
}

/// Receive window: room for two maximal packets, at least 64 KiB, at most 4 MiB.
fn window_for(max_packet_size: usize) -> u32 {
    let two = max_packet_size.saturating_mul(2);
    u32::try_from(two.clamp(64 * 1024, 4 * 1024 * 1024)).unwrap_or(4 * 1024 * 1024)
}

/// Finishes the handshake of an accepted connection attempt and waits for the client's MQTT
/// stream, each under its own deadline. Returns the stream, the peer, and the connection (the
/// caller closes it once the session is over). `revocable` as for `tls::accept`.
pub async fn accept(
    connecting: quinn::Connecting,
    listener: Arc<str>,
    handshake_deadline: Duration,
    stream_deadline: Duration,
    revocable: bool,
) -> Result<(QuicStream, Peer, Connection), QuicError> {
    let conn = tokio::time::timeout(handshake_deadline, connecting)
        .await
        .map_err(|_| QuicError::HandshakeTimeout(handshake_deadline))?
        .map_err(QuicError::Handshake)?;
    let data = conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok());
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    let (cert_cn, cert) = tls::leaf_identity(chain.as_deref().map(Vec::as_slice), revocable)?;
    let peer = Peer {
        addr: peer_addr(conn.remote_address()),
        listener,
        kind: TransportKind::Quic,
        sni: data.as_ref().and_then(|d| d.server_name.clone()),
        alpn: data.and_then(|d| d.protocol),
        cert_cn,
        cert,
        via: None,
    };
    let opened = tokio::time::timeout(stream_deadline, conn.accept_bi()).await;
    let (send, recv) = match opened {
        Err(_) => {
            conn.close(code::NO_STREAM, b"no MQTT stream opened in time");
            return Err(QuicError::NoStream(stream_deadline));
        }
        Ok(Err(e)) => return Err(QuicError::Stream(e)),
        Ok(Ok(pair)) => pair,
    };
    // Single-stream mode: the one stream is taken, and no credit for another is ever issued,
    // not even after this one closes.
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(0));
    Ok((QuicStream { send, recv }, peer, conn))
}

/// The client's one bidirectional stream as a duplex byte stream.
pub struct QuicStream {
    /// moat → client.
    send: SendStream,
    /// client → moat.
    recv: RecvStream,
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    /// Finishes the stream: the client reads to the end, then closes.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}
