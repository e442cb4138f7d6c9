//! The TLS material in force: each listener's handshake configuration and the index of revoked
//! client certificates, replaced whole on reload.
//!
//! What it owns: [`TlsState`], built at start from the `tls:` files (`transport::tls::Material`)
//! and rebuilt from them on SIGHUP or a file change (`ops/reload.rs` decides when). A reload
//! reads every file and builds every listener's new configuration *before* it swaps any, so a
//! broken file leaves all listeners on the running material, and the error names the file. New
//! TLS and WSS handshakes read their listener's [`Handshakes`] at accept; QUIC listeners get the
//! new configuration through quinn's `Endpoint::set_server_config`. Sessions already up keep
//! their keys; the ones whose certificate the new CRLs revoke are ended by the session itself
//! (`session/revoke.rs`) once a reload that changed what is revoked moves the revocation epoch
//! (`shutdown::Epoch`).
//!
//! Why it is in `transport/`: it is the TLS configuration the transports handshake with; the
//! server builds it at start, `ops/reload.rs` reloads it, sessions ask it about revocations,
//! and none of them needs the others for that.
//!
//! What it must not do: decide when to reload, or touch a session.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use crate::config::{Config, CrlExpired, Listener as ListenerConfig, QuicSettings, TlsSettings};
use crate::shutdown::Epoch;
use crate::transport::quic::{self, QuicError};
use crate::transport::tls::{Expiry, Material, Profile, TlsError};
use crate::transport::{ClientCert, Revocations};

/// What one TCP listener's handshakes read.
pub(crate) struct Handshakes {
    /// The configuration new handshakes use; a reload swaps it.
    config: ArcSwap<ServerConfig>,
}

// === impl Handshakes ===

impl Handshakes {
    /// The configuration in force now.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }
}

/// Why TLS material could not be loaded (at start or on reload).
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// A TLS file is missing or unusable; the error names it.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A QUIC listener's configuration could not be built from the material.
    #[error("listener {name}: {source}")]
    Quic {
        /// Listener name from the config.
        name: String,
        /// What was wrong.
        source: QuicError,
    },
}

/// What a load put in force, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsSummary {
    /// Listeners whose handshakes use the new material.
    pub listeners: usize,
    /// CRLs loaded.
    pub crls: usize,
    /// Certificates they revoke.
    pub revoked: usize,
    /// CRLs past their nextUpdate.
    pub expired_crls: usize,
    /// Whether the set of revoked certificates changed (live sessions were asked to check).
    pub revocations_changed: bool,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} listener(s), {} CRL(s) revoking {} certificate(s)",
            self.listeners, self.crls, self.revoked
        )?;
        if self.expired_crls > 0 {
            write!(f, ", {} CRL(s) EXPIRED", self.expired_crls)?;
        }
        Ok(())
    }
}

/// One listener that serves TLS, and where its configuration goes.
struct ListenerTls {
    /// Name from the config.
    name: String,
    /// The `tls:` section with this listener's own `client_certs`.
    settings: TlsSettings,
    /// Where a new configuration goes.
    target: Target,
}

enum Target {
    /// TLS or WSS (or both, routed by ALPN).
    Tcp {
        profile: Profile,
        handshakes: Arc<Handshakes>,
    },
    /// QUIC: quinn holds the configuration.
    Quic {
        settings: QuicSettings,
        endpoint: quinn::Endpoint,
    },
}

/// A listener's new configuration, built before anything is swapped.
enum Built {
    Tcp(Arc<ServerConfig>),
    Quic(quinn::ServerConfig),
}

/// See the module docs.
pub struct TlsState {
    /// The `tls:` section (files are read from its paths on every load).
    tls: TlsSettings,
    /// `limits.max_packet_size`, which sizes QUIC flow control.
    max_packet_size: usize,
    /// Every listener that serves TLS; registered at start. The lock also keeps two reloads
    /// from interleaving.
    listeners: Mutex<Vec<ListenerTls>>,
    /// What the CRLs in force revoke.
    revocations: ArcSwap<Revocations>,
    /// Moved when a reload changes what is revoked, so live sessions check their certificate.
    epoch: Epoch,
    /// When the material in force expires (the expiry metrics read it).
    expiry: std::sync::Mutex<Expiry>,
}

// === impl TlsState ===

impl TlsState {
    /// The state for `config`, with no listener registered yet; `epoch` is moved when a reload
    /// changes what is revoked.
    pub(crate) fn new(config: &Config, epoch: Epoch) -> Self {
        TlsState {
            tls: config.tls.clone(),
            max_packet_size: config.limits.max_packet_size,
            listeners: Mutex::new(Vec::new()),
            revocations: ArcSwap::from_pointee(Revocations::default()),
            epoch,
            expiry: std::sync::Mutex::new(Expiry::default()),
        }
    }

    /// Reads the `tls:` files for start-up and makes their revocations the ones in force.
    pub(crate) fn load(&self) -> Result<Material, MaterialError> {
        let material = Material::load(&self.tls)?;
        log_expired(&material);
        self.revocations.store(Arc::new(material.revocations()));
        self.set_expiry(material.expiry());
        Ok(material)
    }

    /// When the server certificate and client CA in force expire.
    pub fn expiry(&self) -> Expiry {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_expiry(&self, expiry: Expiry) {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner()) = expiry;
    }

    /// Builds a TCP listener's handshake configuration from `material` and registers it.
    pub(crate) fn add_tcp(
        &self,
        l: &ListenerConfig,
        profile: Profile,
        material: &Material,
    ) -> Result<Arc<Handshakes>, MaterialError> {
        let settings = l.tls(&self.tls);
        let handshakes = Arc::new(Handshakes {
            config: ArcSwap::new(material.server_config(&settings, profile)?),
        });
        self.lock().push(ListenerTls {
            name: l.name.clone(),
            settings,
            target: Target::Tcp {
                profile,
                handshakes: handshakes.clone(),
            },
        });
        Ok(handshakes)
    }

    /// A QUIC listener's configuration from `material` (register it with [`Self::add_quic`]
    /// once its endpoint is bound).
    pub(crate) fn quic_config(
        &self,
        l: &ListenerConfig,
        material: &Material,
    ) -> Result<quinn::ServerConfig, MaterialError> {
        let settings = l.quic.clone().unwrap_or_default();
        quic::server_config(material, &l.tls(&self.tls), &settings, self.max_packet_size).map_err(
            |source| MaterialError::Quic {
                name: l.name.clone(),
                source,
            },
        )
    }

    /// Registers a bound QUIC listener, so reloads reach it.
    pub(crate) fn add_quic(&self, l: &ListenerConfig, endpoint: quinn::Endpoint) {
        self.lock().push(ListenerTls {
            name: l.name.clone(),
            settings: l.tls(&self.tls),
            target: Target::Quic {
                settings: l.quic.clone().unwrap_or_default(),
                endpoint,
            },
        });
    }

    /// Whether sessions keep their client certificate's issuer and serial: CRLs are
    /// configured, so a reload may revoke it. (A listener with `client_certs: none` gets no
    /// certificate to keep.)
    pub(crate) fn revocable(&self) -> bool {
        !self.tls.crls.is_empty()
    }

    /// Reads the `tls:` files again and, if all of them load and every listener's
    /// configuration builds, puts them in force for the next handshake; when what the CRLs
    /// revoke changed, live sessions are woken to check their certificate (each one the new
    /// CRLs revoke ends with an audit line). On error nothing changes and the error names the
    /// file.
    pub fn reload(&self) -> Result<TlsSummary, MaterialError> {
        let listeners = self.lock();
        if listeners.is_empty() {
            return Ok(TlsSummary::default());
        }
        let material = Material::load(&self.tls)?;
        let mut built = Vec::with_capacity(listeners.len());
        for l in listeners.iter() {
            built.push(match &l.target {
                Target::Tcp { profile, .. } => {
                    Built::Tcp(material.server_config(&l.settings, *profile)?)
                }
                Target::Quic { settings, .. } => Built::Quic(
                    quic::server_config(&material, &l.settings, settings, self.max_packet_size)
                        .map_err(|source| MaterialError::Quic {
                            name: l.name.clone(),
                            source,
                        })?,
                ),
            });
        }
        for (l, new) in listeners.iter().zip(built) {
            match (&l.target, new) {
                (Target::Tcp { handshakes, .. }, Built::Tcp(config)) => {
                    handshakes.config.store(config)
                }
                (Target::Quic { endpoint, .. }, Built::Quic(config)) => {
                    endpoint.set_server_config(Some(config))
                }
                // Built in the same order from the same targets: never reached.
                _ => {}
            }
        }
        let expired_crls = log_expired(&material);
        let revocations = material.revocations();
        let revocations_changed = **self.revocations.load() != revocations;
        let summary = TlsSummary {
            listeners: listeners.len(),
            crls: material.crl_report(now()).len(),
            revoked: revocations.len(),
            expired_crls,
            revocations_changed,
        };
        self.revocations.store(Arc::new(revocations));
        self.set_expiry(material.expiry());
        // After the store: a session woken by the move finds the new revocations.
        if revocations_changed {
            self.epoch.advance();
        }
        Ok(summary)
    }

    /// The CRL file that revokes `cert` now, if one does.
    pub(crate) fn revoking(&self, cert: &ClientCert) -> Option<String> {
        self.revocations.load().revoking(cert).map(str::to_owned)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ListenerTls>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Logs every CRL past its nextUpdate at ERROR, saying what that means under `crl_expired`;
/// returns how many there are.
fn log_expired(material: &Material) -> usize {
    let mut expired = 0;
    for crl in material.crl_report(now()).into_iter().filter(|c| c.expired) {
        expired += 1;
        let effect = match material.crl_expired() {
            CrlExpired::Warn => {
                "still used (tls.crl_expired: warn): what it revokes stays revoked, certificates issued since may be missing from it"
            }
            CrlExpired::Refuse => {
                "tls.crl_expired: refuse: every client certificate of this issuer is refused until a current CRL is loaded"
            }
        };
        tracing::error!(
            file = %crl.path.display(),
            issuer = %crl.issuer,
            next_update = %crl.next_update,
            "CRL is past its nextUpdate; {effect}"
        );
    }
    expired
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}
