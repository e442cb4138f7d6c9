//! Topic ACLs: which client may publish, subscribe to, or receive which topic. Pure.
//!
//! Rules are an ordered list (`acl:` in policy files, in file order across files); the first
//! rule that matches a request decides, and no match is a denial (`builtin default-deny`). A rule
//! matches when its action, one of its topic filters, and its *who* part (users / groups / certs,
//! then listeners and sources) all match. Conditions (`max_qos`, `retain`) do not change which
//! rule matches: an allow rule whose condition the request breaks refuses it, naming that rule.
//!
//! The three questions, and how each avoids scanning every rule:
//! - publish and receive (one topic name): a topic trie per action (`trie.rs`);
//! - subscribe (a filter, which may hold wildcards): the subject's own rules, found through the
//!   identity index, are walked in order (`subscribe.rs`); by default (`subscribe_overlap:
//!   strict`) a filter is allowed only when an allow rule *covers* it and no earlier deny rule
//!   *overlaps* it (`filter.rs`). That is sound: every topic the filter can match is then
//!   allowed (proved in the tests), so `allow a/+` never grants `a/#`. Under `withhold` an
//!   overlapping filter is granted and deliveries are checked against the subscribe rules too.
//!
//! `$share/{group}/{filter}` is judged on its inner filter, and rules with `share_groups` apply
//! only to shared subscriptions with those names. `$`-topics are matched only by rules whose
//! first level names them [MQTT-4.7.2-1]. Placeholders (`{username}`, `{client_id}`, `{cert.cn}`)
//! fill whole levels with literal text; an identity that contains `+ # /` or NUL fills nothing.

mod cache;
mod cases;
pub(crate) mod compile;
mod filter;
mod rule;
mod subscribe;
mod trie;

#[cfg(test)]
mod subscribe_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use cache::AclCache;
pub use cases::{CaseOutcome, PolicyCase};
use rule::{Rule, Values};
pub use subscribe::{OverlapSetting, SubscribeOverlap};
use trie::{Bucket, Trie, WhoKey};

use super::decision::{Decision, RuleRef, Verdict};
use super::{IdentitySource, Policy};

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send a PUBLISH (including the will, judged at CONNECT).
    Publish = 0,
    /// Subscribe with a topic filter.
    Subscribe = 1,
    /// Be delivered a message on a topic (a PUBLISH from the broker).
    Receive = 2,
}

// === impl Action ===

impl Action {
    /// Every action, in index order.
    pub const ALL: [Action; 3] = [Action::Publish, Action::Subscribe, Action::Receive];

    /// The word used in policy files, audit lines and `moat explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Receive => "receive",
        }
    }

    /// Parses the policy-file word (not `all`).
    pub fn parse(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking: the facts rules are matched against. Fixed for the life of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Identity name (user, certificate CN, or `anonymous`).
    pub name: String,
    /// How the identity was established.
    pub source: IdentitySource,
    /// MQTT client identifier (the one moat assigned, if the client sent none).
    pub client_id: String,
    /// CN of the verified client certificate, if one was presented.
    pub cert_cn: Option<String>,
    /// Listener the client came through.
    pub listener: Arc<str>,
    /// The client's address.
    pub addr: IpAddr,
}

// === impl Subject ===

impl Subject {
    /// Whether the client has no credentials.
    pub fn is_anonymous(&self) -> bool {
        self.source == IdentitySource::Anonymous
    }
}

/// Why an ACL decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclReason {
    /// The rule matched; its verdict stands.
    Matched,
    /// No rule matched: deny by default.
    NoRule,
    /// An allow rule matched but the QoS is above its `max_qos`.
    QosAbove {
        /// Requested QoS.
        qos: u8,
        /// The rule's maximum.
        max: u8,
    },
    /// An allow rule matched but it does not allow retained messages (a retained publish, or
    /// an empty payload, which the embedded broker treats as deleting the retained message).
    RetainNotAllowed,
    /// The filter is not a valid topic filter.
    InvalidFilter,
    /// A subscription refused because the filter also matches topics this rule denies
    /// (`subscribe_overlap: strict`).
    Overlaps,
    /// A subscription granted although the filter also matches topics the client may not
    /// subscribe to; deliveries on those are withheld (`subscribe_overlap: withhold`).
    PartlyDenied,
    /// A delivery withheld: the client may not subscribe to its topic, and a filter granted
    /// under `subscribe_overlap: withhold` let the broker route it here.
    Withheld,
}

/// An ACL decision: the verdict, the rule that reached it, and what the enforcer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclDecision {
    /// Allow or deny, and the rule.
    pub decision: Decision,
    /// Why.
    pub reason: AclReason,
    /// The deciding rule says a refused publish ends the session.
    pub disconnect: bool,
    /// For subscriptions: the highest QoS the subscription may be granted.
    pub max_qos: u8,
}

// === impl AclDecision ===

impl AclDecision {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// The rule that decided.
    pub fn rule(&self) -> &RuleRef {
        &self.decision.rule
    }

    pub(crate) fn no_rule() -> AclDecision {
        AclDecision {
            decision: Decision::deny(RuleRef::builtin("default-deny")),
            reason: AclReason::NoRule,
            disconnect: false,
            max_qos: 0,
        }
    }

    pub(crate) fn by(rule: &Rule, verdict: Verdict, reason: AclReason) -> AclDecision {
        AclDecision {
            decision: Decision {
                verdict,
                rule: rule.rule.clone(),
            },
            reason,
            disconnect: rule.disconnect,
            max_qos: rule.max_qos,
        }
    }
}

impl fmt::Display for AclReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclReason::Matched => f.write_str("rule matched"),
            AclReason::NoRule => f.write_str("no rule matched"),
            AclReason::QosAbove { qos, max } => write!(f, "QoS {qos} above max_qos {max}"),
            AclReason::RetainNotAllowed => f.write_str("retain not allowed"),
            AclReason::InvalidFilter => f.write_str("invalid topic filter"),
            AclReason::Overlaps => f.write_str(
                "the filter also matches topics denied here (subscribe_overlap: strict)",
            ),
            AclReason::PartlyDenied => f.write_str(
                "rule matched; the filter also matches topics the client may not subscribe to, withheld at delivery (subscribe_overlap: withhold)",
            ),
            AclReason::Withheld => f.write_str(
                "withheld at delivery: the client may not subscribe to this topic (subscribe_overlap: withhold)",
            ),
        }
    }
}

impl fmt::Display for AclDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.decision, self.reason)
    }
}

/// A publish as the ACL sees it.
#[derive(Clone, Copy, Debug)]
pub struct PublishFacts<'a> {
    /// Topic name (after alias resolution).
    pub topic: &'a str,
    /// QoS 0–2.
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// Zero-length payload: rumqttd deletes the retained message on the topic even without
    /// RETAIN (catalogue §A.19), so such a publish needs retain permission too.
    pub empty_payload: bool,
}

/// The compiled ACL of one policy snapshot.
#[derive(Debug, Default)]
pub(crate) struct Acl {
    /// Rules in first-match order.
    rules: Vec<Rule>,
    /// One trie per action (index = `Action as usize`), for topic names.
    tries: [Trie; 3],
    /// Subscribe rules by identity, for filter decisions.
    subscribe_index: Bucket,
    /// What a filter overlapping denied topics gets (`subscribe_overlap:`).
    overlap: OverlapSetting,
    /// Whether any deny rule, or the default, withholds (deliveries are then checked against the
    /// subscribe rules too).
    withholds: bool,
    /// Share group names subscribe rules restrict themselves to (`share_groups:`): the contexts
    /// a delivery check tries besides a plain subscription.
    share_names: Vec<Box<str>>,
}

// === impl Acl ===

impl Acl {
    /// Builds the indexes over `rules` (in first-match order). The subscribe trie serves the
    /// delivery check of `subscribe_overlap: withhold` (`subscribe.rs`).
    pub(crate) fn new(rules: Vec<Rule>, mut overlap: OverlapSetting) -> Acl {
        let default = overlap.default;
        overlap.overrides = rules
            .iter()
            .filter(|r| r.overlap.is_some_and(|o| o != default))
            .count();
        let withholds = default == SubscribeOverlap::Withhold
            || rules
                .iter()
                .any(|r| r.overlap == Some(SubscribeOverlap::Withhold));
        let mut share_names: Vec<Box<str>> = rules
            .iter()
            .filter_map(|r| r.share_groups.as_ref())
            .flatten()
            .cloned()
            .collect();
        share_names.sort_unstable();
        share_names.dedup();
        let mut acl = Acl {
            rules: Vec::new(),
            tries: Default::default(),
            subscribe_index: Bucket::default(),
            overlap,
            withholds,
            share_names,
        };
        for (id, rule) in rules.iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            for action in Action::ALL {
                if rule.covers_action(action) {
                    if let Some(trie) = acl.tries.get_mut(action as usize) {
                        for pattern in &rule.patterns {
                            trie.insert(pattern, id, &rule.who);
                        }
                    }
                }
            }
            if rule.covers_action(Action::Subscribe) {
                acl.subscribe_index.add(id, &rule.who);
            }
        }
        acl.rules = rules;
        acl
    }

    /// Number of rules.
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether deliveries are also checked against the subscribe rules (some deny rule, or the
    /// default, is `subscribe_overlap: withhold`).
    pub(crate) fn withholds(&self) -> bool {
        self.withholds
    }

    fn rule(&self, id: u32) -> Option<&Rule> {
        self.rules.get(id as usize)
    }

    /// The first rule matching a topic name for publish or receive, ignoring conditions.
    pub(crate) fn first_match(
        &self,
        action: Action,
        subject: &Subject,
        groups: &[String],
        topic: &str,
    ) -> Option<u32> {
        self.first_match_shared(action, subject, groups, topic, None)
    }

    /// [`Acl::first_match`] for a subscription in share group `share` (`None`: a plain one).
    pub(crate) fn first_match_shared(
        &self,
        action: Action,
        subject: &Subject,
        groups: &[String],
        topic: &str,
        share: Option<&str>,
    ) -> Option<u32> {
        let trie = self.tries.get(action as usize)?;
        let key = WhoKey {
            name: &subject.name,
            groups,
            cert_cn: subject.cert_cn.as_deref(),
        };
        let ok = |id: u32| {
            self.rule(id)
                .is_some_and(|r| r.context_matches(subject, share))
        };
        trie.first_match(topic, &key, &Values::of(subject), &ok)
    }

    /// Turns a first match into a decision, applying the rule's conditions to a publish.
    pub(crate) fn conclude(
        &self,
        id: Option<u32>,
        publish: Option<&PublishFacts<'_>>,
    ) -> AclDecision {
        let Some(rule) = id.and_then(|id| self.rule(id)) else {
            return AclDecision::no_rule();
        };
        if rule.verdict == Verdict::Deny {
            return AclDecision::by(rule, Verdict::Deny, AclReason::Matched);
        }
        if let Some(p) = publish {
            if p.qos > rule.max_qos {
                let reason = AclReason::QosAbove {
                    qos: p.qos,
                    max: rule.max_qos,
                };
                return AclDecision::by(rule, Verdict::Deny, reason);
            }
            if !rule.retain && (p.retain || p.empty_payload) {
                return AclDecision::by(rule, Verdict::Deny, AclReason::RetainNotAllowed);
            }
        }
        AclDecision::by(rule, Verdict::Allow, AclReason::Matched)
    }
}

// === impl Policy (authorization) ===

impl Policy {
    /// Groups the current policy gives `subject` (none for anonymous clients). Read from this
    /// snapshot, not from the session's start: a reload that removes a user from a group takes
    /// effect on live sessions.
    fn groups_for(&self, subject: &Subject) -> &[String] {
        if subject.is_anonymous() {
            return &[];
        }
        self.groups_of(&subject.name).unwrap_or_default()
    }

    /// May `subject` publish this message?
    pub fn authorize_publish(&self, subject: &Subject, publish: &PublishFacts<'_>) -> AclDecision {
        let groups = self.groups_for(subject);
        let id = self
            .acl
            .first_match(Action::Publish, subject, groups, publish.topic);
        self.acl.conclude(id, Some(publish))
    }

    /// May `subject` be delivered a message on `topic`? Under `subscribe_overlap: withhold`,
    /// only if it could also have subscribed to the topic by name.
    pub fn authorize_receive(&self, subject: &Subject, topic: &str) -> AclDecision {
        let groups = self.groups_for(subject);
        let id = self
            .acl
            .first_match(Action::Receive, subject, groups, topic);
        let d = self.acl.conclude(id, None);
        if !d.is_allowed() || !self.acl.withholds() {
            return d;
        }
        self.acl.withheld(subject, groups, topic).unwrap_or(d)
    }

    /// May `subject` subscribe with `filter`? When allowed, `max_qos` is the QoS to grant at most.
    pub fn authorize_subscribe(&self, subject: &Subject, filter: &str) -> AclDecision {
        self.acl
            .subscribe(subject, self.groups_for(subject), filter)
    }

    /// Number of ACL rules.
    pub fn acl_rules(&self) -> usize {
        self.acl.len()
    }

    /// The subscribe overlap semantics in force (`subscribe_overlap:`), for explain and check.
    pub fn subscribe_overlap(&self) -> &OverlapSetting {
        &self.acl.overlap
    }
}
