//! Per-session limits, pure: token buckets fed `now`, subscription counts, topic sizes.
//!
//! The machine shows every decoded client packet to [`SessionLimits::check`] before it judges
//! it. The answer is [`Check::Pass`], [`Check::Wait`] (throttle: the machine tells the driver
//! not to read the client for that long, so TCP backpressure slows the client) or
//! [`Check::Refuse`] (the session ends with the reason code `error.rs` picks). The inflight
//! limit (Receive Maximum) is not here: the one table of open QoS 1/2 exchanges is
//! `state/flow.rs`, which refuses with [`SessionLimits::refuse`]. No tokio, no clock: time
//! comes in.

use crate::hashing::LazySet;
use std::time::{Duration, Instant};

use crate::mqtt::Packet;
use crate::policy::{Bucket, ClientLimits, OnExceed, RuleRef};
use crate::session::error::{Exceeded, PolicyRefusal, Refusal};

/// What the machine does with a packet.
#[derive(Debug)]
pub(crate) enum Check {
    /// Go on.
    Pass,
    /// Go on, then read nothing from the client for this long (throttle).
    Wait(Duration),
    /// End the session.
    Refuse(Refusal),
}

/// A token bucket: `burst` tokens, refilled at `rate`, borrowing allowed (a reservation
/// that goes below zero is paid back by waiting), so a packet larger than the burst still
/// passes once the bucket is full instead of never.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

// === impl TokenBucket ===

impl TokenBucket {
    pub(crate) fn new(b: Bucket) -> Self {
        #[allow(clippy::cast_precision_loss)] // bursts far below 2^53
        let burst = b.burst.max(1) as f64;
        TokenBucket {
            per_sec: b.rate.per_second(),
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Takes `n` and returns how long to wait until the debt is paid (zero: within the rate).
    pub(crate) fn reserve(&mut self, now: Instant, n: u64) -> Duration {
        self.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        self.tokens -= n;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-self.tokens / self.per_sec).unwrap_or(Duration::MAX)
    }

    /// Takes `n` if the bucket holds them (or is full, for `n` above the burst); false leaves
    /// it untouched.
    pub(crate) fn try_take(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        if self.tokens >= n.min(self.burst) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The limit state of one session.
///
/// Kept compact, as every idle session holds one: only the limits checked after CONNECT, and
/// the rate buckets boxed, allocated only when the policy sets a rate.
#[derive(Debug)]
pub(crate) struct SessionLimits {
    limits: Caps,
    rates: Option<Box<Rates>>,
    /// Topic filters the session holds (as far as moat can tell: refused ones count too).
    subscriptions: LazySet<String>,
}

/// The parts of [`ClientLimits`] a session checks after its CONNECT.
#[derive(Debug)]
struct Caps {
    max_inflight: u16,
    publish_on_exceed: OnExceed,
    subscribe_on_exceed: OnExceed,
    max_subscriptions: u32,
    max_topic_length: usize,
    max_topic_levels: usize,
    rule: RuleRef,
}

/// A session's rate buckets (any may be unset).
#[derive(Debug)]
struct Rates {
    publish: Option<TokenBucket>,
    publish_bytes: Option<TokenBucket>,
    subscribe: Option<TokenBucket>,
}

// === impl SessionLimits ===

impl SessionLimits {
    pub(crate) fn new(limits: ClientLimits) -> Self {
        let any_rate = limits.publish.is_some()
            || limits.publish_bytes.is_some()
            || limits.subscribe.is_some();
        let rates = any_rate.then(|| {
            Box::new(Rates {
                publish: limits.publish.map(TokenBucket::new),
                publish_bytes: limits.publish_bytes.map(TokenBucket::new),
                subscribe: limits.subscribe.map(TokenBucket::new),
            })
        });
        SessionLimits {
            rates,
            subscriptions: LazySet::default(),
            limits: Caps {
                max_inflight: limits.max_inflight,
                publish_on_exceed: limits.publish_on_exceed,
                subscribe_on_exceed: limits.subscribe_on_exceed,
                max_subscriptions: limits.max_subscriptions,
                max_topic_length: limits.max_topic_length,
                max_topic_levels: limits.max_topic_levels,
                rule: limits.rule,
            },
        }
    }

    /// A packet from the client (`len`: its frame's size), before the machine judges it.
    pub(crate) fn check(&mut self, now: Instant, packet: &Packet, len: usize) -> Check {
        match packet {
            Packet::Publish(p) => self.publish(now, p.topic.as_str().as_bytes(), len),
            Packet::Subscribe(s) => {
                for (filter, _) in &s.filters {
                    if let Some(refusal) = self.check_topic(filter.as_str().as_bytes()) {
                        return Check::Refuse(refusal);
                    }
                    self.subscriptions.insert(filter.as_str().to_owned());
                }
                if self.subscriptions.len()
                    > usize::try_from(self.limits.max_subscriptions).unwrap_or(usize::MAX)
                {
                    return Check::Refuse(self.refuse(Exceeded::Subscriptions));
                }
                self.subscribe(now)
            }
            Packet::Unsubscribe(u) => {
                for filter in &u.filters {
                    self.subscriptions.remove(filter.as_str());
                }
                self.subscribe(now)
            }
            _ => Check::Pass,
        }
    }

    /// Most QoS 1/2 PUBLISHes of the client that may be open at once (the policy's
    /// `max_inflight`; `state/flow.rs` enforces it with the Receive Maximum).
    pub(crate) fn max_inflight(&self) -> u16 {
        self.limits.max_inflight
    }

    fn publish(&mut self, now: Instant, topic: &[u8], len: usize) -> Check {
        if let Some(refusal) = self.check_topic(topic) {
            return Check::Refuse(refusal);
        }
        let bytes = u64::try_from(len).unwrap_or(u64::MAX);
        let on_exceed = self.limits.publish_on_exceed;
        let mut wait = Duration::ZERO;
        let mut over = None;
        let Some(rates) = self.rates.as_deref_mut() else {
            return Check::Pass;
        };
        for (bucket, n, what) in [
            (&mut rates.publish, 1, Exceeded::PublishRate),
            (&mut rates.publish_bytes, bytes, Exceeded::PublishBytes),
        ] {
            let Some(bucket) = bucket else { continue };
            match on_exceed {
                OnExceed::Throttle => wait = wait.max(bucket.reserve(now, n)),
                OnExceed::Disconnect if bucket.try_take(now, n) => {}
                OnExceed::Disconnect => {
                    over = Some(what);
                    break;
                }
            }
        }
        if let Some(what) = over {
            return Check::Refuse(self.refuse(what));
        }
        if wait.is_zero() {
            Check::Pass
        } else {
            Check::Wait(wait)
        }
    }

    /// The subscribe rate (SUBSCRIBE and UNSUBSCRIBE alike).
    fn subscribe(&mut self, now: Instant) -> Check {
        let Some(bucket) = self.rates.as_deref_mut().and_then(|r| r.subscribe.as_mut()) else {
            return Check::Pass;
        };
        match self.limits.subscribe_on_exceed {
            OnExceed::Throttle => match bucket.reserve(now, 1) {
                d if d.is_zero() => Check::Pass,
                d => Check::Wait(d),
            },
            OnExceed::Disconnect if bucket.try_take(now, 1) => Check::Pass,
            OnExceed::Disconnect => Check::Refuse(self.refuse(Exceeded::SubscribeRate)),
        }
    }

    fn check_topic(&self, topic: &[u8]) -> Option<Refusal> {
        if topic.len() > self.limits.max_topic_length {
            return Some(self.refuse(Exceeded::TopicLength));
        }
        let levels = topic.iter().filter(|b| **b == b'/').count() + 1;
        if levels > self.limits.max_topic_levels {
            return Some(self.refuse(Exceeded::TopicLevels));
        }
        None
    }

    /// The refusal for going above `what`, naming the rule behind these limits.
    pub(crate) fn refuse(&self, what: Exceeded) -> Refusal {
        PolicyRefusal::Limit(what, self.limits.rule.clone()).into()
    }

    /// The rule behind these limits (for tests and logs).
    #[cfg(test)]
    pub(crate) fn rule(&self) -> &RuleRef {
        &self.limits.rule
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
