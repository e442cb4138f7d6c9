//! Counters every part of moat bumps: listeners, transports and sessions.
//!
//! What it owns: [`Stats`] (relaxed atomics, bumped where the event happens) and
//! [`StatsSnapshot`] (a point-in-time copy for tests and, later, the metrics endpoint). Why it is
//! separate: sessions and listeners both count, and neither may reach into the other (or up
//! into `server/`) for the counters. What it must not do: decide anything from a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters every part of the server bumps; read by tests and (later) the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted by a listener.
    pub accepted: AtomicU64,
    /// Connections closed at accept because admission refused them (network, ban, rate, cap).
    pub refused_at_accept: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
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

    pub(crate) fn snapshot(&self, admission: crate::admission::CountersSnapshot) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: r(&self.accepted),
            refused_at_accept: r(&self.refused_at_accept),
            handshake_failures: r(&self.handshake_failures),
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
