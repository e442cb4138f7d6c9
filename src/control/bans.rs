//! Listing, setting and lifting bans at run time: the automatic ones (failed logins,
//! flapping), the operator's (`moat ctl ban`), and the policy's (listed, never lifted here:
//! they live in a file).
//!
//! What it owns: the request and answer shapes ([`BanRequest`], [`UnbanRequest`],
//! [`BanView`], [`Unbanned`]) and their checks. Why it is separate: the admission gate keeps the
//! tables; this file turns an operator's words into its calls. What it must not do: lift a
//! policy ban (it would come back with the next reload; the answer names its file and line).

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::sessions::parse_source;
use crate::admission::{BanKey, Gate, ManualBan};
use crate::policy::{BanTarget, Policy};

/// One ban in force, whatever set it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BanView {
    /// `auto`, `admin` or `policy`.
    pub kind: String,
    /// The operator ban's id (`moat ctl unban --id`).
    pub id: Option<u64>,
    /// What is banned.
    pub target: String,
    /// Why.
    pub reason: String,
    /// The rule behind it (a policy file and line, an automatic rule, `admin ban #n`).
    pub rule: String,
    /// Who set an operator ban.
    pub by: Option<String>,
    /// When it was set (RFC 3339), where known.
    pub set_at: Option<String>,
    /// Seconds left; absent for a policy ban without an end.
    pub remaining_secs: Option<u64>,
}

/// `moat ctl ban`: exactly one target.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// A source address or network.
    pub source: Option<String>,
    /// An identity (user name or certificate identity).
    pub identity: Option<String>,
    /// A client id.
    pub client_id: Option<String>,
    /// How long, e.g. `10m` (at most `admission::MAX_BAN_FOR`).
    pub duration: String,
    /// Why (kept, shown in the list and the audit line).
    #[serde(default)]
    pub reason: String,
}

/// `moat ctl unban`: what to lift (every ban matching any given field).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnbanRequest {
    /// An operator ban's id.
    pub id: Option<u64>,
    /// A source address or network: bans on it or inside it.
    pub source: Option<String>,
    /// An identity / user name.
    pub identity: Option<String>,
    /// A client id.
    pub client_id: Option<String>,
}

/// What `moat ctl unban` did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Unbanned {
    /// The bans lifted.
    pub lifted: Vec<String>,
    /// Policy bans that match but stay (edit the file named to lift them).
    pub policy: Vec<String>,
}

/// Why a ban request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BanRequestError {
    /// Not exactly one target.
    #[error("name exactly one of source, identity, client_id")]
    Target,
    /// A bad source.
    #[error(transparent)]
    Source(#[from] super::sessions::QueryError),
    /// A bad duration.
    #[error("duration {0:?}: {1}")]
    Duration(String, humantime::DurationError),
    /// The gate refused it.
    #[error(transparent)]
    Ban(#[from] crate::admission::BanError),
    /// Nothing to match.
    #[error("name at least one of id, source, identity, client_id")]
    Nothing,
}

// === impl BanRequest ===

impl BanRequest {
    /// The target and duration, checked.
    pub(crate) fn parse(&self) -> Result<(BanTarget, Duration), BanRequestError> {
        let target = match (&self.source, &self.identity, &self.client_id) {
            (Some(s), None, None) => BanTarget::Network(parse_source(s)?),
            (None, Some(i), None) => BanTarget::Username(i.clone()),
            (None, None, Some(c)) => BanTarget::ClientId(c.clone()),
            _ => return Err(BanRequestError::Target),
        };
        let duration = humantime::parse_duration(self.duration.trim())
            .map_err(|e| BanRequestError::Duration(self.duration.clone(), e))?;
        Ok((target, duration))
    }
}

/// What an [`UnbanRequest`] picks, checked.
pub(crate) struct Unban {
    id: Option<u64>,
    source: Option<IpNet>,
    identity: Option<String>,
    client_id: Option<String>,
}

// === impl Unban ===

impl Unban {
    /// Checks `req`.
    pub(crate) fn new(req: &UnbanRequest) -> Result<Unban, BanRequestError> {
        let source = req.source.as_deref().map(parse_source).transpose()?;
        if req.id.is_none() && source.is_none() && req.identity.is_none() && req.client_id.is_none()
        {
            return Err(BanRequestError::Nothing);
        }
        Ok(Unban {
            id: req.id,
            source,
            identity: req.identity.clone(),
            client_id: req.client_id.clone(),
        })
    }

    fn net(&self, net: &IpNet) -> bool {
        self.source.is_some_and(|s| s.contains(net))
    }

    fn ip(&self, ip: &IpAddr) -> bool {
        self.source.is_some_and(|s| s.contains(&ip.to_canonical()))
    }

    fn target(&self, t: &BanTarget) -> bool {
        match t {
            BanTarget::Network(n) => self.net(n),
            BanTarget::Username(u) => self.identity.as_ref() == Some(u),
            BanTarget::ClientId(c) => self.client_id.as_ref() == Some(c),
        }
    }

    /// Picks an operator ban.
    pub(crate) fn manual(&self, b: &ManualBan) -> bool {
        self.id == Some(b.id) || self.target(&b.target)
    }

    /// Picks an automatic ban.
    pub(crate) fn auto(&self, k: &BanKey) -> bool {
        match k {
            BanKey::Source(ip) => self.ip(ip),
            BanKey::Username(u) => self.identity.as_ref() == Some(u),
            BanKey::ClientId(c) => self.client_id.as_ref() == Some(c),
        }
    }

    /// Policy bans it would pick (they stay).
    pub(crate) fn policy(&self, policy: &Policy) -> Vec<String> {
        policy
            .static_bans()
            .iter()
            .filter(|b| self.target(&b.target))
            .map(|b| format!("{} ({})", b.target, b.rule))
            .collect()
    }
}

/// Every ban in force: policy, operator, automatic.
pub(crate) fn list(gate: &Gate, policy: &Policy) -> Vec<BanView> {
    let now = SystemTime::now();
    let rfc = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let mut out: Vec<BanView> = policy
        .static_bans()
        .iter()
        .filter(|b| b.active_at(now))
        .map(|b| BanView {
            kind: "policy".into(),
            id: None,
            target: b.target.to_string(),
            reason: b.reason.clone().unwrap_or_default(),
            rule: b.rule.to_string(),
            by: None,
            set_at: None,
            remaining_secs: b
                .until
                .map(|u| u.duration_since(now).map_or(0, |d| d.as_secs())),
        })
        .collect();
    let instant = Instant::now();
    out.extend(gate.manual_bans().into_iter().map(|b| BanView {
        kind: "admin".into(),
        id: Some(b.id),
        target: b.target.to_string(),
        reason: b.reason.clone(),
        rule: b.rule.to_string(),
        by: Some(b.by.clone()),
        set_at: Some(rfc(b.set_at)),
        remaining_secs: Some(b.remaining(instant).as_secs()),
    }));
    out.extend(gate.active_bans().into_iter().map(|b| BanView {
        kind: "auto".into(),
        id: None,
        target: b.target,
        reason: b.reason.to_owned(),
        rule: b.rule.to_string(),
        by: None,
        set_at: Some(rfc(b.set_at)),
        remaining_secs: Some(b.remaining.as_secs()),
    }));
    out
}

/// The view of a new operator ban.
pub(crate) fn view(b: &ManualBan) -> BanView {
    BanView {
        kind: "admin".into(),
        id: Some(b.id),
        target: b.target.to_string(),
        reason: b.reason.clone(),
        rule: b.rule.to_string(),
        by: Some(b.by.clone()),
        set_at: Some(humantime::format_rfc3339_seconds(b.set_at).to_string()),
        remaining_secs: Some(b.remaining(Instant::now()).as_secs()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn a_ban_names_one_target_and_a_duration() {
        let req = |source: Option<&str>, identity: Option<&str>, d: &str| BanRequest {
            source: source.map(Into::into),
            identity: identity.map(Into::into),
            client_id: None,
            duration: d.into(),
            reason: String::new(),
        };
        assert!(matches!(
            req(Some("10.0.0.0/8"), None, "10m").parse().unwrap(),
            (BanTarget::Network(_), d) if d == Duration::from_secs(600)
        ));
        assert!(req(None, Some("alice"), "1h").parse().is_ok());
        assert!(req(Some("10.0.0.1"), Some("alice"), "1h").parse().is_err());
        assert!(req(None, None, "1h").parse().is_err());
        assert!(req(None, Some("alice"), "soon").parse().is_err());
    }

    #[test]
    fn an_unban_by_network_lifts_the_bans_inside_it() {
        let u = Unban::new(&UnbanRequest {
            source: Some("10.0.0.0/8".into()),
            ..UnbanRequest::default()
        })
        .unwrap();
        assert!(u.auto(&BanKey::Source("10.9.9.9".parse().unwrap())));
        assert!(!u.auto(&BanKey::Source("11.0.0.1".parse().unwrap())));
        assert!(u.target(&BanTarget::Network("10.1.0.0/16".parse().unwrap())));
        assert!(!u.target(&BanTarget::Network("0.0.0.0/0".parse().unwrap())));
        assert!(Unban::new(&UnbanRequest::default()).is_err());
    }
}
