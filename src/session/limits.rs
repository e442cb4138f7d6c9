//! Per-session limits, pure: token buckets fed `now`, inflight QoS 1/2 and subscription counts.
//!
//! The driver shows every client frame to [`SessionLimits::on_client_frame`] before the state
//! machine sees it, and every frame it writes to the client to
//! [`SessionLimits::on_frame_to_client`] (acknowledgements end inflight exchanges). The answer
//! is [`Check::Pass`], [`Check::Wait`] (throttle: the driver stops reading for that long, so TCP
//! backpressure slows the client) or [`Check::Refuse`] (the session ends with the reason code
//! `error.rs` picks). PUBLISH frames, the hot path, are only peeked at (type, QoS, topic,
//! packet id); SUBSCRIBE and UNSUBSCRIBE are decoded. No tokio, no clock: time comes in.

use crate::hashing::LazySet;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::{Exceeded, PolicyRefusal, Refusal};
use crate::mqtt::{self, Packet, ProtocolVersion};
use crate::policy::{Bucket, ClientLimits, OnExceed, RuleRef};

/// What the driver does with a frame.
#[derive(Debug)]
pub(crate) enum Check {
    /// Go on.
    Pass,
    /// Go on after this long without reading from the client (throttle).
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
    version: ProtocolVersion,
    limits: Caps,
    rates: Option<Box<Rates>>,
    /// Packet ids of the client's QoS 1/2 PUBLISHes not yet completed toward the client.
    inflight: LazySet<u16>,
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
    pub(crate) fn new(version: ProtocolVersion, limits: ClientLimits) -> Self {
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
            version,
            rates,
            inflight: LazySet::default(),
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

    /// A frame from the client, before the state machine sees it.
    pub(crate) fn on_client_frame(&mut self, now: Instant, frame: &Bytes) -> Check {
        let kind = frame.first().map(|b| b >> 4);
        match kind {
            Some(3) => self.publish(now, frame),
            Some(8) | Some(10) => self.subscribe(now, frame),
            _ => Check::Pass,
        }
    }

    /// A frame moat writes to the client: acknowledgements of the client's PUBLISHes end
    /// their inflight exchange.
    pub(crate) fn on_frame_to_client(&mut self, frame: &[u8]) {
        let (Some(&byte1), Some(start), Some(id)) =
            (frame.first(), body_start(frame), ack_id(frame))
        else {
            return;
        };
        // A v5 acknowledgement may carry a reason code after the id; none means success.
        let reason = frame.get(start + 2).copied().unwrap_or(0);
        match byte1 >> 4 {
            // PUBACK, PUBCOMP; PUBREC with a failure code ends a QoS 2 exchange [MQTT-4.3.3].
            4 | 7 => {
                self.inflight.remove(&id);
            }
            5 if reason >= 0x80 => {
                self.inflight.remove(&id);
            }
            _ => {}
        }
    }

    fn publish(&mut self, now: Instant, frame: &Bytes) -> Check {
        let Some(p) = peek_publish(frame) else {
            // Malformed: the state machine refuses it with the right code.
            return Check::Pass;
        };
        if let Some(refusal) = self.check_topic(p.topic) {
            return Check::Refuse(refusal);
        }
        if let Some(id) = p.packet_id {
            // [MQTT-3.3.4-7] The client must not send more unacknowledged QoS 1/2 PUBLISHes
            // than the Receive Maximum moat advertised; a retransmission (same id) is not new.
            if !self.inflight.contains(&id) {
                if self.inflight.len() >= usize::from(self.limits.max_inflight) {
                    return Check::Refuse(self.refuse(Exceeded::Inflight));
                }
                self.inflight.insert(id);
            }
        }
        let bytes = u64::try_from(frame.len()).unwrap_or(u64::MAX);
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

    fn subscribe(&mut self, now: Instant, frame: &Bytes) -> Check {
        let Ok(packet) = mqtt::decode(frame.clone(), self.version) else {
            return Check::Pass;
        };
        match packet {
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
            }
            Packet::Unsubscribe(u) => {
                for filter in &u.filters {
                    self.subscriptions.remove(filter.as_str());
                }
            }
            _ => return Check::Pass,
        }
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

    fn refuse(&self, what: Exceeded) -> Refusal {
        Refusal::Policy(PolicyRefusal::Limit(what, self.limits.rule.clone()))
    }

    /// The rule behind these limits (for tests and logs).
    #[cfg(test)]
    pub(crate) fn rule(&self) -> &RuleRef {
        &self.limits.rule
    }
}

/// The parts of a PUBLISH the limits need, read without decoding the whole packet.
struct PublishPeek<'a> {
    topic: &'a [u8],
    packet_id: Option<u16>,
}

fn peek_publish(frame: &[u8]) -> Option<PublishPeek<'_>> {
    let qos = (frame.first()? >> 1) & 0x03;
    let body = frame.get(body_start(frame)?..)?;
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = body.get(2..2 + len)?;
    let packet_id = match qos {
        0 => None,
        _ => {
            let id = body.get(2 + len..4 + len)?;
            Some(u16::from_be_bytes([*id.first()?, *id.get(1)?]))
        }
    };
    Some(PublishPeek { topic, packet_id })
}

/// Offset of the variable header: 1 byte of type and flags, 1 to 4 of remaining length.
fn body_start(frame: &[u8]) -> Option<usize> {
    (1..=4).find_map(|i| match frame.get(i) {
        Some(b) if b & 0x80 == 0 => Some(i + 1),
        _ => None,
    })
}

/// The packet id of an acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP).
fn ack_id(frame: &[u8]) -> Option<u16> {
    let start = body_start(frame)?;
    Some(u16::from_be_bytes([
        *frame.get(start)?,
        *frame.get(start + 1)?,
    ]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
