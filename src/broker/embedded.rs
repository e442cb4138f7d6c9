//! The embedded rumqttd: started in-process on moat's runtime, bound to loopback only.
//!
//! rumqttd serves MQTT 3.1.1 and 5.0 on separate listeners, so the segment is two loopback
//! ports. By default sessions do not use them: each hands rumqttd one end of an in-memory
//! stream through the listener's `Connector` (vendor/rumqttd/PATCHES.md §16), which starts the
//! same link task an accepted connection gets, with the same settings and password check; no
//! socket, no system call and no loopback TCP per message (`broker.embedded.link: loopback`
//! goes through the listeners instead). It is started through its `Router` + `Server` API (not
//! `Broker::start`, which swallows bind errors and blocks forever) so that a bind failure fails
//! `moat run`. Every connection must present a per-boot random password that only this process
//! knows; other local processes cannot use the broker directly. Its limits are set above
//! moat's own so moat always answers first (rumqttd drops connections without a CONNACK in
//! several error paths).
//!
//! rumqttd is treated as internal but fragile: a supervisor task watches the router thread and
//! the listener tasks, and when either dies it marks the target down so new clients get
//! "server unavailable" instead of a hang.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::task::JoinHandle;

use super::{BrokerTarget, Credentials, Health, MemoryLink, Route};
use crate::config::EmbeddedLink;

/// How often the supervisor looks at the broker's threads and tasks.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

/// Settings moat derives for the embedded broker.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Loopback address of the MQTT 3.1.1 listener.
    pub bind_v3: SocketAddr,
    /// Loopback address of the MQTT 5.0 listener.
    pub bind_v5: SocketAddr,
    /// moat's own max packet size; the broker's is set above it.
    pub max_packet_size: usize,
    /// moat's own connection cap; the broker's is set above it.
    pub max_connections: usize,
    /// Whether sessions go in memory or through the listeners.
    pub link: EmbeddedLink,
}

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The broker must never listen on a routable address.
    #[error("embedded broker address {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    /// The listener could not bind (port taken, permission).
    #[error("embedded broker could not listen on {addr}: {reason}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// rumqttd's error text.
        reason: String,
    },
    /// The OS refused a random number for the per-boot credentials.
    #[error("no randomness for the broker credentials")]
    Random,
}

/// A running embedded broker. Dropping it stops the listeners (the router thread of rumqttd has
/// no shutdown API and ends with the process).
pub struct EmbeddedBroker {
    /// What sessions connect to.
    pub target: BrokerTarget,
    /// The listener tasks and the supervisor; aborted on drop.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts rumqttd on the current tokio runtime and returns once both listeners are bound.
pub async fn start(opts: EmbeddedOptions) -> Result<EmbeddedBroker, EmbeddedError> {
    for addr in [opts.bind_v3, opts.bind_v5] {
        if !addr.ip().is_loopback() {
            return Err(EmbeddedError::NotLoopback(addr));
        }
    }
    let password: Arc<str> = Arc::from(random_secret()?);

    let router_cfg = RouterConfig {
        // Above moat's cap: rumqttd drops connections over its limit without a CONNACK.
        max_connections: opts.max_connections.saturating_add(64),
        max_outgoing_packet_count: 200,
        // The commitlog is kept per filter in memory: keep it small (1 MiB × 4 per filter).
        max_segment_size: (1024 * 1024).max(opts.max_packet_size.saturating_mul(2)),
        max_segment_count: 4,
        ..RouterConfig::default()
    };
    let router_tx = Router::new(0, router_cfg).spawn();

    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    let v3 = Server::new(
        server_settings("v3", opts.bind_v3, &opts, password.clone()),
        router_tx.clone(),
        rumqttd::protocol::v4::V4,
    );
    let v5 = Server::new(
        server_settings("v5", opts.bind_v5, &opts, password.clone()),
        router_tx.clone(),
        rumqttd::protocol::v5::V5,
    );
    // Taken from the servers the listeners run: one set of will handlers per MQTT version,
    // whichever way a session comes in.
    let memory = match opts.link {
        EmbeddedLink::Memory => Some(MemoryLink {
            v3: v3.connector(),
            v5: v5.connector(),
        }),
        EmbeddedLink::Loopback => None,
    };
    for handle in [bind(v3, opts.bind_v3).await?, bind(v5, opts.bind_v5).await?] {
        tasks.push(handle.abort_handle());
        listeners.push(handle);
    }

    let health = Arc::new(Health::default());
    let router_alive = {
        let tx = router_tx.clone();
        move || !tx.is_disconnected()
    };
    // The supervisor is owned by `EmbeddedBroker` and ends when it is dropped or the broker dies.
    tasks.push(tokio::spawn(supervise(listeners, router_alive, health.clone())).abort_handle());

    tracing::info!(
        v3 = %opts.bind_v3,
        v5 = %opts.bind_v5,
        max_connections = opts.max_connections,
        link = opts.link.as_str(),
        "embedded broker listening on loopback"
    );
    Ok(EmbeddedBroker {
        target: BrokerTarget {
            v3: Arc::new(Route::fixed(opts.bind_v3)),
            v5: Arc::new(Route::fixed(opts.bind_v5)),
            tls: None,
            credentials: Credentials::Identity(Some(password)).live(),
            health,
            memory,
        },
        tasks,
    })
}

fn server_settings(
    name: &str,
    addr: SocketAddr,
    opts: &EmbeddedOptions,
    password: Arc<str>,
) -> ServerSettings {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // rumqttd compares this with the remaining length: keep it above moat's limit so moat
        // refuses oversized packets first, with a reason code.
        max_payload_size: opts.max_packet_size.saturating_add(1024),
        max_inflight_count: 100,
        auth: None::<HashMap<String, String>>,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |_client_id, _user, pass: String| {
        let ok = constant_time_eq(pass.as_bytes(), password.as_bytes());
        async move { ok }
    });
    ServerSettings {
        name: format!("moat-embedded-{name}"),
        listen: addr,
        tls: None,
        // rumqttd sleeps this long after every accept: 0, or it caps moat's connect rate.
        next_connection_delay_ms: 0,
        connections,
    }
}

/// Binds a rumqttd listener and hands its accept loop to the runtime.
///
/// `Server::start` binds on its first poll and then loops forever, so polling it once tells a
/// bind failure (ready with an error) from a running listener (pending).
async fn bind<P>(server: Server<P>, addr: SocketAddr) -> Result<JoinHandle<String>, EmbeddedError>
where
    P: rumqttd::protocol::Protocol + Clone + Send + Sync + 'static,
{
    let mut server = server;
    let mut fut = Box::pin(async move {
        match server.start(LinkType::Remote).await {
            Ok(()) => "listener stopped".to_string(),
            Err(e) => e.to_string(),
        }
    });
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(reason) => Err(EmbeddedError::Bind { addr, reason }),
        // This task is owned by the supervisor, which aborts it when the broker is dropped.
        Poll::Pending => Ok(tokio::spawn(fut)),
    }
}

/// Watches the broker; on the first sign of death marks it down and says so, once.
async fn supervise(
    listeners: Vec<JoinHandle<String>>,
    router_alive: impl Fn() -> bool + Send + 'static,
    health: Arc<Health>,
) {
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        tick.tick().await;
        let listener_dead = listeners.iter().any(|l| l.is_finished());
        if listener_dead || !router_alive() {
            health.mark_down();
            tracing::error!(
                listener_dead,
                "embedded broker died: new clients get CONNACK server unavailable"
            );
            for l in &listeners {
                l.abort();
            }
            return;
        }
    }
}

fn random_secret() -> Result<String, EmbeddedError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EmbeddedError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
