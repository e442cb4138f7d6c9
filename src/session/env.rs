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

use super::registry::{Claim, Facts, Registry};
use crate::admission::Gate;
use crate::authn::Passwords;
use crate::broker::link::AckPacer;
use crate::broker::BrokerTarget;
use crate::config::{BrokerSettings, Config};
use crate::policy::{AuthnOptions, Policy, RuleRef};
use crate::stats::Stats;
use crate::transport::{ClientCert, TlsState};

/// The numbers from moat.yaml a session uses, read at its CONNECT (a reload swaps them).
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
    /// The live sessions (shared with the admin listener).
    pub(crate) registry: Arc<Registry>,
}

/// See the module docs.
pub(crate) struct Env {
    /// Numbers from moat.yaml; a moat.yaml reload swaps them (sessions read them at CONNECT).
    settings: ArcSwap<Settings>,
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
    /// The live sessions: listing, kicks, and live sessions per broker client id (takeovers).
    registry: Arc<Registry>,
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
            registry,
        } = parts;
        Env {
            settings: ArcSwap::from_pointee(Settings::of(config)),
            policy,
            admission,
            broker,
            acks,
            passwords,
            registry,
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
        let drain = crate::shutdown::DrainController::new();
        let epoch = drain.epoch();
        let parts = EnvParts {
            admission: Arc::new(Gate::new(policy.clone(), 16)),
            policy,
            broker: BrokerTarget {
                v3: Arc::new(crate::broker::Route::fixed(([127, 0, 0, 1], 1).into())),
                v5: Arc::new(crate::broker::Route::fixed(([127, 0, 0, 1], 1).into())),
                tls: None,
                credentials: crate::broker::Credentials::Identity(None).live(),
                health: Arc::default(),
                memory: None,
            },
            acks: Arc::new(AckPacer::new()),
            passwords: Passwords::start(&config.passwords, 8, Arc::default())
                .expect("verifier threads"),
            stats: Arc::default(),
            tls: Arc::new(TlsState::new(&config, epoch)),
            registry: Arc::new(Registry::new(drain.epoch())),
        };
        Env::new(&config, parts)
    }

    /// Numbers from moat.yaml, as in force now.
    pub(crate) fn settings(&self) -> Settings {
        **self.settings.load()
    }

    /// Takes the live numbers of a reloaded moat.yaml (`config::diff` says which): sessions
    /// that connect from now on use them.
    /// Only the fields `config::diff` calls live change: the broker mode and the `tls:`
    /// settings stay as started.
    pub(crate) fn set_settings(&self, config: &Config) {
        let new = Settings::of(config);
        let old = self.settings();
        self.settings.store(Arc::new(Settings {
            connect_timeout: new.connect_timeout,
            upstream_connect_timeout: new.upstream_connect_timeout,
            max_keepalive: new.max_keepalive,
            ..old
        }));
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

    /// Claims `broker_id` for a session and registers it, until the claim is dropped.
    pub(crate) fn claim(&self, broker_id: String, facts: Facts) -> Claim {
        self.registry.claim(broker_id, facts)
    }

    /// Where a drained MQTT 5 client is told to go, if anywhere.
    pub(crate) fn server_reference(&self) -> Option<Arc<str>> {
        self.registry.moved_to()
    }

    /// Refuses a live session whose identity or source a ban set by the policy or an operator
    /// now covers (automatic bans only refuse new connections: a flood of bad logins from a
    /// plant's NAT must not end the plant's good sessions).
    pub(crate) fn live_ban(&self, facts: &Facts) -> Option<RuleRef> {
        self.admission
            .check_live(facts.addr.ip(), &facts.identity, &facts.client_id)
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
