//! [`ServerTls`] on tokio-rustls (rustls' buffered `ServerConnection`): the fallback seam,
//! selected with the cargo feature `tls-buffered`.
//!
//! Same interface and the same observable behaviour as the unbuffered stream (the tests in
//! `tests.rs` hold both to it): the handshake's alert is sent before `accept` fails, a peer's
//! close_notify or a bare TCP close is end of stream, shutdown sends close_notify, a vectored
//! write becomes one record. What it costs: rustls keeps its receive buffer (4 KiB, more while
//! a record spans reads) for the connection's whole life.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A server-side TLS stream over `IO` (a TCP socket in moat) on tokio-rustls.
pub struct ServerTls<IO = TcpStream> {
    /// tokio-rustls' stream: the socket and rustls' buffered connection.
    inner: TlsStream<IO>,
    /// A read or write failed: every later one fails at once. tokio-rustls would read the
    /// socket again before it reports rustls' stored error, and wait for a peer that already
    /// sent garbage.
    failed: bool,
}

// === impl ServerTls ===

impl<IO: AsyncRead + AsyncWrite + Unpin> ServerTls<IO> {
    /// Runs the server handshake on `io` and returns the stream with the server name the client
    /// asked for (SNI). The caller bounds it in time. On failure the alert rustls chose has been
    /// sent (tokio-rustls writes it before it reports the error).
    pub async fn accept(
        config: Arc<ServerConfig>,
        io: IO,
    ) -> io::Result<(ServerTls<IO>, Option<String>)> {
        let inner = TlsAcceptor::from(config).accept(io).await?;
        let sni = inner.get_ref().1.server_name().map(str::to_owned);
        let failed = false;
        Ok((ServerTls { inner, failed }, sni))
    }

    /// What the handshake established: negotiated ALPN, verified client certificates.
    pub fn connection(&self) -> &CommonState {
        self.inner.get_ref().1
    }

    /// The socket.
    pub fn get_ref(&self) -> &IO {
        self.inner.get_ref().0
    }

    /// Notes a failed read or write, so that later ones fail without touching the socket.
    fn check<T>(&mut self, done: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &done {
            self.failed = true;
        }
        done
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the TLS connection has failed")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTls<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(failed()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            // A TCP close without close_notify (tokio-rustls: UnexpectedEof) is end of stream, as
            // on the unbuffered stream: MQTT has its own end (DISCONNECT), TLS truncation
            // cannot forge one.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            done => self.check(done),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTls<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.failed {
            return Poll::Ready(Err(failed()));
        }
        let done = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(done)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.failed {
            return Poll::Ready(Err(failed()));
        }
        let done = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(done)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
