//! What moat's memory will be, said before it runs (`moat check`): a fixed part at start and a
//! part per idle session, times the connection cap in force.
//!
//! The figures are measurements, not derivations, and say where they come from:
//! - [`BASE_KIB`]: RSS of an idle `moat run` (three listeners, embedded broker, no client)
//!   minus its password verifiers' memory: 63.4 MiB − 2 × 19 MiB on the 2-core development
//!   machine (debug build; `grep VmRSS /proc/$(pidof moat)/status` 3 s after start, the same
//!   with `limits.max_connections: 100`: the embedded broker's tables for the cap are reserved,
//!   not touched, so idle RSS does not grow with the cap, only VmData: 54.9 → 64.3 MiB for
//!   100 → 6,645 connections).
//! - [`SESSION_KIB`] and [`SESSION_EMBEDDED_KIB`]: BENCHMARKS.md, "KiB/idle conn" (release,
//!   TLS 1.3, 9,000 idle sessions): moat in front of an external broker 8.0 KiB; moat with its
//!   embedded rumqttd 13.6-13.7 KiB ("An idle embedded link holds no queue", in-memory link,
//!   2,000 idle sessions; about half of it rumqttd's link task and router state).
//! - Each password verifier holds the largest argon2 memory cost of the policy's hashes
//!   (`Policy::password_memory_blocks`), one verifier per core up to 8 (`authn`).

use crate::config::{BrokerSettings, Config};

/// Fixed RSS at start, without the password verifiers (see the module docs).
pub const BASE_KIB: u64 = 25 * 1024;
/// RSS per idle session, moat alone (an external broker).
pub const SESSION_KIB: u64 = 8;
/// RSS per idle session with the embedded broker (moat and rumqttd together).
pub const SESSION_EMBEDDED_KIB: u64 = 14;

/// The estimate for one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// RSS at start, verifiers included.
    pub idle_kib: u64,
    /// The password verifiers' part of it.
    pub verifiers: usize,
    /// Memory of each verifier.
    pub verifier_kib: u64,
    /// RSS added by each idle session.
    pub per_session_kib: u64,
    /// The connection cap in force.
    pub cap: usize,
}

// === impl Estimate ===

impl Estimate {
    /// For `config` with `cap` connections, `verifiers` password verifiers of `verifier_kib`.
    pub fn of(config: &Config, cap: usize, verifiers: usize, verifier_kib: u64) -> Estimate {
        let per_session_kib = match config.broker {
            BrokerSettings::Embedded { .. } => SESSION_EMBEDDED_KIB,
            BrokerSettings::Upstream(_) => SESSION_KIB,
        };
        Estimate {
            idle_kib: BASE_KIB + verifiers as u64 * verifier_kib,
            verifiers,
            verifier_kib,
            per_session_kib,
            cap,
        }
    }

    /// RSS with every connection of the cap up and idle.
    pub fn at_cap_kib(&self) -> u64 {
        self.idle_kib
            .saturating_add(self.per_session_kib.saturating_mul(self.cap as u64))
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib.div_ceil(1024);
        write!(
            f,
            "~{} MiB idle ({} MiB base + {} password verifier(s) × {} MiB), + {} KiB per idle \
             session: ~{} MiB at {} connections",
            mib(self.idle_kib),
            mib(BASE_KIB),
            self.verifiers,
            mib(self.verifier_kib),
            self.per_session_kib,
            mib(self.at_cap_kib()),
            self.cap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_base_plus_verifiers_plus_sessions_at_the_cap() {
        let cfg = Config::default_for_dir(std::path::Path::new(""));
        let e = Estimate::of(&cfg, 10_000, 2, 19 * 1024);
        assert_eq!(e.idle_kib, (25 + 38) * 1024);
        assert_eq!(e.at_cap_kib(), (25 + 38) * 1024 + 14 * 10_000);
        assert_eq!(
            e.to_string(),
            "~63 MiB idle (25 MiB base + 2 password verifier(s) × 19 MiB), + 14 KiB per idle \
             session: ~200 MiB at 10000 connections"
        );
    }
}
