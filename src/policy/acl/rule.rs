//! One compiled ACL rule: verdict, actions, topic patterns, who it applies to, conditions.
//!
//! What it owns: the shapes a rule compiles into ([`Rule`], [`Pattern`], [`Who`]), placeholder
//! substitution ([`Values`]), and the per-rule checks that no index can do for us (listener and
//! source address, share group). Why it is separate: the trie (`trie.rs`) and the subscribe scan
//! both need exactly the same notion of "this rule applies to this subject". What it must not do:
//! decide first-match order (`acl.rs` does) or parse YAML (`compile.rs`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::filter::Level;
use super::{Action, Subject};
use crate::policy::decision::{RuleRef, Verdict};

/// A placeholder level in a rule's topic: replaced by a fact about the client, as a whole level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Placeholder {
    /// `{username}`: the authenticated identity (never set for anonymous clients).
    Username = 0,
    /// `{client_id}`: the MQTT client identifier (as assigned, if moat assigned one).
    ClientId = 1,
    /// `{cert.cn}`: the CN of the verified client certificate.
    CertCn = 2,
}

// === impl Placeholder ===

impl Placeholder {
    /// The placeholder a whole level spells, if any.
    pub(crate) fn parse(level: &str) -> Option<Placeholder> {
        match level {
            "{username}" => Some(Placeholder::Username),
            "{client_id}" => Some(Placeholder::ClientId),
            "{cert.cn}" => Some(Placeholder::CertCn),
            _ => None,
        }
    }
}

/// One level of a rule's topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// A literal level.
    Literal(Box<str>),
    /// `+`.
    Plus,
    /// `#` (always last).
    Hash,
    /// A placeholder, replaced by a whole level.
    Var(Placeholder),
}

/// The values placeholders stand for in one decision; `None` means "this placeholder matches
/// nothing" (no value, or a value that would be an injection).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Values<'a>([Option<&'a str>; 3]);

// === impl Values ===

impl<'a> Values<'a> {
    /// The placeholder values of `subject`. An identity containing `+`, `#`, `/` or NUL (or
    /// empty) never fills a placeholder: that would turn a name into a wildcard or into more
    /// levels (catalogue §A.17), so the rule fails closed by matching nothing.
    pub(crate) fn of(subject: &'a Subject) -> Values<'a> {
        let username = (!subject.is_anonymous()).then_some(subject.name.as_str());
        Values([
            username.filter(|v| usable(v)),
            Some(subject.client_id.as_str()).filter(|v| usable(v)),
            subject.cert_cn.as_deref().filter(|v| usable(v)),
        ])
    }

    /// The value of `p`, if it may fill a level at `depth` (0 = first level: a value there must
    /// not start with `$`, since `$`-topics are matched only by rules that name them).
    pub(crate) fn get(&self, p: Placeholder, depth: usize) -> Option<&'a str> {
        let value = self.0.get(p as usize).copied().flatten()?;
        (depth > 0 || !value.starts_with('$')).then_some(value)
    }
}

/// Whether a value may stand for a whole topic level.
fn usable(value: &str) -> bool {
    !value.is_empty() && !value.contains(['+', '#', '/', '\0'])
}

/// Substitutes placeholders; `None` if one of them has no usable value.
pub(crate) fn substitute<'a>(
    pattern: &'a [Pattern],
    values: &Values<'a>,
) -> Option<Vec<Level<'a>>> {
    pattern
        .iter()
        .enumerate()
        .map(|(depth, level)| match level {
            Pattern::Literal(l) => Some(Level::Literal(l)),
            Pattern::Plus => Some(Level::Plus),
            Pattern::Hash => Some(Level::Hash),
            Pattern::Var(p) => values.get(*p, depth).map(Level::Literal),
        })
        .collect()
}

/// Who a rule applies to. Identity selectors (users, groups, certs) are alternatives: the rule
/// applies to a subject that matches any of them, or to everyone when none is given. Listener
/// and source restrict further: when given, the subject must match one of each.
#[derive(Clone, Debug, Default)]
pub(crate) struct Who {
    /// Identity names (`anonymous` names clients without credentials).
    pub(crate) users: Vec<Box<str>>,
    /// Groups from the policy's user entries.
    pub(crate) groups: Vec<Box<str>>,
    /// Verified client-certificate CNs.
    pub(crate) certs: Vec<Box<str>>,
    /// Listener names.
    pub(crate) listeners: Vec<Box<str>>,
    /// Source networks.
    pub(crate) sources: Vec<IpNet>,
}

// === impl Who ===

impl Who {
    /// No identity selector: the rule is for everyone.
    pub(crate) fn is_anyone(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.certs.is_empty()
    }

    /// The checks the identity indexes cannot make: listener and source address.
    pub(crate) fn context_matches(&self, listener: &str, addr: IpAddr) -> bool {
        (self.listeners.is_empty() || self.listeners.iter().any(|l| &**l == listener))
            && (self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&addr)))
    }
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    /// Allow or deny.
    pub(crate) verdict: Verdict,
    /// Which actions it covers.
    pub(crate) actions: [bool; 3],
    /// Its topic filters (any of them).
    pub(crate) patterns: Vec<Vec<Pattern>>,
    /// Who it applies to.
    pub(crate) who: Who,
    /// For subscribe rules: the share names it applies to; such a rule applies to shared
    /// subscriptions with one of these names only.
    pub(crate) share_groups: Option<Vec<Box<str>>>,
    /// Highest QoS allowed (publish, and the QoS a subscription is granted).
    pub(crate) max_qos: u8,
    /// Whether retained publishes are allowed.
    pub(crate) retain: bool,
    /// Whether a publish this rule refuses ends the session instead of being dropped.
    pub(crate) disconnect: bool,
    /// For deny rules covering subscribe: their own `subscribe_overlap` (`None`: the policy's).
    pub(crate) overlap: Option<super::SubscribeOverlap>,
    /// Where the rule is written.
    pub(crate) rule: RuleRef,
}

// === impl Rule ===

impl Rule {
    /// Whether the rule covers `action`.
    pub(crate) fn covers_action(&self, action: Action) -> bool {
        self.actions.get(action as usize).copied().unwrap_or(false)
    }

    /// The checks no index makes: listener, source, and for subscriptions the share name.
    pub(crate) fn context_matches(&self, subject: &Subject, share: Option<&str>) -> bool {
        if !self.who.context_matches(&subject.listener, subject.addr) {
            return false;
        }
        match (&self.share_groups, share) {
            (None, _) => true,
            (Some(names), Some(group)) => names.iter().any(|n| &**n == group),
            (Some(_), None) => false,
        }
    }

    /// Whether the identity selectors (users, groups, certs) match `subject`, given the groups
    /// the policy gives it. The indexes answer this without a scan; the tests' reference
    /// evaluator uses it.
    #[cfg(test)]
    pub(crate) fn identity_matches(&self, subject: &Subject, groups: &[String]) -> bool {
        let who = &self.who;
        who.is_anyone()
            || who.users.iter().any(|u| **u == *subject.name)
            || who
                .groups
                .iter()
                .any(|g| groups.iter().any(|have| **g == **have))
            || subject
                .cert_cn
                .as_deref()
                .is_some_and(|cn| who.certs.iter().any(|c| &**c == cn))
    }
}
