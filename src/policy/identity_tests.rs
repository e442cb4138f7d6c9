//! Identity hardening in policies: `password_file:` (mosquitto_passwd files) and `client_id:`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use std::path::PathBuf;

use super::*;

/// mosquitto_passwd 2.0.11: alice/secret ($7$), bob/hunter2 ($6$).
const PASSWD: &str = "alice:$7$101$+4/UiSKrSNGiQPEL$6WCEn6uTfcuFnYYWUkHoxWOiBVwkRi1WbDzWznl64R00pUdUv71/kGMTT1ZV6YenF18j6dHxydhnXzzHqaBpPA==\n\
bob:$6$Jc9q7TamKLWtVnrQ$uQ4zY7S6v9GBl3TVWI64Al82H4HXZDlhAXjQ57Tv6YiDq03lFNLopEHrQ7AwuJspqslSZL3+GiekAXhe+iibBQ==\n";

fn source(path: &str, text: &str) -> PolicySource {
    PolicySource {
        path: PathBuf::from(path),
        text: text.to_owned(),
    }
}

fn passwd(path: &str, text: &str) -> Vec<PolicySource> {
    vec![source(path, text)]
}

fn login(policy: &Policy, user: &str, password: &str) -> AuthnDecision {
    let creds = Credentials {
        username: Some(user),
        password: Some(password.as_bytes()),
        cert_cn: None,
    };
    policy.authenticate(&creds, &AuthnOptions::default())
}

#[test]
fn password_file_users_authenticate() {
    let policies = [source("policies/p.yaml", "password_file: passwd\n")];
    assert_eq!(
        password_files(&policies).unwrap(),
        [PathBuf::from("policies/passwd")]
    );
    let policy = compile_with_files(&policies, &passwd("policies/passwd", PASSWD)).unwrap();
    assert_eq!(policy.user_count(), 2);
    match login(&policy, "alice", "secret") {
        AuthnDecision::Allow { identity, rule } => {
            assert_eq!(identity.name, "alice");
            assert_eq!(identity.source, IdentitySource::Password);
            assert_eq!(
                rule.to_string(),
                "policies/passwd:1 password file user alice"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(login(&policy, "bob", "hunter2").is_allowed());
    assert!(!login(&policy, "bob", "hunter3").is_allowed());
    assert!(!login(&policy, "carol", "x").is_allowed());
    // $6$ works, with a warning naming the file and line.
    assert_eq!(policy.warnings().len(), 1);
    assert!(
        policy.warnings()[0].starts_with("policies/passwd:2:1: user 'bob' has a $6$"),
        "{:?}",
        policy.warnings()
    );
}

#[test]
fn users_entry_without_password_gives_groups_to_a_password_file_user() {
    for text in [
        "password_file: passwd\nusers:\n  - { name: alice, groups: [ops] }\n",
        "users:\n  - { name: alice, groups: [ops] }\npassword_file: passwd\n",
    ] {
        let policies = [source("p.yaml", text)];
        let policy = compile_with_files(&policies, &passwd("passwd", PASSWD)).unwrap();
        assert_eq!(policy.groups_of("alice"), Some(&["ops".to_string()][..]));
        assert!(login(&policy, "alice", "secret").is_allowed());
    }
}

#[test]
fn a_password_defined_twice_is_an_error() {
    let hash = "$argon2id$v=19$m=8,t=1,p=1$bW9hdC10ZXN0LXNhbHQhIQ$9v0Fl8mSNzC5ki0X3HqVlT3o6yZ+jj5DtRm5jXkCJ6E";
    let text =
        format!("users:\n  - {{ name: alice, password: \"{hash}\" }}\npassword_file: passwd\n");
    let err = compile_with_files(&[source("p.yaml", &text)], &passwd("passwd", PASSWD))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("passwd:1:1: user 'alice' is also defined at p.yaml:2"),
        "{err}"
    );
    // The same user in two password files.
    let policies = [
        source("a.yaml", "password_file: one\n"),
        source("b.yaml", "password_file: two\n"),
    ];
    let files = [source("one", PASSWD), source("two", PASSWD)];
    let err = compile_with_files(&policies, &files)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("two:1:1: "), "{err}");
}

#[test]
fn password_file_errors_name_the_file_and_line() {
    let policies = [source("p.yaml", "password_file: passwd\n")];
    let bad = format!("{PASSWD}carol:plaintext\n");
    let err = compile_with_files(&policies, &passwd("passwd", &bad))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "passwd:3:1: the password is not hashed: run 'mosquitto_passwd -U' on the file first"
    );
    // Not handed over by the loader.
    let err = compile(&policies).unwrap_err().to_string();
    assert!(
        err.starts_with("p.yaml:1:16: password file 'passwd' was not loaded"),
        "{err}"
    );
}

#[test]
fn client_id_binding_compiles_and_decides() {
    let policy = compile(&[source(
        "p.yaml",
        "client_id: { must_start_with: \"{identity}-\" }\n",
    )])
    .unwrap();
    assert!(policy.check_client_id("alice", "alice-1").is_allowed());
    let denied = policy.check_client_id("bob", "alice-1");
    assert!(!denied.is_allowed());
    assert_eq!(
        denied.rule.to_string(),
        "p.yaml:1 client_id: must_start_with \"{identity}-\""
    );
    // No rule: every id is allowed, by a named built-in rule.
    let open = compile(&[]).unwrap();
    assert_eq!(
        open.check_client_id("bob", "alice-1").to_string(),
        "allow by builtin client-id-unbound"
    );
}

#[test]
fn client_id_errors() {
    let err = |text: &str| compile(&[source("p.yaml", text)]).unwrap_err().to_string();
    assert!(err("client_id: { must_start_with: \"{identity}\" }\n")
        .contains("must not end with {identity}"));
    assert!(err("client_id: {}\n").contains("exactly one of must_equal and must_start_with"));
    assert!(err("client_id: { must_equal: x, must_start_with: y }\n").contains("exactly one"));
    assert!(err("client_id: { must_equal: \"id\" }\n").contains("{identity} exactly once"));
    assert!(err("client_id: { must_match: x }\n").contains("unknown field"));
    let two = compile(&[
        source("a.yaml", "client_id: { must_equal: \"{identity}\" }\n"),
        source("b.yaml", "client_id: { must_equal: \"{identity}\" }\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(two.starts_with("b.yaml:1:"), "{two}");
    assert!(two.contains("also set at a.yaml:1"), "{two}");
}
