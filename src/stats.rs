//! Counters every part of moat bumps: listeners, transports and sessions. The one counting
//! system: `/metrics` (`admin/metrics.rs`) reads these at scrape time.
//!
//! What it owns: [`Stats`] (relaxed atomics, bumped where the event happens; labelled counters
//! are arrays indexed by an enum, or per-listener structs resolved at start, so no count takes
//! a lock, allocates or looks a label up) and [`StatsSnapshot`] (a point-in-time copy for
//! tests). Why it is separate: sessions and listeners both count, and neither may reach into
//! the other (or up into `server/`) for the counters. What it must not do: decide anything
//! from a count.

mod acl;
mod counters;
mod listener;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use acl::AclDenials;
pub use counters::{Counters, Histogram, LATENCY_BUCKETS};
pub use listener::ListenerStats;

use crate::transport::HandshakeRefusal;

/// Handshake failure causes counted: every [`HandshakeRefusal`], then [`TLS_PEER_GONE`] and
/// [`WS_UPGRADE_REFUSED`].
pub const TLS_CAUSES: usize = HandshakeRefusal::ALL.len() + 2;
/// Index of a handshake that failed without a refusal moat decided (the peer went away).
pub const TLS_PEER_GONE: usize = HandshakeRefusal::ALL.len();
/// Index of a refused WebSocket upgrade (counted with the handshakes: it is the transport step).
pub const WS_UPGRADE_REFUSED: usize = HandshakeRefusal::ALL.len() + 1;

/// What a reload reloaded (index into [`Stats::reloads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadKind {
    /// The policy files.
    Policy = 0,
    /// The `tls:` files.
    Tls = 1,
    /// moat.yaml itself (SIGHUP or `moat ctl reload`).
    Config = 2,
    /// `admin.token_file`.
    AdminToken = 3,
    /// `broker.upstream`'s password and TLS files.
    UpstreamFiles = 4,
}

impl ReloadKind {
    /// How many kinds there are (the counters hold two per kind: ok, refused).
    pub const COUNT: usize = 5;
}

/// Counters every part of the server bumps; read by tests and (later) the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted by a listener.
    pub accepted: AtomicU64,
    /// Connections closed at accept because admission refused them (network, ban, rate, cap).
    pub refused_at_accept: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Connections refused on a PROXY protocol listener because the peer is not one of its
    /// `trusted_proxies` (closed before a byte is read).
    pub proxy_untrusted: AtomicU64,
    /// Connections refused before TLS for their PROXY protocol header: missing, of a version
    /// the listener does not accept, malformed or longer than allowed.
    pub proxy_header_invalid: AtomicU64,
    /// Connections refused because their PROXY protocol header did not arrive in time.
    pub proxy_header_timeout: AtomicU64,
    /// CONNECTs refused (bad packet, credentials, policy).
    pub connects_refused: AtomicU64,
    /// Upstream connections opened to the broker (only after authentication).
    pub upstream_connects: AtomicU64,
    /// Sessions currently proxied.
    pub active_sessions: AtomicU64,
    /// Sessions closed for going above a per-client limit (rate, inflight, subscriptions, size).
    pub limit_disconnects: AtomicU64,
    /// Times a session was held back (not read from) to keep it within its rate.
    pub throttled: AtomicU64,
    /// CONNECTs refused because the client id, user name or source is banned.
    pub connects_banned: AtomicU64,
    /// Password hashes verified (argon2id or mosquitto, decoys included); shared with the
    /// verifier threads that count them.
    pub password_verifications: Arc<AtomicU64>,
    /// Logins answered by the success cache instead of a verification.
    pub password_cache_hits: AtomicU64,
    /// CONNECTs refused with "server unavailable" for lack of verification capacity.
    pub password_busy: AtomicU64,
    /// Every front door's counters, registered at start (read at scrape time only).
    pub listeners: Mutex<Vec<Arc<ListenerStats>>>,
    /// TLS handshakes (and QUIC handshakes) that finished.
    pub tls_handshakes: AtomicU64,
    /// Failed handshakes by cause (index: `HandshakeRefusal as usize`, [`TLS_PEER_GONE`],
    /// [`WS_UPGRADE_REFUSED`]).
    pub tls_failures: Counters<TLS_CAUSES>,
    /// CONNECT outcomes by MQTT 5 reason code (0 = accepted; 3.x answers are counted by the
    /// code they were translated from).
    pub connect_codes: Counters<256>,
    /// CONNECTs that ended without a CONNACK (not MQTT, gone, or before the version was known).
    pub connect_closed: AtomicU64,
    /// MQTT packets read from clients.
    pub messages_in: AtomicU64,
    /// MQTT packets read from the broker for clients.
    pub messages_out: AtomicU64,
    /// Bytes of those packets from clients.
    pub bytes_in: AtomicU64,
    /// Bytes of those packets from the broker.
    pub bytes_out: AtomicU64,
    /// ACL denials by rule and action.
    pub acl_denials: AclDenials,
    /// How long opening the broker connection took (successful opens).
    pub upstream_latency: Histogram,
    /// Reloads: index `ReloadKind as usize * 2 + (refused as usize)`.
    pub reloads: Counters<{ ReloadKind::COUNT * 2 }>,
    /// Unix time of the last reload, same index as [`Stats::reloads`]; 0: never.
    pub last_reload: [AtomicI64; ReloadKind::COUNT * 2],
    /// Where the shadow policy differed from the enforced one (`ops/shadow.rs`).
    pub shadow: crate::ops::shadow::ShadowBook,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::accepted`].
    pub accepted: u64,
    /// See [`Stats::refused_at_accept`].
    pub refused_at_accept: u64,
    /// See [`Stats::handshake_failures`].
    pub handshake_failures: u64,
    /// See [`Stats::proxy_untrusted`].
    pub proxy_untrusted: u64,
    /// See [`Stats::proxy_header_invalid`].
    pub proxy_header_invalid: u64,
    /// See [`Stats::proxy_header_timeout`].
    pub proxy_header_timeout: u64,
    /// See [`Stats::connects_refused`].
    pub connects_refused: u64,
    /// See [`Stats::upstream_connects`].
    pub upstream_connects: u64,
    /// See [`Stats::active_sessions`].
    pub active_sessions: u64,
    /// See [`Stats::limit_disconnects`].
    pub limit_disconnects: u64,
    /// See [`Stats::throttled`].
    pub throttled: u64,
    /// See [`Stats::connects_banned`].
    pub connects_banned: u64,
    /// See [`Stats::password_verifications`].
    pub password_verifications: u64,
    /// See [`Stats::password_cache_hits`].
    pub password_cache_hits: u64,
    /// See [`Stats::password_busy`].
    pub password_busy: u64,
    /// Admission counters by reason.
    pub admission: crate::admission::CountersSnapshot,
}

// === impl Stats ===

impl Stats {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves a gauge up or down.
    pub(crate) fn bump_gauge(gauge: &AtomicU64, by: i64) {
        if by >= 0 {
            gauge.fetch_add(by.unsigned_abs(), Ordering::Relaxed);
        } else {
            gauge.fetch_sub(by.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Registers a listener's counters (at start, before it accepts).
    pub(crate) fn add_listener(
        &self,
        name: Arc<str>,
        transport: &'static str,
    ) -> Arc<ListenerStats> {
        let stats = Arc::new(ListenerStats::new(name, transport));
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stats.clone());
        stats
    }

    /// Counts a failed transport step (`cause`: see [`Stats::tls_failures`]).
    pub(crate) fn handshake_failed(&self, cause: usize) {
        Self::bump(&self.handshake_failures);
        self.tls_failures.bump(cause);
    }

    /// Counts a finished CONNECT phase: the MQTT 5 reason code sent, or `None` when the
    /// connection closed without a CONNACK.
    pub(crate) fn connect_outcome(&self, code: Option<u8>) {
        match code {
            Some(code) => self.connect_codes.bump(usize::from(code)),
            None => Self::bump(&self.connect_closed),
        }
    }

    /// Counts one reload and stamps its time (`now`: Unix seconds).
    pub fn record_reload(&self, kind: ReloadKind, ok: bool, now: i64) {
        let i = kind as usize * 2 + usize::from(!ok);
        self.reloads.bump(i);
        if let Some(last) = self.last_reload.get(i) {
            last.store(now, Ordering::Relaxed);
        }
    }

    /// Records a successful broker connection open.
    pub(crate) fn upstream_opened(&self, took: Duration) {
        self.upstream_latency.observe(took);
    }

    pub(crate) fn snapshot(&self, admission: crate::admission::CountersSnapshot) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: r(&self.accepted),
            refused_at_accept: r(&self.refused_at_accept),
            handshake_failures: r(&self.handshake_failures),
            proxy_untrusted: r(&self.proxy_untrusted),
            proxy_header_invalid: r(&self.proxy_header_invalid),
            proxy_header_timeout: r(&self.proxy_header_timeout),
            connects_refused: r(&self.connects_refused),
            upstream_connects: r(&self.upstream_connects),
            active_sessions: r(&self.active_sessions),
            limit_disconnects: r(&self.limit_disconnects),
            throttled: r(&self.throttled),
            connects_banned: r(&self.connects_banned),
            password_verifications: r(&self.password_verifications),
            password_cache_hits: r(&self.password_cache_hits),
            password_busy: r(&self.password_busy),
            admission,
        }
    }
}
