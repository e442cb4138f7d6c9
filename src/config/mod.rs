//! moat.yaml: *where* moat listens, which TLS material it uses, which broker it guards, which
//! policy files it loads, and its timeouts and limits.
//!
//! Two layers: `raw` mirrors the file (serde, `deny_unknown_fields`, every value that a later
//! check may refuse kept with its line and column), and the validated [`Config`] here is what the
//! rest of the crate uses: addresses parsed, units converted, ranges checked, relative paths
//! joined to the config file's folder, defaults filled in. Parsing is pure: text and a path in,
//! `Config` or a `FILE:LINE:COLUMN` [`ConfigError`] out. Reading the file is `ops::load`'s job;
//! this module never touches the filesystem, the network or the clock. `raw.rs` validates the
//! whole file and `listener.rs` the per-listener transports, both through `check.rs` (one value
//! and its place).

mod admin;
mod check;
mod diff;
mod error;
mod listener;
mod raw;
pub mod units;

pub use diff::{diff, ConfigDiff};

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub(crate) use error::{from_yaml, quoted};
pub use error::{ConfigError, ConfigErrorKind, Position, SourceLocation};
pub(crate) use listener::normalise_origin;
pub use listener::{
    ProxyProtocol, ProxySettings, QuicSettings, Subprotocol, WsSettings, DEFAULT_QUIC_IDLE_TIMEOUT,
    DEFAULT_UPGRADE_TIMEOUT, DEFAULT_WS_PATH,
};

/// Parses and validates moat.yaml. `path` names the file in error messages, and its folder is
/// the base for relative paths (a pure join: nothing is read or checked on disk).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    raw::parse(text, path)
}

/// The JSON Schema of moat.yaml (`moat schema config`), generated from the types [`parse`]
/// deserializes into, so it cannot drift from what the loader accepts. It checks shapes and
/// words; values only the loader can judge (addresses, durations, sizes) are strings in it.
pub fn schema() -> schemars::Schema {
    raw::schema()
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Front doors, at least one, unique names.
    pub listeners: Vec<Listener>,
    /// The admin listener (metrics, health, runtime control); `None`: off.
    pub admin: Option<AdminSettings>,
    /// Server certificate, client-certificate policy and TLS versions, shared by TLS listeners.
    pub tls: TlsSettings,
    /// The broker moat guards: embedded on loopback, or an external upstream.
    pub broker: BrokerSettings,
    /// Policy files or folders (a folder means its `*.yaml`/`*.yml` files), already resolved.
    pub policies: Vec<PathBuf>,
    /// The shadow policy set: files or folders read like `policies:`, compiled and judged beside
    /// the enforced set on live traffic, never enforced (`policy/shadow.rs`). Empty: none.
    pub shadow_policies: Vec<PathBuf>,
    /// How long each phase of a connection may take.
    pub timeouts: Timeouts,
    /// Global caps on what a peer may consume.
    pub limits: Limits,
    /// Password verification: how long a CONNECT may wait for a verifier, and the success cache.
    pub passwords: PasswordSettings,
    /// Whether `moat run` may create missing development certificates (never in production).
    pub dev_certs: bool,
    /// Log output.
    pub log: LogSettings,
    /// How a drain (SIGTERM, `moat ctl drain`) moves clients away.
    pub drain: DrainSettings,
}

/// Longest `drain.server_reference`.
pub const MAX_SERVER_REFERENCE: usize = 1024;

/// `drain:`: a rolling restart's drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSettings {
    /// Over how long clients are told to leave, spread out (not all at once); 0 tells them all
    /// at once. Then the shutdown grace (`timeouts.shutdown_grace`) applies.
    pub period: Duration,
    /// Another instance MQTT 5 clients are pointed to (DISCONNECT 0x9C Use another server with
    /// a Server Reference); none: DISCONNECT 0x8B Server shutting down.
    pub server_reference: Option<String>,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            period: Duration::from_secs(30),
            server_reference: None,
        }
    }
}

// === impl Config ===

impl Config {
    /// The configuration the shipped `moat.yaml` describes, for a config file in `dir`: one TLS
    /// listener on 127.0.0.1:8883, WSS on 127.0.0.1:8443, QUIC on 127.0.0.1:14567, development certificates in `certs/`, optional client
    /// certificates, the embedded broker, and the policies in `policies/`.
    pub fn default_for_dir(dir: &Path) -> Self {
        let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let limits = Limits::default();
        Self {
            listeners: vec![
                Listener::new("mqtts", TransportKind::Tls, loopback(8883)),
                Listener {
                    ws: Some(WsSettings::defaults(limits.max_packet_size)),
                    ..Listener::new("wss", TransportKind::Wss, loopback(8443))
                },
                Listener {
                    quic: Some(QuicSettings::default()),
                    ..Listener::new("quic", TransportKind::Quic, loopback(14567))
                },
            ],
            admin: Some(AdminSettings::loopback(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                9100,
            ))),
            tls: TlsSettings {
                client_ca: Some(dir.join(DEFAULT_CLIENT_CA)),
                client_certs: ClientCerts::Optional,
                ..TlsSettings::default_for_dir(dir)
            },
            broker: BrokerSettings::default(),
            policies: vec![dir.join(DEFAULT_POLICIES)],
            shadow_policies: Vec::new(),
            timeouts: Timeouts::default(),
            limits,
            passwords: PasswordSettings::default(),
            dev_certs: true,
            log: LogSettings::default(),
            drain: DrainSettings::default(),
        }
    }
}

/// Default server certificate, relative to the config file's folder.
pub const DEFAULT_CERT: &str = "certs/server.crt";
/// Default server key, relative to the config file's folder.
pub const DEFAULT_KEY: &str = "certs/server.key";
/// The development CA that `moat run` creates next to the server certificate.
pub const DEFAULT_CLIENT_CA: &str = "certs/ca.crt";
/// Default policy folder, relative to the config file's folder.
pub const DEFAULT_POLICIES: &str = "policies/";

/// One front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique name, used in logs, metrics and audit lines.
    pub name: String,
    /// Which transport turns accepted sockets into a byte stream.
    pub kind: TransportKind,
    /// Address and port to listen on (UDP for `quic`, TCP for the others).
    pub bind: SocketAddr,
    /// `tls` and `wss` only: route each TLS connection by its ALPN, `mqtt` to raw MQTT and
    /// `http/1.1` (or none) to WebSocket, so devices and browsers share one port (443).
    pub alpn_routing: bool,
    /// WebSocket settings: set for `ws` and `wss` listeners and for routing `tls` listeners.
    pub ws: Option<WsSettings>,
    /// QUIC settings: set for `quic` listeners.
    pub quic: Option<QuicSettings>,
    /// Overrides `tls.client_certs` for this listener: e.g. `none` on a browser-facing WSS
    /// listener (a browser asked for a certificate prompts its user, or fails headless) next to
    /// `required` for devices on 8883.
    pub client_certs: Option<ClientCerts>,
    /// `proxy_protocol:` and `trusted_proxies:`: every connection must open with a PROXY
    /// protocol header from one of these balancers, and the header's address is the client's.
    pub proxy: Option<ProxySettings>,
}

// === impl Listener ===

impl Listener {
    /// A listener with no transport options (what a `tls` listener needs).
    pub fn new(name: &str, kind: TransportKind, bind: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            bind,
            alpn_routing: false,
            ws: None,
            quic: None,
            client_certs: None,
            proxy: None,
        }
    }

    /// The TLS settings this listener serves with (`tls:` plus its own `client_certs`).
    pub fn tls(&self, tls: &TlsSettings) -> TlsSettings {
        match self.client_certs {
            None => tls.clone(),
            Some(client_certs) => TlsSettings {
                client_certs,
                ..tls.clone()
            },
        }
    }
}

/// A front door: the transport of a listener, and of one connection (a `tls` listener with ALPN
/// routing serves `wss` connections too). More kinds may be added; match with a wildcard arm where that
/// matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TransportKind {
    /// MQTT over TLS (port 8883 by convention).
    Tls,
    /// MQTT over WebSocket over TLS (443 by convention, path `/mqtt`).
    Wss,
    /// MQTT over plain WebSocket: no encryption, so it must be enabled with
    /// `insecure_plaintext: true` (for a TLS-terminating proxy in front, or loopback tests).
    Ws,
    /// MQTT over QUIC (UDP 14567 by convention, ALPN `mqtt`, one bidirectional stream).
    Quic,
}

// === impl TransportKind ===

impl TransportKind {
    /// The spelling used in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Wss => "wss",
            Self::Ws => "ws",
            Self::Quic => "quic",
        }
    }
}

/// TLS material and client-certificate policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that signs client certificates; required unless `client_certs` is `none`.
    pub client_ca: Option<PathBuf>,
    /// Whether clients must, may or may not present a certificate.
    pub client_certs: ClientCerts,
    /// Certificate revocation lists (PEM or DER) checked against client certificates.
    pub crls: Vec<PathBuf>,
    /// What a CRL past its nextUpdate means for handshakes.
    pub crl_expired: CrlExpired,
    /// Oldest TLS version offered.
    pub min_version: TlsVersion,
    /// Whether a verified client certificate authenticates the client by its CN.
    pub cert_identity: bool,
    /// Whether a CONNECT username, when present next to a certificate, must equal its CN.
    pub username_must_match_cert: bool,
}

// === impl TlsSettings ===

impl TlsSettings {
    /// Defaults when moat.yaml has no `tls:` section: the development certificate paths, no
    /// client certificates, TLS 1.2 and up, certificate CN as identity.
    pub fn default_for_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(DEFAULT_CERT),
            key: dir.join(DEFAULT_KEY),
            client_ca: None,
            client_certs: ClientCerts::None,
            crls: Vec::new(),
            crl_expired: CrlExpired::default(),
            min_version: TlsVersion::default(),
            cert_identity: true,
            username_must_match_cert: false,
        }
    }
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientCerts {
    /// Never ask for a client certificate.
    #[default]
    None,
    /// Ask; verify one if presented; let clients without one authenticate otherwise.
    Optional,
    /// Refuse the TLS handshake without a valid client certificate.
    Required,
}

// === impl ClientCerts ===

impl ClientCerts {
    /// The spelling used in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// What a CRL past its nextUpdate means (`tls.crl_expired`). Either way moat logs it at ERROR
/// on every load, naming the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CrlExpired {
    /// Keep using it: what it revokes stays revoked, and certificates it does not list are
    /// admitted. The default: a CA that is late publishing must not lock every device out, and
    /// an expired list still refuses everything it names.
    #[default]
    Warn,
    /// Refuse every client certificate the expired CRL is responsible for (fail closed) until
    /// a current CRL is loaded.
    Refuse,
}

// === impl CrlExpired ===

impl CrlExpired {
    /// The spelling used in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Refuse => "refuse",
        }
    }
}

/// Oldest TLS version offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

// === impl TlsVersion ===

impl TlsVersion {
    /// The spelling used in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        }
    }
}

/// The broker segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSettings {
    /// rumqttd in-process, on loopback only (one listener per MQTT version).
    Embedded {
        /// MQTT 3.1.1 listener (loopback).
        bind: SocketAddr,
        /// MQTT 5 listener (loopback).
        bind_v5: SocketAddr,
        /// Connections the embedded broker is sized for; `None` (the default): moat's
        /// connection cap in force. rumqttd reserves its connection tables for this many at
        /// start, and drops connections above it without a CONNACK.
        max_connections: Option<usize>,
        /// How sessions reach it: in memory (the default) or through the loopback listeners.
        link: EmbeddedLink,
    },
    /// An external broker (or cluster) moat forwards to.
    Upstream(UpstreamSettings),
}

/// `broker.embedded.link`: how moat's sessions reach the embedded broker. Its loopback
/// listeners are bound either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddedLink {
    /// An in-process stream per session (the default): no socket, no system call per
    /// message, one descriptor per session (the client's).
    #[default]
    Memory,
    /// A loopback TCP connection per session to the broker's listener (three descriptors per
    /// session: the client's, moat's end and the broker's).
    Loopback,
}

// === impl EmbeddedLink ===

impl EmbeddedLink {
    /// The spelling used in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Loopback => "loopback",
        }
    }
}

/// `broker.upstream`: where an external broker is, how moat reaches it and what it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Addresses for MQTT 3.1.1 clients, in the operator's order (never empty).
    pub v3: Vec<UpstreamAddr>,
    /// Addresses for MQTT 5 clients (the same as `v3` unless `v5:` is given; never empty).
    pub v5: Vec<UpstreamAddr>,
    /// Which address a new session tries first.
    pub strategy: UpstreamStrategy,
    /// How long an address that failed is tried only after every other one.
    pub backoff: Duration,
    /// TLS toward the broker; `None` is plain TCP (an isolated segment).
    pub tls: Option<UpstreamTls>,
    /// What moat puts in the user name and password of its CONNECT.
    pub credentials: UpstreamCredentials,
}

/// One broker address: a host (IP literal or DNS name, resolved at connect) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// An IP literal or a DNS name; kept as written, for logs.
    pub host: String,
    /// Never 0.
    pub port: u16,
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How sessions are spread over several broker addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamStrategy {
    /// Always the first address that works, in the listed order (the default).
    #[default]
    Failover,
    /// Each new session starts at the next address.
    RoundRobin,
}

/// `broker.upstream.tls`: moat as a TLS client of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA certificates (PEM) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// Name the broker's certificate must carry (and SNI); defaults to each address's host.
    pub server_name: Option<String>,
    /// moat's client certificate chain (PEM) and its key, when the broker asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `broker.upstream.credentials`: the user name and password of moat's upstream CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamCredentials {
    /// The client's identity as user name, no password (a broker that trusts the segment).
    #[default]
    Identity,
    /// The client's identity as user name, the password read from a file.
    IdentityWithPassword {
        /// File whose first line is the password.
        password_file: PathBuf,
    },
    /// One user name and password for every session (the moat→broker leg's own account).
    Fixed {
        /// The user name.
        username: String,
        /// File whose first line is the password.
        password_file: PathBuf,
    },
}

// === impl BrokerSettings ===

impl BrokerSettings {
    /// How many connections the embedded broker is sized for when moat admits `cap`: the cap
    /// itself, or `broker.embedded.max_connections` when that is larger (never less: rumqttd
    /// drops what is above its limit without a CONNACK). `None` for an external broker.
    pub fn embedded_capacity(&self, cap: usize) -> Option<usize> {
        match self {
            Self::Embedded {
                max_connections, ..
            } => Some(max_connections.map_or(cap, |n| n.max(cap))),
            Self::Upstream(_) => None,
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self::Embedded {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883),
            bind_v5: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1884),
            max_connections: None,
            link: EmbeddedLink::default(),
        }
    }
}

/// How long each phase may take. Every await on peer input is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to a finished TLS handshake (slow-loris defence).
    pub tls_handshake: Duration,
    /// From a finished handshake to a complete CONNECT packet.
    pub connect: Duration,
    /// To open the broker connection for an authenticated client.
    pub upstream_connect: Duration,
    /// How long connections may drain after SIGTERM before they are cut.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            connect: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Global caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest MQTT packet accepted, checked on the fixed header before allocating.
    pub max_packet_size: usize,
    /// Concurrent client connections across all listeners.
    pub max_connections: usize,
    /// Whether moat.yaml set `max_connections` itself: a default that does not fit the file
    /// descriptor limit is lowered with a warning, a number the operator chose refuses start
    /// (`ops::fds`).
    pub max_connections_explicit: bool,
    /// Largest keep-alive (seconds) a client may ask for; larger requests are lowered.
    pub max_keepalive: u16,
    /// `limits.kernel_filter`: compile the denied networks and source bans into a socket filter
    /// on every TCP listener, so the kernel drops a refused source's SYN (`admission::kernel`).
    /// On by default; off, refused sources are accepted and reset by the user-space gate.
    pub kernel_filter: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_size: 256 * 1024,
            max_connections: 10_000,
            max_connections_explicit: false,
            max_keepalive: 3600,
            kernel_filter: true,
        }
    }
}

/// `passwords:`: the bounded password verification in front of the policy's hashes
/// (`src/authn/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordSettings {
    /// Longest a CONNECT waits in the queue for a verifier; past it (or with the queue full) the
    /// client gets CONNACK 0x03 / 0x88 Server unavailable.
    pub queue_wait: Duration,
    /// How long a successful verification of a user name and password is remembered (zero:
    /// never), so a reconnecting device does not pay a hash each time.
    pub cache: Duration,
    /// Most remembered successes at once.
    pub cache_entries: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            queue_wait: Duration::from_secs(2),
            cache: Duration::from_secs(60),
            cache_entries: 10_000,
        }
    }
}

/// `admin:`: the admin HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where it listens.
    pub bind: AdminBind,
    /// Its own server certificate and key; required off loopback.
    pub tls: Option<AdminTls>,
    /// The file holding the bearer token every request must carry; required off loopback.
    pub token_file: Option<PathBuf>,
    /// Admin connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

// === impl AdminSettings ===

impl AdminSettings {
    /// Plain HTTP on a loopback address, no token (the development default).
    pub fn loopback(addr: SocketAddr) -> Self {
        Self {
            bind: AdminBind::Tcp(addr),
            tls: None,
            token_file: None,
            max_connections: 16,
        }
    }
}

/// Where the admin listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBind {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path (created at start, removed first if a stale one is there).
    Unix(PathBuf),
}

/// `admin.tls:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
    /// Which events are logged: an `EnvFilter` directive list (`info`, `info,moat=debug`),
    /// checked at load. `RUST_LOG`, when set, is used instead.
    pub level: String,
}

/// `log.level` when moat.yaml does not say.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Always in front of `log.level`: the embedded broker and rustls speak only of trouble (their
/// info lines are per connection and say nothing an operator can act on). A directive for the
/// same target in `log.level` replaces these (`rumqttd=debug` turns rumqttd's debugging on).
pub const LOG_QUIET: &str = "rumqttd=warn,rumqttd::router::routing=off,rustls=warn";

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

// === impl LogSettings ===

impl LogSettings {
    /// The filter `level` describes, behind [`LOG_QUIET`]; an error says which directive is
    /// wrong. Pure: it parses, nothing is installed.
    pub fn filter(&self) -> Result<tracing_subscriber::EnvFilter, String> {
        log_filter(&self.level)
    }
}

/// See [`LogSettings::filter`].
pub(crate) fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(format!("{LOG_QUIET},{level}"))
        .map_err(|e| e.to_string())
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}
