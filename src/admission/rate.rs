//! Connection rates: one governor limiter keyed by source and one global limiter.
//!
//! The key space is attacker-controlled (a single IPv6 host owns 2^64 addresses, so sources
//! are keyed by prefix, see `policy::source_key`), and governor forgets nothing on its own:
//! [`ConnRate::clean`] runs `retain_recent` from the gate's housekeeping task, and once
//! `max_tracked_sources` keys are tracked, new sources share one overflow bucket until the
//! table shrinks. The limiters are rebuilt when a policy reload changes the numbers.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::policy::{Bucket, ConnectionLimits};

/// What a per-source bucket is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// One source (IPv4 address or IPv6 prefix).
    Source(IpAddr),
    /// Every new source while the table is full.
    Overflow,
}

/// Which limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateExceeded {
    /// This source's rate.
    Source,
    /// The global rate.
    Global,
}

/// The limiters built for one set of numbers.
struct Limiters {
    per_source: Option<(Bucket, DefaultKeyedRateLimiter<Key>)>,
    global: Option<(Bucket, DefaultDirectRateLimiter)>,
    max_keys: usize,
}

/// Connection-rate state of the gate.
pub(crate) struct ConnRate {
    current: ArcSwap<Limiters>,
}

// === impl ConnRate ===

impl ConnRate {
    pub(crate) fn new(limits: &ConnectionLimits) -> Self {
        ConnRate {
            current: ArcSwap::from_pointee(Limiters::build(limits)),
        }
    }

    /// Takes one connection from `source`'s bucket and the global one.
    pub(crate) fn check(
        &self,
        source: IpAddr,
        limits: &ConnectionLimits,
    ) -> Result<(), RateExceeded> {
        let l = self.limiters(limits);
        if let Some((_, keyed)) = &l.per_source {
            // A full table cannot tell old keys from new ones cheaply, so while it is full every
            // source shares the overflow bucket: degraded, but bounded.
            let key = if keyed.len() >= l.max_keys {
                Key::Overflow
            } else {
                Key::Source(source)
            };
            keyed.check_key(&key).map_err(|_| RateExceeded::Source)?;
        }
        if let Some((_, global)) = &l.global {
            global.check().map_err(|_| RateExceeded::Global)?;
        }
        Ok(())
    }

    /// Forgets sources whose buckets have refilled; called periodically.
    pub(crate) fn clean(&self) {
        let l = self.current.load();
        if let Some((_, keyed)) = &l.per_source {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
    }

    /// Sources currently tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.current
            .load()
            .per_source
            .as_ref()
            .map_or(0, |(_, k)| k.len())
    }

    /// The limiters for `limits`, rebuilt if a reload changed them.
    fn limiters(&self, limits: &ConnectionLimits) -> Arc<Limiters> {
        let l = self.current.load_full();
        if l.matches(limits) {
            return l;
        }
        let fresh = Arc::new(Limiters::build(limits));
        self.current.store(fresh.clone());
        fresh
    }
}

// === impl Limiters ===

impl Limiters {
    fn build(limits: &ConnectionLimits) -> Self {
        Limiters {
            per_source: limits
                .per_source
                .map(|b| (b, RateLimiter::dashmap(quota(b)))),
            global: limits.global.map(|b| (b, RateLimiter::direct(quota(b)))),
            max_keys: limits.max_tracked_sources,
        }
    }

    fn matches(&self, limits: &ConnectionLimits) -> bool {
        self.per_source.as_ref().map(|(b, _)| *b) == limits.per_source
            && self.global.as_ref().map(|(b, _)| *b) == limits.global
            && self.max_keys == limits.max_tracked_sources
    }
}

fn quota(b: Bucket) -> Quota {
    let burst =
        NonZeroU32::new(u32::try_from(b.burst).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    // `interval` is at least 1 ns, so `with_period` always has a quota to return.
    Quota::with_period(b.rate.interval())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::Rate;

    fn limits(burst: u64, max_keys: usize) -> ConnectionLimits {
        ConnectionLimits {
            per_source: Some(Bucket {
                rate: Rate {
                    amount: 1,
                    per: Duration::from_secs(3600),
                },
                burst,
            }),
            global: None,
            max_tracked_sources: max_keys,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn per_source_burst_then_refused_other_sources_unaffected() {
        let l = limits(3, 100);
        let r = ConnRate::new(&l);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            r.check(a, &l).unwrap();
        }
        assert_eq!(r.check(a, &l), Err(RateExceeded::Source));
        r.check(b, &l).unwrap();
    }

    #[test]
    fn table_is_bounded_new_sources_share_the_overflow_bucket() {
        let l = limits(2, 16);
        let r = ConnRate::new(&l);
        for i in 0..16u8 {
            r.check(IpAddr::from([10, 0, 0, i]), &l).unwrap();
        }
        assert_eq!(r.tracked(), 16);
        // Full: new sources land in one shared bucket (burst 2), so at most one key is added.
        let mut passed = 0;
        for i in 0..100u8 {
            if r.check(IpAddr::from([10, 1, 0, i]), &l).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 2);
        assert_eq!(r.tracked(), 17);
    }

    #[test]
    fn a_reload_with_new_numbers_rebuilds() {
        let l = limits(1, 100);
        let r = ConnRate::new(&l);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        r.check(a, &l).unwrap();
        assert!(r.check(a, &l).is_err());
        let wider = limits(5, 100);
        r.check(a, &wider).unwrap();
    }
}
