//! Tests of the subscribe semantics (`subscribe.rs`): strict and withhold, per policy and per
//! rule, the delivery check that goes with withhold (share groups, the session cache across a
//! reload), compile errors, and property tests against the plain reference of `tests.rs`.

// Tests may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use super::tests::{
    allowed, compile_err, filter_strategy, policy, reference, rule_strategy, subjects, universe,
    user,
};
use super::*;
use crate::mqtt::topic::matches;
use crate::policy::{compile, PolicySource, Verdict};

/// The conformance policy: everything allowed but subscribing to `test/nosubscribe`.
const NOSUBSCRIBE: &str = "acl:\n  - deny: subscribe\n    topics: [\"test/nosubscribe\"]\n  - allow: all\n    topics: [\"#\"]\n";

fn subscribe(p: &Policy, filter: &str) -> AclDecision {
    p.authorize_subscribe(&user("x"), filter)
}

fn receive(p: &Policy, topic: &str) -> AclDecision {
    p.authorize_receive(&user("x"), topic)
}

#[test]
fn strict_is_the_default_and_refuses_a_filter_overlapping_a_deny() {
    let p = policy(NOSUBSCRIBE);
    assert_eq!(p.subscribe_overlap().default, SubscribeOverlap::Strict);
    assert_eq!(
        p.subscribe_overlap().rule.to_string(),
        "builtin subscribe_overlap: strict"
    );
    for f in ["#", "+/+", "test/#", "$share/g/#"] {
        let d = subscribe(&p, f);
        assert!(!allowed(&d), "{f}");
        assert_eq!(d.reason, AclReason::Overlaps, "{f}");
        assert_eq!(d.rule().line, 2, "{f}");
    }
    assert_eq!(subscribe(&p, "test/nosubscribe").reason, AclReason::Matched);
    assert!(allowed(&subscribe(&p, "test/other")));
    // Deliveries are judged by the receive rules alone.
    assert!(allowed(&receive(&p, "test/nosubscribe")));
}

#[test]
fn withhold_grants_the_filter_and_withholds_denied_topics_at_delivery() {
    let p = policy(&format!("subscribe_overlap: withhold\n{NOSUBSCRIBE}"));
    assert_eq!(
        p.subscribe_overlap().rule.to_string(),
        "p.yaml:1 subscribe_overlap: withhold"
    );
    for f in ["#", "+/+", "test/#", "$share/g/#"] {
        let d = subscribe(&p, f);
        assert!(allowed(&d), "{f}");
        assert_eq!(d.reason, AclReason::PartlyDenied, "{f}");
        assert_eq!(d.rule().line, 5, "granted by the allow rule: {f}");
    }
    // A filter wholly inside the denied area is still refused.
    let d = subscribe(&p, "test/nosubscribe");
    assert!(!allowed(&d));
    assert_eq!(d.reason, AclReason::Matched);
    // A filter that overlaps nothing denied is a plain grant.
    assert_eq!(subscribe(&p, "a/#").reason, AclReason::Matched);
    // Delivery: the denied topic is withheld, naming the deny rule; the rest goes through.
    let d = receive(&p, "test/nosubscribe");
    assert!(!allowed(&d));
    assert_eq!(d.reason, AclReason::Withheld);
    assert_eq!(d.rule().line, 3);
    assert!(allowed(&receive(&p, "test/other")));
    assert!(allowed(&receive(&p, "test/nosubscribe/below")));
}

#[test]
fn a_rule_may_withhold_while_the_default_stays_strict() {
    let p = policy(
        "acl:\n  - deny: subscribe\n    topics: [\"a/secret\"]\n    subscribe_overlap: withhold\n  - deny: subscribe\n    topics: [\"a/strict\"]\n  - allow: all\n    topics: [\"a/#\"]\n",
    );
    assert_eq!(p.subscribe_overlap().overrides, 1);
    // `a/+` overlaps the strict deny: refused by it.
    let d = subscribe(&p, "a/+");
    assert!(!allowed(&d));
    assert_eq!(d.rule().line, 5);
    // `a/secret/#` overlaps only the withholding deny (and `a/secret` itself): granted.
    let d = subscribe(&p, "a/secret/#");
    assert_eq!(d.reason, AclReason::PartlyDenied);
    // `#` also matches topics no rule allows: `default-deny` is strict here.
    let d = subscribe(&p, "#");
    assert!(!allowed(&d));
    assert_eq!(d.rule().line, 5, "the strict deny comes first");
    let p = policy(
        "acl:\n  - deny: subscribe\n    topics: [\"a/secret\"]\n    subscribe_overlap: withhold\n  - allow: all\n    topics: [\"a/#\"]\n",
    );
    let d = subscribe(&p, "#");
    assert!(!allowed(&d));
    assert_eq!(d.reason, AclReason::Overlaps);
    assert!(d.rule().is_builtin());
    assert_eq!(subscribe(&p, "a/#").reason, AclReason::PartlyDenied);
    assert!(!allowed(&receive(&p, "a/secret")));
    assert!(allowed(&receive(&p, "a/public")));
}

#[test]
fn a_strict_rule_refuses_under_a_withhold_default() {
    let p = policy(
        "subscribe_overlap: withhold\nacl:\n  - deny: subscribe\n    topics: [\"a/secret\"]\n    subscribe_overlap: strict\n  - allow: all\n    topics: [\"a/#\"]\n",
    );
    assert_eq!(p.subscribe_overlap().overrides, 1);
    assert!(!allowed(&subscribe(&p, "a/#")));
    // `b/#` meets only default-deny, which withholds: nothing in it is allowed, so refused.
    assert!(!allowed(&subscribe(&p, "b/#")));
    // `#` overlaps the strict deny.
    assert!(!allowed(&subscribe(&p, "#")));
    assert_eq!(subscribe(&p, "a/public/#").reason, AclReason::Matched);
}

#[test]
fn withhold_default_lets_a_filter_reach_past_the_allowed_area() {
    let p = policy(
        "subscribe_overlap: withhold\nacl:\n  - allow: subscribe\n    topics: [\"a/#\"]\n  - allow: receive\n    topics: [\"#\"]\n",
    );
    let d = subscribe(&p, "#");
    assert_eq!(d.reason, AclReason::PartlyDenied);
    let d = receive(&p, "b/x");
    assert_eq!(d.reason, AclReason::Withheld);
    assert!(d.rule().is_builtin());
    assert!(allowed(&receive(&p, "a/x")));
    // Nothing of `b/#` is allowed: refused, as under strict.
    assert_eq!(subscribe(&p, "b/#").reason, AclReason::NoRule);
}

#[test]
fn withhold_caps_the_qos_to_every_overlapping_allow() {
    let p = policy(
        "subscribe_overlap: withhold\nacl:\n  - allow: all\n    topics: [\"a/low\"]\n    max_qos: 0\n  - deny: subscribe\n    topics: [\"a/secret\"]\n  - allow: all\n    topics: [\"a/#\"]\n    max_qos: 1\n",
    );
    let d = subscribe(&p, "a/#");
    assert_eq!(d.reason, AclReason::PartlyDenied);
    assert_eq!(d.max_qos, 0);
    let d = subscribe(&p, "a/+/x");
    assert_eq!(d.max_qos, 1);
}

#[test]
fn the_delivery_check_tries_every_share_group_a_rule_names() {
    let p = policy(
        "subscribe_overlap: withhold\nacl:\n  - deny: subscribe\n    topics: [\"secret/#\"]\n  - allow: subscribe\n    topics: [\"jobs/#\"]\n    share_groups: [workers]\n  - allow: subscribe\n    topics: [\"news/#\"]\n  - allow: receive\n    topics: [\"#\"]\n",
    );
    // Only as a share of `workers` could the client get jobs/…: delivered.
    assert!(allowed(&receive(&p, "jobs/1")));
    assert!(allowed(&receive(&p, "news/1")));
    let d = receive(&p, "secret/1");
    assert_eq!((d.reason, d.rule().line), (AclReason::Withheld, 3));
    let d = receive(&p, "other/1");
    assert_eq!(d.reason, AclReason::Withheld);
    assert!(d.rule().is_builtin());
    assert_eq!(
        subscribe(&p, "$share/workers/#").reason,
        AclReason::PartlyDenied
    );
}

#[test]
fn a_session_granted_a_withheld_filter_stays_checked_after_a_reload_to_strict() {
    let withhold = Arc::new(policy(&format!(
        "subscribe_overlap: withhold\n{NOSUBSCRIBE}"
    )));
    let strict = Arc::new(policy(NOSUBSCRIBE));
    let s = user("x");
    let mut cache = AclCache::default();
    assert!(!cache.withholding());
    assert_eq!(
        cache.subscribe(&withhold, &s, "#").reason,
        AclReason::PartlyDenied
    );
    assert!(cache.withholding());
    assert!(!allowed(&cache.receive(&withhold, &s, "test/nosubscribe")));
    let hits = cache.hits();
    assert!(!allowed(&cache.receive(&withhold, &s, "test/nosubscribe")));
    assert!(cache.hits() > hits, "the delivery check is cached");
    // The broker keeps `#` after the reload: its denied topic stays withheld.
    assert!(!allowed(&cache.receive(&strict, &s, "test/nosubscribe")));
    assert!(allowed(&cache.receive(&strict, &s, "test/x")));
    // A session that never was granted such a filter is judged by the receive rules only.
    let mut fresh = AclCache::default();
    assert!(allowed(&fresh.receive(&strict, &s, "test/nosubscribe")));
}

#[test]
fn subscribe_overlap_errors_name_the_place() {
    let e =
        compile_err("acl:\n  - allow: all\n    topics: [\"#\"]\n    subscribe_overlap: withhold\n");
    assert!(
        e.starts_with("p.yaml:4:24: 'subscribe_overlap' is a setting of deny rules"),
        "{e}"
    );
    let e = compile_err(
        "acl:\n  - deny: publish\n    topics: [\"#\"]\n    subscribe_overlap: withhold\n",
    );
    assert!(e.contains("deny rules that cover subscribe"), "{e}");
    let e = compile_err("subscribe_overlap: loose\n");
    assert!(e.starts_with("p.yaml:1:"), "{e}");
    assert!(e.contains("strict") && e.contains("withhold"), "{e}");
    let sources = [
        PolicySource {
            path: PathBuf::from("a.yaml"),
            text: "subscribe_overlap: withhold\n".to_owned(),
        },
        PolicySource {
            path: PathBuf::from("b.yaml"),
            text: "subscribe_overlap: strict\n".to_owned(),
        },
    ];
    let e = compile(&sources).err().unwrap().to_string();
    assert_eq!(
        e,
        "b.yaml:1:20: subscribe_overlap is strict here but withhold at a.yaml:1:20: set it in one file only"
    );
    // The same value twice is fine.
    let mut same = sources.clone();
    same[1].text = "subscribe_overlap: withhold\n".to_owned();
    assert!(compile(&same).is_ok());
}

fn withhold_policy(rules: &[String]) -> Policy {
    policy(&format!(
        "subscribe_overlap: withhold\nusers:\n  - {{ name: u1, groups: [g1] }}\n  - {{ name: u2 }}\nacl:\n{}",
        rules.concat()
    ))
}

fn strict_policy(rules: &[String]) -> Policy {
    policy(&format!(
        "users:\n  - {{ name: u1, groups: [g1] }}\n  - {{ name: u2 }}\nacl:\n{}",
        rules.concat()
    ))
}

/// Whether `reference` says the client may subscribe to `topic` by name.
fn subscribable(p: &Policy, s: &Subject, topic: &str) -> bool {
    reference(p, s, Action::Subscribe, topic)
        .is_some_and(|i| p.acl.rules[i as usize].verdict == Verdict::Allow)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The delivery check lets a topic through exactly when a subscription to it by name would
    /// be granted: under withhold a client receives nothing it could not have subscribed to.
    #[test]
    fn withheld_agrees_with_a_subscription_by_name(rules in prop::collection::vec(rule_strategy(), 1..10)) {
        let p = withhold_policy(&rules);
        for s in subjects() {
            let groups = p.groups_for(&s);
            for t in universe().iter().step_by(5) {
                let through = p.acl.withheld(&s, groups, t).is_none();
                prop_assert_eq!(through, subscribable(&p, &s, t), "{:?} {}", s.name, t);
            }
        }
    }

    /// Withhold grants what strict grants, and every filter that matches an allowed topic.
    #[test]
    fn withhold_grants_at_least_strict_and_every_useful_filter(
        rules in prop::collection::vec(rule_strategy(), 1..10),
        f in filter_strategy(),
    ) {
        let (strict, withhold) = (strict_policy(&rules), withhold_policy(&rules));
        let topics = universe();
        for s in subjects() {
            let loose = withhold.authorize_subscribe(&s, &f);
            if strict.authorize_subscribe(&s, &f).is_allowed() {
                prop_assert!(loose.is_allowed(), "{} granted by strict only", f);
                prop_assert_eq!(loose.reason, AclReason::Matched);
            }
            let useful = topics.iter().any(|t| matches(&f, t) && subscribable(&withhold, &s, t));
            if useful {
                prop_assert!(loose.is_allowed(), "{} matches an allowed topic but is refused", f);
            }
        }
    }
}
