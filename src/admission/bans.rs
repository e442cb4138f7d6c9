//! Automatic bans: the table of active bans with their expiry, and the event windows that set
//! them off (failed authentications per source, session ends per client id).
//!
//! Both maps are keyed by attacker-chosen values, so both are bounded: the ban table evicts the
//! ban that ends soonest when full, and an event window table that is full stops tracking new
//! keys until [`Windows::clean`] drops the stale ones. Every ban is logged when it is set and
//! when it is lifted (`moat::audit`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::policy::RuleRef;

/// Most active bans kept at once.
const MAX_BANS: usize = 100_000;

/// Most keys an event window table tracks at once.
const MAX_WINDOWS: usize = 100_000;

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum BanKey {
    /// A source (IPv4 address or IPv6 prefix).
    Source(IpAddr),
    /// A user name.
    Username(String),
    /// A client identifier.
    ClientId(String),
}

impl fmt::Display for BanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanKey::Source(ip) => write!(f, "source {ip}"),
            BanKey::Username(u) => write!(f, "username {u:?}"),
            BanKey::ClientId(c) => write!(f, "client id {c:?}"),
        }
    }
}

/// One active ban.
#[derive(Debug, Clone)]
struct Active {
    until: Instant,
    set_at: SystemTime,
    ban_for: Duration,
    reason: &'static str,
    rule: RuleRef,
}

/// An active ban as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// What is banned, e.g. `source 127.0.0.9` or `username "alice"`.
    pub target: String,
    /// Why (`failed authentication`, `flapping`).
    pub reason: &'static str,
    /// The rule that set it off.
    pub rule: RuleRef,
    /// When it was set (wall clock).
    pub set_at: SystemTime,
    /// How much of it is left.
    pub remaining: Duration,
}

/// The active automatic bans.
#[derive(Debug, Default)]
pub(crate) struct BanTable {
    map: Mutex<HashMap<BanKey, Active>>,
    /// Told when a source is banned, so the kernel filter (`admission::kernel`) takes the ban
    /// in without waiting for its next periodic check.
    sources_changed: tokio::sync::Notify,
}

// === impl BanTable ===

impl BanTable {
    /// Bans `key` for `ban_for` from `now` (extending a shorter ban already there).
    pub(crate) fn ban(
        &self,
        key: BanKey,
        ban_for: Duration,
        reason: &'static str,
        rule: &RuleRef,
        now: Instant,
    ) {
        let until = now + ban_for;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|a| a.until >= until) {
            return;
        }
        if map.len() >= MAX_BANS && !map.contains_key(&key) {
            let soonest = map
                .iter()
                .min_by_key(|(_, a)| a.until)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                map.remove(&k);
                tracing::warn!(target: "moat::audit", ban = %k, "ban table full: lifted early");
            }
        }
        tracing::warn!(target: "moat::audit", ban = %key, reason, rule = %rule, seconds = ban_for.as_secs_f64(), "ban set");
        let active = Active {
            until,
            set_at: SystemTime::now(),
            ban_for,
            reason,
            rule: rule.clone(),
        };
        let source = matches!(key, BanKey::Source(_));
        map.insert(key, active);
        drop(map);
        if source {
            self.sources_changed.notify_one();
        }
    }

    /// Banned sources (IPv4 addresses, IPv6 prefixes) in force at `now`, with what is left of
    /// each ban.
    pub(crate) fn sources(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter_map(|(k, a)| match k {
                BanKey::Source(ip) if a.until > now => Some((*ip, a.until - now)),
                _ => None,
            })
            .collect()
    }

    /// Resolves when a source has been banned since the last call (at once if one was).
    pub(crate) async fn sources_changed(&self) {
        self.sources_changed.notified().await;
    }

    /// The rule of the ban on `key` in force at `now`, if any.
    pub(crate) fn banned(&self, key: &BanKey, now: Instant) -> Option<RuleRef> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|a| a.until > now)
            .map(|a| a.rule.clone())
    }

    /// Lifts every ban that has ended; logs each.
    pub(crate) fn expire(&self, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|key, a| {
            let keep = a.until > now;
            if !keep {
                tracing::info!(target: "moat::audit", ban = %key, reason = a.reason, seconds = a.ban_for.as_secs_f64(), "ban lifted");
            }
            keep
        });
    }

    /// Lifts the bans whose key `select` picks (an operator's `moat ctl unban`); logs each.
    pub(crate) fn lift(&self, select: impl Fn(&BanKey) -> bool) -> Vec<BanKey> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<BanKey> = map.keys().filter(|k| select(k)).cloned().collect();
        for key in &keys {
            if let Some(a) = map.remove(key) {
                tracing::info!(target: "moat::audit", ban = %key, reason = a.reason, "ban lifted by an operator");
            }
        }
        keys
    }

    /// The bans in force at `now`.
    pub(crate) fn list(&self, now: Instant) -> Vec<BanInfo> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<BanInfo> = map
            .iter()
            .filter(|(_, a)| a.until > now)
            .map(|(k, a)| BanInfo {
                target: k.to_string(),
                reason: a.reason,
                rule: a.rule.clone(),
                set_at: a.set_at,
                remaining: a.until.saturating_duration_since(now),
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }
}

/// Event counts per key within a window.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    map: Mutex<HashMap<BanKey, (u32, Instant)>>,
}

// === impl Windows ===

impl Windows {
    /// Counts one event for `key`; true when it is the `count`-th within `within` (the window
    /// then starts over).
    pub(crate) fn hit(&self, key: BanKey, count: u32, within: Duration, now: Instant) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_WINDOWS && !map.contains_key(&key) {
            return false;
        }
        let entry = map.entry(key).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > within {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 >= count {
            *entry = (0, now);
            return true;
        }
        false
    }

    /// Drops windows older than `within`.
    pub(crate) fn clean(&self, within: Duration, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, start)| now.saturating_duration_since(*start) <= within);
        map.shrink_to_fit();
    }

    /// Keys tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn bans_expire() {
        let t = BanTable::default();
        let now = Instant::now();
        let key = BanKey::Username("a".into());
        t.ban(
            key.clone(),
            Duration::from_secs(2),
            "test",
            &RuleRef::builtin("x"),
            now,
        );
        assert!(t.banned(&key, now + Duration::from_secs(1)).is_some());
        assert!(t.banned(&key, now + Duration::from_secs(2)).is_none());
        assert_eq!(t.list(now).len(), 1);
        t.expire(now + Duration::from_secs(3));
        assert!(t.list(now).is_empty());
    }

    #[test]
    fn windows_count_within_and_reset() {
        let w = Windows::default();
        let now = Instant::now();
        let k = || BanKey::Source("10.0.0.1".parse().unwrap());
        let within = Duration::from_secs(10);
        assert!(!w.hit(k(), 3, within, now));
        assert!(!w.hit(k(), 3, within, now + Duration::from_secs(1)));
        assert!(w.hit(k(), 3, within, now + Duration::from_secs(2)));
        // Events spread wider than the window never add up.
        for i in 0..10 {
            assert!(!w.hit(k(), 3, within, now + Duration::from_secs(20 + i * 11)));
        }
        w.clean(within, now + Duration::from_secs(1000));
        assert_eq!(w.len(), 0);
    }
}
