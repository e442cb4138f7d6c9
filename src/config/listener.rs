//! Per-listener transport settings: WebSocket (`ws`, `wss`, ALPN routing) and QUIC.
//!
//! Separate from `raw.rs` because these options only make sense for some listener kinds, and the
//! rules for which kind may carry which block (and what plain `ws` must say to be allowed) are
//! one question of their own. Pure like the rest of `config/`: strings in, validated settings or
//! a located [`ConfigError`] out.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::Check;
use super::error::{quoted, ConfigError, ConfigErrorKind as Kind, Position};
use super::{ClientCerts, TlsSettings, TransportKind};

/// WebSocket path when none is configured (what EMQX, mosquitto and HiveMQ use).
pub const DEFAULT_WS_PATH: &str = "/mqtt";
/// How long a client has, after TLS (or TCP for plain `ws`), to finish the HTTP upgrade.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// QUIC idle timeout when none is configured: clients keep the connection alive with QUIC PINGs
/// or MQTT keep-alive below this.
pub const DEFAULT_QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes a WebSocket message may carry beyond one MQTT packet of `max_packet_size`: the largest
/// fixed header (1 + 4 bytes) plus a little room, so a maximal packet in one message fits.
const WS_MESSAGE_SLACK: usize = 8;
/// Largest WebSocket frame or message accepted in the config (the MQTT packet ceiling too).
const MAX_WS_SIZE: u64 = 16 * 1024 * 1024 + WS_MESSAGE_SLACK as u64;
/// Smallest WebSocket frame or message accepted (a CONNECT with modest credentials must fit).
const MIN_WS_SIZE: u64 = 128;

/// A WebSocket subprotocol moat can speak: both mean "MQTT bytes in binary frames".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subprotocol {
    /// `mqtt`: the name MQTT 3.1.1 and 5.0 register ([MQTT-6.0.0-3]).
    Mqtt,
    /// `mqttv3.1`: what some MQTT 3.1 era clients offer.
    MqttV31,
}

// === impl Subprotocol ===

impl Subprotocol {
    /// The token on the wire (`Sec-WebSocket-Protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::MqttV31 => "mqttv3.1",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "mqtt" => Some(Self::Mqtt),
            "mqttv3.1" => Some(Self::MqttV31),
            _ => None,
        }
    }
}

/// WebSocket settings of a `ws` or `wss` listener (or a `tls` listener that routes by ALPN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The one HTTP path that upgrades; any other path gets 404.
    pub path: String,
    /// Subprotocols accepted, in order of preference; a client offering none of them gets 400.
    pub subprotocols: Vec<Subprotocol>,
    /// Browser origins allowed (`https://app.example.com`). When not empty, an upgrade without
    /// an `Origin` header or with another origin is refused (fails closed). When empty, an
    /// upgrade carrying an `Origin` on a connection that proved a client certificate is refused
    /// (cross-site WebSocket hijacking with the victim's certificate).
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed. From anyone else the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest WebSocket frame accepted.
    pub max_frame_size: usize,
    /// Largest WebSocket message (all frames of one message) accepted.
    pub max_message_size: usize,
    /// Deadline for the HTTP upgrade request after the transport is up.
    pub upgrade_timeout: Duration,
}

// === impl WsSettings ===

impl WsSettings {
    /// Defaults for a server whose `limits.max_packet_size` is `max_packet_size`.
    pub fn defaults(max_packet_size: usize) -> Self {
        let size = max_packet_size.saturating_add(WS_MESSAGE_SLACK);
        Self {
            path: DEFAULT_WS_PATH.to_owned(),
            subprotocols: vec![Subprotocol::Mqtt, Subprotocol::MqttV31],
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_frame_size: size,
            max_message_size: size,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
        }
    }
}

/// QUIC settings of a `quic` listener. TLS comes from the `tls:` section, always TLS 1.3 (QUIC
/// has no other), ALPN `mqtt`, no 0-RTT; the handshake deadline is `timeouts.tls_handshake`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicSettings {
    /// A connection with no packets for this long is closed.
    pub idle_timeout: Duration,
    /// Source addresses whose connection attempts are dropped before any handshake work.
    /// A stop-gap until the policy-driven IP admission (`src/admission/`) is wired into
    /// `admit_quic`; it then becomes redundant.
    pub deny_sources: Vec<IpNet>,
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_QUIC_IDLE_TIMEOUT,
            deny_sources: Vec::new(),
        }
    }
}

/// `listeners[].proxy_protocol:`: which PROXY protocol versions a balancer may open with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The text header (`PROXY TCP4 ...\r\n`), at most 107 bytes.
    V1,
    /// The binary header (12-byte signature, addresses, TLVs).
    V2,
    /// Either: what the balancer sends decides.
    Any,
}

// === impl ProxyProtocol ===

impl ProxyProtocol {
    /// The name as written in moat.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Any => "any",
        }
    }

    /// Whether a text (v1) header is accepted.
    pub fn accepts_v1(self) -> bool {
        matches!(self, Self::V1 | Self::Any)
    }

    /// Whether a binary (v2) header is accepted.
    pub fn accepts_v2(self) -> bool {
        matches!(self, Self::V2 | Self::Any)
    }
}

/// PROXY protocol on a TCP listener: every connection must come from one of `trusted` and
/// open with a header of an accepted version, read before TLS; the header's source address is
/// then the client's address for admission, policy, logs and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Accepted header versions.
    pub version: ProxyProtocol,
    /// The balancers allowed to connect (per listener, like `ws.trusted_proxies`: a listener
    /// for balancers and one for direct clients can sit side by side). Never empty.
    pub trusted: Vec<IpNet>,
}

// === impl ProxySettings ===

impl ProxySettings {
    /// Whether `ip` is one of the trusted balancers (IPv4-mapped IPv6 counts as IPv4).
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// `listeners[].ws:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWs {
    #[schemars(with = "Option<String>")]
    path: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    subprotocols: Option<Spanned<Vec<Spanned<String>>>>,
    #[schemars(with = "Option<Vec<String>>")]
    allowed_origins: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    trusted_proxies: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    max_frame_size: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    max_message_size: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    upgrade_timeout: Option<Spanned<String>>,
}

/// `listeners[].quic:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuic {
    #[schemars(with = "Option<String>")]
    idle_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    deny_sources: Option<Vec<Spanned<String>>>,
}

/// The transport options of one raw listener, as written.
pub(super) struct RawTransport<'a> {
    pub(super) name: &'a Spanned<String>,
    pub(super) kind: &'a Spanned<TransportKind>,
    pub(super) alpn_routing: Option<&'a Spanned<bool>>,
    pub(super) insecure_plaintext: Option<&'a Spanned<bool>>,
    pub(super) ws: Option<&'a Spanned<RawWs>>,
    pub(super) quic: Option<&'a Spanned<RawQuic>>,
    pub(super) client_certs: Option<&'a Spanned<ClientCerts>>,
    pub(super) proxy_protocol: Option<&'a Spanned<ProxyProtocol>>,
    pub(super) trusted_proxies: Option<&'a Spanned<Vec<Spanned<String>>>>,
}

/// The validated transport options of one listener.
pub(super) struct Transport {
    pub(super) alpn_routing: bool,
    pub(super) ws: Option<WsSettings>,
    pub(super) quic: Option<QuicSettings>,
    pub(super) client_certs: Option<ClientCerts>,
    pub(super) proxy: Option<ProxySettings>,
}

// === impl Check (listener transports) ===

impl Check<'_> {
    /// Checks which options the listener's kind allows and validates them.
    pub(super) fn transport(
        &self,
        raw: &RawTransport<'_>,
        max_packet_size: usize,
        tls: &TlsSettings,
    ) -> Result<Transport, ConfigError> {
        let kind = raw.kind.value;
        let name = quoted(&raw.name.value);
        let misplaced = |at: Position, option: &'static str, hint: &'static str| {
            self.err(
                at,
                Kind::ListenerOption {
                    name: name.clone(),
                    option,
                    kind: kind.as_str(),
                    hint,
                },
            )
        };
        let alpn_routing = raw.alpn_routing.is_some_and(|r| r.value);
        if let Some(routing) = raw.alpn_routing {
            if !matches!(kind, TransportKind::Tls | TransportKind::Wss) {
                let hint = "only tls and wss listeners route by ALPN";
                return Err(misplaced(pos(routing), "alpn_routing", hint));
            }
        }
        match (kind, raw.insecure_plaintext) {
            (TransportKind::Ws, Some(flag)) if flag.value => {}
            (TransportKind::Ws, other) => {
                let at = other.map(pos).unwrap_or_else(|| pos(raw.kind));
                return Err(self.err(at, Kind::PlaintextNotEnabled { name }));
            }
            (_, Some(flag)) => {
                let hint = "only plain ws listeners need it";
                return Err(misplaced(pos(flag), "insecure_plaintext", hint));
            }
            (_, None) => {}
        }
        let speaks_ws = matches!(kind, TransportKind::Ws | TransportKind::Wss) || alpn_routing;
        let ws = match (speaks_ws, raw.ws) {
            (true, Some(ws)) => Some(self.ws(&ws.value, max_packet_size)?),
            (true, None) => Some(WsSettings::defaults(max_packet_size)),
            (false, Some(ws)) => {
                let hint = "it belongs to ws and wss listeners (or tls with alpn_routing: true)";
                return Err(misplaced(pos(ws), "ws", hint));
            }
            (false, None) => None,
        };
        let quic = match (kind, raw.quic) {
            (TransportKind::Quic, Some(quic)) => Some(self.quic(&quic.value)?),
            (TransportKind::Quic, None) => Some(QuicSettings::default()),
            (_, Some(quic)) => {
                return Err(misplaced(pos(quic), "quic", "it belongs to quic listeners"));
            }
            (_, None) => None,
        };
        let client_certs = match (kind, raw.client_certs) {
            (_, None) => None,
            (TransportKind::Ws, Some(mode)) => {
                let hint = "a plain ws listener has no TLS";
                return Err(misplaced(pos(mode), "client_certs", hint));
            }
            (_, Some(mode)) if mode.value != ClientCerts::None && tls.client_ca.is_none() => {
                let mode_name = mode.value.as_str();
                return Err(self.err_at(mode, Kind::ClientCaRequired { mode: mode_name }));
            }
            (_, Some(mode)) => Some(mode.value),
        };
        let proxy = self.proxy(raw, &misplaced)?;
        Ok(Transport {
            alpn_routing,
            ws,
            quic,
            client_certs,
            proxy,
        })
    }

    /// `proxy_protocol:` and `trusted_proxies:` go together, on TCP listeners only: a header
    /// believed from anyone would let any client choose its own address, so the list is
    /// required and must not be empty.
    fn proxy(
        &self,
        raw: &RawTransport<'_>,
        misplaced: &dyn Fn(Position, &'static str, &'static str) -> ConfigError,
    ) -> Result<Option<ProxySettings>, ConfigError> {
        if raw.kind.value == TransportKind::Quic {
            let hint = "QUIC is balanced by source-preserving UDP balancing, without a PROXY header (docs/ARCHITECTURE.md)";
            if let Some(p) = raw.proxy_protocol {
                return Err(misplaced(pos(p), "proxy_protocol", hint));
            }
            if let Some(t) = raw.trusted_proxies {
                return Err(misplaced(pos(t), "trusted_proxies", hint));
            }
        }
        let (version, list) = match (raw.proxy_protocol, raw.trusted_proxies) {
            (None, None) => return Ok(None),
            (Some(version), Some(list)) => (version, list),
            (Some(version), None) => {
                let kind = Kind::ProxyWithoutTrusted {
                    name: quoted(&raw.name.value),
                };
                return Err(self.err_at(version, kind));
            }
            (None, Some(list)) => {
                let kind = Kind::TrustedWithoutProxy {
                    name: quoted(&raw.name.value),
                };
                return Err(self.err_at(list, kind));
            }
        };
        if list.value.is_empty() {
            let kind = Kind::ProxyWithoutTrusted {
                name: quoted(&raw.name.value),
            };
            return Err(self.err_at(list, kind));
        }
        let trusted = list
            .value
            .iter()
            .map(|entry| self.cidr(entry, "trusted_proxies[]"))
            .collect::<Result<_, _>>()?;
        Ok(Some(ProxySettings {
            version: version.value,
            trusted,
        }))
    }

    fn ws(&self, raw: &RawWs, max_packet_size: usize) -> Result<WsSettings, ConfigError> {
        let mut ws = WsSettings::defaults(max_packet_size);
        if let Some(path) = &raw.path {
            let valid = path.value.starts_with('/')
                && path.value.len() <= 256
                && path
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?');
            if !valid {
                let found = quoted(&path.value);
                return Err(self.err_at(path, Kind::InvalidWsPath { found }));
            }
            ws.path = path.value.clone();
        }
        if let Some(list) = &raw.subprotocols {
            if list.value.is_empty() {
                return Err(self.err_at(list, Kind::NoSubprotocols));
            }
            ws.subprotocols = Vec::with_capacity(list.value.len());
            for entry in &list.value {
                let Some(protocol) = Subprotocol::parse(entry.value.trim()) else {
                    let found = quoted(&entry.value);
                    return Err(self.err_at(entry, Kind::InvalidSubprotocol { found }));
                };
                if !ws.subprotocols.contains(&protocol) {
                    ws.subprotocols.push(protocol);
                }
            }
        }
        for origin in raw.allowed_origins.iter().flatten() {
            match normalise_origin(&origin.value) {
                Some(o) => ws.allowed_origins.push(o),
                None => {
                    let found = quoted(&origin.value);
                    return Err(self.err_at(origin, Kind::InvalidOrigin { found }));
                }
            }
        }
        for proxy in raw.trusted_proxies.iter().flatten() {
            ws.trusted_proxies
                .push(self.cidr(proxy, "ws.trusted_proxies[]")?);
        }
        if let Some(size) = &raw.max_message_size {
            ws.max_message_size = self.ws_size(size, "ws.max_message_size")?;
            ws.max_frame_size = ws.max_frame_size.min(ws.max_message_size);
        }
        if let Some(size) = &raw.max_frame_size {
            ws.max_frame_size = self.ws_size(size, "ws.max_frame_size")?;
            if ws.max_frame_size > ws.max_message_size {
                let found = quoted(&size.value);
                let kind = Kind::OutOfRange {
                    field: "ws.max_frame_size",
                    found,
                    expected: "at most ws.max_message_size",
                };
                return Err(self.err_at(size, kind));
            }
        }
        if let Some(t) = &raw.upgrade_timeout {
            ws.upgrade_timeout = self.bounded_timeout(t, "ws.upgrade_timeout")?;
        }
        Ok(ws)
    }

    fn quic(&self, raw: &RawQuic) -> Result<QuicSettings, ConfigError> {
        let mut quic = QuicSettings::default();
        if let Some(t) = &raw.idle_timeout {
            quic.idle_timeout = self.bounded_timeout(t, "quic.idle_timeout")?;
        }
        for source in raw.deny_sources.iter().flatten() {
            quic.deny_sources
                .push(self.cidr(source, "quic.deny_sources[]")?);
        }
        Ok(quic)
    }

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host).
    fn cidr(&self, raw: &Spanned<String>, field: &'static str) -> Result<IpNet, ConfigError> {
        let text = raw.value.trim();
        let parsed = text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from));
        parsed.ok_or_else(|| {
            let found = quoted(&raw.value);
            self.err_at(raw, Kind::InvalidCidr { field, found })
        })
    }

    fn ws_size(&self, raw: &Spanned<String>, field: &'static str) -> Result<usize, ConfigError> {
        self.size_in(raw, field, MIN_WS_SIZE..=MAX_WS_SIZE, "from 128B to 16MiB")
    }

    fn bounded_timeout(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<Duration, ConfigError> {
        self.timeout(&Some(raw.clone()), field, false)
            .map(|t| t.unwrap_or_default())
    }
}

fn pos<T>(spanned: &Spanned<T>) -> Position {
    Position::of_spanned(spanned)
}

/// An origin as browsers send it: `scheme://host[:port]`, lower-cased, no path, no trailing
/// slash. `None` for anything else (a path, a wildcard, a missing scheme).
pub(crate) fn normalise_origin(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    valid.then_some(text)
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
