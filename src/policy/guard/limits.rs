//! `limits:` in a policy file: connection rates and counts, and the per-client limits (rates,
//! sizes, inflight, keep-alive bounds) with their user and group overrides (compiled into
//! `policy/limits.rs`'s rules). Rates are `AMOUNT/PERIOD` (`100/s`, `1MiB/s`) or `off`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::values::{Ctx, Res};
use crate::config::quoted;
use crate::config::units::{parse_duration, parse_size};
use crate::policy::decision::RuleRef;
use crate::policy::error::GuardErrorKind;
use crate::policy::limits::{Bucket, ClientOverride, ConnectionLimits, LimitRules, OnExceed, Rate};

/// `limits:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct RawLimits {
    connections: Option<RawConnections>,
    client: Option<RawClient>,
    users: Option<HashMap<String, RawClient>>,
    groups: Option<HashMap<String, RawClient>>,
}

/// `limits.connections:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    #[schemars(with = "Option<String>")]
    per_ip: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    per_ip_burst: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    global: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    global_burst: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_per_ip: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_total: Option<Spanned<u64>>,
    #[schemars(with = "Option<HashMap<String, u64>>")]
    per_listener: Option<HashMap<String, Spanned<u64>>>,
    #[schemars(with = "Option<u64>")]
    ipv6_prefix: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_tracked_sources: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    shed_at_memory: Option<Spanned<String>>,
}

/// `limits.client:`, `limits.users.NAME:`, `limits.groups.NAME:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawClient {
    publish: Option<RawPublish>,
    subscribe: Option<RawSubscribe>,
    #[schemars(with = "Option<u64>")]
    max_inflight: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_client_id: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_topic_length: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_topic_levels: Option<Spanned<u64>>,
    keepalive: Option<RawKeepalive>,
}

/// `publish:` inside a client section.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    #[schemars(with = "Option<String>")]
    rate: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    burst: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    bytes: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    byte_burst: Option<Spanned<String>>,
    on_exceed: Option<OnExceed>,
}

/// `subscribe:` inside a client section.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSubscribe {
    #[schemars(with = "Option<String>")]
    rate: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    burst: Option<Spanned<u64>>,
    #[schemars(with = "Option<u64>")]
    max_per_session: Option<Spanned<u64>>,
    on_exceed: Option<OnExceed>,
}

/// `keepalive:` inside a client section.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawKeepalive {
    #[schemars(with = "Option<String>")]
    min: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    max: Option<Spanned<String>>,
}

// === impl Ctx (limits) ===

impl Ctx<'_> {
    pub(super) fn limits(&self, raw: &RawLimits, line: u32) -> Res<LimitRules> {
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
}
