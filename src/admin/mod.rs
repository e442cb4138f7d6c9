//! The admin listener: `GET /metrics`, `/healthz`, `/readyz`, and the runtime control routes,
//! over HTTP/1.1 on a loopback address, a Unix socket, or (with TLS and a bearer token) any
//! other address that is not a front door.
//!
//! ```text
//!  operator / Prometheus / load balancer
//!      │ TCP or Unix socket (loopback), or TLS + bearer token
//!      ▼
//!  admin::serve ── accept (permit first) ─► TLS (transport::ServerTls, deadline) ─► hyper HTTP/1
//!                                                        │ header deadline, size caps, lifetime cap
//!                                                        ▼
//!                                     auth::require ─► routes::router(AdminState)
//! ```
//!
//! Why it is its own module: it is the only HTTP server in moat and the only way in that is not
//! MQTT; it reads the server's handles ([`AdminState`]) but owns none of them. The HTTP itself
//! is hyper's (with axum's router), never hand-written. What it must not do: share a port with a
//! front door (`config/admin.rs` refuses that), wait on a peer without a deadline, or hold the
//! drain open: it keeps answering (`/readyz` 503) while sessions drain, and stops when the
//! server is dropped.
//!
//! Adding a route: write its handler in a file of this module and add it in
//! [`routes::router`]; a handler that changes state calls [`crate::ops::audit::admin_action`].

mod auth;
mod control;
pub(crate) mod metrics;
pub mod ready;
mod routes;
mod shadow;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::admission::Gate;
use crate::config::{AdminBind, AdminSettings, TlsSettings};
use crate::policy::Policy;
use crate::stats::Stats;
use crate::transport::tls::{Material, Profile, TlsError};
use crate::transport::ServerTls;

pub use auth::{LiveToken, Reread, Token, TokenError};
pub use ready::Readiness;

/// Longest TLS handshake on the admin port.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a request's head (per request, keep-alive included).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection, however busy: a scrape takes milliseconds.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head hyper buffers (its floor is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body any route reads.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address or socket could not be bound.
    #[error("admin listener could not bind {addr}: {source}")]
    Bind {
        /// Where it tried.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `admin.tls` files are missing or unusable.
    #[error("admin.tls: {0}")]
    Tls(#[from] TlsError),
    /// `admin.token_file` is missing or unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What the admin routes read and act on: handles into the running server, cloned per request.
/// Routes added later (runtime control) add their handles here.
#[derive(Clone)]
// `stats`, `gate` and `policy` are for the runtime-control routes (sessions, bans, reload) that
// build on this listener; until they land nothing reads them.
#[allow(dead_code)]
pub struct AdminState {
    /// Counters every part bumps; `/metrics` reads them.
    pub(crate) stats: Arc<Stats>,
    /// Admission: bans, rates, caps.
    pub(crate) gate: Arc<Gate>,
    /// The policy in force.
    pub(crate) policy: Arc<ArcSwap<Policy>>,
    /// Listeners bound, broker reachable, not draining.
    pub(crate) ready: Arc<Readiness>,
    /// What `/metrics` encodes beyond the counters (labels, gauges read at scrape time).
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Runtime control: sessions, kicks, bans, reload, drain (`admin/control.rs`).
    pub(crate) control: Arc<crate::control::Control>,
}

/// A bound admin listener, ready to [`AdminListener::run`].
pub struct AdminListener {
    socket: Socket,
    /// TLS configuration when `admin.tls` is set.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The routes, with auth in front.
    router: axum::Router,
    /// Admin connections served at once.
    permits: Arc<Semaphore>,
    /// Where it listens, as logged.
    local: String,
    /// The bearer token in force, when `admin.token_file` is set (reload reads it again).
    token: Option<Arc<LiveToken>>,
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

// === impl AdminListener ===

impl AdminListener {
    /// Loads the TLS files and token, binds, and logs the bound address (`listening`,
    /// `listener=admin`), as the front doors do.
    pub async fn bind(settings: &AdminSettings, state: AdminState) -> Result<Self, AdminError> {
        let (tls, token) = load_files(settings)?;
        let (socket, local, kind) = match &settings.bind {
            AdminBind::Tcp(addr) => {
                let bind_err = |source| AdminError::Bind {
                    addr: addr.to_string(),
                    source,
                };
                let socket = TcpListener::bind(addr).await.map_err(bind_err)?;
                let local = socket.local_addr().map_err(bind_err)?.to_string();
                let kind = if tls.is_some() { "https" } else { "http" };
                (Socket::Tcp(socket), local, kind)
            }
            AdminBind::Unix(path) => {
                let bind_err = |source| AdminError::Bind {
                    addr: path.display().to_string(),
                    source,
                };
                remove_stale_socket(path);
                let socket = UnixListener::bind(path).map_err(bind_err)?;
                // Owner and group only: on a Unix socket the file mode is the credential.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                    .map_err(bind_err)?;
                (Socket::Unix(socket), path.display().to_string(), "unix")
            }
        };
        tracing::info!(listener = %"admin", kind, addr = %local, "listening");
        let token = token.map(Arc::new);
        Ok(AdminListener {
            socket,
            tls,
            router: routes::router(state, token.clone()),
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            local,
            token,
        })
    }

    /// The bearer token in force, for reload to read its file again; `None` without
    /// `admin.token_file`.
    pub fn token(&self) -> Option<Arc<LiveToken>> {
        self.token.clone()
    }

    /// The bound address (`IP:PORT`, or the socket path).
    pub fn local_addr(&self) -> &str {
        &self.local
    }

    /// Accepts until `stop` fires or its sender is dropped. Spawned by the server, which owns
    /// the sender; each connection task ends within [`CONNECTION_LIFETIME`].
    pub async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = Duration::from_millis(5);
        loop {
            // The permit is taken before accepting, so the kernel's backlog holds what is over
            // the cap instead of moat.
            let permit = tokio::select! {
                _ = &mut stop => return,
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = &mut stop => return,
                a = self.accept() => a,
            };
            match accepted {
                Ok(io) => {
                    backoff = Duration::from_millis(5);
                    self.spawn(io, permit);
                }
                Err(error) => {
                    tracing::warn!(listener = "admin", %error, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match &self.socket {
            Socket::Tcp(l) => Accepted::Tcp(l.accept().await?.0),
            Socket::Unix(l) => Accepted::Unix(l.accept().await?.0),
        })
    }

    fn spawn(&self, io: Accepted, permit: OwnedSemaphorePermit) {
        // Who is calling, for the audit lines of the control routes.
        let caller = match &io {
            Accepted::Tcp(tcp) => tcp
                .peer_addr()
                .map_or_else(|_| "unknown".to_owned(), |a| a.to_string()),
            Accepted::Unix(_) => "unix".to_owned(),
        };
        let router = self
            .router
            .clone()
            .layer(axum::Extension(control::Caller(caller)));
        let tls = self.tls.clone();
        // One task per admin connection, owned by nobody: it ends when the client closes, or
        // at CONNECTION_LIFETIME at the latest, and releases its permit.
        tokio::spawn(async move {
            let _permit = permit;
            let served = tokio::time::timeout(CONNECTION_LIFETIME, async move {
                match (io, tls) {
                    (Accepted::Tcp(tcp), Some(tls)) => {
                        let handshake = tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            ServerTls::accept(tls, tcp),
                        );
                        match handshake.await {
                            Ok(Ok((stream, _sni))) => serve_http(stream, router).await,
                            Ok(Err(error)) => {
                                tracing::debug!(listener = "admin", %error, "TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::debug!(listener = "admin", "TLS handshake timed out")
                            }
                        }
                    }
                    (Accepted::Tcp(tcp), None) => serve_http(tcp, router).await,
                    (Accepted::Unix(unix), _) => serve_http(unix, router).await,
                }
            });
            if served.await.is_err() {
                tracing::debug!(
                    listener = "admin",
                    "admin connection cut at its lifetime cap"
                );
            }
        });
    }
}

/// Loads `admin.tls` and `admin.token_file` (what `moat check` checks, and start needs).
#[allow(clippy::type_complexity)] // a pair of options, named by the function
pub fn load_files(
    settings: &AdminSettings,
) -> Result<(Option<Arc<rustls::ServerConfig>>, Option<LiveToken>), AdminError> {
    let tls = match &settings.tls {
        None => None,
        Some(files) => {
            let tls = TlsSettings {
                cert: files.cert.clone(),
                key: files.key.clone(),
                ..TlsSettings::default_for_dir(std::path::Path::new(""))
            };
            // Profile::WebSocket: ALPN http/1.1 (or none), h2 and mqtt refused.
            Some(Material::load(&tls)?.server_config(&tls, Profile::WebSocket)?)
        }
    };
    let token = match &settings.token_file {
        None => None,
        Some(path) => Some(LiveToken::load(path)?),
    };
    Ok((tls, token))
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Serves HTTP/1.1 on one connection: request heads bounded in size and time.
async fn serve_http<IO>(io: IO, router: axum::Router)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .await;
    if let Err(error) = served {
        tracing::debug!(listener = "admin", %error, "admin connection ended with an error");
    }
}

/// Removes a socket file left by an earlier run: never a regular file (a typo in `admin.unix`
/// must not delete data), and never a socket someone still answers on (another moat: the bind
/// then fails, naming the path).
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let live = std::os::unix::net::UnixStream::connect(path).is_ok();
        if meta.file_type().is_socket() && !live {
            let _ = std::fs::remove_file(path);
        }
    }
}
