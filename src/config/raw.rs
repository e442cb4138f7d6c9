//! The moat.yaml schema as serde sees it, and its validation into [`Config`].
//!
//! The raw structs mirror the file one to one (`deny_unknown_fields` everywhere, so a typo is an
//! error, never a silently ignored setting). Every value a later check may refuse is read as
//! `Spanned<…>` so the error can name its line and column; values that are only strings in YAML
//! (addresses, durations, sizes, paths) are parsed here rather than by serde so their messages
//! say what was expected. Nothing here reads files: paths are joined, not opened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::admin::RawAdmin;
use super::check::Check;
use super::error::{from_yaml, quoted, ConfigError, ConfigErrorKind as Kind, Position};
use super::listener::{ProxyProtocol, RawQuic, RawTransport, RawWs};
use super::{
    BrokerSettings, ClientCerts, Config, CrlExpired, DrainSettings, EmbeddedLink, Limits, Listener,
    LogFormat, LogSettings, PasswordSettings, Timeouts, TlsSettings, TlsVersion, TransportKind,
    UpstreamAddr, UpstreamCredentials, UpstreamSettings, UpstreamStrategy, UpstreamTls,
    DEFAULT_POLICIES,
};

/// Smallest `max_packet_size`: a CONNECT with modest credentials must still fit.
const MIN_PACKET_SIZE: u64 = 128;
/// Largest `max_packet_size`: MQTT allows 256 MiB, a proxy in front of constrained brokers
/// should not buffer anywhere near that per client.
const MAX_PACKET_SIZE: u64 = 16 * 1024 * 1024;
/// How long a broker address that failed is put last, unless moat.yaml says otherwise.
const DEFAULT_UPSTREAM_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// Most broker addresses one list may hold (every one may be tried for a session).
const MAX_UPSTREAM_ADDRESSES: usize = 64;
/// Longest `log.level`: a list of directives, not a document.
const MAX_LOG_LEVEL: usize = 1024;
/// Largest connection cap accepted (file descriptors run out long before).
const MAX_CONNECTIONS: u64 = 1_000_000;

/// The whole file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Required: a proxy with no front door is a mistake.
    #[schemars(with = "Vec<RawListener>")]
    listeners: Spanned<Vec<RawListener>>,
    tls: Option<RawTls>,
    #[schemars(with = "Option<RawBroker>")]
    broker: Option<Spanned<RawBroker>>,
    #[schemars(with = "Option<Vec<String>>")]
    policies: Option<Vec<Spanned<String>>>,
    /// Candidate policy files or folders judged beside `policies:` on live traffic and never
    /// enforced (the shadow policy).
    #[schemars(with = "Option<Vec<String>>")]
    shadow_policies: Option<Vec<Spanned<String>>>,
    timeouts: Option<RawTimeouts>,
    limits: Option<RawLimits>,
    passwords: Option<RawPasswords>,
    dev_certs: Option<bool>,
    log: Option<RawLog>,
    /// The admin listener (metrics, health, control); off when absent.
    #[schemars(with = "Option<RawAdmin>")]
    admin: Option<Spanned<RawAdmin>>,
    /// How a drain (SIGTERM, `moat ctl drain`) moves clients away.
    drain: Option<RawDrain>,
}

/// `drain:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    /// Over how long clients are told to leave, in batches (e.g. `30s`; `0s`: all at once).
    #[schemars(with = "Option<String>")]
    period: Option<Spanned<String>>,
    /// Another instance MQTT 5 clients are pointed to (DISCONNECT 0x9C with Server Reference).
    #[schemars(with = "Option<String>")]
    server_reference: Option<Spanned<String>>,
}

/// `listeners[]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawListener {
    #[schemars(with = "String")]
    name: Spanned<String>,
    #[schemars(with = "TransportKind")]
    kind: Spanned<TransportKind>,
    #[schemars(with = "String")]
    bind: Spanned<String>,
    /// `tls`/`wss` only: `mqtt` ALPN → raw MQTT, `http/1.1` or none → WebSocket.
    #[schemars(with = "Option<bool>")]
    alpn_routing: Option<Spanned<bool>>,
    /// `ws` only, and required there: plaintext must be asked for by name.
    #[schemars(with = "Option<bool>")]
    insecure_plaintext: Option<Spanned<bool>>,
    #[schemars(with = "Option<RawWs>")]
    ws: Option<Spanned<RawWs>>,
    #[schemars(with = "Option<RawQuic>")]
    quic: Option<Spanned<RawQuic>>,
    /// Overrides `tls.client_certs` for this listener (e.g. `none` on a browser-facing WSS).
    #[schemars(with = "Option<ClientCerts>")]
    client_certs: Option<Spanned<ClientCerts>>,
    /// `tls`/`wss`/`ws` only: the PROXY protocol version every connection must open with.
    #[schemars(with = "Option<ProxyProtocol>")]
    proxy_protocol: Option<Spanned<ProxyProtocol>>,
    /// Balancers whose PROXY header is believed; required with `proxy_protocol`.
    #[schemars(with = "Option<Vec<String>>")]
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `tls:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[schemars(with = "Option<String>")]
    cert: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    key: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    client_ca: Option<Spanned<String>>,
    #[schemars(with = "Option<ClientCerts>")]
    client_certs: Option<Spanned<ClientCerts>>,
    #[schemars(with = "Option<Vec<String>>")]
    crls: Option<Vec<Spanned<String>>>,
    crl_expired: Option<CrlExpired>,
    #[schemars(with = "Option<String>")]
    min_version: Option<Spanned<String>>,
    cert_identity: Option<bool>,
    username_must_match_cert: Option<bool>,
}

/// `broker:`: exactly one of the two.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    embedded: Option<RawEmbedded>,
    upstream: Option<RawUpstream>,
}

/// `broker.embedded:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawEmbedded {
    #[schemars(with = "Option<String>")]
    bind: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    bind_v5: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    max_connections: Option<Spanned<u64>>,
    link: Option<EmbeddedLink>,
}

/// `broker.upstream:`: one address, a list of them, or the full mapping.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(
    untagged,
    expecting = "broker.upstream: expected HOST:PORT, a list of them, or a mapping with only \
                 these keys: addresses (or v3 and v5), strategy (failover or round_robin), \
                 backoff, tls { ca, server_name, cert, key }, credentials { username or \
                 identity_as_username, password_file }"
)]
enum RawUpstream {
    Addresses(RawAddresses),
    Full(Box<RawUpstreamMap>),
}

/// One broker address or a list of them.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(
    untagged,
    expecting = "expected HOST:PORT or a list of HOST:PORT addresses"
)]
enum RawAddresses {
    One(#[schemars(with = "String")] Spanned<String>),
    List(#[schemars(with = "Vec<String>")] Spanned<Vec<Spanned<String>>>),
}

/// `broker.upstream:` as a mapping.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUpstreamMap {
    /// The same addresses for every MQTT version.
    addresses: Option<RawAddresses>,
    /// Addresses for MQTT 3.1.1 clients (the older per-version form).
    v3: Option<RawAddresses>,
    /// Addresses for MQTT 5 clients (defaults to `v3`).
    v5: Option<RawAddresses>,
    strategy: Option<UpstreamStrategy>,
    #[schemars(with = "Option<String>")]
    backoff: Option<Spanned<String>>,
    #[schemars(with = "Option<RawUpstreamTls>")]
    tls: Option<Spanned<RawUpstreamTls>>,
    #[schemars(with = "Option<RawCredentials>")]
    credentials: Option<Spanned<RawCredentials>>,
}

/// `broker.upstream.tls:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    #[schemars(with = "String")]
    ca: Spanned<String>,
    #[schemars(with = "Option<String>")]
    server_name: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    cert: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    key: Option<Spanned<String>>,
}

/// `broker.upstream.credentials:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[schemars(with = "Option<String>")]
    username: Option<Spanned<String>>,
    #[schemars(with = "Option<bool>")]
    identity_as_username: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    password_file: Option<Spanned<String>>,
}

/// `timeouts:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[schemars(with = "Option<String>")]
    tls_handshake: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    connect: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    upstream_connect: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    shutdown_grace: Option<Spanned<String>>,
}

/// `limits:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[schemars(with = "Option<String>")]
    max_packet_size: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    max_connections: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    max_keepalive: Option<Spanned<String>>,
    /// Drop denied and banned sources' SYNs in the kernel (a BPF socket filter); default true.
    kernel_filter: Option<bool>,
}

/// `passwords:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPasswords {
    #[schemars(with = "Option<String>")]
    queue_wait: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    cache: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    cache_entries: Option<Spanned<u64>>,
}

/// `log:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    /// Which events are logged, as `RUST_LOG` says it (`info`, `warn,moat=debug`); default
    /// `info`. Applied live on reload; `RUST_LOG`, when set, wins.
    #[schemars(with = "Option<String>")]
    level: Option<Spanned<String>>,
}

/// The JSON Schema of moat.yaml, from the types [`parse`] reads it into.
pub(super) fn schema() -> schemars::Schema {
    schemars::schema_for!(RawConfig)
}

/// Deserializes and validates; see [`super::parse`].
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let check = Check::new(path);
    let raw: Option<RawConfig> =
        from_yaml(text).map_err(|(position, message)| check.err(position, Kind::Yaml(message)))?;
    let raw = raw.ok_or_else(|| check.err(Position::UNKNOWN, Kind::Empty))?;
    check.config(raw)
}

// === impl Check (the whole file) ===

impl Check<'_> {
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let policies = match raw.policies {
            None => vec![self.base.join(DEFAULT_POLICIES)],
            Some(entries) => entries
                .iter()
                .map(|entry| self.path(entry, "policies[]"))
                .collect::<Result<_, _>>()?,
        };
        let shadow_policies = raw
            .shadow_policies
            .iter()
            .flatten()
            .map(|entry| self.path(entry, "shadow_policies[]"))
            .collect::<Result<_, _>>()?;
        let limits = match raw.limits {
            None => Limits::default(),
            Some(limits) => self.limits(&limits)?,
        };
        let tls = match raw.tls {
            None => TlsSettings::default_for_dir(self.base),
            Some(tls) => self.tls(tls)?,
        };
        let listeners = self.listeners(&raw.listeners, &limits, &tls)?;
        let admin = match &raw.admin {
            None => None,
            Some(admin) => Some(self.admin(admin, &listeners)?),
        };
        Ok(Config {
            listeners,
            admin,
            tls,
            broker: match raw.broker {
                None => BrokerSettings::default(),
                Some(broker) => self.broker(&broker)?,
            },
            policies,
            shadow_policies,
            timeouts: match raw.timeouts {
                None => Timeouts::default(),
                Some(timeouts) => self.timeouts(&timeouts)?,
            },
            limits,
            passwords: match raw.passwords {
                None => PasswordSettings::default(),
                Some(passwords) => self.passwords(&passwords)?,
            },
            dev_certs: raw.dev_certs.unwrap_or(false),
            log: match raw.log {
                None => LogSettings::default(),
                Some(log) => self.log(&log)?,
            },
            drain: match raw.drain {
                None => DrainSettings::default(),
                Some(drain) => self.drain(&drain)?,
            },
        })
    }

    fn listeners(
        &self,
        raw: &Spanned<Vec<RawListener>>,
        limits: &Limits,
        tls: &TlsSettings,
    ) -> Result<Vec<Listener>, ConfigError> {
        if raw.value.is_empty() {
            return Err(self.err_at(raw, Kind::NoListeners));
        }
        let mut listeners: Vec<(Listener, u32)> = Vec::with_capacity(raw.value.len());
        for entry in &raw.value {
            let name = &entry.name.value;
            if !valid_listener_name(name) {
                let found = quoted(name);
                return Err(self.err_at(&entry.name, Kind::InvalidListenerName { found }));
            }
            if let Some((_, first_line)) = listeners.iter().find(|(l, _)| &l.name == name) {
                let kind = Kind::DuplicateListener {
                    name: quoted(name),
                    first_line: *first_line,
                };
                return Err(self.err_at(&entry.name, kind));
            }
            let transport = RawTransport {
                name: &entry.name,
                kind: &entry.kind,
                alpn_routing: entry.alpn_routing.as_ref(),
                insecure_plaintext: entry.insecure_plaintext.as_ref(),
                ws: entry.ws.as_ref(),
                quic: entry.quic.as_ref(),
                client_certs: entry.client_certs.as_ref(),
                proxy_protocol: entry.proxy_protocol.as_ref(),
                trusted_proxies: entry.trusted_proxies.as_ref(),
            };
            let transport = self.transport(&transport, limits.max_packet_size, tls)?;
            let listener = Listener {
                name: name.clone(),
                kind: entry.kind.value,
                bind: self.socket_addr(&entry.bind, "listeners[].bind")?,
                alpn_routing: transport.alpn_routing,
                ws: transport.ws,
                quic: transport.quic,
                client_certs: transport.client_certs,
                proxy: transport.proxy,
            };
            listeners.push((listener, Position::of_spanned(&entry.name).line));
        }
        Ok(listeners
            .into_iter()
            .map(|(listener, _)| listener)
            .collect())
    }

    fn tls(&self, raw: RawTls) -> Result<TlsSettings, ConfigError> {
        let defaults = TlsSettings::default_for_dir(self.base);
        let client_certs = raw
            .client_certs
            .as_ref()
            .map(|m| m.value)
            .unwrap_or_default();
        let client_ca = match &raw.client_ca {
            None => None,
            Some(ca) => Some(self.path(ca, "tls.client_ca")?),
        };
        if let (Some(mode), None) = (&raw.client_certs, &client_ca) {
            if mode.value != ClientCerts::None {
                let mode_name = mode.value.as_str();
                return Err(self.err_at(mode, Kind::ClientCaRequired { mode: mode_name }));
            }
        }
        let crls = raw.crls.unwrap_or_default();
        if client_certs == ClientCerts::None {
            if let Some(ca) = &raw.client_ca {
                let kind = Kind::ClientCertsOff { field: "client_ca" };
                return Err(self.err_at(ca, kind));
            }
            if let Some(crl) = crls.first() {
                return Err(self.err_at(crl, Kind::ClientCertsOff { field: "crls" }));
            }
        }
        Ok(TlsSettings {
            cert: match &raw.cert {
                None => defaults.cert,
                Some(cert) => self.path(cert, "tls.cert")?,
            },
            key: match &raw.key {
                None => defaults.key,
                Some(key) => self.path(key, "tls.key")?,
            },
            client_ca,
            client_certs,
            crls: crls
                .iter()
                .map(|crl| self.path(crl, "tls.crls[]"))
                .collect::<Result<_, _>>()?,
            crl_expired: raw.crl_expired.unwrap_or_default(),
            min_version: match &raw.min_version {
                None => defaults.min_version,
                Some(version) => self.tls_version(version)?,
            },
            cert_identity: raw.cert_identity.unwrap_or(defaults.cert_identity),
            username_must_match_cert: raw
                .username_must_match_cert
                .unwrap_or(defaults.username_must_match_cert),
        })
    }

    fn tls_version(&self, raw: &Spanned<String>) -> Result<TlsVersion, ConfigError> {
        match raw.value.trim() {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => {
                let found = quoted(other);
                Err(self.err_at(raw, Kind::InvalidTlsVersion { found }))
            }
        }
    }

    fn broker(&self, raw: &Spanned<RawBroker>) -> Result<BrokerSettings, ConfigError> {
        match (&raw.value.embedded, &raw.value.upstream) {
            (Some(embedded), None) => self.embedded(embedded),
            (None, Some(upstream)) => self.upstream(raw, upstream),
            (None, None) => Err(self.err_at(raw, Kind::BrokerChoice { found: "neither" })),
            (Some(_), Some(_)) => Err(self.err_at(raw, Kind::BrokerChoice { found: "both" })),
        }
    }

    fn embedded(&self, raw: &RawEmbedded) -> Result<BrokerSettings, ConfigError> {
        let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let bind = match &raw.bind {
            None => loopback(1883),
            Some(bind) => self.loopback_addr(bind, "broker.embedded.bind")?,
        };
        let bind_v5 = match &raw.bind_v5 {
            None => loopback(1884),
            Some(bind_v5) => self.loopback_addr(bind_v5, "broker.embedded.bind_v5")?,
        };
        if bind == bind_v5 && bind.port() != 0 {
            let position = raw.bind_v5.as_ref().or(raw.bind.as_ref());
            let position = position.map(Position::of_spanned).unwrap_or_default();
            let addr = quoted(&bind.to_string());
            return Err(self.err(position, Kind::SameEmbeddedPorts { addr }));
        }
        let max_connections = match &raw.max_connections {
            None => None,
            Some(max) => Some(self.connections(max, "broker.embedded.max_connections")?),
        };
        Ok(BrokerSettings::Embedded {
            bind,
            bind_v5,
            max_connections,
            link: raw.link.unwrap_or_default(),
        })
    }

    fn timeouts(&self, raw: &RawTimeouts) -> Result<Timeouts, ConfigError> {
        let defaults = Timeouts::default();
        Ok(Timeouts {
            tls_handshake: self
                .timeout(&raw.tls_handshake, "timeouts.tls_handshake", false)?
                .unwrap_or(defaults.tls_handshake),
            connect: self
                .timeout(&raw.connect, "timeouts.connect", false)?
                .unwrap_or(defaults.connect),
            upstream_connect: self
                .timeout(&raw.upstream_connect, "timeouts.upstream_connect", false)?
                .unwrap_or(defaults.upstream_connect),
            shutdown_grace: self
                .timeout(&raw.shutdown_grace, "timeouts.shutdown_grace", true)?
                .unwrap_or(defaults.shutdown_grace),
        })
    }

    /// `log:`. The level is parsed here, as the logger will parse it on start or reload, so a
    /// typo is refused with its place instead of silently logging less (or everything).
    fn log(&self, raw: &RawLog) -> Result<LogSettings, ConfigError> {
        let level = match &raw.level {
            None => super::DEFAULT_LOG_LEVEL.to_owned(),
            Some(level) => {
                let text = level.value.trim();
                let invalid = |reason: String| {
                    let found = quoted(&level.value);
                    self.err_at(level, Kind::InvalidLogLevel { found, reason })
                };
                if text.is_empty() {
                    return Err(invalid("it is empty".into()));
                }
                if text.len() > MAX_LOG_LEVEL {
                    return Err(invalid(format!("longer than {MAX_LOG_LEVEL} bytes")));
                }
                super::log_filter(text).map_err(invalid)?;
                text.to_owned()
            }
        };
        Ok(LogSettings {
            format: raw.format.unwrap_or_default(),
            level,
        })
    }

    fn drain(&self, raw: &RawDrain) -> Result<DrainSettings, ConfigError> {
        let period = self
            .timeout(&raw.period, "drain.period", true)?
            .unwrap_or(DrainSettings::default().period);
        let server_reference = match &raw.server_reference {
            None => None,
            Some(r) => {
                let v = r.value.trim();
                if v.is_empty()
                    || v.len() > super::MAX_SERVER_REFERENCE
                    || v.chars().any(char::is_control)
                {
                    let found = quoted(&r.value);
                    return Err(self.err_at(r, Kind::InvalidServerReference { found }));
                }
                Some(v.to_owned())
            }
        };
        Ok(DrainSettings {
            period,
            server_reference,
        })
    }

    fn passwords(&self, raw: &RawPasswords) -> Result<PasswordSettings, ConfigError> {
        let defaults = PasswordSettings::default();
        let queue_wait = self
            .timeout(&raw.queue_wait, "passwords.queue_wait", false)?
            .unwrap_or(defaults.queue_wait);
        let cache = self
            .timeout(&raw.cache, "passwords.cache", true)?
            .unwrap_or(defaults.cache);
        let cache_entries = match &raw.cache_entries {
            None => defaults.cache_entries,
            Some(n) => self.connections(n, "passwords.cache_entries")?,
        };
        Ok(PasswordSettings {
            queue_wait,
            cache,
            cache_entries,
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let max_packet_size = match &raw.max_packet_size {
            None => defaults.max_packet_size,
            Some(size) => self.packet_size(size)?,
        };
        let max_connections = match &raw.max_connections {
            None => defaults.max_connections,
            Some(max) => self.connections(max, "limits.max_connections")?,
        };
        let max_keepalive = match &raw.max_keepalive {
            None => defaults.max_keepalive,
            Some(keepalive) => self.keepalive(keepalive)?,
        };
        Ok(Limits {
            max_packet_size,
            max_connections,
            max_connections_explicit: raw.max_connections.is_some(),
            max_keepalive,
            kernel_filter: raw.kernel_filter.unwrap_or(defaults.kernel_filter),
        })
    }

    fn keepalive(&self, raw: &Spanned<String>) -> Result<u16, ConfigError> {
        let field = "limits.max_keepalive";
        let duration = self.duration(raw, field)?;
        let seconds = u16::try_from(duration.as_secs()).ok().filter(|s| *s > 0);
        match seconds {
            Some(seconds) if duration.subsec_nanos() == 0 => Ok(seconds),
            _ => {
                let found = quoted(&raw.value);
                let expected = "whole seconds from 1s to 65535s (the MQTT keep-alive field)";
                Err(self.err_at(
                    raw,
                    Kind::DurationOutOfRange {
                        field,
                        found,
                        expected,
                    },
                ))
            }
        }
    }

    fn packet_size(&self, raw: &Spanned<String>) -> Result<usize, ConfigError> {
        let range = MIN_PACKET_SIZE..=MAX_PACKET_SIZE;
        self.size_in(raw, "limits.max_packet_size", range, "from 128B to 16MiB")
    }

    fn connections(&self, raw: &Spanned<u64>, field: &'static str) -> Result<usize, ConfigError> {
        match usize::try_from(raw.value) {
            Ok(max) if (1..=MAX_CONNECTIONS).contains(&raw.value) => Ok(max),
            _ => {
                let found = raw.value.to_string();
                let expected = "from 1 to 1000000";
                Err(self.err_at(
                    raw,
                    Kind::OutOfRange {
                        field,
                        found,
                        expected,
                    },
                ))
            }
        }
    }

    pub(super) fn socket_addr(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<SocketAddr, ConfigError> {
        raw.value.trim().parse().map_err(|_| {
            let found = quoted(&raw.value);
            self.err_at(raw, Kind::InvalidSocketAddr { field, found })
        })
    }

    /// An address for the embedded broker: it must be loopback (IPv4-mapped forms included).
    fn loopback_addr(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<SocketAddr, ConfigError> {
        let addr = self.socket_addr(raw, field)?;
        if !addr.ip().to_canonical().is_loopback() {
            let found = quoted(&raw.value);
            return Err(self.err_at(raw, Kind::NonLoopbackEmbedded { field, found }));
        }
        Ok(addr)
    }

    fn upstream(
        &self,
        broker: &Spanned<RawBroker>,
        raw: &RawUpstream,
    ) -> Result<BrokerSettings, ConfigError> {
        let field = "broker.upstream";
        let map = match raw {
            RawUpstream::Addresses(addresses) => {
                let v3 = self.upstream_addrs(addresses, field)?;
                return Ok(BrokerSettings::Upstream(UpstreamSettings {
                    v5: v3.clone(),
                    v3,
                    strategy: UpstreamStrategy::default(),
                    backoff: DEFAULT_UPSTREAM_BACKOFF,
                    tls: None,
                    credentials: UpstreamCredentials::default(),
                }));
            }
            RawUpstream::Full(map) => map,
        };
        let (v3, v5) = match (&map.addresses, &map.v3, &map.v5) {
            (Some(all), None, None) => {
                let all = self.upstream_addrs(all, "broker.upstream.addresses")?;
                (all.clone(), all)
            }
            (None, Some(v3), v5) => {
                let v3 = self.upstream_addrs(v3, "broker.upstream.v3")?;
                let v5 = match v5 {
                    None => v3.clone(),
                    Some(v5) => self.upstream_addrs(v5, "broker.upstream.v5")?,
                };
                (v3, v5)
            }
            (Some(_), _, _) => {
                let problem =
                    "give either 'addresses' (every MQTT version) or 'v3' and 'v5', not both";
                return Err(self.err_at(broker, Kind::UpstreamConflict { field, problem }));
            }
            (None, None, _) => {
                let problem =
                    "no broker address: expected 'addresses: [HOST:PORT, ...]' (or 'v3:')";
                return Err(self.err_at(broker, Kind::UpstreamConflict { field, problem }));
            }
        };
        let backoff = self
            .timeout(&map.backoff, "broker.upstream.backoff", true)?
            .unwrap_or(DEFAULT_UPSTREAM_BACKOFF);
        let tls = match &map.tls {
            None => None,
            Some(tls) => Some(self.upstream_tls(tls)?),
        };
        let credentials = match &map.credentials {
            None => UpstreamCredentials::default(),
            Some(credentials) => self.credentials(credentials)?,
        };
        Ok(BrokerSettings::Upstream(UpstreamSettings {
            v3,
            v5,
            strategy: map.strategy.unwrap_or_default(),
            backoff,
            tls,
            credentials,
        }))
    }

    fn upstream_addrs(
        &self,
        raw: &RawAddresses,
        field: &'static str,
    ) -> Result<Vec<UpstreamAddr>, ConfigError> {
        let entries = match raw {
            RawAddresses::One(one) => std::slice::from_ref(one),
            RawAddresses::List(list) => {
                if list.value.is_empty() {
                    let problem = "the address list is empty: expected at least one HOST:PORT";
                    return Err(self.err_at(list, Kind::UpstreamAddresses { field, problem }));
                }
                if list.value.len() > MAX_UPSTREAM_ADDRESSES {
                    let problem = "more than 64 addresses: put a balancer or a DNS name in front";
                    return Err(self.err_at(list, Kind::UpstreamAddresses { field, problem }));
                }
                list.value.as_slice()
            }
        };
        let mut addrs: Vec<UpstreamAddr> = Vec::with_capacity(entries.len());
        for entry in entries {
            let addr = self.upstream_addr(entry, field)?;
            if addrs.contains(&addr) {
                let problem = "the same address is listed twice";
                return Err(self.err_at(entry, Kind::UpstreamAddresses { field, problem }));
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    /// An external broker address: `HOST:PORT`, HOST an IP literal (not the unspecified
    /// address) or a DNS name, which is resolved at connect time (I/O is not this file's).
    fn upstream_addr(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<UpstreamAddr, ConfigError> {
        let bad = || {
            let found = quoted(&raw.value);
            self.err_at(raw, Kind::InvalidUpstreamAddr { field, found })
        };
        let text = raw.value.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return Err(bad());
            }
            return Ok(UpstreamAddr {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)?;
        // A DNS name by the rules certificates use (letters, digits, hyphens, dots); an IP
        // literal that did not parse with its port (`::1:1883`) is refused here too.
        if host.parse::<IpAddr>().is_ok() || !valid_host_name(host) {
            return Err(bad());
        }
        Ok(UpstreamAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn upstream_tls(&self, raw: &Spanned<RawUpstreamTls>) -> Result<UpstreamTls, ConfigError> {
        let field = "broker.upstream.tls";
        let tls = &raw.value;
        let server_name = match &tls.server_name {
            None => None,
            Some(name) => {
                let value = name.value.trim();
                let valid = value.parse::<IpAddr>().is_ok() || valid_host_name(value);
                if !valid {
                    let problem = "server_name is neither a DNS name nor an IP address";
                    return Err(self.err_at(name, Kind::UpstreamConflict { field, problem }));
                }
                Some(value.to_owned())
            }
        };
        let client_cert = match (&tls.cert, &tls.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                self.path(cert, "broker.upstream.tls.cert")?,
                self.path(key, "broker.upstream.tls.key")?,
            )),
            _ => {
                let problem = "a client certificate needs both 'cert' and 'key'";
                return Err(self.err_at(raw, Kind::UpstreamConflict { field, problem }));
            }
        };
        Ok(UpstreamTls {
            ca: self.path(&tls.ca, "broker.upstream.tls.ca")?,
            server_name,
            client_cert,
        })
    }

    fn credentials(
        &self,
        raw: &Spanned<RawCredentials>,
    ) -> Result<UpstreamCredentials, ConfigError> {
        let field = "broker.upstream.credentials";
        let creds = &raw.value;
        let password_file = match &creds.password_file {
            None => None,
            Some(file) => Some(self.path(file, "broker.upstream.credentials.password_file")?),
        };
        let identity = creds.identity_as_username.as_ref().is_some_and(|b| b.value);
        match (&creds.username, identity, password_file) {
            (Some(_), true, _) => {
                let problem = "give either 'username' or 'identity_as_username: true', not both";
                Err(self.err_at(raw, Kind::UpstreamConflict { field, problem }))
            }
            (Some(user), false, Some(password_file)) => {
                if user.value.is_empty() || user.value.len() > 256 || user.value.contains('\0') {
                    let problem = "username must be 1 to 256 characters, without NUL";
                    return Err(self.err_at(user, Kind::UpstreamConflict { field, problem }));
                }
                Ok(UpstreamCredentials::Fixed {
                    username: user.value.clone(),
                    password_file,
                })
            }
            (Some(_), false, None) => {
                let problem = "a fixed 'username' needs a 'password_file' (passwords are never written inline)";
                Err(self.err_at(raw, Kind::UpstreamConflict { field, problem }))
            }
            (None, true, Some(password_file)) => {
                Ok(UpstreamCredentials::IdentityWithPassword { password_file })
            }
            (None, true, None) => Ok(UpstreamCredentials::Identity),
            (None, false, _) => {
                let problem = "expected 'username' (one account for every session) or 'identity_as_username: true', with 'password_file'";
                Err(self.err_at(raw, Kind::UpstreamConflict { field, problem }))
            }
        }
    }
}

/// A DNS host name by RFC 1123: dot-separated labels of letters, digits and inner hyphens,
/// 1 to 63 characters each, 253 in all (no underscores: resolvers and certificates differ on
/// them, and a typo should fail here, not at the first connect).
fn valid_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Listener names appear in logs and metric labels: keep them plain.
fn valid_listener_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
