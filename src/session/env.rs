//! What a session reads from the rest of moat, and nothing more.
//!
//! What it owns: [`Env`], built once by the server and shared by every session: the numbers a
//! session needs from moat.yaml ([`Settings`]), the policy in force, the admission hooks a
//! session reports to (bans, failed logins, session ends), the broker target and its ACK pacer,
//! the broker client-id registry, the counters and the revocation index. Why it is separate:
//! the server sits on top and hands this down; a session never reaches up into `server/`, and
//! each accessor names one thing it reads (linkerd's typed params, not a catch-all context).
//! What it must not do: grow fields the server needs and sessions do not (listeners, TLS
//! handshake configurations), or expose the configuration whole.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use super::registry::{Claim, ClientIds};
use crate::admission::Gate;
use crate::authn::Passwords;
use crate::broker::link::AckPacer;
use crate::broker::BrokerTarget;
use crate::config::{BrokerSettings, Config};
use crate::policy::{AuthnOptions, Policy, RuleRef};
use crate::stats::Stats;
use crate::transport::{ClientCert, TlsState};

/// The numbers from moat.yaml a session uses, copied once at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// `limits.max_packet_size`: the largest packet read from the client.
    pub(crate) max_packet_size: usize,
    /// `timeouts.connect`: one deadline for the whole CONNECT.
    pub(crate) connect_timeout: Duration,
    /// `timeouts.upstream_connect`: connecting to the broker and its CONNACK.
    pub(crate) upstream_connect_timeout: Duration,
    /// `limits.max_keepalive`, in seconds.
    pub(crate) max_keepalive: u16,
    /// The `tls:` settings that shape authentication.
    pub(crate) authn: AuthnOptions,
    /// The broker is the embedded rumqttd, whose limits moat answers for.
    pub(crate) embedded_broker: bool,
}

// === impl Settings ===

impl Settings {
    /// The settings `config` gives every session.
    pub(crate) fn of(config: &Config) -> Settings {
        Settings {
            max_packet_size: config.limits.max_packet_size,
            connect_timeout: config.timeouts.connect,
            upstream_connect_timeout: config.timeouts.upstream_connect,
            max_keepalive: config.limits.max_keepalive,
            authn: AuthnOptions {
                cert_identity: config.tls.cert_identity,
                username_must_match_cert: config.tls.username_must_match_cert,
            },
            embedded_broker: matches!(config.broker, BrokerSettings::Embedded { .. }),
        }
    }
}

/// The parts of an [`Env`] the server shares with its listeners (or builds for sessions only).
pub(crate) struct EnvParts {
    /// The policy in force.
    pub(crate) policy: Arc<ArcSwap<Policy>>,
    /// Admission.
    pub(crate) admission: Arc<Gate>,
    /// Where authorized sessions go.
    pub(crate) broker: BrokerTarget,
    /// The broker sockets' ACK pacer.
    pub(crate) acks: Arc<AckPacer>,
    /// Password verification.
    pub(crate) passwords: Passwords,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// The TLS material in force.
    pub(crate) tls: Arc<TlsState>,
}

/// See the module docs.
pub(crate) struct Env {
    /// Numbers from moat.yaml.
    settings: Settings,
    /// The policy in force; a reload swaps the pointer, sessions load it per decision.
    policy: Arc<ArcSwap<Policy>>,
    /// Admission, for bans at CONNECT, failed logins and session ends (the server's listeners
    /// share it for accepts).
    admission: Arc<Gate>,
    /// Where authorized sessions go.
    broker: BrokerTarget,
    /// Acknowledges what broker sockets received, once per tick for every session.
    acks: Arc<AckPacer>,
    /// Password verification: bounded pool, fair queue, success cache.
    passwords: Passwords,
    /// Live sessions per broker client id (takeovers).
    client_ids: Arc<ClientIds>,
    /// Counters (shared with the server, which reads them).
    stats: Arc<Stats>,
    /// The TLS material in force, asked only which CRL revokes a certificate.
    tls: Arc<TlsState>,
}

// === impl Env ===

impl Env {
    /// The environment the server hands every session.
    pub(crate) fn new(config: &Config, parts: EnvParts) -> Env {
        let EnvParts {
            policy,
            admission,
            broker,
            acks,
            passwords,
            stats,
            tls,
        } = parts;
        Env {
            settings: Settings::of(config),
            policy,
            admission,
            broker,
            acks,
            passwords,
            client_ids: Arc::default(),
            stats,
            tls,
        }
    }

    /// An environment for unit tests: the shipped moat.yaml's settings and `policy`.
    #[cfg(test)]
    #[allow(clippy::expect_used)] // tests may panic
    pub(crate) fn for_tests(policy: Policy) -> Env {
        let config = Config::default_for_dir(std::path::Path::new("."));
        let policy = Arc::new(ArcSwap::from_pointee(policy));
        let epoch = crate::shutdown::DrainController::new().epoch();
        let parts = EnvParts {
            admission: Arc::new(Gate::new(policy.clone(), 16)),
            policy,
            broker: BrokerTarget {
                v3: Arc::new(crate::broker::Route::fixed(([127, 0, 0, 1], 1).into())),
                v5: Arc::new(crate::broker::Route::fixed(([127, 0, 0, 1], 1).into())),
                tls: None,
                credentials: crate::broker::Credentials::Identity(None),
                health: Arc::default(),
            },
            acks: Arc::new(AckPacer::new()),
            passwords: Passwords::start(&config.passwords, 8, Arc::default())
                .expect("verifier threads"),
            stats: Arc::default(),
            tls: Arc::new(TlsState::new(&config, epoch)),
        };
        Env::new(&config, parts)
    }

    /// Numbers from moat.yaml.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The policy snapshot in force now, for one decision (cheap: no reference count on the
    /// hot path).
    pub(crate) fn policy(&self) -> Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// The handle a session's machine loads a snapshot from for every packet.
    pub(crate) fn policy_handle(&self) -> &Arc<ArcSwap<Policy>> {
        &self.policy
    }

    /// The policy snapshot in force now, to keep (e.g. across an await).
    pub(crate) fn policy_snapshot(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Refuses a banned client id, user name or source (MQTT 5 CONNACK 0x8A Banned).
    pub(crate) fn check_bans(
        &self,
        addr: IpAddr,
        username: Option<&str>,
        client_id: &str,
    ) -> Result<(), RuleRef> {
        self.admission.check_identity(addr, username, client_id)
    }

    /// Counts a failed login (automatic bans).
    pub(crate) fn auth_failed(&self, addr: IpAddr, username: Option<&str>, client_id: &str) {
        self.admission.auth_failed(addr, username, client_id);
    }

    /// Counts the end of a session (flapping bans).
    pub(crate) fn session_ended(&self, addr: IpAddr, username: Option<&str>, client_id: &str) {
        self.admission.session_ended(addr, username, client_id);
    }

    /// Where authorized sessions go.
    pub(crate) fn broker(&self) -> &BrokerTarget {
        &self.broker
    }

    /// The pacer broker sockets report their reads to.
    pub(crate) fn ack_pacer(&self) -> &Arc<AckPacer> {
        &self.acks
    }

    /// Password verification (`authn/`).
    pub(crate) fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// Claims `broker_id` for a session until the claim is dropped.
    pub(crate) fn claim(&self, broker_id: String) -> Claim {
        self.client_ids.claim(broker_id)
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The CRL file that revokes `cert` now, if one does.
    pub(crate) fn revoking(&self, cert: &ClientCert) -> Option<String> {
        self.tls.revoking(cert)
    }
}
