//! Readiness: whether this moat should be sent new clients (`GET /readyz`).
//!
//! Ready means every listener is bound, the broker is reachable and moat is not draining.
//! Why it is separate: a load balancer polls it, so each check must be cheap and must not
//! become a way to hammer the broker: the embedded broker's own supervisor flag is read as it
//! is; an upstream broker is probed with bounded TCP connects (up when any address of each MQTT
//! version's route answers, as a session would fail over to it), whose answer is kept for
//! [`PROBE_TTL`], and concurrent probes share one attempt.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::broker::{Health, Route};
use crate::shutdown::DrainState;

/// How long one probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(2);
/// Longest a probe waits for the upstream broker's TCP handshake.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What readiness reads: shared by the admin routes and the server that sets `bound`.
#[derive(Debug)]
pub struct Readiness {
    /// Set once every listener is bound.
    bound: AtomicBool,
    /// Whether shutdown (or a drain) has started.
    drain: DrainState,
    /// How to tell whether the broker is there.
    broker: BrokerCheck,
}

/// How the broker's reachability is known.
#[derive(Debug)]
pub enum BrokerCheck {
    /// The embedded broker: its supervisor clears the flag when it dies.
    Embedded(Arc<Health>),
    /// An upstream broker: probed by TCP connect, answer cached.
    Upstream {
        /// The addresses per MQTT version (one route when both versions share them); a route
        /// is up when any of its addresses answers, as a session would fail over to it.
        routes: Vec<Arc<Route>>,
        /// The last probe: when, and whether every address answered.
        last: Mutex<Option<(Instant, bool)>>,
    },
}

/// Why moat is not ready; the text is the 503 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Not every listener is bound yet.
    Listeners,
    /// The broker does not answer.
    Broker,
    /// Draining or shutting down.
    Draining,
}

// === impl NotReady ===

impl NotReady {
    /// A short reason for the 503 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listeners => "listeners not bound",
            Self::Broker => "broker unreachable",
            Self::Draining => "draining",
        }
    }
}

// === impl BrokerCheck ===

impl BrokerCheck {
    /// A check for an upstream broker reached by these routes (`broker.upstream`).
    pub fn upstream(v3: Arc<Route>, v5: Arc<Route>) -> Self {
        let mut routes = vec![v3];
        if routes.first().is_some_and(|v3| !Arc::ptr_eq(v3, &v5)) {
            routes.push(v5);
        }
        BrokerCheck::Upstream {
            routes,
            last: Mutex::new(None),
        }
    }

    /// Whether the broker is reachable now (or was, less than [`PROBE_TTL`] ago).
    pub async fn is_up(&self) -> bool {
        match self {
            BrokerCheck::Embedded(health) => health.is_up(),
            BrokerCheck::Upstream { routes, last } => {
                // Held across the probe: callers arriving meanwhile wait for its answer
                // (bounded by PROBE_TIMEOUT per address) instead of probing again.
                let mut last = last.lock().await;
                if let Some((at, up)) = *last {
                    if at.elapsed() < PROBE_TTL {
                        return up;
                    }
                }
                let mut up = true;
                for route in routes {
                    up &= route_answers(route).await;
                }
                *last = Some((Instant::now(), up));
                up
            }
        }
    }
}

/// Whether any address of `route` accepts a TCP connection (a host name resolved as a session
/// would resolve it), each step within [`PROBE_TIMEOUT`].
async fn route_answers(route: &Route) -> bool {
    for endpoint in route.endpoints() {
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(PROBE_TIMEOUT, crate::broker::link::resolve(endpoint)).await
            {
                Ok(Ok(addrs)) => addrs,
                _ => continue,
            };
        for addr in addrs {
            let connect = tokio::net::TcpStream::connect(addr);
            if matches!(
                tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                Ok(Ok(_))
            ) {
                return true;
            }
        }
    }
    false
}

// === impl Readiness ===

impl Readiness {
    /// Not ready until [`Readiness::listeners_bound`] is called.
    pub fn new(drain: DrainState, broker: BrokerCheck) -> Self {
        Readiness {
            bound: AtomicBool::new(false),
            drain,
            broker,
        }
    }

    /// Every listener is bound.
    pub fn listeners_bound(&self) {
        self.bound.store(true, Ordering::Release);
    }

    /// Whether the broker is reachable (the `moat_broker_up` gauge reads it too).
    pub async fn broker_up(&self) -> bool {
        self.broker.is_up().await
    }

    /// Ready, or the first reason not to be (draining first: it is the one an operator chose).
    pub async fn check(&self) -> Result<(), NotReady> {
        if self.drain.is_draining() {
            return Err(NotReady::Draining);
        }
        if !self.bound.load(Ordering::Acquire) {
            return Err(NotReady::Listeners);
        }
        if !self.broker_up().await {
            return Err(NotReady::Broker);
        }
        Ok(())
    }
}
