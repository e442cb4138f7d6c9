//! Network admission: which peer addresses may open a connection, decided on the bare address.
//!
//! Policy files say `network: { allow: [CIDR…], deny: [CIDR…], listeners: { NAME: { allow, deny } } }`.
//! The rules, in order:
//!
//! 1. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry,
//!    and IPv4 rules are never matched against an IPv6 peer or the other way round.
//! 2. Deny wins: an address in the global `deny` list or in its listener's `deny` list is refused.
//! 3. The allow list that applies is the listener's own `allow` when it has one, else the global
//!    `allow`. **An empty allow list admits nobody** (deny by default): a policy must name the
//!    networks it serves, e.g. `0.0.0.0/0` and `::/0` for "anyone".
//!
//! Pure: the caller normalises nothing and owns no socket; this file also holds the one function
//! that turns an address into the key rate limits and caps count by ([`source_key`]).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::decision::{Decision, RuleRef};
use super::Policy;

/// One CIDR entry and the rule (file:line) that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CidrRule {
    /// The network, with host bits cleared.
    pub(crate) net: IpNet,
    /// Where it was written.
    pub(crate) rule: RuleRef,
}

/// Allow and deny lists of one scope (global or one listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CidrLists {
    /// Networks admitted.
    pub(crate) allow: Vec<CidrRule>,
    /// Networks refused, whatever `allow` says.
    pub(crate) deny: Vec<CidrRule>,
}

/// The compiled `network:` sections of all policy files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetworkRules {
    /// Lists that apply to every listener.
    pub(crate) global: CidrLists,
    /// Lists of one listener, by listener name.
    pub(crate) listeners: HashMap<String, CidrLists>,
}

/// Counts for `moat check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetworkSummary {
    /// Global allow entries.
    pub allow: usize,
    /// Global deny entries.
    pub deny: usize,
    /// Listeners with their own lists.
    pub listeners: usize,
}

impl fmt::Display for NetworkSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allow, {} deny, {} listener-specific section(s)",
            self.allow, self.deny, self.listeners
        )?;
        if self.allow == 0 {
            write!(f, "; the global allow list is empty: no address is admitted unless its listener has an allow list")?;
        }
        Ok(())
    }
}

// === impl NetworkRules ===

impl NetworkRules {
    fn decide(&self, ip: IpAddr, listener: &str) -> Decision {
        let ip = ip.to_canonical();
        let scoped = self.listeners.get(listener);
        let deny = self
            .global
            .deny
            .iter()
            .chain(scoped.into_iter().flat_map(|l| l.deny.iter()));
        if let Some(hit) = deny.into_iter().find(|r| r.net.contains(&ip)) {
            return Decision::deny(hit.rule.clone());
        }
        let allow = match scoped {
            Some(l) if !l.allow.is_empty() => &l.allow,
            _ => &self.global.allow,
        };
        match allow.iter().find(|r| r.net.contains(&ip)) {
            Some(hit) => Decision::allow(hit.rule.clone()),
            None if allow.is_empty() => {
                Decision::deny(RuleRef::builtin("network: empty allow list"))
            }
            None => Decision::deny(RuleRef::builtin("network: not in the allow list")),
        }
    }
}

// === impl Policy (network) ===

impl Policy {
    /// May a connection from `ip` be accepted on `listener`? Decided on the address alone,
    /// before any TLS work.
    pub fn admit_addr(&self, ip: IpAddr, listener: &str) -> Decision {
        self.guard.network.decide(ip, listener)
    }

    /// Whether any address can be admitted on `listener` (its allow list is not empty).
    pub fn admits_addresses_on(&self, listener: &str) -> bool {
        let n = &self.guard.network;
        !n.global.allow.is_empty()
            || n.listeners
                .get(listener)
                .is_some_and(|l| !l.allow.is_empty())
    }

    /// The networks refused on `listener` (the global deny list, then the listener's own) and
    /// the allow list that applies there (the listener's own when it has one, else the global
    /// one; empty admits nobody): what the kernel filter and `moat export nftables` compile.
    pub fn network_lists(&self, listener: &str) -> (Vec<IpNet>, Vec<IpNet>) {
        let n = &self.guard.network;
        let scoped = n.listeners.get(listener);
        let deny = n
            .global
            .deny
            .iter()
            .chain(scoped.into_iter().flat_map(|l| l.deny.iter()))
            .map(|r| r.net)
            .collect();
        let allow = match scoped {
            Some(l) if !l.allow.is_empty() => &l.allow,
            _ => &n.global.allow,
        };
        (deny, allow.iter().map(|r| r.net).collect())
    }

    /// Counts of the `network:` rules, for `moat check`.
    pub fn network_summary(&self) -> NetworkSummary {
        let n = &self.guard.network;
        NetworkSummary {
            allow: n.global.allow.len(),
            deny: n.global.deny.len(),
            listeners: n.listeners.len(),
        }
    }
}

/// The key a source is counted by: an IPv4 address as itself, an IPv6 address by its first
/// `v6_prefix` bits (one host usually owns a whole /64, so counting single IPv6 addresses would
/// let it rotate past every limit). IPv4-mapped addresses count as IPv4.
pub fn source_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    fn rule(net: &str) -> CidrRule {
        CidrRule {
            net: net.parse::<IpNet>().unwrap().trunc(),
            rule: RuleRef::at("p.yaml".into(), 1, net.to_owned()),
        }
    }

    fn rules(allow: &[&str], deny: &[&str]) -> NetworkRules {
        NetworkRules {
            global: CidrLists {
                allow: allow.iter().map(|n| rule(n)).collect(),
                deny: deny.iter().map(|n| rule(n)).collect(),
            },
            listeners: HashMap::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_allow_list_admits_nobody() {
        let d = rules(&[], &[]).decide(ip("127.0.0.1"), "mqtts");
        assert!(!d.is_allowed());
        assert_eq!(d.rule.to_string(), "builtin network: empty allow list");
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rules(&["10.0.0.0/8"], &["10.66.0.0/16"]);
        assert!(r.decide(ip("10.1.2.3"), "m").is_allowed());
        let d = r.decide(ip("10.66.1.1"), "m");
        assert!(!d.is_allowed());
        assert_eq!(d.rule.label.as_ref(), "10.66.0.0/16");
        assert!(!r.decide(ip("192.168.1.1"), "m").is_allowed());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_judged_as_ipv4() {
        let r = rules(&["127.0.0.0/8"], &["127.0.0.9/32"]);
        assert!(r.decide(ip("::ffff:127.0.0.1"), "m").is_allowed());
        assert!(!r.decide(ip("::ffff:127.0.0.9"), "m").is_allowed());
        // An IPv4 rule never matches a real IPv6 peer.
        assert!(!r.decide(ip("::1"), "m").is_allowed());
    }

    #[test]
    fn ipv6_rules() {
        let r = rules(&["::1/128", "2001:db8::/32"], &["2001:db8:66::/48"]);
        assert!(r.decide(ip("::1"), "m").is_allowed());
        assert!(r.decide(ip("2001:db8:1::5"), "m").is_allowed());
        assert!(!r.decide(ip("2001:db8:66::5"), "m").is_allowed());
        assert!(!r.decide(ip("127.0.0.1"), "m").is_allowed());
    }

    #[test]
    fn listener_allow_replaces_global_allow_and_denies_add_up() {
        let mut r = rules(&["0.0.0.0/0"], &["192.0.2.0/24"]);
        r.listeners.insert(
            "internal".into(),
            CidrLists {
                allow: vec![rule("10.0.0.0/8")],
                deny: vec![rule("10.9.0.0/16")],
            },
        );
        r.listeners.insert(
            "public".into(),
            CidrLists {
                allow: vec![],
                deny: vec![rule("198.51.100.0/24")],
            },
        );
        assert!(r.decide(ip("10.1.1.1"), "internal").is_allowed());
        assert!(!r.decide(ip("8.8.8.8"), "internal").is_allowed());
        assert!(!r.decide(ip("10.9.1.1"), "internal").is_allowed());
        assert!(r.decide(ip("8.8.8.8"), "public").is_allowed());
        assert!(!r.decide(ip("198.51.100.7"), "public").is_allowed());
        assert!(!r.decide(ip("192.0.2.1"), "public").is_allowed());
        assert!(r.decide(ip("198.51.100.7"), "other").is_allowed());
    }

    #[test]
    fn source_keys() {
        assert_eq!(source_key(ip("10.1.2.3"), 64), ip("10.1.2.3"));
        assert_eq!(source_key(ip("::ffff:10.1.2.3"), 64), ip("10.1.2.3"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:3:4:5:6"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            source_key(ip("2001:db8:1:2:3:4:5:6"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(source_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(source_key(ip("2001:db8::1"), 0), ip("::"));
    }
}
