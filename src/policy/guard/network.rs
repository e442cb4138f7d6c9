//! `network:` in a policy file: the CIDR lists that say who may open a connection, globally and
//! per listener (compiled into `policy/network.rs`'s rules).
//!
//! A bare address is a /32 or /128, host bits are cleared, and IPv4-mapped IPv6 networks are
//! written as the IPv4 network they stand for, so a rule matches what the peer really is.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::values::{Ctx, Res};
use crate::config::quoted;
use crate::policy::error::GuardErrorKind;
use crate::policy::network::{CidrLists, CidrRule, NetworkRules};

/// `network:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct RawNetwork {
    #[schemars(with = "Option<Vec<String>>")]
    allow: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    deny: Option<Vec<Spanned<String>>>,
    listeners: Option<HashMap<String, RawCidrLists>>,
}

/// `network.listeners.NAME:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCidrLists {
    #[schemars(with = "Option<Vec<String>>")]
    allow: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    deny: Option<Vec<Spanned<String>>>,
}

// === impl Ctx (network) ===

impl Ctx<'_> {
    pub(super) fn network(&self, raw: &RawNetwork, into: &mut NetworkRules) -> Res<()> {
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
    pub(super) fn net(&self, raw: &Spanned<String>, field: &'static str) -> Res<IpNet> {
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
}
