//! Limits: numbers, not timers. What a source may open and what a session may send.
//!
//! `limits:` in a policy file has two halves. `connections:` is read by admission (rates and
//! caps per source, globally and per listener, memory shedding); `client:` holds the defaults
//! for every session (publish messages/s and bytes/s, subscribe rate, subscriptions, inflight
//! QoS 1/2, client-id and topic sizes, keep alive bounds), and `users:` / `groups:` override
//! them field by field. [`Policy::client_limits`] resolves the numbers for one identity: the
//! user's own entry, then its groups in the order the user lists them, then `client:`, then
//! moat's defaults. Timers and token buckets live with their callers (`admission`,
//! `session/machine/limits.rs`); this file never reads the clock.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::authn::Identity;
use super::decision::RuleRef;
use super::Policy;

/// An amount per period, e.g. `100/s` (messages) or `1MiB/s` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many (messages, connections or bytes); at least 1.
    pub amount: u64,
    /// Per how long; more than zero.
    pub per: Duration,
}

// === impl Rate ===

impl Rate {
    /// The rate in units per second.
    pub fn per_second(&self) -> f64 {
        // Precision loss above 2^53 units per period is irrelevant for rates.
        #[allow(clippy::cast_precision_loss)]
        let amount = self.amount as f64;
        amount / self.per.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Time for one unit to be replenished (`per / amount`), at least 1 ns.
    pub fn interval(&self) -> Duration {
        let nanos = self.per.as_nanos() / u128::from(self.amount.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.amount),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/m", self.amount),
            _ => write!(f, "{}/{:?}", self.amount, self.per),
        }
    }
}

/// A rate with the burst a bucket may save up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Sustained rate.
    pub rate: Rate,
    /// Largest amount allowed at once after a quiet period; at least 1.
    pub burst: u64,
}

/// What happens to a client that goes above a rate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    /// Stop reading from the client until it is within its rate again (TCP backpressure).
    #[default]
    Throttle,
    /// Close the session (MQTT 5: DISCONNECT 0x96 Message rate too high / 0x97 Quota exceeded).
    Disconnect,
}

/// `limits.connections`: read by admission on every accepted socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// New connections per source (IPv4 address or IPv6 prefix).
    pub per_source: Option<Bucket>,
    /// New connections across all sources.
    pub global: Option<Bucket>,
    /// Concurrent connections per source.
    pub max_per_source: Option<u32>,
    /// Concurrent connections in total (the smaller of this and moat.yaml's cap applies).
    pub max_total: Option<u32>,
    /// Concurrent connections per listener, by listener name.
    pub per_listener: HashMap<String, u32>,
    /// IPv6 sources are counted by this prefix length.
    pub ipv6_prefix: u8,
    /// Most sources whose connection rate is tracked at once; beyond it new sources share one
    /// bucket until the table is cleaned, so rotating addresses cannot grow memory.
    pub max_tracked_sources: usize,
    /// Refuse new connections while the process's resident memory is above this many bytes.
    pub shed_at_memory: Option<u64>,
    /// Where `limits.connections` was written.
    pub rule: RuleRef,
}

impl Default for ConnectionLimits {
    /// Generous defaults that still stop a single host from flooding the handshake path.
    fn default() -> Self {
        let per_sec = |amount| Rate {
            amount,
            per: Duration::from_secs(1),
        };
        ConnectionLimits {
            per_source: Some(Bucket {
                rate: per_sec(20),
                burst: 100,
            }),
            global: Some(Bucket {
                rate: per_sec(1000),
                burst: 2000,
            }),
            max_per_source: Some(1000),
            max_total: None,
            per_listener: HashMap::new(),
            ipv6_prefix: 64,
            max_tracked_sources: 100_000,
            shed_at_memory: None,
            rule: RuleRef::builtin("default connection limits"),
        }
    }
}

/// The limits of one session, resolved for its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// PUBLISH packets from the client.
    pub publish: Option<Bucket>,
    /// PUBLISH bytes (whole packets) from the client.
    pub publish_bytes: Option<Bucket>,
    /// What happens above the publish rates.
    pub publish_on_exceed: OnExceed,
    /// SUBSCRIBE packets from the client.
    pub subscribe: Option<Bucket>,
    /// What happens above the subscribe rate.
    pub subscribe_on_exceed: OnExceed,
    /// Distinct topic filters a session may hold.
    pub max_subscriptions: u32,
    /// QoS 1 and 2 PUBLISHes from the client not yet acknowledged (advertised to MQTT 5
    /// clients as Receive Maximum).
    pub max_inflight: u16,
    /// Longest client identifier, in bytes.
    pub max_client_id: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most topic levels (`a/b/c` has 3).
    pub max_topic_levels: usize,
    /// Smallest keep alive moat enforces, in seconds (0: none).
    pub keepalive_min: u16,
    /// Largest keep alive, in seconds; moat.yaml's `limits.max_keepalive` also applies.
    pub keepalive_max: Option<u16>,
    /// The most specific limits section that applied (user, group, `client:` or built in).
    pub rule: RuleRef,
}

impl Default for ClientLimits {
    /// moat's built-in per-session limits: no rate limits, generous caps.
    fn default() -> Self {
        ClientLimits {
            publish: None,
            publish_bytes: None,
            publish_on_exceed: OnExceed::Throttle,
            subscribe: None,
            subscribe_on_exceed: OnExceed::Throttle,
            max_subscriptions: 1000,
            max_inflight: 128,
            max_client_id: 256,
            max_topic_length: 4096,
            max_topic_levels: 64,
            keepalive_min: 0,
            keepalive_max: None,
            rule: RuleRef::builtin("default client limits"),
        }
    }
}

/// One `client:`, `users.NAME:` or `groups.NAME:` section: every field optional, so a
/// section overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientOverride {
    pub(crate) publish: Option<Bucket>,
    pub(crate) publish_bytes: Option<Bucket>,
    pub(crate) publish_on_exceed: Option<OnExceed>,
    pub(crate) subscribe: Option<Bucket>,
    pub(crate) subscribe_on_exceed: Option<OnExceed>,
    pub(crate) max_subscriptions: Option<u32>,
    pub(crate) max_inflight: Option<u16>,
    pub(crate) max_client_id: Option<usize>,
    pub(crate) max_topic_length: Option<usize>,
    pub(crate) max_topic_levels: Option<usize>,
    pub(crate) keepalive_min: Option<u16>,
    pub(crate) keepalive_max: Option<u16>,
    /// Where the section was written.
    pub(crate) rule: Option<RuleRef>,
}

/// The compiled `limits:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LimitRules {
    pub(crate) connections: ConnectionLimits,
    pub(crate) client: ClientOverride,
    pub(crate) users: HashMap<String, ClientOverride>,
    pub(crate) groups: HashMap<String, ClientOverride>,
}

// === impl ClientOverride ===

impl ClientOverride {
    /// Fills every field this section leaves open from `lower`.
    fn over(&self, lower: &ClientOverride) -> ClientOverride {
        ClientOverride {
            publish: self.publish.or(lower.publish),
            publish_bytes: self.publish_bytes.or(lower.publish_bytes),
            publish_on_exceed: self.publish_on_exceed.or(lower.publish_on_exceed),
            subscribe: self.subscribe.or(lower.subscribe),
            subscribe_on_exceed: self.subscribe_on_exceed.or(lower.subscribe_on_exceed),
            max_subscriptions: self.max_subscriptions.or(lower.max_subscriptions),
            max_inflight: self.max_inflight.or(lower.max_inflight),
            max_client_id: self.max_client_id.or(lower.max_client_id),
            max_topic_length: self.max_topic_length.or(lower.max_topic_length),
            max_topic_levels: self.max_topic_levels.or(lower.max_topic_levels),
            keepalive_min: self.keepalive_min.or(lower.keepalive_min),
            keepalive_max: self.keepalive_max.or(lower.keepalive_max),
            rule: self.rule.clone().or_else(|| lower.rule.clone()),
        }
    }

    fn resolve(self) -> ClientLimits {
        let d = ClientLimits::default();
        ClientLimits {
            publish: self.publish.or(d.publish),
            publish_bytes: self.publish_bytes.or(d.publish_bytes),
            publish_on_exceed: self.publish_on_exceed.unwrap_or(d.publish_on_exceed),
            subscribe: self.subscribe.or(d.subscribe),
            subscribe_on_exceed: self.subscribe_on_exceed.unwrap_or(d.subscribe_on_exceed),
            max_subscriptions: self.max_subscriptions.unwrap_or(d.max_subscriptions),
            max_inflight: self.max_inflight.unwrap_or(d.max_inflight),
            max_client_id: self.max_client_id.unwrap_or(d.max_client_id),
            max_topic_length: self.max_topic_length.unwrap_or(d.max_topic_length),
            max_topic_levels: self.max_topic_levels.unwrap_or(d.max_topic_levels),
            keepalive_min: self.keepalive_min.unwrap_or(d.keepalive_min),
            keepalive_max: self.keepalive_max.or(d.keepalive_max),
            rule: self.rule.unwrap_or(d.rule),
        }
    }
}

// === impl Policy (limits) ===

impl Policy {
    /// `limits.connections` (or moat's defaults).
    pub fn connection_limits(&self) -> &ConnectionLimits {
        &self.guard.limits.connections
    }

    /// The session limits of `identity`: its user entry, then its groups in order, then
    /// `limits.client`, then moat's defaults, field by field.
    pub fn client_limits(&self, identity: &Identity) -> ClientLimits {
        let l = &self.guard.limits;
        let mut merged = l.client.clone();
        for group in identity.groups.iter().rev() {
            if let Some(g) = l.groups.get(group) {
                merged = g.over(&merged);
            }
        }
        if let Some(u) = l.users.get(&identity.name) {
            merged = u.over(&merged);
        }
        merged.resolve()
    }

    /// The session limits that apply before anyone is identified (`limits.client`).
    pub fn default_client_limits(&self) -> ClientLimits {
        self.guard.limits.client.clone().resolve()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn rate_interval_and_per_second() {
        let r = Rate {
            amount: 100,
            per: Duration::from_secs(1),
        };
        assert_eq!(r.interval(), Duration::from_millis(10));
        assert!((r.per_second() - 100.0).abs() < 1e-9);
        assert_eq!(r.to_string(), "100/s");
    }

    #[test]
    fn override_fills_only_what_it_names() {
        let base = ClientOverride {
            max_inflight: Some(10),
            max_subscriptions: Some(5),
            ..Default::default()
        };
        let user = ClientOverride {
            max_inflight: Some(99),
            ..Default::default()
        };
        let r = user.over(&base).resolve();
        assert_eq!(r.max_inflight, 99);
        assert_eq!(r.max_subscriptions, 5);
        assert_eq!(r.max_client_id, ClientLimits::default().max_client_id);
    }
}
