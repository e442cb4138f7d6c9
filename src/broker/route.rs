//! Which broker address a new session tries, in which order.
//!
//! What it owns: a [`Route`], the addresses of one MQTT version's broker (`broker.upstream`),
//! the strategy (failover in the listed order, or round robin), and each address's health: an
//! address that failed is put last for `backoff`, so sessions do not queue up behind a dead
//! broker while another answers, and it is still tried when nothing else works. It also keeps
//! what a host name resolved to, for [`RESOLVED_FOR`], dropped when the address fails so the
//! next try resolves it again. What it must not do: open sockets or resolve names (that is
//! `link.rs`), or read the clock: the caller passes `now`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{UpstreamAddr, UpstreamStrategy};

/// How long what a host name resolved to is used before it is resolved again (a DNS change
/// then reaches moat within this, and a failure drops it at once).
pub(crate) const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// The broker addresses of one MQTT version, and what moat knows about each.
#[derive(Debug)]
pub struct Route {
    /// In the operator's order (never empty when built from moat.yaml).
    endpoints: Vec<Endpoint>,
    /// Failover or round robin.
    strategy: UpstreamStrategy,
    /// How long a failed address is tried only after the others.
    backoff: Duration,
    /// Round robin: where the next session starts.
    cursor: AtomicUsize,
}

/// One broker address and its state.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// As written in moat.yaml (for logs, SNI and resolution).
    pub(crate) addr: UpstreamAddr,
    /// The host when it is an IP literal: nothing to resolve.
    literal: Option<IpAddr>,
    /// When it last failed, while that counts (`backoff`).
    failed_at: Mutex<Option<Instant>>,
    /// What the host name resolved to, and when.
    resolved: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
}

// === impl Route ===

impl Route {
    /// A route over `addrs`.
    pub fn new(addrs: &[UpstreamAddr], strategy: UpstreamStrategy, backoff: Duration) -> Self {
        Route {
            endpoints: addrs
                .iter()
                .map(|addr| Endpoint {
                    literal: addr.host.parse().ok(),
                    addr: addr.clone(),
                    failed_at: Mutex::new(None),
                    resolved: Mutex::new(None),
                })
                .collect(),
            strategy,
            backoff,
            cursor: AtomicUsize::new(0),
        }
    }

    /// One fixed address (the embedded broker's listener).
    pub fn fixed(addr: SocketAddr) -> Self {
        let addr = UpstreamAddr {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        Route::new(&[addr], UpstreamStrategy::Failover, Duration::ZERO)
    }

    /// The first address when it is an IP literal: the embedded broker's listener (tests
    /// connect to it directly).
    pub fn first_socket_addr(&self) -> Option<SocketAddr> {
        let first = self.endpoints.first()?;
        Some(SocketAddr::new(first.literal?, first.addr.port))
    }

    /// Every address, in the operator's order.
    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The addresses a new session tries, in order: by strategy among the healthy ones, then
    /// those still in back-off (the longest failed first), so a session is refused only when
    /// every address failed it.
    pub(crate) fn plan(&self, now: Instant) -> Vec<&Endpoint> {
        let n = self.endpoints.len();
        let start = match self.strategy {
            UpstreamStrategy::Failover => 0,
            UpstreamStrategy::RoundRobin if n > 0 => {
                self.cursor.fetch_add(1, Ordering::Relaxed) % n
            }
            UpstreamStrategy::RoundRobin => 0,
        };
        let mut healthy = Vec::with_capacity(n);
        let mut backing_off = Vec::new();
        for i in 0..n {
            let Some(endpoint) = self.endpoints.get((start + i) % n) else {
                continue;
            };
            match endpoint.failed_since(now, self.backoff) {
                None => healthy.push(endpoint),
                Some(at) => backing_off.push((at, endpoint)),
            }
        }
        backing_off.sort_by_key(|(at, _)| *at);
        healthy.extend(backing_off.into_iter().map(|(_, e)| e));
        healthy
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// When it failed, if that is less than `backoff` ago.
    fn failed_since(&self, now: Instant, backoff: Duration) -> Option<Instant> {
        let failed = self.failed_at.lock().ok()?;
        let at = (*failed)?;
        (now.saturating_duration_since(at) < backoff).then_some(at)
    }

    /// The address failed (unreachable, TLS refused, no CONNACK, broker unavailable): put it
    /// last for a while, and resolve its name again next time.
    pub(crate) fn failed(&self, now: Instant) {
        if let Ok(mut failed) = self.failed_at.lock() {
            *failed = Some(now);
        }
        if let Ok(mut resolved) = self.resolved.lock() {
            *resolved = None;
        }
    }

    /// The address served a session: healthy again.
    pub(crate) fn succeeded(&self) {
        if let Ok(mut failed) = self.failed_at.lock() {
            *failed = None;
        }
    }

    /// The socket address when the host is an IP literal.
    pub(crate) fn literal(&self) -> Option<SocketAddr> {
        self.literal.map(|ip| SocketAddr::new(ip, self.addr.port))
    }

    /// What the host name resolved to, if that is recent enough.
    pub(crate) fn cached(&self, now: Instant) -> Option<Vec<SocketAddr>> {
        let resolved = self.resolved.lock().ok()?;
        let (at, addrs) = resolved.as_ref()?;
        (now.saturating_duration_since(*at) < RESOLVED_FOR).then(|| addrs.clone())
    }

    /// Remembers what the host name resolved to.
    pub(crate) fn remember(&self, now: Instant, addrs: Vec<SocketAddr>) {
        if let Ok(mut resolved) = self.resolved.lock() {
            *resolved = Some((now, addrs));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn route(strategy: UpstreamStrategy) -> Route {
        let addrs: Vec<UpstreamAddr> = ["a.example", "b.example", "10.0.0.3"]
            .iter()
            .map(|h| UpstreamAddr {
                host: (*h).into(),
                port: 1883,
            })
            .collect();
        Route::new(&addrs, strategy, Duration::from_secs(5))
    }

    fn hosts(plan: &[&Endpoint]) -> Vec<String> {
        plan.iter().map(|e| e.addr.host.clone()).collect()
    }

    #[test]
    fn failover_keeps_the_listed_order_and_puts_a_failed_address_last_for_its_backoff() {
        let r = route(UpstreamStrategy::Failover);
        let t0 = Instant::now();
        assert_eq!(hosts(&r.plan(t0)), ["a.example", "b.example", "10.0.0.3"]);
        assert_eq!(hosts(&r.plan(t0)), ["a.example", "b.example", "10.0.0.3"]);
        r.plan(t0)[0].failed(t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(hosts(&r.plan(t1)), ["b.example", "10.0.0.3", "a.example"]);
        r.plan(t1)[0].failed(t1);
        // Both in back-off: the one that failed longest ago is tried first among them.
        assert_eq!(hosts(&r.plan(t1)), ["10.0.0.3", "a.example", "b.example"]);
        // After its back-off, a failed address is first again.
        let t2 = t0 + Duration::from_secs(5);
        assert_eq!(hosts(&r.plan(t2)), ["a.example", "10.0.0.3", "b.example"]);
        r.plan(t2)[2].succeeded();
        assert_eq!(hosts(&r.plan(t2)), ["a.example", "b.example", "10.0.0.3"]);
    }

    #[test]
    fn round_robin_starts_each_session_at_the_next_address() {
        let r = route(UpstreamStrategy::RoundRobin);
        let t0 = Instant::now();
        let firsts: Vec<String> = (0..6).map(|_| hosts(&r.plan(t0))[0].clone()).collect();
        assert_eq!(
            firsts,
            [
                "a.example",
                "b.example",
                "10.0.0.3",
                "a.example",
                "b.example",
                "10.0.0.3"
            ]
        );
        r.endpoints[1].failed(t0);
        let firsts: Vec<String> = (0..3).map(|_| hosts(&r.plan(t0))[0].clone()).collect();
        assert!(!firsts.contains(&"b.example".to_string()), "{firsts:?}");
    }

    #[test]
    fn a_resolution_is_kept_for_a_while_and_dropped_when_the_address_fails() {
        let r = route(UpstreamStrategy::Failover);
        let t0 = Instant::now();
        let e = &r.endpoints[0];
        assert_eq!(e.literal(), None);
        assert_eq!(
            r.endpoints[2].literal(),
            Some("10.0.0.3:1883".parse().unwrap())
        );
        let addrs = vec!["10.1.1.1:1883".parse().unwrap()];
        e.remember(t0, addrs.clone());
        assert_eq!(e.cached(t0 + Duration::from_secs(1)), Some(addrs.clone()));
        assert_eq!(e.cached(t0 + RESOLVED_FOR), None);
        e.remember(t0, addrs);
        e.failed(t0);
        assert_eq!(e.cached(t0), None);
    }
}
