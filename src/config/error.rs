//! Errors in moat.yaml, and the YAML plumbing shared with policy files.
//!
//! Every error a person can cause by editing a file is reported as `FILE:LINE:COLUMN: message`,
//! saying what was found and what was expected. This file owns that shape ([`SourceLocation`]),
//! the one set of parser options both moat.yaml and policy files are read with (`from_yaml`:
//! duplicate keys refused, strict booleans, unknown tags refused, alias bombs bounded), and the
//! translation of serde-saphyr's errors into plain messages without its own location suffix.
//! It must not touch files: callers hand it text and a path to name in messages.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter};

/// Most events an alias may replay in one document: far above any real config, far below a
/// "billion laughs" expansion, so such a file fails fast instead of eating memory and time.
const MAX_ALIAS_REPLAYED_EVENTS: usize = 100_000;

/// A place in a YAML source, 1-based (columns count characters); `line == 0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// 1-based line, 0 when the parser could not say.
    pub line: u32,
    /// 1-based column in characters, 0 when unknown.
    pub column: u32,
}

// === impl Position ===

impl Position {
    /// A position that names no place (the error is about the file as a whole).
    pub const UNKNOWN: Self = Self { line: 0, column: 0 };

    /// Converts serde-saphyr's location (u64, 1-based) without ever panicking.
    pub(crate) fn of(location: serde_saphyr::Location) -> Self {
        Self {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
        }
    }

    /// Position of a value read through [`serde_saphyr::Spanned`].
    pub(crate) fn of_spanned<T>(spanned: &serde_saphyr::Spanned<T>) -> Self {
        Self::of(spanned.referenced)
    }

    /// Whether the parser told us where the problem is.
    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

/// A file plus a position in it; displays as `FILE:LINE:COLUMN` (or `FILE` when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The file as the operator named it (relative paths stay relative, so messages stay short).
    pub file: PathBuf,
    /// Where in the file.
    pub position: Position,
}

// === impl SourceLocation ===

impl SourceLocation {
    /// Names `position` in `file`.
    pub fn new(file: impl Into<PathBuf>, position: Position) -> Self {
        Self {
            file: file.into(),
            position,
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.position.is_known() {
            write!(f, ":{}:{}", self.position.line, self.position.column)?;
        }
        Ok(())
    }
}

/// An error in moat.yaml: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct ConfigError {
    /// File, line and column of the offending value.
    pub at: SourceLocation,
    /// What was wrong.
    pub kind: ConfigErrorKind,
}

// === impl ConfigError ===

impl ConfigError {
    pub(crate) fn new(file: &Path, position: Position, kind: ConfigErrorKind) -> Self {
        Self {
            at: SourceLocation::new(file, position),
            kind,
        }
    }
}

/// What was wrong in moat.yaml. Found values are quoted and escaped; each message says what
/// was expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The YAML itself: syntax, wrong type, unknown or duplicate key, missing field, budget.
    #[error("{0}")]
    Yaml(String),
    /// An empty document: there is nothing to serve.
    #[error("the file is empty: expected a mapping with at least 'listeners'")]
    Empty,
    /// `listeners: []`: a proxy with no front door.
    #[error("'listeners' is empty: expected at least one listener")]
    NoListeners,
    /// Two listeners share a name, so logs and metrics could not tell them apart.
    #[error(
        "duplicate listener name {name} (first used on line {first_line}): names must be unique"
    )]
    DuplicateListener {
        /// The repeated name, quoted.
        name: String,
        /// Line of the first listener with that name.
        first_line: u32,
    },
    /// A listener name that would be awkward in logs and metric labels.
    #[error(
        "invalid listener name {found}: expected 1 to 64 characters among a-z A-Z 0-9 '-' '_'"
    )]
    InvalidListenerName {
        /// The name, quoted.
        found: String,
    },
    /// Not `IP:PORT`.
    #[error("invalid address {found} for {field}: expected IP:PORT such as 127.0.0.1:8883 or [::1]:8883")]
    InvalidSocketAddr {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
    },
    /// The embedded broker trusts its callers; it must never be reachable from the network.
    #[error("embedded broker address {found} for {field} is not a loopback address: the embedded broker must only be reachable by moat; use 127.0.0.1 or [::1], or configure 'upstream' for an external broker")]
    NonLoopbackEmbedded {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
    },
    /// rumqttd serves MQTT 3.1.1 and 5 on separate listeners.
    #[error("broker.embedded.bind and bind_v5 are both {addr}: the embedded broker needs one port per MQTT version")]
    SameEmbeddedPorts {
        /// The shared address.
        addr: String,
    },
    /// A broker address that is neither `IP:PORT` nor `NAME:PORT`.
    #[error("invalid broker address {found} for {field}: expected HOST:PORT, HOST an IP address or a DNS name (broker.example:8883, 10.0.0.5:1883, [fd00::5]:1883), PORT from 1 to 65535")]
    InvalidUpstreamAddr {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
    },
    /// `broker.upstream` lists no address (or the same one twice).
    #[error("{field}: {problem}")]
    UpstreamAddresses {
        /// Which setting.
        field: &'static str,
        /// What is wrong with the list.
        problem: &'static str,
    },
    /// Settings of `broker.upstream` that do not go together.
    #[error("{field}: {problem}")]
    UpstreamConflict {
        /// Which setting.
        field: &'static str,
        /// What does not fit, and what to write instead.
        problem: &'static str,
    },
    /// `broker:` with neither or both of `embedded` / `upstream`.
    #[error("broker needs exactly one of 'embedded' or 'upstream', found {found} (write 'embedded: {{}}' for the defaults)")]
    BrokerChoice {
        /// "neither" or "both".
        found: &'static str,
    },
    /// `admin:` with neither or both of `listen` / `unix`.
    #[error(
        "admin needs exactly one of 'listen' (IP:PORT) or 'unix' (a socket path), found {found}"
    )]
    AdminChoice {
        /// "neither" or "both".
        found: &'static str,
    },
    /// An admin listener reachable from the network without TLS and a token.
    #[error("admin.listen {found} is not a loopback address, so the admin listener needs {missing}: set admin.tls {{cert, key}} and admin.token_file (a file holding the bearer token), or listen on 127.0.0.1 / a unix socket")]
    AdminExposed {
        /// The address, quoted.
        found: String,
        /// What is missing.
        missing: &'static str,
    },
    /// The admin listener on a front door's address.
    #[error("admin.listen {found} is the address of listener {name}: the admin listener must never share a public front door; pick another port")]
    AdminOnFrontDoor {
        /// The address, quoted.
        found: String,
        /// The listener it clashes with.
        name: String,
    },
    /// TLS on a Unix socket: file permissions protect it, TLS adds nothing.
    #[error("admin.tls is set with admin.unix: a Unix socket is protected by its file permissions; remove tls or listen on TCP")]
    AdminTlsOnUnix,
    /// A duration that does not parse.
    #[error("invalid duration {found} for {field}: {reason}; expected a number with a unit such as 10s, 500ms or 2m")]
    InvalidDuration {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A duration outside what the setting allows.
    #[error("{field} is {found}: expected {expected}")]
    DurationOutOfRange {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A size that does not parse.
    #[error("invalid size {found} for {field}: {reason}; expected a number of bytes with an optional unit such as 256KiB or 1MiB")]
    InvalidSize {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A number (size, count) outside what the setting allows.
    #[error("{field} is {found}: expected {expected}")]
    OutOfRange {
        /// Which setting.
        field: &'static str,
        /// The value as written or computed.
        found: String,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// Client certificates cannot be verified without the CA that signs them.
    #[error("tls.client_certs is '{mode}' but tls.client_ca is not set: expected the path of the CA that signs client certificates")]
    ClientCaRequired {
        /// `optional` or `required`.
        mode: &'static str,
    },
    /// A CA (or CRLs) that would silently do nothing: the operator expects certificates checked.
    #[error("tls.{field} is set but tls.client_certs is 'none': set client_certs to 'optional' or 'required', or remove {field}")]
    ClientCertsOff {
        /// `client_ca` or `crls`.
        field: &'static str,
    },
    /// Only TLS 1.2 and 1.3 are offered.
    #[error("unsupported TLS version {found} for tls.min_version: expected \"1.2\" or \"1.3\"")]
    InvalidTlsVersion {
        /// The value, quoted.
        found: String,
    },
    /// A listener option that its kind does not use (it would silently do nothing).
    #[error("listener {name}: '{option}' is not valid on a '{kind}' listener: {hint}")]
    ListenerOption {
        /// The listener, quoted.
        name: String,
        /// The option.
        option: &'static str,
        /// The listener's kind.
        kind: &'static str,
        /// Where the option belongs.
        hint: &'static str,
    },
    /// `proxy_protocol` without balancers to believe it from.
    #[error("listener {name} has 'proxy_protocol' but no 'trusted_proxies': expected the addresses or blocks of the balancers that send the header (a header believed from anyone lets every client choose its address)")]
    ProxyWithoutTrusted {
        /// The listener, quoted.
        name: String,
    },
    /// `trusted_proxies` on a listener that reads no PROXY header (it would do nothing).
    #[error("listener {name} has 'trusted_proxies' but no 'proxy_protocol': set proxy_protocol to v1, v2 or any (X-Forwarded-For proxies go in ws.trusted_proxies)")]
    TrustedWithoutProxy {
        /// The listener, quoted.
        name: String,
    },
    /// A plain `ws` listener without the explicit opt-in.
    #[error("listener {name} is 'ws': MQTT over WebSocket without TLS sends passwords in clear; set 'insecure_plaintext: true' to enable it (e.g. behind a TLS-terminating proxy), or use kind 'wss'")]
    PlaintextNotEnabled {
        /// The listener, quoted.
        name: String,
    },
    /// A WebSocket path that is not an absolute path without a query.
    #[error(
        "invalid ws.path {found}: expected an absolute path such as /mqtt (no query, no spaces)"
    )]
    InvalidWsPath {
        /// The value, quoted.
        found: String,
    },
    /// `subprotocols: []`: no client could ever connect.
    #[error("ws.subprotocols is empty: expected 'mqtt' and/or 'mqttv3.1'")]
    NoSubprotocols,
    /// A subprotocol moat does not speak.
    #[error("unknown WebSocket subprotocol {found}: expected 'mqtt' or 'mqttv3.1'")]
    InvalidSubprotocol {
        /// The value, quoted.
        found: String,
    },
    /// Not a browser origin.
    #[error("invalid origin {found} in ws.allowed_origins: expected scheme://host[:port] such as https://app.example.com (no path, no wildcard)")]
    InvalidOrigin {
        /// The value, quoted.
        found: String,
    },
    /// Not an address or CIDR block.
    #[error("invalid address block {found} for {field}: expected an IP address or CIDR such as 10.0.0.0/8 or 2001:db8::/32")]
    InvalidCidr {
        /// Which setting.
        field: &'static str,
        /// The value, quoted.
        found: String,
    },
    /// A path setting that is the empty string.
    #[error("{field} is an empty path: expected a file or folder name")]
    EmptyPath {
        /// Which setting.
        field: &'static str,
    },
    /// `log.level` is not a filter the logger understands.
    #[error("invalid log.level {found}: {reason}; expected comma-separated directives as RUST_LOG takes them, such as info or info,moat=debug (levels: off, error, warn, info, debug, trace)")]
    InvalidLogLevel {
        /// The value, quoted.
        found: String,
        /// What the filter parser said.
        reason: String,
    },
    /// `drain.server_reference` empty, too long, or with control characters.
    #[error("invalid drain.server_reference {found}: expected 1 to {max} printable characters naming another instance, e.g. moat-b.example.net:8883", max = super::MAX_SERVER_REFERENCE)]
    InvalidServerReference {
        /// The value, quoted.
        found: String,
    },
}

/// Quotes a value found in a file for an error message: `'value'`, with control characters and
/// quotes escaped so a hostile file cannot paint the operator's terminal. Long values are cut.
pub(crate) fn quoted(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out = String::with_capacity(value.len().min(MAX_CHARS) + 2);
    out.push('\'');
    for (n, c) in value.chars().enumerate() {
        if n == MAX_CHARS {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('\'');
    out
}

/// The parser options every moat YAML file is read with.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Keys are unique (the serde-saphyr default, pinned here because it is the reason
        // this crate was chosen: `allow:` twice must never silently keep one of them).
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // `yes`/`no`/`on`/`off` are strings, not booleans: `anonymous: no` is an error.
        strict_booleans: true,
        // An unknown `!tag` would otherwise be silently dropped.
        reject_unsupported_tags: true,
        reject_tagged_field_names: true,
        // Messages are one line, `FILE:LINE:COLUMN: message`.
        with_snippet: false,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAYED_EVENTS,
        },
    }
}

/// Deserializes one YAML document with moat's options. The error is a position plus a message
/// without serde-saphyr's "at line X, column Y" suffix (the caller prefixes `FILE:LINE:COL`).
pub(crate) fn from_yaml<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, (Position, String)> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|err| {
        let position = err.location().map(Position::of).unwrap_or_default();
        (position, yaml_message(&err))
    })
}

/// The message of a serde-saphyr error, reworded where ours is clearer.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    match innermost(err) {
        E::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown field {}, expected {}",
            quoted(field),
            one_of(expected)
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown value {}, expected {}",
            quoted(variant),
            one_of(expected)
        ),
        E::SerdeMissingField { field, .. } => format!("missing field '{field}'"),
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!(
                "duplicate key {}: each key may appear only once",
                quoted(key)
            )
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "duplicate key: each key may appear only once".to_owned()
        }
        E::MultipleDocuments { .. } => {
            "a second YAML document ('---'): expected exactly one document".to_owned()
        }
        other => {
            let message = DefaultMessageFormatter.format_message(other);
            without_control_characters(&message)
        }
    }
}

/// Escapes control characters (and nothing else) so a message stays on one harmless line.
fn without_control_characters(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Looks through the wrappers serde-saphyr puts around an error (snippets, alias sites).
fn innermost(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut err = err;
    loop {
        match err {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => err = error,
            _ => return err,
        }
    }
}

/// `'a', 'b' or 'c'` style list of the accepted names.
fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => "nothing here".to_owned(),
        [only] => format!("'{only}'"),
        many => {
            let names: Vec<String> = many.iter().map(|name| format!("'{name}'")).collect();
            format!("one of {}", names.join(", "))
        }
    }
}
