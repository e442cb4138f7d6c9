//! Bans written in policy files, and the settings of automatic bans.
//!
//! `bans:` lists static bans: an address or network (`address: 203.0.113.0/24`), a user name
//! or a client identifier, each with an optional `until` (RFC 3339 time; the ban is lifted
//! after it) and `reason`. An address ban refuses the connection before TLS; a user name or
//! client id ban answers the CONNECT with 0x8A Banned (MQTT 5) / 0x05 (3.1.1).
//!
//! `auto_ban:` says when admission bans on its own: `failed_auth` (N failed authentications
//! from one source within a window) and `flapping` (N sessions of one client id or source
//! ending within a window). The ban table with its expiry lives in `admission::bans`; this file
//! holds only the rules and answers "is this banned at `now`" for static bans, with `now`
//! passed in (wall-clock time, because `until` is a date).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::decision::RuleRef;
use super::Policy;

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanTarget {
    /// Every address in a network (a single address is a /32 or /128).
    Network(IpNet),
    /// A CONNECT user name or an authenticated identity.
    Username(String),
    /// A CONNECT client identifier.
    ClientId(String),
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::Network(net) => write!(f, "address {net}"),
            BanTarget::Username(u) => write!(f, "username {u:?}"),
            BanTarget::ClientId(c) => write!(f, "client id {c:?}"),
        }
    }
}

/// One entry of `bans:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBan {
    /// Who is banned.
    pub target: BanTarget,
    /// When the ban ends; `None` means until the entry is removed.
    pub until: Option<SystemTime>,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
    /// Where it was written.
    pub rule: RuleRef,
}

// === impl StaticBan ===

impl StaticBan {
    /// Whether the ban is in force at `now`.
    pub fn active_at(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

impl fmt::Display for StaticBan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        match self.until {
            Some(until) => write!(f, " until {}", humantime::format_rfc3339_seconds(until))?,
            None => write!(f, " (no expiry)")?,
        }
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        write!(f, " [{}]", self.rule)
    }
}

/// One automatic-ban trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBanRule {
    /// How many events set off a ban.
    pub count: u32,
    /// Within how long.
    pub within: Duration,
    /// How long the ban lasts.
    pub ban_for: Duration,
    /// Ban the source (IPv4 address or IPv6 prefix).
    pub ban_source: bool,
    /// Ban the CONNECT user name.
    pub ban_username: bool,
    /// Ban the client identifier.
    pub ban_client_id: bool,
    /// Where it was written (or built in).
    pub rule: RuleRef,
}

/// `auto_ban:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBanSettings {
    /// Failed authentications (bad password, unknown user, refused anonymous).
    pub failed_auth: Option<AutoBanRule>,
    /// Sessions ending shortly after they started, again and again.
    pub flapping: Option<AutoBanRule>,
}

impl Default for AutoBanSettings {
    /// Ten failed logins from one source within a minute ban that source for five minutes
    /// (only the source: banning the user name by default would let anyone lock a user out).
    /// Flapping bans are off unless configured: a broker restart makes every device reconnect.
    fn default() -> Self {
        AutoBanSettings {
            failed_auth: Some(AutoBanRule {
                count: 10,
                within: Duration::from_secs(60),
                ban_for: Duration::from_secs(300),
                ban_source: true,
                ban_username: false,
                ban_client_id: false,
                rule: RuleRef::builtin("auto_ban.failed_auth default"),
            }),
            flapping: None,
        }
    }
}

// === impl Policy (bans) ===

impl Policy {
    /// Every static ban, in file order.
    pub fn static_bans(&self) -> &[StaticBan] {
        &self.guard.bans
    }

    /// The static ban in force on `ip` at `now`, if any.
    pub fn static_ban_ip(&self, ip: IpAddr, now: SystemTime) -> Option<&StaticBan> {
        let ip = ip.to_canonical();
        self.guard.bans.iter().find(|b| {
            matches!(&b.target, BanTarget::Network(net) if net.contains(&ip)) && b.active_at(now)
        })
    }

    /// The static ban in force at `now` on a user name or client identifier, if any.
    pub fn static_ban_identity(
        &self,
        username: Option<&str>,
        client_id: &str,
        now: SystemTime,
    ) -> Option<&StaticBan> {
        self.guard.bans.iter().find(|b| {
            let hit = match &b.target {
                BanTarget::Username(u) => username == Some(u.as_str()),
                BanTarget::ClientId(c) => c == client_id,
                BanTarget::Network(_) => false,
            };
            hit && b.active_at(now)
        })
    }

    /// When admission bans on its own.
    pub fn auto_ban(&self) -> &AutoBanSettings {
        &self.guard.auto_ban
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn expiry_is_exclusive() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ban = StaticBan {
            target: BanTarget::Username("m".into()),
            until: Some(t),
            reason: None,
            rule: RuleRef::builtin("x"),
        };
        assert!(ban.active_at(t - Duration::from_secs(1)));
        assert!(!ban.active_at(t));
        assert!(ban
            .to_string()
            .starts_with("username \"m\" until 1970-01-01T00:16:40Z"));
    }
}
