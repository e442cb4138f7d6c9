//! The network guard's part of a policy file: `network:`, `bans:`, `auto_ban:` and `limits:`,
//! from YAML to the compiled [`Guard`].
//!
//! Kept apart from `compile.rs` (users, anonymous, ACLs) so each half stays readable; compile.rs
//! only hands these sections over. Merging across files: `network:` lists and `bans:` add up
//! (every file's entries apply); `limits:` and `auto_ban:` may each be written in one file only,
//! because two files with different numbers would leave it unclear which one holds. Pure: text
//! in, values out; rates like `100/s`, sizes like `1MiB`, durations like `5m` and RFC 3339 times
//! are parsed here so every mistake is reported with its file, line and column.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::bans::{AutoBanRule, AutoBanSettings, BanTarget, StaticBan};
use super::decision::RuleRef;
use super::error::{GuardErrorKind, PolicyError, PolicyErrorKind, PolicySource};
use super::limits::{Bucket, ClientOverride, ConnectionLimits, LimitRules, OnExceed, Rate};
use super::network::{CidrLists, CidrRule, NetworkRules};
use crate::config::units::{parse_duration, parse_size};
use crate::config::{quoted, Position, SourceLocation};

/// The compiled guard sections of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Guard {
    /// Who may open a connection.
    pub(crate) network: NetworkRules,
    /// Static bans, in file order.
    pub(crate) bans: Vec<StaticBan>,
    /// Automatic bans.
    pub(crate) auto_ban: AutoBanSettings,
    /// Connection and session limits.
    pub(crate) limits: LimitRules,
}

// === raw YAML ===

/// `network:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
    listeners: Option<HashMap<String, RawCidrLists>>,
}

/// `network.listeners.NAME:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCidrLists {
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
}

/// `bans[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBan {
    address: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    reason: Option<String>,
}

/// `auto_ban:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoBan {
    failed_auth: Option<RawAutoBanRule>,
    flapping: Option<RawAutoBanRule>,
}

/// `auto_ban.failed_auth:` / `auto_ban.flapping:`; `count: 0` turns the trigger off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoBanRule {
    count: Spanned<u64>,
    within: Spanned<String>,
    ban_for: Spanned<String>,
    /// Which of `source`, `username`, `client_id` to ban (default: all three for flapping's
    /// `client_id` + `source`, `source` only for failed_auth).
    ban: Option<Vec<Spanned<String>>>,
}

/// `limits:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    connections: Option<RawConnections>,
    client: Option<RawClient>,
    users: Option<HashMap<String, RawClient>>,
    groups: Option<HashMap<String, RawClient>>,
}

/// `limits.connections:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    per_ip: Option<Spanned<String>>,
    per_ip_burst: Option<Spanned<u64>>,
    global: Option<Spanned<String>>,
    global_burst: Option<Spanned<u64>>,
    max_per_ip: Option<Spanned<u64>>,
    max_total: Option<Spanned<u64>>,
    per_listener: Option<HashMap<String, Spanned<u64>>>,
    ipv6_prefix: Option<Spanned<u64>>,
    max_tracked_sources: Option<Spanned<u64>>,
    shed_at_memory: Option<Spanned<String>>,
}

/// `limits.client:`, `limits.users.NAME:`, `limits.groups.NAME:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    publish: Option<RawPublish>,
    subscribe: Option<RawSubscribe>,
    max_inflight: Option<Spanned<u64>>,
    max_client_id: Option<Spanned<u64>>,
    max_topic_length: Option<Spanned<u64>>,
    max_topic_levels: Option<Spanned<u64>>,
    keepalive: Option<RawKeepalive>,
}

/// `publish:` inside a client section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    rate: Option<Spanned<String>>,
    burst: Option<Spanned<u64>>,
    bytes: Option<Spanned<String>>,
    byte_burst: Option<Spanned<String>>,
    on_exceed: Option<OnExceed>,
}

/// `subscribe:` inside a client section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribe {
    rate: Option<Spanned<String>>,
    burst: Option<Spanned<u64>>,
    max_per_session: Option<Spanned<u64>>,
    on_exceed: Option<OnExceed>,
}

/// `keepalive:` inside a client section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepalive {
    min: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

// === merging ===

/// The guard sections seen so far, with where `limits:` and `auto_ban:` were set.
#[derive(Default)]
pub(super) struct GuardMerged {
    network: NetworkRules,
    bans: Vec<StaticBan>,
    limits: Option<(LimitRules, SourceLocation)>,
    auto_ban: Option<(AutoBanSettings, SourceLocation)>,
}

/// One file's guard sections, as compile.rs hands them over.
pub(super) struct RawGuard {
    pub(super) network: Option<RawNetwork>,
    pub(super) bans: Option<Vec<RawBan>>,
    pub(super) auto_ban: Option<Spanned<RawAutoBan>>,
    pub(super) limits: Option<Spanned<RawLimits>>,
}

/// Compiles values of one file, naming the file in rules and errors.
struct Ctx<'a> {
    source: &'a PolicySource,
    file: Arc<str>,
}

type Res<T> = Result<T, PolicyError>;

// === impl GuardMerged ===

impl GuardMerged {
    pub(super) fn add(&mut self, source: &PolicySource, raw: RawGuard) -> Res<()> {
        let cx = Ctx {
            source,
            file: source.path.display().to_string().into(),
        };
        if let Some(network) = raw.network {
            cx.network(&network, &mut self.network)?;
        }
        for ban in raw.bans.unwrap_or_default() {
            self.bans.push(cx.ban(&ban)?);
        }
        if let Some(auto) = raw.auto_ban {
            let here = cx.location(Position::of_spanned(&auto));
            if let Some((_, first)) = &self.auto_ban {
                let first = first.clone();
                return Err(cx.err_at(
                    &auto,
                    GuardErrorKind::DuplicateSection {
                        section: "auto_ban",
                        first,
                    },
                ));
            }
            self.auto_ban = Some((cx.auto_ban(&auto.value)?, here));
        }
        if let Some(limits) = raw.limits {
            let here = cx.location(Position::of_spanned(&limits));
            if let Some((_, first)) = &self.limits {
                let first = first.clone();
                return Err(cx.err_at(
                    &limits,
                    GuardErrorKind::DuplicateSection {
                        section: "limits",
                        first,
                    },
                ));
            }
            let line = Position::of_spanned(&limits).line;
            self.limits = Some((cx.limits(&limits.value, line)?, here));
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Guard {
        Guard {
            network: self.network,
            bans: self.bans,
            auto_ban: self.auto_ban.map(|(a, _)| a).unwrap_or_default(),
            limits: self.limits.map(|(l, _)| l).unwrap_or_default(),
        }
    }
}

// === impl Ctx ===

impl Ctx<'_> {
    fn location(&self, position: Position) -> SourceLocation {
        SourceLocation::new(&self.source.path, position)
    }

    fn err_at<T>(&self, value: &Spanned<T>, kind: GuardErrorKind) -> PolicyError {
        PolicyError {
            at: self.location(Position::of_spanned(value)),
            kind: PolicyErrorKind::Guard(kind),
        }
    }

    fn rule_at<T>(&self, value: &Spanned<T>, label: impl Into<Arc<str>>) -> RuleRef {
        RuleRef::at(self.file.clone(), Position::of_spanned(value).line, label)
    }

    fn network(&self, raw: &RawNetwork, into: &mut NetworkRules) -> Res<()> {
        self.cidrs(
            raw.allow.as_deref(),
            "network.allow",
            "allow",
            &mut into.global.allow,
        )?;
        self.cidrs(
            raw.deny.as_deref(),
            "network.deny",
            "deny",
            &mut into.global.deny,
        )?;
        for (name, lists) in raw.listeners.iter().flatten() {
            let scoped: &mut CidrLists = into.listeners.entry(name.clone()).or_default();
            let verb = |v: &str| format!("listener {name} {v}");
            self.cidrs(
                lists.allow.as_deref(),
                "network.listeners.*.allow",
                &verb("allow"),
                &mut scoped.allow,
            )?;
            self.cidrs(
                lists.deny.as_deref(),
                "network.listeners.*.deny",
                &verb("deny"),
                &mut scoped.deny,
            )?;
        }
        Ok(())
    }

    fn cidrs(
        &self,
        raw: Option<&[Spanned<String>]>,
        field: &'static str,
        verb: &str,
        into: &mut Vec<CidrRule>,
    ) -> Res<()> {
        for entry in raw.unwrap_or_default() {
            let net = self.net(entry, field)?;
            let rule = self.rule_at(entry, format!("network {verb} {net}"));
            into.push(CidrRule { net, rule });
        }
        Ok(())
    }

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits are cleared.
    fn net(&self, raw: &Spanned<String>, field: &'static str) -> Res<IpNet> {
        let text = raw.value.trim();
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            // IPv4-mapped networks are written as what they stand for.
            Ok(IpNet::V6(v6)) if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 => {
                let v4 = v6.addr().to_ipv4_mapped().map(IpAddr::V4);
                let prefix = v6.prefix_len() - 96;
                match v4.and_then(|a| IpNet::new(a, prefix).ok()) {
                    Some(net) => Ok(net.trunc()),
                    None => Err(self.err_at(
                        raw,
                        GuardErrorKind::InvalidNetwork {
                            field,
                            found: quoted(text),
                        },
                    )),
                }
            }
            Ok(net) => Ok(net.trunc()),
            Err(_) => Err(self.err_at(
                raw,
                GuardErrorKind::InvalidNetwork {
                    field,
                    found: quoted(text),
                },
            )),
        }
    }

    fn ban(&self, raw: &RawBan) -> Res<StaticBan> {
        let named = [&raw.address, &raw.username, &raw.client_id]
            .iter()
            .filter(|t| t.is_some())
            .count();
        let (target, at) = match (named, &raw.address, &raw.username, &raw.client_id) {
            (1, Some(a), _, _) => (BanTarget::Network(self.net(a, "bans[].address")?), a),
            (1, None, Some(u), _) => (BanTarget::Username(u.value.clone()), u),
            (1, None, None, Some(c)) => (BanTarget::ClientId(c.value.clone()), c),
            (_, a, u, c) => {
                let kind = PolicyErrorKind::Guard(GuardErrorKind::BanTarget);
                let at = [a, u, c, &raw.until]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(Position::of_spanned)
                    .unwrap_or_default();
                return Err(PolicyError {
                    at: self.location(at),
                    kind,
                });
            }
        };
        let until = match &raw.until {
            None => None,
            Some(u) => Some(humantime::parse_rfc3339_weak(u.value.trim()).map_err(|e| {
                self.err_at(
                    u,
                    GuardErrorKind::Invalid {
                        field: "bans[].until",
                        found: quoted(&u.value),
                        reason: format!(
                            "{e}; expected an RFC 3339 time such as 2030-01-31T12:00:00Z"
                        ),
                    },
                )
            })?),
        };
        Ok(StaticBan {
            rule: self.rule_at(at, format!("ban {target}")),
            target,
            until,
            reason: raw.reason.clone(),
        })
    }

    fn auto_ban(&self, raw: &RawAutoBan) -> Res<AutoBanSettings> {
        let defaults = AutoBanSettings::default();
        Ok(AutoBanSettings {
            failed_auth: match &raw.failed_auth {
                None => defaults.failed_auth,
                Some(r) => self.auto_ban_rule(r, "auto_ban.failed_auth", &["source"])?,
            },
            flapping: match &raw.flapping {
                None => defaults.flapping,
                Some(r) => self.auto_ban_rule(r, "auto_ban.flapping", &["source", "client_id"])?,
            },
        })
    }

    fn auto_ban_rule(
        &self,
        raw: &RawAutoBanRule,
        section: &'static str,
        default_ban: &[&str],
    ) -> Res<Option<AutoBanRule>> {
        if raw.count.value == 0 {
            return Ok(None);
        }
        let count = self.range(&raw.count, section, 1, 1_000_000, "from 0 (off) to 1000000")?;
        let within = self.duration(&raw.within, section)?;
        let ban_for = self.duration(&raw.ban_for, section)?;
        let mut ban: Vec<String> = default_ban.iter().map(|s| (*s).to_owned()).collect();
        if let Some(list) = &raw.ban {
            ban.clear();
            for item in list {
                match item.value.as_str() {
                    "source" | "username" | "client_id" => ban.push(item.value.clone()),
                    other => {
                        return Err(self.err_at(
                            item,
                            GuardErrorKind::Invalid {
                                field: "auto_ban.*.ban",
                                found: quoted(other),
                                reason: "expected source, username or client_id".into(),
                            },
                        ))
                    }
                }
            }
        }
        let has = |k: &str| ban.iter().any(|b| b == k);
        Ok(Some(AutoBanRule {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            within,
            ban_for,
            ban_source: has("source"),
            ban_username: has("username"),
            ban_client_id: has("client_id"),
            rule: self.rule_at(&raw.count, section),
        }))
    }

    fn limits(&self, raw: &RawLimits, line: u32) -> Res<LimitRules> {
        let rule = |label: String| RuleRef::at(self.file.clone(), line, label);
        let connections = match &raw.connections {
            None => ConnectionLimits::default(),
            Some(c) => self.connections(c, rule("limits.connections".into()))?,
        };
        let client = match &raw.client {
            None => ClientOverride::default(),
            Some(c) => self.client(c, rule("limits.client".into()))?,
        };
        let mut users = HashMap::new();
        for (name, c) in raw.users.iter().flatten() {
            users.insert(
                name.clone(),
                self.client(c, rule(format!("limits.users.{name}")))?,
            );
        }
        let mut groups = HashMap::new();
        for (name, c) in raw.groups.iter().flatten() {
            groups.insert(
                name.clone(),
                self.client(c, rule(format!("limits.groups.{name}")))?,
            );
        }
        Ok(LimitRules {
            connections,
            client,
            users,
            groups,
        })
    }

    fn connections(&self, raw: &RawConnections, rule: RuleRef) -> Res<ConnectionLimits> {
        let d = ConnectionLimits::default();
        const COUNT: &str = "from 1 to 1000000";
        let mut per_listener = HashMap::new();
        for (name, max) in raw.per_listener.iter().flatten() {
            let max = self.range(max, "limits.connections.per_listener", 1, 1_000_000, COUNT)?;
            per_listener.insert(name.clone(), u32::try_from(max).unwrap_or(u32::MAX));
        }
        let u32_of = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(ConnectionLimits {
            per_source: match &raw.per_ip {
                None => d.per_source,
                Some(r) => {
                    self.count_bucket(r, raw.per_ip_burst.as_ref(), "limits.connections.per_ip")?
                }
            },
            global: match &raw.global {
                None => d.global,
                Some(r) => {
                    self.count_bucket(r, raw.global_burst.as_ref(), "limits.connections.global")?
                }
            },
            max_per_source: match &raw.max_per_ip {
                None => d.max_per_source,
                Some(v) => Some(u32_of(self.range(
                    v,
                    "limits.connections.max_per_ip",
                    1,
                    1_000_000,
                    COUNT,
                )?)),
            },
            max_total: match &raw.max_total {
                None => d.max_total,
                Some(v) => Some(u32_of(self.range(
                    v,
                    "limits.connections.max_total",
                    1,
                    1_000_000,
                    COUNT,
                )?)),
            },
            per_listener,
            ipv6_prefix: match &raw.ipv6_prefix {
                None => d.ipv6_prefix,
                Some(v) => u8::try_from(self.range(
                    v,
                    "limits.connections.ipv6_prefix",
                    16,
                    128,
                    "from 16 to 128",
                )?)
                .unwrap_or(64),
            },
            max_tracked_sources: match &raw.max_tracked_sources {
                None => d.max_tracked_sources,
                Some(v) => usize::try_from(self.range(
                    v,
                    "limits.connections.max_tracked_sources",
                    16,
                    10_000_000,
                    "from 16 to 10000000",
                )?)
                .unwrap_or(d.max_tracked_sources),
            },
            shed_at_memory: match &raw.shed_at_memory {
                None => d.shed_at_memory,
                Some(s) => Some(self.size(s, "limits.connections.shed_at_memory")?),
            },
            rule,
        })
    }

    fn client(&self, raw: &RawClient, rule: RuleRef) -> Res<ClientOverride> {
        let mut out = ClientOverride {
            rule: Some(rule),
            ..Default::default()
        };
        if let Some(p) = &raw.publish {
            if let Some(r) = &p.rate {
                out.publish = self.count_bucket(r, p.burst.as_ref(), "publish.rate")?;
            }
            if let Some(b) = &p.bytes {
                out.publish_bytes = self.byte_bucket(b, p.byte_burst.as_ref())?;
            }
            out.publish_on_exceed = p.on_exceed;
        }
        if let Some(s) = &raw.subscribe {
            if let Some(r) = &s.rate {
                out.subscribe = self.count_bucket(r, s.burst.as_ref(), "subscribe.rate")?;
            }
            if let Some(m) = &s.max_per_session {
                let m = self.range(
                    m,
                    "subscribe.max_per_session",
                    1,
                    1_000_000,
                    "from 1 to 1000000",
                )?;
                out.max_subscriptions = u32::try_from(m).ok();
            }
            out.subscribe_on_exceed = s.on_exceed;
        }
        if let Some(v) = &raw.max_inflight {
            let v = self.range(
                v,
                "max_inflight",
                1,
                65_535,
                "from 1 to 65535 (MQTT Receive Maximum)",
            )?;
            out.max_inflight = u16::try_from(v).ok();
        }
        if let Some(v) = &raw.max_client_id {
            let v = self.range(v, "max_client_id", 1, 65_535, "from 1 to 65535")?;
            out.max_client_id = usize::try_from(v).ok();
        }
        if let Some(v) = &raw.max_topic_length {
            let v = self.range(v, "max_topic_length", 1, 65_535, "from 1 to 65535")?;
            out.max_topic_length = usize::try_from(v).ok();
        }
        if let Some(v) = &raw.max_topic_levels {
            let v = self.range(v, "max_topic_levels", 1, 65_535, "from 1 to 65535")?;
            out.max_topic_levels = usize::try_from(v).ok();
        }
        if let Some(k) = &raw.keepalive {
            if let Some(min) = &k.min {
                out.keepalive_min = Some(self.keepalive(min, "keepalive.min")?);
            }
            if let Some(max) = &k.max {
                out.keepalive_max = Some(self.keepalive(max, "keepalive.max")?);
            }
        }
        Ok(out)
    }

    /// A count rate (`100/s`) with an optional burst (default: the rate's amount); `off`
    /// turns a default rate off.
    fn count_bucket(
        &self,
        raw: &Spanned<String>,
        burst: Option<&Spanned<u64>>,
        field: &'static str,
    ) -> Res<Option<Bucket>> {
        let Some(rate) = self.rate(raw, field, |n| n.parse::<u64>().map_err(|e| e.to_string()))?
        else {
            return Ok(None);
        };
        let burst = match burst {
            None => rate.amount,
            Some(b) => self.range(
                b,
                field,
                1,
                u64::from(u32::MAX),
                "a burst from 1 to 4294967295",
            )?,
        };
        Ok(Some(Bucket { rate, burst }))
    }

    /// A byte rate (`1MiB/s`) with an optional burst size (default: the rate's amount; a
    /// packet larger than the burst still passes once the bucket is full, and pays its debt).
    fn byte_bucket(
        &self,
        raw: &Spanned<String>,
        burst: Option<&Spanned<String>>,
    ) -> Res<Option<Bucket>> {
        let field = "publish.bytes";
        let Some(rate) = self.rate(raw, field, |n| parse_size(n).map_err(|e| e.to_string()))?
        else {
            return Ok(None);
        };
        let burst = match burst {
            None => rate.amount,
            Some(b) => self.size(b, "publish.byte_burst")?,
        };
        Ok(Some(Bucket { rate, burst }))
    }

    /// `AMOUNT/PERIOD` where PERIOD is `s`, `m`, `h` or a duration (`10/5s`); `off` is `None`.
    fn rate(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
        amount: impl Fn(&str) -> Result<u64, String>,
    ) -> Res<Option<Rate>> {
        let text = raw.value.trim();
        if text == "off" {
            return Ok(None);
        }
        let invalid = |reason: String| {
            self.err_at(
                raw,
                GuardErrorKind::Invalid {
                    field,
                    found: quoted(text),
                    reason,
                },
            )
        };
        let expected = "expected AMOUNT/PERIOD such as 100/s, 6000/m or 1MiB/s, or off";
        let (n, per) = text
            .split_once('/')
            .ok_or_else(|| invalid(expected.into()))?;
        let n = amount(n.trim()).map_err(|e| invalid(format!("{e}; {expected}")))?;
        let per = match per.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => parse_duration(other).map_err(|e| invalid(format!("{e}; {expected}")))?,
        };
        if n == 0 || per.is_zero() || per > Duration::from_secs(86_400) {
            return Err(invalid(
                "the amount must be at least 1 and the period from 1ns to 24h".into(),
            ));
        }
        Ok(Some(Rate { amount: n, per }))
    }

    fn duration(&self, raw: &Spanned<String>, field: &'static str) -> Res<Duration> {
        let d = parse_duration(&raw.value).map_err(|e| {
            self.err_at(
                raw,
                GuardErrorKind::Invalid {
                    field,
                    found: quoted(&raw.value),
                    reason: e.to_string(),
                },
            )
        })?;
        if d.is_zero() || d > Duration::from_secs(366 * 86_400) {
            let kind = GuardErrorKind::OutOfRange {
                field,
                found: quoted(&raw.value),
                expected: "more than 0s and at most 366 days",
            };
            return Err(self.err_at(raw, kind));
        }
        Ok(d)
    }

    fn keepalive(&self, raw: &Spanned<String>, field: &'static str) -> Res<u16> {
        let d = self.duration(raw, field)?;
        match u16::try_from(d.as_secs()) {
            Ok(s) if d.subsec_nanos() == 0 => Ok(s),
            _ => Err(self.err_at(
                raw,
                GuardErrorKind::OutOfRange {
                    field,
                    found: quoted(&raw.value),
                    expected: "whole seconds from 1s to 65535s",
                },
            )),
        }
    }

    fn size(&self, raw: &Spanned<String>, field: &'static str) -> Res<u64> {
        match parse_size(&raw.value) {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err(self.err_at(
                raw,
                GuardErrorKind::OutOfRange {
                    field,
                    found: quoted(&raw.value),
                    expected: "more than 0 bytes",
                },
            )),
            Err(e) => Err(self.err_at(
                raw,
                GuardErrorKind::Invalid {
                    field,
                    found: quoted(&raw.value),
                    reason: e.to_string(),
                },
            )),
        }
    }

    fn range(
        &self,
        raw: &Spanned<u64>,
        field: &'static str,
        min: u64,
        max: u64,
        expected: &'static str,
    ) -> Res<u64> {
        if (min..=max).contains(&raw.value) {
            Ok(raw.value)
        } else {
            Err(self.err_at(
                raw,
                GuardErrorKind::OutOfRange {
                    field,
                    found: raw.value.to_string(),
                    expected,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests;
