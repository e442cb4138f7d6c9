//! Subscribe decisions, under the policy's choice of semantics for a filter that overlaps topics
//! the client may not subscribe to.
//!
//! What it owns: [`SubscribeOverlap`] (the choice), the walk that judges one SUBSCRIBE filter,
//! and the delivery-time check that goes with the mosquitto-style choice ([`Acl::withheld`]).
//! Why it is separate: the two halves are one contract (a filter granted here may match topics
//! that only the delivery check keeps from the client), so they sit side by side. Pure; it must
//! not decide publish or receive on its own (`acl.rs` does, through the tries).
//!
//! The walk goes over the client's own subscribe rules (identity index, first-match order) and
//! compares each rule filter `G` with the requested filter `F` (`filter.rs`):
//! - an allow rule that *covers* F (F ⊆ G) grants it; one that only *overlaps* caps the QoS;
//! - a deny rule that covers F refuses it (every topic of F not decided by an earlier rule is
//!   denied here);
//! - a deny rule that only overlaps F: under `strict` (the default) refuses it; under `withhold`
//!   is passed over, and its topics are withheld at delivery;
//! - at the end, `builtin default-deny` acts as a deny rule covering everything, with the
//!   policy's default.
//!
//! Under `withhold`, a deny that ends the walk grants F instead when an earlier allow rule
//! overlapped it (some of its topics may be allowed), and every such grant is marked
//! [`AclReason::PartlyDenied`]. Strict grants are sound on their own (every topic the filter can
//! match is allowed, property-tested); withhold grants are sound together with
//! [`Acl::withheld`], which lets a delivery through only if the client could have subscribed to
//! its topic by name. That check runs on every delivery of a policy that withholds anywhere, and
//! for a session that was granted a filter this way (the broker keeps the subscription when a
//! reload turns withholding off).

use std::fmt;

use serde::Deserialize;

use super::filter::{self, Level};
use super::rule::{self, Rule, Values};
use super::trie::WhoKey;
use super::{Acl, AclDecision, AclReason, Action, Subject};
use crate::mqtt::topic;
use crate::policy::decision::{Decision, RuleRef, Verdict};

/// What a filter that overlaps topics the client may not subscribe to gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeOverlap {
    /// Refused: a filter is granted only if every topic it can match is allowed, so the broker
    /// never routes a denied topic toward the client (`#` is refused while any topic is denied).
    #[default]
    Strict,
    /// Granted when an allow rule overlaps it; messages on the topics the client may not
    /// subscribe to are withheld at delivery (mosquitto's behaviour).
    Withhold,
}

// === impl SubscribeOverlap ===

impl SubscribeOverlap {
    /// The word used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscribeOverlap::Strict => "strict",
            SubscribeOverlap::Withhold => "withhold",
        }
    }

    /// One sentence for `moat explain` and `moat check`.
    pub fn meaning(self) -> &'static str {
        match self {
            SubscribeOverlap::Strict => {
                "a filter that also matches topics the client may not subscribe to is refused"
            }
            SubscribeOverlap::Withhold => {
                "a filter that also matches topics the client may not subscribe to is granted; those topics are withheld at delivery"
            }
        }
    }
}

impl fmt::Display for SubscribeOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy-wide choice and what it means for the whole ACL.
#[derive(Clone, Debug)]
pub struct OverlapSetting {
    /// The default for `builtin default-deny` and for deny rules without their own setting.
    pub default: SubscribeOverlap,
    /// Where the default is set (`builtin subscribe_overlap: strict` when no file sets it).
    pub rule: RuleRef,
    /// Deny rules whose own `subscribe_overlap` differs from the default.
    pub overrides: usize,
}

impl Default for OverlapSetting {
    fn default() -> Self {
        OverlapSetting {
            default: SubscribeOverlap::Strict,
            rule: RuleRef::builtin("subscribe_overlap: strict"),
            overrides: 0,
        }
    }
}

impl fmt::Display for OverlapSetting {
    /// `strict (builtin subscribe_overlap: strict): a filter that …`, for explain and check.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.default,
            self.rule,
            self.default.meaning()
        )?;
        if self.overrides > 0 {
            write!(
                f,
                "; {} deny rule(s) set their own subscribe_overlap",
                self.overrides
            )?;
        }
        Ok(())
    }
}

/// What the walk has seen so far.
struct Walk<'r> {
    /// The first allow rule that overlaps the filter.
    first_allow: Option<&'r Rule>,
    /// A `withhold` deny rule overlapped the filter and was passed over.
    withheld: bool,
    /// The lowest `max_qos` of the allow rules that overlap the filter.
    max_qos: u8,
}

// === impl Walk ===

impl Walk<'_> {
    /// A grant by `rule` (the covering allow rule, or the first overlapping one).
    fn grant(&self, rule: &Rule, partly: bool) -> AclDecision {
        let reason = if partly {
            AclReason::PartlyDenied
        } else {
            AclReason::Matched
        };
        let mut d = AclDecision::by(rule, Verdict::Allow, reason);
        d.max_qos = self.max_qos;
        d
    }

    /// The walk met a deny that covers the filter (`rule`; `None` for `builtin default-deny`)
    /// under `overlap`.
    fn end(&self, rule: Option<&Rule>, overlap: SubscribeOverlap) -> AclDecision {
        match (self.first_allow, overlap) {
            (Some(allow), SubscribeOverlap::Withhold) => self.grant(allow, true),
            (first_allow, _) => {
                // Some topics of the filter were allowed by an earlier rule: the refusal is
                // for the overlap, not because the whole filter is denied.
                let reason = if first_allow.is_some() {
                    AclReason::Overlaps
                } else {
                    AclReason::Matched
                };
                match rule {
                    Some(rule) => AclDecision::by(rule, Verdict::Deny, reason),
                    None if first_allow.is_some() => AclDecision {
                        reason,
                        ..AclDecision::no_rule()
                    },
                    None => AclDecision::no_rule(),
                }
            }
        }
    }
}

// === impl Acl (subscribe) ===

impl Acl {
    /// The overlap semantics of deny rule `rule` (its own, or the policy's default).
    fn overlap_of(&self, rule: &Rule) -> SubscribeOverlap {
        rule.overlap.unwrap_or(self.overlap.default)
    }

    /// Judges a SUBSCRIBE filter (possibly `$share/{group}/{filter}`). See the module docs.
    pub(crate) fn subscribe(
        &self,
        subject: &Subject,
        groups: &[String],
        filter: &str,
    ) -> AclDecision {
        let (share, inner) = match topic::split_shared(filter) {
            Ok(Some((group, inner))) => (Some(group), inner),
            Ok(None) => (None, filter),
            Err(_) => return invalid_filter(),
        };
        if topic::validate_topic_filter(inner).is_err() {
            return invalid_filter();
        }
        let wanted = Level::split(inner);
        let key = WhoKey {
            name: &subject.name,
            groups,
            cert_cn: subject.cert_cn.as_deref(),
        };
        let mut ids = Vec::new();
        self.subscribe_index.collect(&key, &mut ids);
        ids.sort_unstable();
        ids.dedup();
        let values = Values::of(subject);
        let mut walk = Walk {
            first_allow: None,
            withheld: false,
            max_qos: 2,
        };
        for rule in ids.into_iter().filter_map(|id| self.rule(id)) {
            if !rule.context_matches(subject, share) {
                continue;
            }
            let filters = rule
                .patterns
                .iter()
                .filter_map(|p| rule::substitute(p, &values));
            for g in filters {
                if !filter::intersects(&g, &wanted) {
                    continue;
                }
                let covered = filter::covers(&g, &wanted);
                if rule.verdict == Verdict::Deny {
                    let overlap = self.overlap_of(rule);
                    if covered {
                        return walk.end(Some(rule), overlap);
                    }
                    if overlap == SubscribeOverlap::Strict {
                        return AclDecision::by(rule, Verdict::Deny, AclReason::Overlaps);
                    }
                    walk.withheld = true;
                    continue;
                }
                // Topics of this filter that this (earlier) allow rule decides get its QoS cap.
                walk.max_qos = walk.max_qos.min(rule.max_qos);
                if covered {
                    return walk.grant(rule, walk.withheld);
                }
                walk.first_allow.get_or_insert(rule);
            }
        }
        walk.end(None, self.overlap.default)
    }

    /// Under `withhold`: the refusal of a delivery on `topic` (a topic name) when the client
    /// could not have subscribed to that topic by name, as a plain subscription or in any share
    /// group a rule names; `None` when it could. The refusal names the rule that decides a
    /// plain subscription to the topic.
    pub(crate) fn withheld(
        &self,
        subject: &Subject,
        groups: &[String],
        topic: &str,
    ) -> Option<AclDecision> {
        let first = |share: Option<&str>| {
            self.first_match_shared(Action::Subscribe, subject, groups, topic, share)
        };
        let allows = |id: Option<u32>| {
            id.and_then(|id| self.rule(id))
                .is_some_and(|r| r.verdict == Verdict::Allow)
        };
        let plain = first(None);
        if allows(plain) || self.share_names.iter().any(|g| allows(first(Some(g)))) {
            return None;
        }
        let decision = match plain.and_then(|id| self.rule(id)) {
            Some(rule) => Decision {
                verdict: Verdict::Deny,
                rule: rule.rule.clone(),
            },
            None => Decision::deny(RuleRef::builtin("default-deny")),
        };
        Some(AclDecision {
            decision,
            reason: AclReason::Withheld,
            disconnect: false,
            max_qos: 0,
        })
    }
}

fn invalid_filter() -> AclDecision {
    AclDecision {
        reason: AclReason::InvalidFilter,
        ..AclDecision::no_rule()
    }
}
