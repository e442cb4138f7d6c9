//! The server, on top of everything else: binds listeners, builds what sessions read, and
//! drains on stop.
//!
//! [`Server::start`] is what `moat run` and the integration tests call: it loads the TLS files
//! (a broken one fails start before anything else, naming the file), starts (or connects to)
//! the broker segment, builds the sessions' environment (`session::Env`), binds every listener
//! (port 0 works; read the address back with [`Running::local_addr`]) and returns a handle
//! that gives out the policy and TLS handles `ops/reload.rs` reloads, and shuts down.
//!
//! Nothing below imports this module: sessions get their `Env`, listeners their `Shared`,
//! and the drain, the counters and the TLS material live in their own modules.

mod conn;
mod listener;
mod quic;
mod reload;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::admission::kernel::{KernelFilter, Relays};
use crate::admission::Gate;
use crate::broker::embedded::{self, EmbeddedBroker, EmbeddedOptions};
use crate::broker::link::AckPacer;
use crate::broker::BrokerTarget;
use crate::config::Listener as ListenerConfig;
use crate::config::{BrokerSettings, Config, TransportKind, WsSettings};
use crate::control::{self, Control, Request};
use crate::ops::fds;
use crate::policy::Policy;
use crate::session;
use crate::shutdown::DrainController;
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::tls::{self, Material, Profile};
use crate::transport::{MaterialError, TlsState};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("listener {name} could not bind {addr}: {source}")]
    Bind {
        /// Listener name from the config.
        name: String,
        /// Address it tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS material is missing or unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener's TLS (or QUIC) configuration could not be built from the material.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] embedded::EmbeddedError),
    /// The external broker's TLS or password files are unusable.
    #[error(transparent)]
    Upstream(#[from] crate::broker::UpstreamError),
    /// The connection cap moat.yaml set does not fit the file descriptor limit.
    #[error(transparent)]
    Descriptors(#[from] fds::FdError),
    /// The admin listener could not start (bind, TLS files, token file).
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The password verifier threads could not start.
    #[error("password verification could not start: {0}")]
    Passwords(std::io::Error),
}

/// What the listeners and the connection tasks share: read-mostly, swapped atomically on
/// reload. Sessions get only `session`.
pub(crate) struct Shared {
    /// The validated configuration this server started with.
    pub(crate) config: Arc<Config>,
    /// The policy in force; a reload swaps the pointer (shared with admission and sessions).
    pub(crate) policy: Arc<ArcSwap<Policy>>,
    /// Admission: network rules, bans, connection rates and caps (every listener asks it).
    pub(crate) gate: Arc<Gate>,
    /// Where authorized sessions go.
    pub(crate) broker: BrokerTarget,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// The TLS material in force: listeners' handshake configurations and revoked certificates.
    pub(crate) tls: Arc<TlsState>,
    /// Acknowledges what broker sockets received, once per tick for every session.
    pub(crate) acks: Arc<AckPacer>,
    /// What every session reads.
    pub(crate) session: Arc<session::Env>,
}

/// Entry point: see the module docs.
pub struct Server;

/// A started server.
pub struct Running {
    shared: Arc<Shared>,
    listeners: Vec<(String, SocketAddr)>,
    /// The live sessions.
    registry: Arc<session::Registry>,
    /// Runtime control (the admin routes hold it).
    control: Arc<Control>,
    /// What the control asks of the serve loop (taken once by it).
    requests: Option<tokio::sync::mpsc::Receiver<Request>>,
    drain: DrainController,
    /// Connections admitted at once: moat.yaml's cap, or fewer when the descriptor limit holds
    /// fewer (`ops::fds`).
    max_connections: usize,
    /// The admin listener's bound address, and the sender whose drop stops it (after the
    /// drain, so `/readyz` answers 503 while sessions leave).
    admin: Option<(String, tokio::sync::oneshot::Sender<()>)>,
    /// The admin listener's bearer token, read again on reload; `None` without
    /// `admin.token_file`.
    admin_token: Option<Arc<crate::admin::LiveToken>>,
    /// Listeners bound, broker reachable, not draining (`/readyz`).
    ready: Arc<crate::admin::Readiness>,
    /// Kept alive for as long as the server runs; dropping it stops the broker's listeners.
    _embedded: Option<EmbeddedBroker>,
}

// === impl Server ===

impl Server {
    /// Starts the broker segment and every listener.
    pub async fn start(config: Config, policy: Policy) -> Result<Running, StartError> {
        let config = Arc::new(config);
        // Before anything opens a socket: a cap that does not fit is refused or lowered here,
        // never discovered at EMFILE.
        let max_connections = descriptor_plan(&config)?.max_connections;
        // Before the broker starts: a broken TLS file fails start at once, naming the file.
        let drain = DrainController::new();
        let tls_state = Arc::new(TlsState::new(&config, drain.epoch()));
        let material = match config.listeners.iter().any(|l| l.kind != TransportKind::Ws) {
            true => Some(tls_state.load()?),
            false => None,
        };
        let (target, embedded) = match &config.broker {
            BrokerSettings::Embedded {
                bind,
                bind_v5,
                link,
                ..
            } => {
                let broker = start_embedded(EmbeddedOptions {
                    bind_v3: *bind,
                    bind_v5: *bind_v5,
                    link: *link,
                    max_packet_size: config.limits.max_packet_size,
                    // Sized to the cap in force (after the descriptor plan), not to a default:
                    // rumqttd reserves its tables for this many at start.
                    max_connections: config
                        .broker
                        .embedded_capacity(max_connections)
                        .unwrap_or(max_connections),
                })
                .await?;
                (broker.target.clone(), Some(broker))
            }
            BrokerSettings::Upstream(upstream) => (BrokerTarget::external(upstream)?, None),
        };
        let stats = Arc::new(Stats::default());
        let passwords = crate::authn::Passwords::start(
            &config.passwords,
            policy.password_memory_blocks(),
            stats.password_verifications.clone(),
        )
        .map_err(StartError::Passwords)?;
        let policy = Arc::new(ArcSwap::from_pointee(policy));
        let gate = Arc::new(Gate::new(policy.clone(), max_connections));
        let acks = Arc::new(AckPacer::new());
        let registry = Arc::new(session::Registry::new(drain.epoch()));
        let (control, requests) = Control::new(
            registry.clone(),
            gate.clone(),
            policy.clone(),
            config.drain.period,
        );
        let control = Arc::new(control);
        let session = Arc::new(session::Env::new(
            &config,
            session::EnvParts {
                policy: policy.clone(),
                admission: gate.clone(),
                broker: target.clone(),
                acks: acks.clone(),
                passwords,
                stats: stats.clone(),
                tls: tls_state.clone(),
                registry: registry.clone(),
            },
        ));
        let shared = Arc::new(Shared {
            config: config.clone(),
            policy,
            gate,
            broker: target,
            stats,
            tls: tls_state,
            acks,
            session,
        });
        let mut stop = drain.drain();
        let housekeeping = shared.clone();
        // The gate's housekeeping (ban expiry, table cleaning, memory sampling, aggregated
        // refusal log); owned by the drain: it ends when shutdown is signalled.
        tokio::spawn(async move { housekeeping.gate.housekeep(stop.signalled()).await });
        let acks = shared.acks.clone();
        let mut stop = drain.drain();
        // The ACK pacer (`broker/link.rs`); owned by the drain like the housekeeping.
        tokio::spawn(async move { acks.run(stop.signalled()).await });
        // Before the front doors: a broken admin section fails start before any client is
        // accepted, and `/readyz` answers "listeners not bound" until the last one is.
        let ready = Arc::new(readiness(&config, &shared.broker, &drain));
        let (admin, admin_token) = match &config.admin {
            None => (None, None),
            Some(settings) => {
                let (addr, stop, token) =
                    start_admin(settings, &shared, ready.clone(), control.clone()).await?;
                (Some((addr, stop)), token)
            }
        };
        let mut bound = Vec::new();
        let mut kernel = KernelFilter::default();
        for l in &config.listeners {
            let local = match (l.kind, &material) {
                (TransportKind::Quic, Some(material)) => {
                    let listener = bind_quic(l, material, shared.clone())?;
                    let local = listener
                        .endpoint
                        .local_addr()
                        .map_err(|source| bind_err(l, source))?;
                    // Owned by the drain: the accept loop ends when shutdown is signalled.
                    tokio::spawn(listener.run(drain.drain()));
                    local
                }
                (_, material) => {
                    let listener = tcp_listener(l, &config, &shared, material.as_ref()).await?;
                    let local = listener
                        .socket
                        .local_addr()
                        .map_err(|source| bind_err(l, source))?;
                    if config.limits.kernel_filter {
                        let socket = socket2::SockRef::from(&listener.socket);
                        if let Err(error) = kernel.add(listener.name.clone(), relays(l), socket) {
                            tracing::warn!(listener = %l.name, %error, "no kernel filter on this listener; the user-space gate refuses alone");
                        }
                    }
                    // Owned by the drain: the accept loop ends when shutdown is signalled.
                    tokio::spawn(listener.run(drain.drain()));
                    local
                }
            };
            tracing::info!(listener = %l.name, kind = l.kind.as_str(), addr = %local, "listening");
            bound.push((l.name.clone(), local));
        }
        if config.limits.kernel_filter {
            kernel.refresh(&shared.policy.load(), &shared.gate);
            let (gate, policy) = (shared.gate.clone(), shared.policy.clone());
            let mut stop = drain.drain();
            // The kernel filters' keeper (`admission/kernel`); owned by the drain like the
            // housekeeping. It holds a duplicate of every listening socket, so it must let go
            // when the listeners stop accepting (drain start), not at shutdown: until then the
            // kernel would go on completing handshakes on a socket nobody accepts from.
            tokio::spawn(async move { kernel.run(gate, policy, stop.stop_accepting()).await });
        }
        ready.listeners_bound();
        Ok(Running {
            shared,
            listeners: bound,
            registry,
            control,
            requests: Some(requests),
            drain,
            max_connections,
            admin,
            admin_token,
            ready,
            _embedded: embedded,
        })
    }
}

/// What `/readyz` checks: the embedded broker's supervisor flag, or a cached probe of the
/// upstream broker.
fn readiness(
    config: &Config,
    broker: &BrokerTarget,
    drain: &DrainController,
) -> crate::admin::Readiness {
    use crate::admin::ready::BrokerCheck;
    let check = match &config.broker {
        BrokerSettings::Embedded { .. } => BrokerCheck::Embedded(broker.health.clone()),
        BrokerSettings::Upstream(_) => BrokerCheck::upstream(broker.v3.clone(), broker.v5.clone()),
    };
    crate::admin::Readiness::new(drain.state(), check)
}

/// Binds the admin listener and spawns its accept loop; returns its address, the sender whose
/// drop stops it, and its bearer token (for reload).
async fn start_admin(
    settings: &crate::config::AdminSettings,
    shared: &Arc<Shared>,
    ready: Arc<crate::admin::Readiness>,
    control: Arc<Control>,
) -> Result<AdminStarted, StartError> {
    let state = crate::admin::AdminState {
        stats: shared.stats.clone(),
        gate: shared.gate.clone(),
        policy: shared.policy.clone(),
        ready,
        metrics: Arc::new(crate::admin::metrics::Metrics::new(
            shared.stats.clone(),
            shared.gate.clone(),
            shared.tls.clone(),
        )),
        control,
    };
    let listener = crate::admin::AdminListener::bind(settings, state).await?;
    let addr = listener.local_addr().to_owned();
    let token = listener.token();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    // Owned by `Running` through `stop`: the accept loop ends when it is dropped.
    tokio::spawn(listener.run(stopped));
    Ok((addr, stop, token))
}

/// What [`start_admin`] hands back: address, stop sender, token.
type AdminStarted = (
    String,
    tokio::sync::oneshot::Sender<()>,
    Option<Arc<crate::admin::LiveToken>>,
);

/// Raises the soft descriptor limit to the hard one and decides the connection cap that fits it
/// (`ops::fds::plan`): lowered with a warning when the cap is moat.yaml's default, an error when
/// moat.yaml set it.
fn descriptor_plan(config: &Config) -> Result<fds::Plan, StartError> {
    let limit = match fds::raise_limit() {
        Ok(soft) => soft,
        Err(error) => {
            let soft = fds::limits().map(|(soft, _)| soft);
            tracing::warn!(%error, "cannot raise the file descriptor limit");
            // Not knowing the limit at all is no reason to refuse start; EMFILE is then
            // handled by the accept back-off alone, as before.
            soft.unwrap_or(u64::MAX)
        }
    };
    let plan = fds::plan(fds::Demand::of(config), limit)?;
    if let Some(warning) = plan.warning() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        max_connections = plan.max_connections,
        fd_limit = plan.limit,
        fds_needed = plan.needed,
        "connection cap"
    );
    Ok(plan)
}

/// Whom a TCP listener admits as relays whatever the rules say (the server's accept loop:
/// `Gate::admit_relay`), so its kernel filter lets them through too.
fn relays(l: &ListenerConfig) -> Relays {
    let mut relays = l
        .proxy
        .as_ref()
        .map(|p| p.trusted.clone())
        .unwrap_or_default();
    if let Some(ws) = &l.ws {
        relays.extend(ws.trusted_proxies.iter().copied());
    }
    relays
}

fn bind_err(l: &ListenerConfig, source: std::io::Error) -> StartError {
    StartError::Bind {
        name: l.name.clone(),
        addr: l.bind,
        source,
    }
}

/// Binds a TCP listener and builds what it runs in front of the session (`material`: the TLS
/// files, for every kind but plain WebSocket).
async fn tcp_listener(
    l: &ListenerConfig,
    config: &Config,
    shared: &Arc<Shared>,
    material: Option<&Material>,
) -> Result<listener::Listener, StartError> {
    let socket = TcpListener::bind(l.bind)
        .await
        .map_err(|source| bind_err(l, source))?;
    let name: Arc<str> = Arc::from(l.name.as_str());
    Ok(listener::Listener {
        stats: shared.stats.add_listener(name.clone(), l.kind.as_str()),
        name,
        socket,
        front: front(l, config, &shared.tls, material)?,
        proxy: l.proxy.clone().map(Arc::new),
        shared: shared.clone(),
    })
}

/// What a TCP listener runs in front of the session.
fn front(
    l: &ListenerConfig,
    config: &Config,
    tls: &TlsState,
    material: Option<&Material>,
) -> Result<listener::Front, StartError> {
    let ws = || {
        Arc::new(
            l.ws.clone()
                .unwrap_or_else(|| WsSettings::defaults(config.limits.max_packet_size)),
        )
    };
    let handshakes = |profile| match material {
        Some(material) => Ok(tls.add_tcp(l, profile, material)?),
        None => Err(StartError::Tls(tls::TlsError::Config(format!(
            "listener {} needs the tls: files",
            l.name
        )))),
    };
    Ok(match (l.kind, l.alpn_routing) {
        (TransportKind::Ws, _) => listener::Front::Ws(ws()),
        (TransportKind::Tls | TransportKind::Wss, true) => {
            listener::Front::Routed(handshakes(Profile::Routed)?, ws())
        }
        (TransportKind::Wss, false) => listener::Front::Wss(handshakes(Profile::WebSocket)?, ws()),
        _ => listener::Front::Tls(handshakes(Profile::Mqtt)?),
    })
}

/// Binds a QUIC listener's UDP endpoint and registers it for TLS reloads.
fn bind_quic(
    l: &ListenerConfig,
    material: &Material,
    shared: Arc<Shared>,
) -> Result<quic::QuicListener, StartError> {
    let settings = l.quic.clone().unwrap_or_default();
    let server = shared.tls.quic_config(l, material)?;
    let endpoint = quinn::Endpoint::server(server, l.bind).map_err(|source| bind_err(l, source))?;
    shared.tls.add_quic(l, endpoint.clone());
    let name: Arc<str> = Arc::from(l.name.as_str());
    Ok(quic::QuicListener {
        stats: shared.stats.add_listener(name.clone(), l.kind.as_str()),
        name,
        endpoint,
        settings,
        shared,
    })
}

/// Starts the embedded broker; a port of 0 means "any free loopback port" (tests), which
/// rumqttd cannot report back, so moat picks one and retries if another process wins the race.
async fn start_embedded(mut opts: EmbeddedOptions) -> Result<EmbeddedBroker, StartError> {
    let pick_v3 = opts.bind_v3.port() == 0;
    let pick_v5 = opts.bind_v5.port() == 0;
    let mut attempts = 0;
    loop {
        // Probed on port 0 every time: a retry must not probe the port that was just lost.
        if pick_v3 {
            opts.bind_v3
                .set_port(free_port(SocketAddr::new(opts.bind_v3.ip(), 0))?);
        }
        if pick_v5 {
            opts.bind_v5
                .set_port(free_port(SocketAddr::new(opts.bind_v5.ip(), 0))?);
        }
        match embedded::start(opts.clone()).await {
            Err(embedded::EmbeddedError::Bind { .. }) if (pick_v3 || pick_v5) && attempts < 5 => {
                attempts += 1;
            }
            other => return Ok(other?),
        }
    }
}

fn free_port(addr: SocketAddr) -> Result<u16, StartError> {
    let probe = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
        name: "embedded broker".into(),
        addr,
        source,
    })?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| StartError::Bind {
            name: "embedded broker".into(),
            addr,
            source,
        })
}

// === impl Running ===

impl Running {
    /// The bound address of a listener (useful when the config said port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Every listener and its bound address.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The admin listener's bound address (`IP:PORT` or socket path), when `admin:` is set.
    pub fn admin_addr(&self) -> Option<&str> {
        self.admin.as_ref().map(|(addr, _)| addr.as_str())
    }

    /// Readiness as `/readyz` sees it.
    pub fn readiness(&self) -> &crate::admin::Readiness {
        &self.ready
    }

    /// Connections admitted at once (the policy's `max_total` may lower it further).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Where sessions go (tests use it to watch the broker directly).
    pub fn broker(&self) -> &BrokerTarget {
        &self.shared.broker
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.shared.gate.counters())
    }

    /// The automatic bans in force now (static bans are listed by `moat check`).
    pub fn active_bans(&self) -> Vec<crate::admission::BanInfo> {
        self.shared.gate.active_bans()
    }

    /// The admission gate (tests and the QUIC listener call it directly).
    pub fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// The policy in force: sessions load it for every decision, so a snapshot stored here
    /// applies from their next packet on (`ops::reload::reload` stores one).
    pub fn policy(&self) -> &ArcSwap<Policy> {
        &self.shared.policy
    }

    /// Counts a reload (policy or TLS files) for `/metrics`: every caller of `ops::reload`
    /// (signals, file watchers, the admin API) reports its outcome here.
    pub fn record_reload(&self, kind: crate::stats::ReloadKind, ok: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.shared.stats.record_reload(kind, ok, now);
    }

    /// Swaps in a new policy; sessions use it from their next decision on.
    pub fn reload_policy(&self, policy: Policy) {
        self.shared.policy.store(Arc::new(policy));
    }

    /// The TLS material in force (`TlsState::reload`, through `ops::reload::reload_tls`).
    pub fn tls(&self) -> &TlsState {
        &self.shared.tls
    }

    /// Runtime control: sessions, kicks, bans (what the admin routes call).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// What `moat ctl reload` and `moat ctl drain` ask of the serve loop; `None` after the
    /// first call.
    pub fn take_requests(&mut self) -> Option<tokio::sync::mpsc::Receiver<Request>> {
        self.requests.take()
    }

    /// Takes the live settings of a reloaded moat.yaml (`config::diff` says which; the caller
    /// passes the configuration in force with those fields updated).
    pub fn apply_settings(&self, config: &Config) {
        self.shared.session.set_settings(config);
        self.control.set_drain_period(config.drain.period);
    }

    /// The admin listener's bearer token (`admin.token_file`), when one is configured.
    pub(crate) fn admin_token(&self) -> Option<&crate::admin::LiveToken> {
        self.admin_token.as_deref()
    }

    /// Whether a drain or shutdown has started (`/readyz` answers 503).
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Live sessions now.
    pub fn live_sessions(&self) -> usize {
        self.registry.len()
    }

    /// The rolling-restart stop: listeners stop accepting (new connections are refused) and
    /// readiness turns false at once; live sessions are told to leave in batches over
    /// `drain.period` (MQTT 5: DISCONNECT 0x8B, or 0x9C with the Server Reference when
    /// `drain.server_reference` is set; 3.x: close); whatever is left then gets the shutdown
    /// ([`Self::shutdown`]). Returns false if some sessions had to be abandoned.
    /// `cut` ends the drain period early (a second SIGTERM): the shutdown follows at once.
    pub async fn drain(
        self,
        period: std::time::Duration,
        server_reference: Option<&str>,
        cut: impl std::future::Future<Output = ()>,
    ) -> bool {
        self.drain.start_draining();
        self.registry.set_moved_to(server_reference.map(Arc::from));
        tokio::select! {
            () = control::drain::run(&self.registry, period) => {}
            () = cut => tracing::warn!(left = self.registry.len(), "drain cut short; shutting down now"),
        }
        self.shutdown().await
    }

    /// Stops accepting, tells every session to close, waits up to the grace period, then stops
    /// the embedded broker. Returns false if some sessions had to be abandoned.
    pub async fn shutdown(self) -> bool {
        let grace = self.shared.config.timeouts.shutdown_grace;
        let clean = self.drain.shutdown(grace).await;
        drop(self.admin);
        drop(self._embedded);
        clean
    }
}
