//! The broker segment: where authorized traffic goes.
//!
//! A session only needs a [`BrokerTarget`]: the addresses per MQTT version ([`route`]: one
//! loopback listener for the embedded broker; for an external one, IP literals or host names
//! tried by failover or round robin), TLS toward the broker, the credentials moat presents
//! upstream, a health flag, and for the embedded rumqttd the in-memory entrance sessions use
//! instead of its listeners ([`MemoryLink`]). Whether that target is the embedded rumqttd
//! ([`embedded`]) or an external broker is decided once at start-up; the sockets and streams
//! are `link.rs`'s.

pub mod embedded;
pub(crate) mod link;
pub mod route;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;

use crate::config::{UpstreamCredentials, UpstreamSettings, UpstreamTls};
use crate::mqtt::ProtocolVersion;
use crate::transport::tls::TlsError;
pub use route::Route;

/// Where a session opens its upstream connection, and how it proves it is moat.
#[derive(Clone, Debug)]
pub struct BrokerTarget {
    /// Addresses for MQTT 3.1 and 3.1.1 clients (3.1 is translated to 3.1.1).
    pub v3: Arc<Route>,
    /// Addresses for MQTT 5.0 clients (rumqttd serves 5.0 on its own listener).
    pub v5: Arc<Route>,
    /// TLS toward the broker (`broker.upstream.tls`); `None` is plain TCP.
    pub tls: Option<UpstreamTlsClient>,
    /// The user name and password of moat's upstream CONNECT; a reload swaps them when the
    /// password file changed ([`BrokerTarget::reload_secrets`]).
    pub credentials: Arc<ArcSwap<Credentials>>,
    /// Cleared when the embedded broker dies, so new clients get "server unavailable".
    pub health: Arc<Health>,
    /// The embedded broker in memory (`broker.embedded.link: memory`): sessions use it
    /// instead of the routes' addresses.
    pub memory: Option<MemoryLink>,
}

/// The embedded broker's in-process entrance, one per MQTT version: each session hands it
/// one end of an in-memory stream (`link::memory_pair`).
#[derive(Clone)]
pub struct MemoryLink {
    pub(crate) v3: rumqttd::Connector<rumqttd::protocol::v4::V4>,
    pub(crate) v5: rumqttd::Connector<rumqttd::protocol::v5::V5>,
}

impl std::fmt::Debug for MemoryLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryLink")
    }
}

// === impl MemoryLink ===

impl MemoryLink {
    /// A new link to the broker for a client of `version`: moat's halves; the broker's link
    /// task is started on the current runtime and waits for moat's CONNECT.
    pub(crate) fn open(&self, version: ProtocolVersion) -> (link::BrokerRead, link::BrokerWrite) {
        let (rd, wr, theirs) = link::memory_pair();
        match version {
            ProtocolVersion::V5 => self.v5.connect(theirs),
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => self.v3.connect(theirs),
        }
        (rd, wr)
    }
}

/// moat as a TLS client of the broker.
#[derive(Clone, Debug)]
pub struct UpstreamTlsClient {
    /// Trust anchors, client certificate, ring as the provider; a reload swaps it, the next
    /// broker connection uses it.
    pub(crate) config: Arc<ArcSwap<rustls::ClientConfig>>,
    /// The name the broker's certificate must carry; `None`: each address's own host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

/// What moat puts in the user name and password fields of its upstream CONNECT.
#[derive(Clone)]
pub enum Credentials {
    /// The client's identity as user name, with this password (the embedded broker's
    /// secret, or `broker.upstream.credentials.password_file`) or none.
    Identity(Option<Arc<str>>),
    /// One account for the moat→broker leg.
    Fixed {
        /// The user name.
        username: Arc<str>,
        /// Its password.
        password: Arc<str>,
    },
}

impl std::fmt::Debug for Credentials {
    // Never the password: this value reaches logs through `Debug` of its holders.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Identity(password) => f
                .debug_struct("Identity")
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .finish(),
            Credentials::Fixed { username, .. } => f
                .debug_struct("Fixed")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

// === impl Credentials ===

impl Credentials {
    /// These credentials, as the swappable cell a [`BrokerTarget`] holds.
    pub fn live(self) -> Arc<ArcSwap<Credentials>> {
        Arc::new(ArcSwap::from_pointee(self))
    }

    /// The user name for a session of `identity`.
    pub(crate) fn username<'a>(&'a self, identity: &'a str) -> &'a str {
        match self {
            Credentials::Identity(_) => identity,
            Credentials::Fixed { username, .. } => username,
        }
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        match self {
            Credentials::Identity(password) => password.as_deref(),
            Credentials::Fixed { password, .. } => Some(password),
        }
    }
}

/// Why the external broker's settings could not be turned into a target at start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A TLS file of `broker.upstream.tls` is unusable.
    #[error("broker.upstream.tls: {0}")]
    Tls(#[from] TlsError),
    /// `broker.upstream.tls.server_name` is not a name rustls accepts.
    #[error("broker.upstream.tls.server_name {0:?} is not a DNS name or IP address")]
    ServerName(String),
    /// The password file could not be read or holds no password.
    #[error("broker.upstream.credentials.password_file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Largest password file read: a password, not a database.
const MAX_PASSWORD_FILE: u64 = 4096;

// === impl BrokerTarget ===

impl BrokerTarget {
    /// An external broker as `broker.upstream` describes it; reads its TLS and password files
    /// (each error names its file).
    pub fn external(settings: &UpstreamSettings) -> Result<Self, UpstreamError> {
        let tls = match &settings.tls {
            None => None,
            Some(tls) => {
                let server_name = match &tls.server_name {
                    None => None,
                    Some(name) => Some(
                        ServerName::try_from(name.clone())
                            .map_err(|_| UpstreamError::ServerName(name.clone()))?,
                    ),
                };
                Some(UpstreamTlsClient {
                    config: Arc::new(ArcSwap::new(tls_config(tls)?)),
                    server_name,
                })
            }
        };
        let route = |addrs| Arc::new(Route::new(addrs, settings.strategy, settings.backoff));
        Ok(BrokerTarget {
            v3: route(&settings.v3),
            v5: route(&settings.v5),
            tls,
            credentials: credentials(settings)?.live(),
            health: Arc::new(Health::default()),
            memory: None,
        })
    }

    /// Reads the files of `broker.upstream` again (password file, TLS CA, client certificate
    /// and key) and, when every one loads, puts them in force for the next broker connection;
    /// sessions already connected keep theirs. On error nothing changes (a half-rotated pair
    /// never reaches the broker) and the error names the file. `settings` are those the
    /// target was built from: another path, address or name needs a restart (`config::diff`).
    /// Whether anything changed is not told: a certificate cannot be compared without
    /// parsing it again, and the answer would say nothing the files do not.
    pub fn reload_secrets(&self, settings: &UpstreamSettings) -> Result<(), UpstreamError> {
        let config = match (&self.tls, &settings.tls) {
            (Some(cell), Some(files)) => Some((cell, tls_config(files)?)),
            _ => None,
        };
        let credentials = credentials(settings)?;
        if let Some((cell, config)) = config {
            cell.config.store(config);
        }
        self.credentials.store(Arc::new(credentials));
        Ok(())
    }

    /// The route that speaks this client's protocol version.
    pub fn route_for(&self, version: ProtocolVersion) -> &Route {
        match version {
            ProtocolVersion::V5 => &self.v5,
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => &self.v3,
        }
    }
}

/// moat's TLS client configuration toward the broker, from `broker.upstream.tls`'s files.
fn tls_config(tls: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
    let identity = tls
        .client_cert
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    Ok(crate::transport::tls::upstream_client_config(
        &tls.ca, identity,
    )?)
}

/// The credentials `broker.upstream.credentials` describes, the password read from its file.
fn credentials(settings: &UpstreamSettings) -> Result<Credentials, UpstreamError> {
    Ok(match &settings.credentials {
        UpstreamCredentials::Identity => Credentials::Identity(None),
        UpstreamCredentials::IdentityWithPassword { password_file } => {
            Credentials::Identity(Some(read_password(password_file)?))
        }
        UpstreamCredentials::Fixed {
            username,
            password_file,
        } => Credentials::Fixed {
            username: username.as_str().into(),
            password: read_password(password_file)?,
        },
    })
}

/// The first line of a password file, without its line ending. The file is read at start and
/// on every reload; the password never reaches a log line.
fn read_password(path: &std::path::Path) -> Result<Arc<str>, UpstreamError> {
    use std::io::Read;
    let err = |reason: String| UpstreamError::PasswordFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_PASSWORD_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(err("no password on its first line".into()));
    }
    Ok(password.into())
}

/// Whether the broker behind moat is believed to be alive.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
        }
    }
}

// === impl Health ===

impl Health {
    /// True while the broker is believed to be serving.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks the broker dead: moat fails closed from now on.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::config::{UpstreamAddr, UpstreamStrategy};

    #[test]
    fn a_reload_swaps_password_and_tls_together_or_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, pw) = (dir.path().join("ca.crt"), dir.path().join("broker.pw"));
        let ca_pem = crate::certs::generate_ca("broker CA", 1).unwrap().cert;
        std::fs::write(&ca, &ca_pem).unwrap();
        std::fs::write(&pw, "first\n").unwrap();
        let addr = UpstreamAddr {
            host: "broker.example".into(),
            port: 8883,
        };
        let settings = UpstreamSettings {
            v3: vec![addr.clone()],
            v5: vec![addr],
            strategy: UpstreamStrategy::Failover,
            backoff: Duration::from_secs(1),
            tls: Some(UpstreamTls {
                ca: ca.clone(),
                server_name: None,
                client_cert: None,
            }),
            credentials: UpstreamCredentials::Fixed {
                username: "edge".into(),
                password_file: pw.clone(),
            },
        };
        let target = BrokerTarget::external(&settings).unwrap();
        let config = |t: &BrokerTarget| t.tls.as_ref().unwrap().config.load_full();
        let password = |t: &BrokerTarget| t.credentials.load().password().map(str::to_owned);
        let running = config(&target);

        // A new password beside a broken CA: neither is taken.
        std::fs::write(&pw, "second\n").unwrap();
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(target.reload_secrets(&settings).is_err());
        assert_eq!(password(&target).as_deref(), Some("first"));
        assert!(Arc::ptr_eq(&config(&target), &running));

        std::fs::write(&ca, &ca_pem).unwrap();
        target.reload_secrets(&settings).unwrap();
        assert_eq!(password(&target).as_deref(), Some("second"));
        assert!(!Arc::ptr_eq(&config(&target), &running));

        // An empty password file is refused, naming it.
        std::fs::write(&pw, "").unwrap();
        let error = target.reload_secrets(&settings).unwrap_err().to_string();
        assert!(error.contains("broker.pw"), "{error}");
        assert_eq!(password(&target).as_deref(), Some("second"));
    }
}
