//! Readiness: whether this moat should be sent new clients (`GET /readyz`).
//!
//! Ready means every listener is bound, the broker is reachable and moat is not draining.
//! Why it is separate: a load balancer polls it, so each check must be cheap and must not
//! become a way to hammer the broker: the embedded broker's own supervisor flag is read as it
//! is; an upstream broker is probed with one bounded TCP connect whose answer is kept for
//! [`PROBE_TTL`], and concurrent probes share one attempt.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::broker::Health;
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
        /// Every distinct upstream address (v3, v5).
        addrs: Vec<SocketAddr>,
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
    /// A check for an upstream broker at these addresses.
    pub fn upstream(v3: SocketAddr, v5: SocketAddr) -> Self {
        let mut addrs = vec![v3];
        if v5 != v3 {
            addrs.push(v5);
        }
        BrokerCheck::Upstream {
            addrs,
            last: Mutex::new(None),
        }
    }

    /// Whether the broker is reachable now (or was, less than [`PROBE_TTL`] ago).
    pub async fn is_up(&self) -> bool {
        match self {
            BrokerCheck::Embedded(health) => health.is_up(),
            BrokerCheck::Upstream { addrs, last } => {
                // Held across the probe: callers arriving meanwhile wait for its answer
                // (bounded by PROBE_TIMEOUT per address) instead of probing again.
                let mut last = last.lock().await;
                if let Some((at, up)) = *last {
                    if at.elapsed() < PROBE_TTL {
                        return up;
                    }
                }
                let mut up = true;
                for addr in addrs {
                    let connect = tokio::net::TcpStream::connect(addr);
                    up &= matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                        Ok(Ok(_))
                    );
                }
                *last = Some((Instant::now(), up));
                up
            }
        }
    }
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
