//! `moat tunnel`: plain TCP MQTT in on a local port, one QUIC connection out per TCP connection.
//!
//! A sidecar for devices and tools without a QUIC stack (mosquitto_pub, most MQTT libraries):
//! each accepted TCP connection gets its own QUIC connection to a moat QUIC listener, and the
//! MQTT bytes travel unchanged on the one bidirectional stream (EMQX single-stream mode). The
//! tunnel does not parse MQTT; moat does, at the other end.
//!
//! Bounded like the server: a cap on concurrent connections (refused at accept), deadlines on
//! name resolution, the QUIC handshake and opening the stream, and an idle timeout on the pipe.
//! Each direction copies through one fixed buffer, so a slow reader on one side stalls only its
//! own direction (QUIC flow control and TCP back-pressure do the rest).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::transport::quic;

/// Bytes copied per read in each direction.
const BUFFER: usize = 16 * 1024;
/// How long a finished pipe waits for the server to take the end of the stream.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the tunnel needs to run.
#[derive(Clone)]
pub struct TunnelOptions {
    /// Local TCP address to accept MQTT clients on.
    pub listen: SocketAddr,
    /// The moat QUIC listener, `HOST:PORT` (resolved for every connection).
    pub connect: String,
    /// TLS server name to verify the server certificate against.
    pub server_name: String,
    /// QUIC client configuration (see [`quic_client::client_config`](crate::transport::quic_client::client_config)).
    pub client: quinn::ClientConfig,
    /// Concurrent tunnelled connections; more are closed at accept.
    pub max_connections: usize,
    /// Deadline for resolving, the QUIC handshake and opening the stream together.
    pub connect_timeout: Duration,
    /// A pipe with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
}

/// Why the tunnel could not start or a connection could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The local port or the UDP socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// What was being bound.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--connect` did not resolve to an address.
    #[error("cannot resolve {target}: {reason}")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why.
        reason: String,
    },
    /// Resolving, the handshake or opening the stream took too long.
    #[error("QUIC connection to {0} timed out")]
    ConnectTimeout(String),
    /// The QUIC connection could not be set up.
    #[error("QUIC connection to {target}: {reason}")]
    Connect {
        /// The target as given.
        target: String,
        /// Why (handshake failure, refused, closed by the server, …).
        reason: String,
    },
    /// The pipe saw no bytes for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// Reading or writing either side failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A bound tunnel, ready to run.
pub struct Tunnel {
    listener: TcpListener,
    endpoint: quinn::Endpoint,
    opts: TunnelOptions,
}

// === impl Tunnel ===

impl Tunnel {
    /// Binds the local TCP port and a UDP socket of the target's address family. The target is
    /// resolved once here so a typo fails at start, not at the first client.
    pub async fn bind(opts: TunnelOptions) -> Result<Self, TunnelError> {
        let target = resolve(&opts.connect, None, opts.connect_timeout).await?;
        let local: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|source| TunnelError::Bind {
            addr: local,
            source,
        })?;
        endpoint.set_default_client_config(opts.client.clone());
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| TunnelError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            endpoint,
            opts,
        })
    }

    /// The bound local address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `stop` resolves, then closes every tunnelled connection.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let caps = Arc::new(Semaphore::new(self.opts.max_connections));
        let opts = Arc::new(self.opts);
        // Every pipe task lives in this set: it is owned by this loop and aborted when it ends.
        let mut pipes = JoinSet::new();
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                Some(_) = pipes.join_next(), if !pipes.is_empty() => continue,
                a = self.listener.accept() => a,
            };
            let (tcp, from) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = caps.clone().try_acquire_owned() else {
                tracing::warn!(peer = %from, "connection cap reached; closing");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let endpoint = self.endpoint.clone();
            let opts = opts.clone();
            pipes.spawn(async move {
                let _permit = permit;
                match carry(&endpoint, &opts, tcp).await {
                    Ok(()) => tracing::debug!(peer = %from, "tunnelled connection done"),
                    Err(e) => {
                        tracing::info!(peer = %from, error = %e, "tunnelled connection ended")
                    }
                }
            });
        }
        pipes.abort_all();
        self.endpoint
            .close(quic::code::SHUTDOWN, b"tunnel shutting down");
    }
}

/// Carries one TCP connection over a new QUIC connection.
async fn carry(
    endpoint: &quinn::Endpoint,
    opts: &TunnelOptions,
    tcp: TcpStream,
) -> Result<(), TunnelError> {
    let family = endpoint.local_addr().map(|a| a.is_ipv4()).ok();
    let setup = async {
        let addr = resolve(&opts.connect, family, opts.connect_timeout).await?;
        let connect_err = |reason: String| TunnelError::Connect {
            target: opts.connect.clone(),
            reason,
        };
        let conn = endpoint
            .connect(addr, &opts.server_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        Ok::<_, TunnelError>((conn, send, recv))
    };
    let (conn, mut send, recv) = tokio::time::timeout(opts.connect_timeout, setup)
        .await
        .map_err(|_| TunnelError::ConnectTimeout(opts.connect.clone()))??;
    let activity = Activity::new();
    let (mut tcp_rd, mut tcp_wr) = tcp.into_split();
    let mut recv = recv;
    let piped = tokio::try_join!(
        copy(&mut tcp_rd, &mut send, opts.idle_timeout, &activity),
        copy(&mut recv, &mut tcp_wr, opts.idle_timeout, &activity),
    );
    // The server stops or finishes reading once its session is over.
    let _ = tokio::time::timeout(CLOSE_GRACE, send.stopped()).await;
    conn.close(quic::code::DONE, b"done");
    piped.map(|_| ())
}

/// Copies one direction until end of stream, then passes the end on (TCP FIN ↔ QUIC FIN).
async fn copy<R, W>(
    rd: &mut R,
    wr: &mut W,
    idle: Duration,
    activity: &Activity,
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match tokio::time::timeout(idle, rd.read(&mut buf)).await {
            Ok(read) => read?,
            // Quiet here; the pipe is idle only if the other direction is quiet too.
            Err(_) if activity.idle_for() < idle => continue,
            Err(_) => return Err(TunnelError::Idle(idle)),
        };
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            let _ = tokio::time::timeout(idle, wr.shutdown()).await;
            return Ok(());
        };
        activity.touch();
        tokio::time::timeout(idle, wr.write_all(chunk))
            .await
            .map_err(|_| TunnelError::Idle(idle))??;
    }
}

/// When either direction of a pipe last moved a byte.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Resolves `HOST:PORT` under a deadline, preferring the given address family.
async fn resolve(
    target: &str,
    ipv4: Option<bool>,
    deadline: Duration,
) -> Result<SocketAddr, TunnelError> {
    let err = |reason: String| TunnelError::Resolve {
        target: target.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::time::timeout(deadline, tokio::net::lookup_host(target))
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?
        .collect();
    let wanted = addrs
        .iter()
        .find(|a| ipv4.is_none_or(|v4| a.is_ipv4() == v4));
    wanted
        .copied()
        .ok_or_else(|| err("no address of the tunnel's address family".into()))
}
