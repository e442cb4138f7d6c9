//! Bans an operator sets at run time (`moat ctl ban`): a source network, a user name or
//! identity, or a client id, for a bounded time, with the operator's reason.
//!
//! What it owns: the list of operator bans, their ids and expiry. Why it is separate from the
//! automatic [`BanTable`](super::bans::BanTable): those are keyed by exact source for a lookup
//! per accept and set by floods, these are few, may name a network, and apply to live sessions
//! too (`session/revoke.rs`), which automatic bans never do. What it must not do: grow without
//! bound ([`MAX_MANUAL_BANS`]) or last longer than [`MAX_BAN_FOR`]; it is memory only, so a
//! restart lifts them (a ban meant to last belongs in a policy file).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::policy::{BanTarget, RuleRef};

/// Most operator bans at once: a linear scan per accept stays cheap.
pub const MAX_MANUAL_BANS: usize = 1_024;

/// Longest operator ban: longer ones belong in a policy file, which survives a restart.
pub const MAX_BAN_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Longest reason kept.
const MAX_REASON: usize = 256;

/// One operator ban.
#[derive(Debug, Clone)]
pub(crate) struct ManualBan {
    /// Its id (`moat ctl unban --id`).
    pub(crate) id: u64,
    /// Who is banned.
    pub(crate) target: BanTarget,
    /// The operator's reason.
    pub(crate) reason: String,
    /// Who set it (the admin client's address).
    pub(crate) by: String,
    /// When it was set (wall clock).
    pub(crate) set_at: SystemTime,
    /// When it ends.
    until: Instant,
    /// What audit lines and refusals name.
    pub(crate) rule: RuleRef,
}

/// Why an operator ban was not set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BanError {
    /// Zero or longer than [`MAX_BAN_FOR`].
    #[error(
        "ban duration must be between 1s and {}",
        humantime::format_duration(MAX_BAN_FOR)
    )]
    Duration,
    /// [`MAX_MANUAL_BANS`] are in force.
    #[error("{MAX_MANUAL_BANS} operator bans are in force; lift some first")]
    Full,
    /// An empty identity or client id.
    #[error("empty ban target")]
    Empty,
    /// An identity or client id longer than an MQTT string: it could never match.
    #[error("ban target longer than 65535 bytes")]
    TooLong,
}

/// The operator bans in force.
#[derive(Debug, Default)]
pub(crate) struct ManualBans {
    list: Mutex<Vec<ManualBan>>,
    next: std::sync::atomic::AtomicU64,
}

// === impl ManualBan ===

impl ManualBan {
    /// How much of it is left at `now`.
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }

    fn covers(&self, ip: Option<IpAddr>, username: Option<&str>, client_id: Option<&str>) -> bool {
        match &self.target {
            BanTarget::Network(net) => ip.is_some_and(|ip| net.contains(&ip.to_canonical())),
            BanTarget::Username(u) => username == Some(u.as_str()),
            BanTarget::ClientId(c) => client_id == Some(c.as_str()),
        }
    }
}

// === impl ManualBans ===

impl ManualBans {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ManualBan>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a ban on `target` for `ban_for` from `now`.
    pub(crate) fn add(
        &self,
        target: BanTarget,
        ban_for: Duration,
        reason: &str,
        by: &str,
        now: Instant,
    ) -> Result<ManualBan, BanError> {
        if ban_for.is_zero() || ban_for > MAX_BAN_FOR {
            return Err(BanError::Duration);
        }
        if let BanTarget::Username(s) | BanTarget::ClientId(s) = &target {
            if s.is_empty() {
                return Err(BanError::Empty);
            }
            if s.len() > usize::from(u16::MAX) {
                return Err(BanError::TooLong);
            }
        }
        let mut list = self.lock();
        list.retain(|b| b.until > now);
        if list.len() >= MAX_MANUAL_BANS {
            return Err(BanError::Full);
        }
        let id = self
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        let reason: String = reason.chars().take(MAX_REASON).collect();
        let ban = ManualBan {
            id,
            rule: RuleRef::builtin(&format!("admin ban #{id} ({target})")),
            target,
            reason,
            by: by.to_owned(),
            set_at: SystemTime::now(),
            until: now + ban_for,
        };
        list.push(ban.clone());
        Ok(ban)
    }

    /// The ban in force at `now` that covers any of the given facts.
    pub(crate) fn find(
        &self,
        ip: Option<IpAddr>,
        username: Option<&str>,
        client_id: Option<&str>,
        now: Instant,
    ) -> Option<RuleRef> {
        let list = self.lock();
        list.iter()
            .find(|b| b.until > now && b.covers(ip, username, client_id))
            .map(|b| b.rule.clone())
    }

    /// Lifts the bans `select` picks; returns them.
    pub(crate) fn lift(&self, select: impl Fn(&ManualBan) -> bool) -> Vec<ManualBan> {
        let mut list = self.lock();
        let (lifted, kept) = list.drain(..).partition(|b| select(b));
        *list = kept;
        lifted
    }

    /// The bans in force at `now`, oldest first.
    pub(crate) fn list(&self, now: Instant) -> Vec<ManualBan> {
        self.lock()
            .iter()
            .filter(|b| b.until > now)
            .cloned()
            .collect()
    }

    /// Drops ended bans; logs each.
    pub(crate) fn expire(&self, now: Instant) {
        self.lock().retain(|b| {
            let keep = b.until > now;
            if !keep {
                tracing::info!(target: "moat::audit", ban = %b.target, id = b.id, "admin ban ended");
            }
            keep
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn a_network_ban_covers_its_addresses_until_it_ends() {
        let bans = ManualBans::default();
        let now = Instant::now();
        let net = BanTarget::Network("10.1.0.0/16".parse().unwrap());
        let ban = bans
            .add(net, Duration::from_secs(60), "test", "127.0.0.1", now)
            .unwrap();
        let inside = Some("10.1.2.3".parse().unwrap());
        let outside = Some("10.2.0.1".parse().unwrap());
        assert_eq!(bans.find(inside, None, None, now), Some(ban.rule.clone()));
        assert!(bans.find(outside, None, None, now).is_none());
        let later = now + Duration::from_secs(60);
        assert!(bans.find(inside, None, None, later).is_none());
        bans.expire(later);
        assert!(bans.list(now).is_empty());
    }

    #[test]
    fn bans_are_bounded_in_time_count_and_target() {
        let bans = ManualBans::default();
        let now = Instant::now();
        let user = |u: &str| BanTarget::Username(u.into());
        assert_eq!(
            bans.add(user("a"), Duration::ZERO, "", "", now)
                .unwrap_err(),
            BanError::Duration
        );
        assert_eq!(
            bans.add(user("a"), MAX_BAN_FOR * 2, "", "", now)
                .unwrap_err(),
            BanError::Duration
        );
        assert_eq!(
            bans.add(user(""), Duration::from_secs(1), "", "", now)
                .unwrap_err(),
            BanError::Empty
        );
        for i in 0..MAX_MANUAL_BANS {
            bans.add(user(&i.to_string()), Duration::from_secs(1), "", "", now)
                .unwrap();
        }
        assert_eq!(
            bans.add(user("x"), Duration::from_secs(1), "", "", now)
                .unwrap_err(),
            BanError::Full
        );
        let lifted = bans.lift(|b| b.target == user("7"));
        assert_eq!(lifted.len(), 1);
        assert!(bans.find(None, Some("7"), None, now).is_none());
        assert!(bans.find(None, Some("8"), None, now).is_some());
    }
}
