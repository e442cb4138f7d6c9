//! Policy compilation and authentication.

// Tests may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::*;

/// A cheap argon2id hash (tests only: real hashes use the argon2 defaults).
fn hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"moat-test-salt!!").unwrap();
    argon2
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn source(path: &str, text: &str) -> PolicySource {
    PolicySource {
        path: PathBuf::from(path),
        text: text.to_owned(),
    }
}

fn compile_ok(sources: &[PolicySource]) -> Policy {
    match compile(sources) {
        Ok(policy) => policy,
        Err(err) => panic!("expected a valid policy, got {err}"),
    }
}

fn compile_err(text: &str) -> String {
    match compile(&[source("p.yaml", text)]) {
        Ok(policy) => panic!("expected an error, got {policy:?}"),
        Err(err) => err.to_string(),
    }
}

/// `alice` (password "secret", groups sensors) and `bob` (certificate only).
fn policy(anonymous: bool) -> Policy {
    let text = format!(
        "anonymous: {anonymous}\nusers:\n  - name: alice\n    password: \"{}\"\n    groups: [sensors, sensors, ops]\n  - name: bob\n    groups: [gateways]\n",
        hash("secret")
    );
    compile_ok(&[source("policies/p.yaml", &text)])
}

const PASSWORDS: AuthnOptions = AuthnOptions {
    cert_identity: true,
    username_must_match_cert: false,
};

fn login<'a>(username: Option<&'a str>, password: Option<&'a str>) -> Credentials<'a> {
    Credentials {
        username,
        password: password.map(str::as_bytes),
        cert_cn: None,
    }
}

fn denied(decision: &AuthnDecision) -> (AuthnFailure, String) {
    match decision {
        AuthnDecision::Deny { reason, rule } => (*reason, rule.to_string()),
        AuthnDecision::Allow { identity, rule } => panic!("expected deny, {identity:?} by {rule}"),
    }
}

fn allowed(decision: &AuthnDecision) -> (Identity, String) {
    match decision {
        AuthnDecision::Allow { identity, rule } => (identity.clone(), rule.to_string()),
        AuthnDecision::Deny { reason, rule } => panic!("expected allow, {reason:?} by {rule}"),
    }
}

#[test]
fn policy_is_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<std::sync::Arc<Policy>>();
}

#[test]
fn builtin_decoy_hash_parses() {
    assert!(compile::builtin_decoy().is_some());
}

#[test]
fn no_files_admit_nobody() {
    let policy = compile_ok(&[]);
    let summary = policy.summary();
    assert!(summary.admits_nobody());
    assert!(!policy.admits_anyone());
    assert!(summary.to_string().contains("admits nobody"), "{summary}");
    let decision = policy.authenticate(&login(None, None), &PASSWORDS);
    assert_eq!(
        denied(&decision),
        (
            AuthnFailure::NotAuthorized,
            "builtin default-deny".to_owned()
        )
    );
    let decision = policy.authenticate(&login(Some("alice"), Some("x")), &PASSWORDS);
    assert_eq!(denied(&decision).0, AuthnFailure::BadCredentials);
}

#[test]
fn empty_files_admit_nobody() {
    let policy = compile_ok(&[source("a.yaml", ""), source("b.yaml", "# nothing yet\n")]);
    let summary = policy.summary();
    assert_eq!(summary.files, 2);
    assert!(summary.admits_nobody());
    assert_eq!(
        policy.files(),
        [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]
    );
    assert_eq!(
        summary.to_string(),
        "2 files, 0 users (0 with a password), anonymous off; admits nobody by password or anonymously (deny by default)"
    );
}

#[test]
fn users_merge_across_files() {
    let a = format!(
        "users:\n  - {{ name: alice, password: \"{}\" }}\n",
        hash("a")
    );
    let b = "anonymous: true\nusers:\n  - { name: bob }\n";
    let policy = compile_ok(&[source("a.yaml", &a), source("b.yaml", b)]);
    let summary = policy.summary();
    assert_eq!((summary.users, summary.password_users), (2, 1));
    assert!(summary.anonymous && !summary.admits_nobody());
    assert_eq!(policy.groups_of("bob"), Some(&[][..]));
}

#[test]
fn duplicate_user_across_files_names_both_places() {
    let a = "users:\n  - name: alice\n";
    let b = "users:\n  - { name: bob }\n  - { name: alice }\n";
    let err = compile(&[source("a.yaml", a), source("b.yaml", b)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.yaml:3:13: duplicate user 'alice', first defined at a.yaml:2:11: each user may be defined once"
    );
}

#[test]
fn duplicate_user_in_one_file_is_refused() {
    let err = compile_err("users:\n  - name: alice\n  - name: alice\n");
    assert!(
        err.starts_with("p.yaml:3:11: duplicate user 'alice', first defined at p.yaml:2:11"),
        "{err}"
    );
}

#[test]
fn bad_password_hashes_are_refused_with_their_location() {
    for bad in [
        "hunter2",
        "$2b$12$abcdefghijklmnopqrstuv",
        "$argon2id$v=19$m=19456,t=2,p=1$",
    ] {
        let err = compile_err(&format!(
            "users:\n  - name: alice\n    password: \"{bad}\"\n"
        ));
        assert!(
            err.starts_with(
                "p.yaml:3:15: the password of user 'alice' is not a valid argon2id hash"
            ),
            "{err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("abcdefgh"),
            "no echo: {err}"
        );
    }
    let argon2i = hash("x").replace("$argon2id$", "$argon2i$");
    let err = compile_err(&format!(
        "users: [{{ name: a, password: \"{argon2i}\" }}]\n"
    ));
    assert!(err.contains("algorithm is 'argon2i'"), "{err}");
    let expensive = hash("x").replace("m=8,", "m=4194304,");
    let err = compile_err(&format!(
        "users: [{{ name: a, password: \"{expensive}\" }}]\n"
    ));
    assert!(
        err.contains("too expensive to verify (m=4194304, t=1, p=1)"),
        "{err}"
    );
}

#[test]
fn bad_user_and_group_names_are_refused() {
    let cases = [
        ("\"\"", "it is empty"),
        ("\"a#b\"", "contains '#'"),
        ("\"a+b\"", "contains '+'"),
        ("\"a/b\"", "contains '/'"),
        ("\"a\\0b\"", "control character '\\0'"),
        ("\"a\\tb\"", "control character '\\t'"),
        ("anonymous", "reserved"),
    ];
    for (name, reason) in cases {
        let err = compile_err(&format!("users:\n  - name: {name}\n"));
        assert!(err.starts_with("p.yaml:2:11: invalid user name"), "{err}");
        assert!(err.contains(reason), "{name}: {err}");
    }
    let err = compile_err("users:\n  - { name: alice, groups: [ok, \"x/y\"] }\n");
    assert!(
        err.starts_with("p.yaml:2:33: invalid group name 'x/y' for user 'alice'"),
        "{err}"
    );
}

#[test]
fn unknown_and_duplicate_keys_are_refused() {
    let err = compile_err("users:\n  - { name: alice, grups: [a] }\n");
    assert_eq!(
        err,
        "p.yaml:2:20: unknown field 'grups', expected one of 'name', 'password', 'groups'"
    );
    let err = compile_err("acls: []\n");
    assert!(
        err.starts_with("p.yaml:1:1: unknown field 'acls', expected one of 'anonymous', 'users'"),
        "{err}"
    );
    let err = compile_err("anonymous: false\nanonymous: true\n");
    assert!(
        err.starts_with("p.yaml:2:1: duplicate key 'anonymous'"),
        "{err}"
    );
    let err = compile_err("anonymous: yes\n");
    assert!(err.starts_with("p.yaml:1:12: "), "{err}");
}

#[test]
fn conflicting_anonymous_settings_are_refused() {
    let err = compile(&[
        source("a.yaml", "anonymous: true\n"),
        source("b.yaml", "anonymous: false\n"),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.yaml:1:12: anonymous is false here but true at a.yaml:1:12: set it in one file only"
    );
    let same = [
        source("a.yaml", "anonymous: true\n"),
        source("b.yaml", "anonymous: true\n"),
    ];
    assert!(compile_ok(&same).anonymous_allowed());
}

#[test]
fn right_password_authenticates_with_groups_and_rule() {
    let decision = policy(false).authenticate(&login(Some("alice"), Some("secret")), &PASSWORDS);
    let (identity, rule) = allowed(&decision);
    assert_eq!(identity.name, "alice");
    assert_eq!(identity.groups, ["sensors", "ops"]);
    assert_eq!(identity.source, IdentitySource::Password);
    assert_eq!(rule, "policies/p.yaml:3 user alice");
    assert!(decision.decision().is_allowed());
}

#[test]
fn wrong_password_and_unknown_user_are_bad_credentials() {
    let policy = policy(true);
    let wrong = policy.authenticate(&login(Some("alice"), Some("Secret")), &PASSWORDS);
    assert_eq!(
        denied(&wrong),
        (
            AuthnFailure::BadCredentials,
            "policies/p.yaml:3 user alice".to_owned()
        )
    );
    let unknown = policy.authenticate(&login(Some("mallory"), Some("secret")), &PASSWORDS);
    assert_eq!(
        denied(&unknown),
        (
            AuthnFailure::BadCredentials,
            "builtin unknown-user".to_owned()
        )
    );
    // A certificate-only user cannot log in with a password, and looks like a wrong password.
    let cert_only = policy.authenticate(&login(Some("bob"), Some("secret")), &PASSWORDS);
    assert_eq!(denied(&cert_only).0, AuthnFailure::BadCredentials);
}

#[test]
fn malformed_credentials_are_refused() {
    let policy = policy(true);
    let hash_name = policy.authenticate(&login(Some("alice#"), Some("secret")), &PASSWORDS);
    assert_eq!(
        denied(&hash_name),
        (
            AuthnFailure::BadCredentials,
            "builtin invalid-username".to_owned()
        )
    );
    let empty = policy.authenticate(&login(Some(""), Some("secret")), &PASSWORDS);
    assert_eq!(denied(&empty).0, AuthnFailure::BadCredentials);
    let no_name = policy.authenticate(&login(None, Some("secret")), &PASSWORDS);
    assert_eq!(
        denied(&no_name),
        (
            AuthnFailure::BadCredentials,
            "builtin password-without-username".to_owned()
        )
    );
    let no_password = policy.authenticate(&login(Some("alice"), None), &PASSWORDS);
    assert_eq!(denied(&no_password).0, AuthnFailure::NotAuthorized);
    let claimed = policy.authenticate(&login(Some("anonymous"), Some("x")), &PASSWORDS);
    assert_eq!(denied(&claimed).0, AuthnFailure::BadCredentials);
}

#[test]
fn anonymous_on_and_off() {
    let on = policy(true).authenticate(&login(None, None), &PASSWORDS);
    let (identity, rule) = allowed(&on);
    assert_eq!(identity.name, ANONYMOUS);
    assert_eq!(identity.source, IdentitySource::Anonymous);
    assert!(identity.groups.is_empty());
    assert_eq!(rule, "policies/p.yaml:1 anonymous: true");
    let off = policy(false).authenticate(&login(None, None), &PASSWORDS);
    assert_eq!(
        denied(&off),
        (
            AuthnFailure::NotAuthorized,
            "policies/p.yaml:1 anonymous: false".to_owned()
        )
    );
}

#[test]
fn certificate_cn_is_the_identity() {
    let policy = policy(false);
    let creds = Credentials {
        username: Some("whatever"),
        password: Some(b"ignored"),
        cert_cn: Some("bob"),
    };
    let (identity, rule) = allowed(&policy.authenticate(&creds, &PASSWORDS));
    assert_eq!(identity.name, "bob");
    assert_eq!(identity.groups, ["gateways"]);
    assert_eq!(identity.source, IdentitySource::Certificate);
    assert_eq!(rule, "policies/p.yaml:6 user bob");
    // A CN the policy does not list still authenticates (the CA vouched for it), without groups.
    let stranger = Credentials {
        cert_cn: Some("device-9"),
        ..Credentials::default()
    };
    let (identity, rule) = allowed(&policy.authenticate(&stranger, &PASSWORDS));
    assert_eq!(
        (identity.name.as_str(), rule.as_str()),
        ("device-9", "builtin certificate-identity")
    );
    assert!(identity.groups.is_empty());
}

#[test]
fn certificate_cn_is_ignored_without_cert_identity() {
    let opts = AuthnOptions {
        cert_identity: false,
        username_must_match_cert: false,
    };
    let creds = Credentials {
        cert_cn: Some("bob"),
        ..Credentials::default()
    };
    let decision = policy(false).authenticate(&creds, &opts);
    assert_eq!(denied(&decision).0, AuthnFailure::NotAuthorized);
    let with_password = Credentials {
        username: Some("alice"),
        password: Some(b"secret"),
        cert_cn: Some("bob"),
    };
    let (identity, _) = allowed(&policy(false).authenticate(&with_password, &opts));
    assert_eq!(identity.name, "alice");
}

#[test]
fn username_must_match_certificate_cn() {
    let opts = AuthnOptions {
        cert_identity: true,
        username_must_match_cert: true,
    };
    let policy = policy(false);
    let mismatch = Credentials {
        username: Some("alice"),
        password: None,
        cert_cn: Some("bob"),
    };
    assert_eq!(
        denied(&policy.authenticate(&mismatch, &opts)),
        (
            AuthnFailure::BadCredentials,
            "builtin username-must-match-cert".to_owned()
        )
    );
    let matching = Credentials {
        username: Some("bob"),
        ..mismatch
    };
    assert_eq!(
        allowed(&policy.authenticate(&matching, &opts)).0.name,
        "bob"
    );
    let no_username = Credentials {
        username: None,
        ..mismatch
    };
    assert_eq!(
        allowed(&policy.authenticate(&no_username, &opts)).0.name,
        "bob"
    );
    // Also enforced when the password, not the certificate, is the identity.
    let password_opts = AuthnOptions {
        cert_identity: false,
        ..opts
    };
    let password_mismatch = Credentials {
        username: Some("alice"),
        password: Some(b"secret"),
        cert_cn: Some("bob"),
    };
    assert_eq!(
        denied(&policy.authenticate(&password_mismatch, &password_opts)).0,
        AuthnFailure::BadCredentials
    );
}

#[test]
fn malformed_certificate_cns_are_refused() {
    let policy = policy(true);
    for cn in ["", "a/b", "dev+1", "anonymous", "x\u{7}"] {
        let creds = Credentials {
            cert_cn: Some(cn),
            ..Credentials::default()
        };
        assert_eq!(
            denied(&policy.authenticate(&creds, &PASSWORDS)),
            (
                AuthnFailure::BadCredentials,
                "builtin invalid-certificate-cn".to_owned()
            ),
            "{cn:?}"
        );
    }
}

#[test]
fn rule_refs_display_file_line_label() {
    let rule = RuleRef::at("policies/example.yaml".into(), 7, "user alice");
    assert_eq!(rule.to_string(), "policies/example.yaml:7 user alice");
    assert_eq!(
        RuleRef::builtin("default-deny").to_string(),
        "builtin default-deny"
    );
    assert!(RuleRef::builtin("x").is_builtin());
    assert_eq!(
        Decision::deny(rule).to_string(),
        "deny by policies/example.yaml:7 user alice"
    );
}

#[test]
fn shipped_example_policy_admits_demo() {
    let text = include_str!("../../policies/example.yaml");
    let policy = compile_ok(&[source("policies/example.yaml", text)]);
    assert!(!policy.anonymous_allowed());
    assert_eq!(policy.groups_of("demo"), Some(&["demo".to_owned()][..]));
    let decision = policy.authenticate(&login(Some("demo"), Some("demo-password")), &PASSWORDS);
    assert_eq!(allowed(&decision).0.name, "demo");
}

#[test]
fn shipped_production_policy_is_valid() {
    let text = include_str!("../../examples/policies/production.yaml");
    let policy = compile_ok(&[source("production.yaml", text)]);
    assert_eq!(policy.summary().password_users, 0);
    assert_eq!(policy.user_count(), 3);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn compile_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = compile(&[source("p.yaml", &text)]);
        }

        #[test]
        fn compile_on_yaml_like_text(text in "(users|name|groups|anonymous|password|[-:{}\\[\\], \n#&*!|>'\"a-z0-9])*") {
            let _ = compile(&[source("p.yaml", &text)]);
        }

        #[test]
        fn authenticate_on_arbitrary_credentials(
            username in proptest::option::of("\\PC{0,20}"),
            password in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            cn in proptest::option::of("\\PC{0,20}"),
            cert_identity in any::<bool>(),
            must_match in any::<bool>(),
        ) {
            let policy = policy(true);
            let creds = Credentials {
                username: username.as_deref(),
                password: password.as_deref(),
                cert_cn: cn.as_deref(),
            };
            let opts = AuthnOptions { cert_identity, username_must_match_cert: must_match };
            let _ = policy.authenticate(&creds, &opts);
        }
    }
}

#[test]
fn empty_keys_mean_nothing_there() {
    let policy = compile_ok(&[source(
        "p.yaml",
        "anonymous:
users:
  # - name: later
",
    )]);
    assert!(policy.summary().admits_nobody());
    let policy = compile_ok(&[source(
        "p.yaml",
        "users: [{ name: a, groups: ~, password: ~ }]\n",
    )]);
    assert_eq!(policy.groups_of("a"), Some(&[][..]));
}
