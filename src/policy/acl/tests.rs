//! ACL tests: compile errors, matching, placeholders, `$`-topics, subsumption, the cache, and
//! property tests of the trie and the filter algebra against a plain reference.

// Tests may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use super::filter::{covers, intersects, Level};
use super::*;
use crate::mqtt::topic::matches;
use crate::policy::{compile, PolicySource, Verdict};

pub(super) fn policy(text: &str) -> Policy {
    let source = PolicySource {
        path: PathBuf::from("p.yaml"),
        text: text.to_owned(),
    };
    match compile(&[source]) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{text}"),
    }
}

pub(super) fn compile_err(text: &str) -> String {
    let source = PolicySource {
        path: PathBuf::from("p.yaml"),
        text: text.to_owned(),
    };
    match compile(&[source]) {
        Ok(_) => panic!("expected an error for\n{text}"),
        Err(e) => e.to_string(),
    }
}

const USERS: &str = "users:\n  - { name: alice, groups: [sensors] }\n  - { name: bob }\n";

pub(super) fn user(name: &str) -> Subject {
    Subject::describe(
        Some(name),
        Some(&format!("{name}-1")),
        None,
        None,
        ip("10.1.2.3"),
    )
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn publish(p: &Policy, s: &Subject, topic: &str) -> AclDecision {
    p.explain(s, Action::Publish, topic, 0, false)
}

pub(super) fn allowed(d: &AclDecision) -> bool {
    d.is_allowed()
}

#[test]
fn first_match_wins_and_no_match_denies() {
    let p = policy(&format!(
        "{USERS}acl:\n  - deny: all\n    topics: [\"sensors/secret/#\"]\n  - allow: [publish, subscribe]\n    topics: [\"sensors/#\"]\n    groups: [sensors]\n"
    ));
    let alice = user("alice");
    let d = publish(&p, &alice, "sensors/a");
    assert!(allowed(&d));
    assert_eq!(
        d.rule().to_string(),
        "p.yaml:7 allow publish,subscribe sensors/#"
    );
    let d = publish(&p, &alice, "sensors/secret/k");
    assert!(!allowed(&d));
    assert_eq!(d.rule().line, 5);
    let d = publish(&p, &user("bob"), "sensors/a");
    assert_eq!(d.reason, AclReason::NoRule);
    assert_eq!(d.rule().to_string(), "builtin default-deny");
    // Receive is not granted by a publish/subscribe rule.
    assert!(!allowed(&p.authorize_receive(&alice, "sensors/a")));
}

#[test]
fn literal_rules_match_exactly_one_topic() {
    // Catalogue §A.8: no prefix or partial-level matches.
    let p = policy("acl:\n  - allow: publish\n    topics: [allowed]\n");
    let anyone = user("x");
    assert!(allowed(&publish(&p, &anyone, "allowed")));
    for t in ["allowed/secret", "allowedX", "allowed/", "/allowed"] {
        assert!(!allowed(&publish(&p, &anyone, t)), "{t}");
    }
}

#[test]
fn hash_matches_parent_and_plus_matches_empty_level() {
    let p = policy("acl:\n  - allow: publish\n    topics: [\"a/#\", \"d/+/x\"]\n");
    let s = user("x");
    for t in ["a", "a/", "a/b/c", "d//x", "d/1/x"] {
        assert!(allowed(&publish(&p, &s, t)), "{t}");
    }
    for t in ["ab", "d/x", "d/1/2/x", "b/a"] {
        assert!(!allowed(&publish(&p, &s, t)), "{t}");
    }
}

#[test]
fn dollar_topics_need_a_rule_naming_them_mqtt_4_7_2_1() {
    let p = policy(
        "acl:\n  - allow: all\n    topics: [\"#\", \"+/#\", \"+/broker/uptime\"]\n  - allow: publish\n    topics: [\"$ops/#\"]\n",
    );
    let s = user("x");
    for t in ["$SYS/broker/uptime", "$CONTROL/dynamic-security/v1", "$SYS"] {
        assert!(!allowed(&publish(&p, &s, t)), "{t}");
        assert!(!allowed(&p.authorize_receive(&s, t)), "{t}");
    }
    assert!(allowed(&publish(&p, &s, "$ops/x")));
    assert!(
        allowed(&publish(&p, &s, "a/$x")),
        "only the first level is special"
    );
    for f in ["$SYS/#", "$share/g/$SYS/#", "$queue/q/#"] {
        assert!(!allowed(&p.authorize_subscribe(&s, f)), "{f}");
    }
    assert!(allowed(&p.authorize_subscribe(&s, "#")));
}

#[test]
fn subscribe_needs_every_topic_allowed_catalogue_a7() {
    let p = policy("acl:\n  - allow: subscribe\n    topics: [\"a/+\"]\n");
    let s = user("x");
    assert!(allowed(&p.authorize_subscribe(&s, "a/b")));
    assert!(allowed(&p.authorize_subscribe(&s, "a/+")));
    for f in ["a/#", "a/+/#", "+/#", "#", "a", "a/b/c", "+/b"] {
        assert!(!allowed(&p.authorize_subscribe(&s, f)), "{f}");
    }
    // `+/#` is `#`.
    let p = policy("acl:\n  - allow: subscribe\n    topics: [\"+/#\"]\n");
    assert!(allowed(&p.authorize_subscribe(&s, "#")));
}

#[test]
fn an_earlier_overlapping_deny_refuses_the_whole_filter() {
    let p = policy(
        "acl:\n  - deny: subscribe\n    topics: [\"sensors/secret/#\"]\n  - allow: subscribe\n    topics: [\"sensors/#\"]\n",
    );
    let s = user("x");
    assert!(!allowed(&p.authorize_subscribe(&s, "sensors/#")));
    assert!(!allowed(&p.authorize_subscribe(&s, "sensors/+/k")));
    assert!(allowed(&p.authorize_subscribe(&s, "sensors/public/#")));
    // With the deny on receive only, the subscription is allowed and deliveries are filtered.
    let p = policy(
        "acl:\n  - deny: receive\n    topics: [\"sensors/secret/#\"]\n  - allow: [subscribe, receive]\n    topics: [\"sensors/#\"]\n",
    );
    assert!(allowed(&p.authorize_subscribe(&s, "sensors/#")));
    assert!(allowed(&p.authorize_receive(&s, "sensors/a")));
    assert!(!allowed(&p.authorize_receive(&s, "sensors/secret/a")));
}

#[test]
fn shared_subscriptions_are_judged_on_the_inner_filter_catalogue_a4() {
    let p = policy(
        "acl:\n  - allow: subscribe\n    topics: [\"alice/#\"]\n  - allow: subscribe\n    topics: [\"jobs/#\"]\n    share_groups: [workers]\n",
    );
    let s = user("x");
    assert!(allowed(&p.authorize_subscribe(&s, "$share/g/alice/x")));
    assert!(!allowed(&p.authorize_subscribe(&s, "$share/g/#")));
    assert!(!allowed(&p.authorize_subscribe(&s, "$share/g/$SYS/#")));
    assert!(allowed(&p.authorize_subscribe(&s, "$share/workers/jobs/#")));
    assert!(!allowed(
        &p.authorize_subscribe(&s, "$share/thieves/jobs/#")
    ));
    assert!(
        !allowed(&p.authorize_subscribe(&s, "jobs/#")),
        "share_groups rules need a share"
    );
    let d = p.authorize_subscribe(&s, "$share//a");
    assert_eq!(d.reason, AclReason::InvalidFilter);
}

#[test]
fn placeholders_fill_whole_levels_and_never_inject_catalogue_a17() {
    let p = policy(
        "acl:\n  - allow: all\n    topics: [\"devices/{username}/#\", \"clients/{client_id}\", \"certs/{cert.cn}/+\", \"{username}/home\"]\n",
    );
    let alice = user("alice");
    assert!(allowed(&publish(&p, &alice, "devices/alice/x")));
    assert!(allowed(&publish(&p, &alice, "devices/alice")));
    assert!(allowed(&publish(&p, &alice, "clients/alice-1")));
    assert!(allowed(&publish(&p, &alice, "alice/home")));
    assert!(!allowed(&publish(&p, &alice, "devices/bob/x")));
    assert!(!allowed(&publish(&p, &alice, "devices/alicex/x")));
    assert!(allowed(&p.authorize_subscribe(&alice, "devices/alice/#")));
    assert!(!allowed(&p.authorize_subscribe(&alice, "devices/+/#")));
    // Hostile identities: `+`, `#`, `a/b`, NUL, empty; in the name, the client id or the CN.
    for evil in ["+", "#", "a/b", "a\0b", "", "devices/alice"] {
        let s = Subject::describe(Some(evil), Some(evil), Some(evil), None, ip("10.0.0.1"));
        for f in [
            "devices/#",
            "devices/+/#",
            "clients/+",
            "clients/#",
            "certs/#",
            "#",
            "+/home",
        ] {
            let d = p.authorize_subscribe(&s, f);
            assert!(!allowed(&d), "{evil:?} subscribed {f}: {d}");
        }
        for t in [
            "devices/a/b/x",
            "devices/+/x",
            "clients/a/b",
            "certs/a/b/x",
            "a/b/home",
        ] {
            let d = publish(&p, &s, t);
            assert!(!allowed(&d), "{evil:?} published {t}: {d}");
        }
    }
    // Anonymous clients have no {username}.
    let anon = Subject::describe(None, Some("c"), None, None, ip("10.0.0.1"));
    assert!(!allowed(&publish(&p, &anon, "devices/anonymous/x")));
    // A `$` value never fills the first level.
    let dollar = Subject::describe(Some("$SYS"), None, None, None, ip("10.0.0.1"));
    assert!(!allowed(&publish(&p, &dollar, "$SYS/home")));
    assert!(!allowed(&p.authorize_subscribe(&dollar, "$SYS/home")));
    assert!(allowed(&publish(&p, &dollar, "devices/$SYS/x")));
}

#[test]
fn who_selectors_users_groups_certs_then_listener_and_source() {
    let p = policy(&format!(
        "{USERS}acl:\n  - allow: publish\n    topics: [a]\n    users: [bob]\n    groups: [sensors]\n    certs: [gw-1]\n    listeners: [plant]\n    sources: [10.0.0.0/8, \"192.168.1.7\"]\n"
    ));
    let at = |name: Option<&str>, cn: Option<&str>, listener: &str, addr: &str| {
        let s = Subject::describe(name, None, cn, Some(listener), ip(addr));
        allowed(&publish(&p, &s, "a"))
    };
    assert!(at(Some("bob"), None, "plant", "10.9.9.9"));
    assert!(at(Some("alice"), None, "plant", "192.168.1.7"), "by group");
    assert!(
        at(Some("zed"), Some("gw-1"), "plant", "10.0.0.1"),
        "by certificate"
    );
    assert!(at(None, Some("gw-1"), "plant", "10.0.0.1"));
    assert!(!at(Some("zed"), None, "plant", "10.0.0.1"));
    assert!(
        !at(Some("bob"), None, "mqtts", "10.0.0.1"),
        "wrong listener"
    );
    assert!(
        !at(Some("bob"), None, "plant", "192.168.1.8"),
        "wrong source"
    );
}

#[test]
fn conditions_refuse_by_the_matching_rule() {
    let p = policy("acl:\n  - allow: [publish, subscribe]\n    topics: [\"t/#\"]\n    max_qos: 1\n    retain: false\n    disconnect: true\n");
    let s = user("x");
    let facts = |qos, retain, empty_payload| PublishFacts {
        topic: "t/a",
        qos,
        retain,
        empty_payload,
    };
    assert!(allowed(&p.authorize_publish(&s, &facts(1, false, false))));
    let d = p.authorize_publish(&s, &facts(2, false, false));
    assert_eq!(d.reason, AclReason::QosAbove { qos: 2, max: 1 });
    assert_eq!(d.rule().line, 2);
    assert!(d.disconnect);
    let d = p.authorize_publish(&s, &facts(0, true, false));
    assert_eq!(d.reason, AclReason::RetainNotAllowed);
    // rumqttd deletes the retained message on an empty payload even without RETAIN.
    let d = p.authorize_publish(&s, &facts(0, false, true));
    assert_eq!(d.reason, AclReason::RetainNotAllowed);
    let d = p.authorize_subscribe(&s, "t/+");
    assert!(allowed(&d));
    assert_eq!(d.max_qos, 1);
}

#[test]
fn rule_errors_name_file_line_and_column() {
    let cases = [
        (
            "acl:\n  - topics: [a]\n",
            "p.yaml:2:13: a rule needs exactly one of 'allow' or 'deny'",
        ),
        (
            "acl:\n  - allow: publish\n    deny: publish\n    topics: [a]\n",
            "exactly one",
        ),
        (
            "acl:\n  - allow: [publish, pubish]\n    topics: [a]\n",
            "p.yaml:2:12: unknown action 'pubish'",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [\"a/#/b\"]\n",
            "p.yaml:3:14: invalid topic filter 'a/#/b'",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [\"a/dev-{username}\"]\n",
            "placeholder",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [\"a/{user}\"]\n",
            "placeholder",
        ),
        (
            "acl:\n  - allow: subscribe\n    topics: [\"$share/g/a\"]\n",
            "share_groups",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [a]\n    sources: [10.0.0.0/33]\n",
            "p.yaml:4:15: invalid source",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [a]\n    max_qos: 3\n",
            "p.yaml:4:14: max_qos 3",
        ),
        (
            "acl:\n  - deny: publish\n    topics: [a]\n    retain: false\n",
            "condition of allow rules",
        ),
        (
            "acl:\n  - allow: all\n    topics: [a]\n    share_groups: [g]\n",
            "share_groups",
        ),
        (
            "acl:\n  - allow: publish\n    topics: []\n",
            "at least one topic",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [a]\n    users: [\"a/b\"]\n",
            "invalid name 'a/b' in 'users'",
        ),
        (
            "acl:\n  - allow: publish\n    topics: [a]\n    usres: [a]\n",
            "unknown field 'usres'",
        ),
        (
            "tests:\n  - { action: publsh, topic: a, expect: allow }\n",
            "unknown action",
        ),
        (
            "tests:\n  - { action: publish, topic: a, expect: maybe }\n",
            "expect is 'maybe'",
        ),
        (
            "tests:\n  - { action: publish, topic: \"a/#\", expect: deny }\n",
            "topic 'a/#'",
        ),
    ];
    for (text, want) in cases {
        let err = compile_err(text);
        assert!(err.contains(want), "{text}\ngot: {err}\nwant: {want}");
        assert!(err.starts_with("p.yaml:"), "{err}");
    }
}

#[test]
fn rules_from_several_files_keep_file_order() {
    let a = PolicySource {
        path: PathBuf::from("a.yaml"),
        text: "acl:\n  - allow: publish\n    topics: [x]\n".into(),
    };
    let b = PolicySource {
        path: PathBuf::from("b.yaml"),
        text: "acl:\n  - deny: publish\n    topics: [\"#\"]\n".into(),
    };
    let p = compile(&[a, b]).unwrap();
    let s = user("u");
    assert_eq!(
        publish(&p, &s, "x").rule().to_string(),
        "a.yaml:2 allow publish x"
    );
    assert_eq!(
        publish(&p, &s, "y").rule().to_string(),
        "b.yaml:2 deny publish #"
    );
}

#[test]
fn policy_cases_run_against_the_policy() {
    let p = policy(&format!(
        "{USERS}acl:\n  - allow: all\n    topics: [\"demo/#\"]\n    users: [alice]\ntests:\n  - {{ user: alice, action: publish, topic: demo/x, expect: allow }}\n  - {{ user: bob, action: publish, topic: demo/x, expect: allow }}\n  - {{ cert_cn: gw, action: subscribe, topic: \"#\", expect: deny }}\n"
    ));
    let outcomes = p.run_cases();
    let passed: Vec<bool> = outcomes.iter().map(CaseOutcome::passed).collect();
    assert_eq!(passed, [true, false, true]);
    assert_eq!(outcomes[1].case.at.to_string(), "p.yaml:10:26");
}

#[test]
fn cache_is_emptied_when_the_policy_changes() {
    let open = Arc::new(policy("acl:\n  - allow: all\n    topics: [\"#\"]\n"));
    let closed = Arc::new(policy("acl: []\n"));
    let s = user("u");
    let mut cache = AclCache::default();
    assert!(allowed(&cache.receive(&open, &s, "a")));
    assert!(allowed(&cache.receive(&open, &s, "a")));
    assert_eq!(cache.hits(), 1);
    assert!(!allowed(&cache.receive(&closed, &s, "a")));
    assert!(allowed(&cache.subscribe(&open, &s, "a/#")));
    assert!(!allowed(&cache.subscribe(&closed, &s, "a/#")));
    assert_eq!(cache.hits(), 1);
}

/// A session that sees more topics than the cache holds (a fan-in subscriber: one topic per
/// device) stops paying for entries that are evicted before they are asked for; a session with
/// few topics keeps its hits, and decisions are the rules' either way.
#[test]
fn a_cache_that_never_hits_rests_and_decisions_stay_the_rules() {
    use super::cache::{MAX_ENTRIES, REST};
    let p = Arc::new(policy(
        "acl:\n  - allow: receive\n    topics: [\"fleet/+/up\"]\n",
    ));
    let s = user("u");
    let mut cache = AclCache::default();
    // Two fills of distinct topics without a hit: the map rests from the next miss on.
    for i in 0..2 * MAX_ENTRIES + 1 {
        assert!(allowed(&cache.receive(&p, &s, &format!("fleet/d{i}/up"))));
    }
    assert_eq!(cache.hits(), 0);
    // Resting: a topic seen again is judged by the rules, not remembered.
    assert!(allowed(&cache.receive(&p, &s, "fleet/again/up")));
    assert!(allowed(&cache.receive(&p, &s, "fleet/again/up")));
    assert_eq!(cache.hits(), 0);
    assert!(!allowed(&cache.receive(&p, &s, "other")));
    // After the rest (three lookups of it are spent above), remembering resumes.
    for _ in 0..REST - 3 {
        assert!(allowed(&cache.receive(&p, &s, "fleet/again/up")));
    }
    assert_eq!(cache.hits(), 0);
    assert!(allowed(&cache.receive(&p, &s, "fleet/again/up")));
    assert!(allowed(&cache.receive(&p, &s, "fleet/again/up")));
    assert_eq!(cache.hits(), 1);
    // A device's own session, one topic over and over, is served from the cache throughout.
    let mut device = AclCache::default();
    for _ in 0..4 * MAX_ENTRIES {
        assert!(allowed(&device.receive(&p, &s, "fleet/1/up")));
    }
    assert_eq!(device.hits(), 4 * MAX_ENTRIES as u64 - 1);
}

#[test]
fn deep_topics_cost_the_depth_of_the_rules_catalogue_a16() {
    let p = policy("acl:\n  - allow: all\n    topics: [\"+/+/#\", \"a/b\"]\n");
    let s = user("u");
    let topic = "/".repeat(65_535);
    assert!(allowed(&publish(&p, &s, &topic)));
    let filter = "+/".repeat(32_767) + "#";
    assert!(allowed(&p.authorize_subscribe(&s, &filter)));
    assert!(!allowed(&publish(&p, &s, "x")));
}

// === property tests ===

/// Levels drawn from a small alphabet, so random filters and topics meet often.
const ALPHABET: [&str; 4] = ["a", "b", "", "$x"];

pub(super) fn universe() -> Vec<String> {
    let mut all: Vec<String> = ALPHABET.iter().map(|s| s.to_string()).collect();
    let mut last = all.clone();
    for _ in 1..5 {
        let mut next = Vec::new();
        for t in &last {
            for l in ALPHABET {
                next.push(format!("{t}/{l}"));
            }
        }
        all.extend(next.iter().cloned());
        last = next;
    }
    all.retain(|t| !t.is_empty());
    all
}

pub(super) fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just(String::new()),
        Just("$x".to_string()),
        Just("+".to_string()),
    ];
    (
        prop::collection::vec(level, 1..=3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(levels, hash, only_hash)| {
            if only_hash {
                return "#".to_string();
            }
            let mut f = levels.join("/");
            if f.is_empty() {
                f.push('a');
            }
            if hash {
                f.push_str("/#");
            }
            f
        })
}

/// The reference: first rule in file order that matches, by plain scanning.
pub(super) fn reference(p: &Policy, s: &Subject, action: Action, topic: &str) -> Option<u32> {
    let groups = p.groups_for(s);
    let values = rule::Values::of(s);
    p.acl
        .rules
        .iter()
        .position(|r| {
            r.covers_action(action)
                && r.share_groups.is_none()
                && r.identity_matches(s, groups)
                && r.context_matches(s, None)
                && r.patterns.iter().any(|pat| {
                    rule::substitute(pat, &values).is_some_and(|levels| {
                        let text: Vec<&str> = levels
                            .iter()
                            .map(|l| match l {
                                Level::Literal(x) => *x,
                                Level::Plus => "+",
                                Level::Hash => "#",
                            })
                            .collect();
                        matches(&text.join("/"), topic)
                    })
                })
        })
        .map(|i| i as u32)
}

pub(super) fn rule_strategy() -> impl Strategy<Value = String> {
    let verdict = prop_oneof![Just("allow"), Just("deny")];
    let actions = prop_oneof![
        Just("all"),
        Just("publish"),
        Just("subscribe"),
        Just("receive"),
        Just("[publish, receive]")
    ];
    let topic = prop_oneof![
        4 => filter_strategy(),
        1 => Just("{username}/#".to_string()),
        1 => Just("a/{client_id}".to_string()),
    ];
    let who = prop_oneof![
        Just(""),
        Just("    users: [u1]\n"),
        Just("    groups: [g1]\n"),
        Just("    certs: [c1]\n"),
        Just("    users: [u2]\n    sources: [10.0.0.0/8]\n"),
    ];
    (verdict, actions, prop::collection::vec(topic, 1..=2), who).prop_map(|(v, a, topics, who)| {
        let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
        format!("  - {v}: {a}\n    topics: [{}]\n{who}", topics.join(", "))
    })
}

fn rules_policy(rules: &[String]) -> Policy {
    policy(&format!(
        "users:\n  - {{ name: u1, groups: [g1] }}\n  - {{ name: u2 }}\nacl:\n{}",
        rules.concat()
    ))
}

pub(super) fn subjects() -> Vec<Subject> {
    vec![
        Subject::describe(Some("u1"), Some("b"), None, None, ip("10.0.0.1")),
        Subject::describe(Some("u2"), Some("a"), Some("c1"), None, ip("192.168.0.1")),
        Subject::describe(Some("u2"), None, None, None, ip("10.0.0.1")),
        Subject::describe(None, Some("x"), Some("c1"), None, ip("10.0.0.1")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn covers_and_intersects_agree_with_the_matcher(g in filter_strategy(), f in filter_strategy()) {
        let (gl, fl) = (Level::split(&g), Level::split(&f));
        let topics = universe();
        let subset = topics.iter().all(|t| !matches(&f, t) || matches(&g, t));
        let overlap = topics.iter().any(|t| matches(&f, t) && matches(&g, t));
        prop_assert_eq!(covers(&gl, &fl), subset, "covers({}, {})", g, f);
        prop_assert_eq!(intersects(&gl, &fl), overlap, "intersects({}, {})", g, f);
    }

    #[test]
    fn trie_agrees_with_a_linear_scan(rules in prop::collection::vec(rule_strategy(), 1..12)) {
        let p = rules_policy(&rules);
        let topics = universe();
        for s in subjects() {
            for action in [Action::Publish, Action::Receive] {
                for t in topics.iter().step_by(7) {
                    let got = p.acl.first_match(action, &s, p.groups_for(&s), t);
                    prop_assert_eq!(got, reference(&p, &s, action, t), "{} {:?} {}", action, s.name, t);
                }
            }
        }
    }

    #[test]
    fn an_allowed_filter_only_matches_allowed_topics(
        rules in prop::collection::vec(rule_strategy(), 1..10),
        f in filter_strategy(),
    ) {
        let p = rules_policy(&rules);
        let topics = universe();
        for s in subjects() {
            let d = p.authorize_subscribe(&s, &f);
            if d.decision.verdict == Verdict::Allow {
                for t in topics.iter().filter(|t| matches(&f, t)) {
                    let first = reference(&p, &s, Action::Subscribe, t);
                    let verdict = first.map(|i| p.acl.rules[i as usize].verdict);
                    prop_assert_eq!(verdict, Some(Verdict::Allow), "{} allowed but {} is not", f, t);
                }
            }
        }
    }
}
