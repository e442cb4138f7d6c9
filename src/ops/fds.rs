//! File descriptors: how many a full house needs, whether that fits the process's limit, and
//! the connection cap that does.
//!
//! Each admitted connection holds its client socket from accept on (the admission permit is
//! taken at accept, before TLS) and, once it is authenticated, its broker connection: an
//! upstream socket in front of an external broker (2 descriptors per connection); none with the
//! embedded broker over its in-memory link (1, the default); moat's socket and rumqttd's end
//! of a loopback connection, both in this process, with `broker.embedded.link: loopback` (3).
//! Running out is not a local failure: moat's own accepts
//! fail (they back off), and rumqttd's accept loop retries at once and logs every attempt
//! (12 GB of log in two minutes). So the cap is decided at start, never discovered at EMFILE.
//!
//! When a full house does not fit, the *default* cap (moat.yaml leaves
//! `limits.max_connections` out) is lowered to what fits, with a warning naming the numbers and
//! the fix: a default config starts on a machine with a low limit, and says so loudly. A cap the
//! operator wrote down is a promise: it refuses start with the numbers and the fixes instead of
//! silently admitting fewer.
//!
//! [`plan`] is that decision, pure and unit-tested; [`raise_limit`] and [`limits`] are the
//! syscalls, kept thin. It must not decide anything else: admission enforces the cap it returns.

use crate::config::{BrokerSettings, Config, EmbeddedLink};

/// Descriptors kept aside for everything that is not a connection's: stdio (3), the runtime's
/// epoll and waker (2), the signal pipe (2), the policy watcher (inotify, 1), the listeners and
/// the embedded broker's two (5 with the shipped config), QUIC sockets, a policy file while a
/// reload reads it, the socket each listener accepts and then refuses at the cap, and (over
/// loopback) rumqttd's end of upstream connections moat has closed but rumqttd has not reaped
/// yet. An idle moat
/// holds about 20 (measured in `tests/fd_limit.rs`); 64 leaves room for that churn.
pub const RESERVE: u64 = 64;

/// What a configuration asks of the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// moat.yaml's `limits.max_connections`.
    pub max_connections: usize,
    /// Whether moat.yaml set it (rather than leaving the default).
    pub explicit: bool,
    /// Descriptors one connection holds in this process: 1 with the embedded broker in memory,
    /// 2 with an external one, 3 with the embedded one over loopback.
    pub per_connection: u64,
}

/// The cap that fits, and the numbers behind it (for the log and `moat check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Connections admitted at once: the configured cap, or fewer when it does not fit.
    pub max_connections: usize,
    /// The configured cap, when it was lowered to fit.
    pub lowered_from: Option<usize>,
    /// Descriptors a full house of the configured cap needs (reserve included).
    pub needed: u64,
    /// The descriptor limit this plan was made for.
    pub limit: u64,
    /// See [`Demand::per_connection`].
    pub per_connection: u64,
}

/// Why the configured cap cannot be served at this descriptor limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdError {
    /// moat.yaml set a cap whose full house needs more descriptors than the limit allows.
    #[error(
        "limits.max_connections is {configured}, and a full house needs {needed} file descriptors \
         ({configured} × {per_connection} + {RESERVE} reserved), but the limit is {limit}, enough \
         for {fits} connections: raise the limit (`ulimit -n {needed}`, or LimitNOFILE={needed} \
         in the systemd unit) or lower limits.max_connections to {fits}"
    )]
    CapTooHigh {
        /// The configured cap.
        configured: usize,
        /// Descriptors its full house needs.
        needed: u64,
        /// Descriptors per connection.
        per_connection: u64,
        /// The limit in force.
        limit: u64,
        /// Connections that would fit.
        fits: usize,
    },
    /// The limit does not even hold one connection beside the reserve.
    #[error(
        "the file descriptor limit is {limit}, too low to serve one connection ({per_connection} \
         per connection + {RESERVE} reserved): raise it (`ulimit -n {needed}`, or \
         LimitNOFILE={needed} in the systemd unit)"
    )]
    LimitTooLow {
        /// The limit in force.
        limit: u64,
        /// Descriptors per connection.
        per_connection: u64,
        /// Descriptors the configured cap needs.
        needed: u64,
    },
}

// === impl Demand ===

impl Demand {
    /// What `config` asks for.
    pub fn of(config: &Config) -> Self {
        let per_connection = match config.broker {
            BrokerSettings::Embedded {
                link: EmbeddedLink::Memory,
                ..
            } => 1,
            // rumqttd holds the other end of every upstream connection, in this process.
            BrokerSettings::Embedded {
                link: EmbeddedLink::Loopback,
                ..
            } => 3,
            BrokerSettings::Upstream(_) => 2,
        };
        Self {
            max_connections: config.limits.max_connections,
            explicit: config.limits.max_connections_explicit,
            per_connection,
        }
    }

    /// Descriptors a full house needs, reserve included.
    pub fn needed(&self) -> u64 {
        u64::try_from(self.max_connections)
            .unwrap_or(u64::MAX)
            .saturating_mul(self.per_connection)
            .saturating_add(RESERVE)
    }
}

// === impl Plan ===

impl Plan {
    /// The warning to log when the cap was lowered; `None` when the configured cap fits.
    pub fn warning(&self) -> Option<String> {
        let configured = self.lowered_from?;
        Some(format!(
            "the file descriptor limit is {limit}, enough for {fits} connections, not the default \
             {configured} ({configured} × {per} + {RESERVE} reserved = {needed}): admitting at \
             most {fits}; raise the limit (`ulimit -n {needed}`, or LimitNOFILE={needed} in the \
             systemd unit) or set limits.max_connections",
            limit = self.limit,
            fits = self.max_connections,
            per = self.per_connection,
            needed = self.needed,
        ))
    }
}

/// The connection cap for `demand` under a descriptor `limit` (the soft limit in force): the
/// configured cap when its full house fits; otherwise the largest that fits when the cap is the
/// default, and an error when moat.yaml set it (see the module docs for why).
pub fn plan(demand: Demand, limit: u64) -> Result<Plan, FdError> {
    let needed = demand.needed();
    let per_connection = demand.per_connection.max(1);
    let fits =
        usize::try_from(limit.saturating_sub(RESERVE) / per_connection).unwrap_or(usize::MAX);
    let plan = Plan {
        max_connections: demand.max_connections,
        lowered_from: None,
        needed,
        limit,
        per_connection,
    };
    if needed <= limit {
        return Ok(plan);
    }
    if fits == 0 {
        return Err(FdError::LimitTooLow {
            limit,
            per_connection,
            needed,
        });
    }
    if demand.explicit {
        return Err(FdError::CapTooHigh {
            configured: demand.max_connections,
            needed,
            per_connection,
            limit,
            fits,
        });
    }
    Ok(Plan {
        max_connections: fits,
        lowered_from: Some(demand.max_connections),
        ..plan
    })
}

/// The process's descriptor limits now: (soft, hard).
pub fn limits() -> std::io::Result<(u64, u64)> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
}

/// Raises the soft descriptor limit to the hard one (any process may) and returns the soft
/// limit now in force. Distributions start services at a soft limit of 1024 with a far higher
/// hard limit; the soft one is a guard for `select(2)` users, which moat is not.
pub fn raise_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    fn demand(max_connections: usize, explicit: bool, per_connection: u64) -> Demand {
        Demand {
            max_connections,
            explicit,
            per_connection,
        }
    }

    #[test]
    fn descriptors_per_connection_follow_the_broker_link() {
        let mut cfg = Config::default_for_dir(std::path::Path::new(""));
        assert_eq!(Demand::of(&cfg).per_connection, 1, "embedded, in memory");
        if let BrokerSettings::Embedded { link, .. } = &mut cfg.broker {
            *link = EmbeddedLink::Loopback;
        }
        assert_eq!(Demand::of(&cfg).per_connection, 3, "embedded, loopback");
    }

    #[test]
    fn a_full_house_that_fits_keeps_the_configured_cap() {
        let plan = plan(demand(10_000, false, 3), 524_288).unwrap();
        assert_eq!(plan.max_connections, 10_000);
        assert_eq!(plan.lowered_from, None);
        assert_eq!(plan.needed, 30_064);
        assert_eq!(plan.warning(), None);
        // Exactly at the limit still fits.
        let plan = super::plan(demand(10_000, true, 3), 30_064).unwrap();
        assert_eq!(plan.max_connections, 10_000);
    }

    #[test]
    fn the_default_cap_is_lowered_to_what_fits_with_a_warning() {
        // 1024 − 64 = 960 descriptors for connections: 320 with the embedded broker, 480 without.
        let plan = plan(demand(10_000, false, 3), 1024).unwrap();
        assert_eq!(plan.max_connections, 320);
        assert_eq!(plan.lowered_from, Some(10_000));
        let warning = plan.warning().unwrap();
        for part in [
            "1024",
            "320",
            "10000",
            "30064",
            "ulimit -n 30064",
            "LimitNOFILE=30064",
        ] {
            assert!(warning.contains(part), "{part} missing: {warning}");
        }
        let plan = super::plan(demand(10_000, false, 2), 1024).unwrap();
        assert_eq!(plan.max_connections, 480);
        // The lowered cap's own full house fits.
        assert!(demand(plan.max_connections, false, 2).needed() <= 1024);
    }

    #[test]
    fn an_explicit_cap_that_does_not_fit_refuses_with_the_numbers() {
        let err = plan(demand(1000, true, 3), 1024).unwrap_err();
        assert_eq!(
            err,
            FdError::CapTooHigh {
                configured: 1000,
                needed: 3064,
                per_connection: 3,
                limit: 1024,
                fits: 320
            }
        );
        let text = err.to_string();
        for part in [
            "1000",
            "3064",
            "1024",
            "320",
            "ulimit -n 3064",
            "LimitNOFILE=3064",
        ] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
    }

    #[test]
    fn a_limit_below_the_reserve_refuses_even_the_default() {
        for limit in [0, 10, RESERVE, RESERVE + 2] {
            let err = plan(demand(10_000, false, 3), limit).unwrap_err();
            assert!(matches!(err, FdError::LimitTooLow { .. }), "{limit}: {err}");
        }
        assert_eq!(
            plan(demand(10_000, false, 3), RESERVE + 3)
                .unwrap()
                .max_connections,
            1
        );
    }

    #[test]
    fn huge_numbers_saturate_instead_of_wrapping() {
        let plan = plan(demand(usize::MAX, false, 3), u64::MAX).unwrap();
        assert_eq!(plan.needed, u64::MAX);
        assert_eq!(plan.max_connections, usize::MAX);
    }
}
