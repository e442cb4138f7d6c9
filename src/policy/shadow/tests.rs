//! The comparison of enforced and shadow decisions, and the shadow's authentication that reuses
//! the enforced verification.

use std::path::PathBuf;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::*;
use crate::policy::{compile, Action, AuthnStep, PolicySource, RuleRef, Subject, Verdict};

fn policy(path: &str, text: &str) -> Policy {
    let source = PolicySource {
        path: PathBuf::from(path),
        text: text.to_owned(),
    };
    compile(&[source]).unwrap()
}

fn hash(password: &str, salt: &[u8]) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(salt).unwrap();
    argon2
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn alice() -> Subject {
    Subject::describe(
        Some("alice"),
        Some("c1"),
        None,
        None,
        "10.0.0.1".parse().unwrap(),
    )
}

const ENFORCED: &str = "users:\n  - { name: alice }\nacl:\n  - allow: [publish, subscribe, receive]\n    topics: [\"a/#\"]\n    users: [alice]\n";
const SHADOW: &str = "users:\n  - { name: alice }\nacl:\n  - deny: all\n    topics: [\"a/secret\"]\n  - allow: [publish, subscribe, receive]\n    topics: [\"a/#\"]\n    users: [alice]\n";

#[test]
fn same_verdict_is_no_difference_even_by_another_rule() {
    let e = Decision::allow(RuleRef::at("p.yaml".into(), 4, "allow a/#"));
    let s = Decision::allow(RuleRef::at("s.yaml".into(), 9, "allow a/#"));
    assert_eq!(compare(ShadowAction::Publish, &e, &s), None);
    let e = Decision::deny(RuleRef::builtin("default-deny"));
    let s = Decision::deny(RuleRef::at("s.yaml".into(), 2, "deny all"));
    assert_eq!(compare(ShadowAction::Subscribe, &e, &s), None);
}

#[test]
fn a_different_verdict_names_both_rules() {
    let enforced = policy("p.yaml", ENFORCED);
    let shadow = policy("s.yaml", SHADOW);
    let s = alice();
    for action in [Action::Publish, Action::Receive] {
        let e = enforced.explain(&s, action, "a/secret", 0, false);
        let d = shadow.explain(&s, action, "a/secret", 0, false);
        let diff = compare(action.into(), &e.decision, &d.decision).unwrap();
        assert_eq!(diff.action, ShadowAction::from(action));
        assert_eq!(diff.enforced.verdict, Verdict::Allow);
        assert_eq!(
            diff.enforced.rule.to_string(),
            "p.yaml:4 allow publish,subscribe,receive a/#"
        );
        assert_eq!(diff.shadow.verdict, Verdict::Deny);
        assert_eq!(diff.shadow.rule.to_string(), "s.yaml:4 deny all a/secret");
        // Elsewhere under a/# both allow: no difference.
        let e = enforced.explain(&s, action, "a/open", 0, false);
        let d = shadow.explain(&s, action, "a/open", 0, false);
        assert_eq!(compare(action.into(), &e.decision, &d.decision), None);
    }
    // A filter overlapping the shadow's deny is refused there (subscribe_overlap: strict).
    let e = enforced.authorize_subscribe(&s, "a/#");
    let d = shadow.authorize_subscribe(&s, "a/#");
    let diff = compare(ShadowAction::Subscribe, &e.decision, &d.decision).unwrap();
    assert_eq!(diff.shadow.rule.line, 4);
}

#[test]
fn the_shadow_travels_in_the_snapshot() {
    let enforced = policy("p.yaml", ENFORCED);
    assert!(enforced.shadow().is_none());
    let shadow = Arc::new(policy("s.yaml", SHADOW));
    let both = enforced.with_shadow(Some(shadow.clone()));
    assert!(Arc::ptr_eq(both.shadow().unwrap(), &shadow));
}

fn creds<'a>(user: &'a str, password: &'a str) -> Credentials<'a> {
    Credentials {
        username: Some(user),
        password: Some(password.as_bytes()),
        cert_cn: None,
    }
}

#[test]
fn authentication_reuses_the_enforced_verification_of_the_same_hash() {
    let h = hash("right", b"moat-test-salt!!");
    let enforced = policy(
        "p.yaml",
        &format!("users:\n  - {{ name: alice, password: \"{h}\" }}\n"),
    );
    // Same hash, but the shadow drops bob and adds anonymous.
    let shadow = policy(
        "s.yaml",
        &format!("anonymous: true\nusers:\n  - {{ name: alice, password: \"{h}\" }}\n"),
    );
    let opts = AuthnOptions::default();
    for (password, allowed) in [("right", true), ("wrong", false)] {
        let c = creds("alice", password);
        let step = enforced.begin_authentication(&c, &opts);
        assert!(matches!(step, AuthnStep::Verify(_)));
        let sh = ShadowAuthn::begin(&shadow, &c, &opts, &step);
        assert!(matches!(sh, ShadowAuthn::SameHash(_)), "{sh:?}");
        let decided = enforced.authenticate(&c, &opts);
        assert_eq!(decided.is_allowed(), allowed);
        let shadow_decided = sh.finish(&decided).unwrap();
        assert_eq!(shadow_decided.is_allowed(), allowed);
        assert_eq!(shadow_decided.rule().file.as_deref(), Some("s.yaml"));
    }
    // Anonymous: decided without a password either way, and it differs.
    let c = Credentials::default();
    let step = enforced.begin_authentication(&c, &opts);
    let sh = ShadowAuthn::begin(&shadow, &c, &opts, &step);
    let AuthnStep::Decided(e) = step else {
        panic!("anonymous needs no hash")
    };
    let d = sh.finish(&e).unwrap();
    let diff = compare(ShadowAction::Authenticate, &e.decision(), &d.decision()).unwrap();
    assert_eq!(diff.shadow.verdict, Verdict::Allow);
    assert_eq!(diff.shadow.rule.line, 1);
}

#[test]
fn a_different_hash_is_not_compared_and_an_unknown_user_needs_none() {
    let enforced = policy(
        "p.yaml",
        &format!(
            "users:\n  - {{ name: alice, password: \"{}\" }}\n",
            hash("a", b"moat-test-salt!!")
        ),
    );
    let shadow = policy(
        "s.yaml",
        &format!(
            "users:\n  - {{ name: alice, password: \"{}\" }}\n",
            hash("b", b"other-test-salt!")
        ),
    );
    let opts = AuthnOptions::default();
    let c = creds("alice", "a");
    let step = enforced.begin_authentication(&c, &opts);
    let sh = ShadowAuthn::begin(&shadow, &c, &opts, &step);
    assert!(matches!(sh, ShadowAuthn::NotCompared), "{sh:?}");
    assert_eq!(sh.finish(&enforced.authenticate(&c, &opts)), None);
    // A user only the enforced set knows: the shadow refuses whatever the password is.
    let empty = policy("s.yaml", "anonymous: false\n");
    let sh = ShadowAuthn::begin(&empty, &c, &opts, &step);
    let decided = enforced.authenticate(&c, &opts);
    assert!(decided.is_allowed());
    let d = sh.finish(&decided).unwrap();
    assert!(!d.is_allowed());
    assert!(compare(
        ShadowAction::Authenticate,
        &decided.decision(),
        &d.decision()
    )
    .is_some());
}
