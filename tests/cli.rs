//! The `moat` binary itself: certs, check, passwd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn moat(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn openssl_verify(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .arg("verify")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)")
        .status
        .success()
}

#[test]
fn moat_certs_output_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&moat(d, &["certs", "ca", "--out", "pki"]));
    ok(&moat(
        d,
        &[
            "certs",
            "server",
            "--out",
            "pki",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
    ));
    ok(&moat(
        d,
        &["certs", "client", "--out", "pki", "--cn", "sensor-17"],
    ));
    assert!(openssl_verify(
        d,
        &["-CAfile", "pki/ca.crt", "pki/server.crt"]
    ));
    assert!(openssl_verify(
        d,
        &[
            "-purpose",
            "sslclient",
            "-CAfile",
            "pki/ca.crt",
            "pki/sensor-17.crt"
        ]
    ));
    // A certificate from an unrelated CA does not verify: the check above could fail.
    ok(&moat(d, &["certs", "ca", "--out", "other"]));
    assert!(!openssl_verify(
        d,
        &["-CAfile", "other/ca.crt", "pki/server.crt"]
    ));

    use std::os::unix::fs::PermissionsExt;
    for key in ["pki/ca.key", "pki/server.key", "pki/sensor-17.key"] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // Never overwrite without --force.
    let again = moat(d, &["certs", "ca", "--out", "pki"]);
    assert!(!again.status.success());
    ok(&moat(d, &["certs", "ca", "--out", "pki", "--force"]));
}

#[test]
fn moat_check_reports_a_bad_file_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), "anonymous: false\nusers: []\n").unwrap();
    let config = "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:8883\" }\n\
                  tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
                  policies: [policies/]\ndev_certs: true\n";
    std::fs::write(d.join("moat.yaml"), config).unwrap();
    let out = ok(&moat(d, &["check", "-c", "moat.yaml"]));
    assert!(out.contains("mqtts"), "summary names the listener: {out}");
    // The memory it will need, said before it runs: idle and at the connection cap.
    let memory = out
        .lines()
        .find(|l| l.contains("memory"))
        .unwrap_or_default();
    assert!(
        memory.contains("MiB idle") && memory.contains("KiB per idle session"),
        "{out}"
    );

    // An unknown key in moat.yaml: line 6, column 3.
    let bad = config.replace("  key: server.key", "  key: server.key\n  kye: oops");
    std::fs::write(d.join("moat.yaml"), bad).unwrap();
    let out = moat(d, &["check", "-c", "moat.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("moat.yaml:6:3"), "{err}");
    assert!(err.contains("kye"), "{err}");

    // A duplicated key in a policy file is refused, not silently last-wins.
    std::fs::write(d.join("moat.yaml"), config).unwrap();
    std::fs::write(
        d.join("policies/p.yaml"),
        "anonymous: false\nanonymous: true\n",
    )
    .unwrap();
    let out = moat(d, &["check", "-c", "moat.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:2:"), "{err}");
}

#[test]
fn moat_passwd_prints_an_argon2id_hash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["passwd"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = ok(&out);
    assert!(hash.trim().starts_with("$argon2id$"), "{hash}");
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(hash.trim()).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret", &parsed)
        .is_ok());
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret\n", &parsed)
        .is_err());
}

/// A config + policy folder for explain/check tests.
fn acl_setup(d: &Path, tests: &str) {
    std::fs::create_dir_all(d.join("policies")).unwrap();
    let policy = format!(
        "users:\n  - {{ name: alice, groups: [ops] }}\nacl:\n  - deny: receive\n    topics: [\"plant/secret/#\"]\n  - allow: all\n    topics: [\"plant/#\"]\n    groups: [ops]\n  - allow: publish\n    topics: [\"gw/{{cert.cn}}/#\"]\n    sources: [10.0.0.0/8]\n    max_qos: 1\n{tests}"
    );
    std::fs::write(d.join("policies/acl.yaml"), policy).unwrap();
    let config = "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:8883\" }\n\
                  tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
                  policies: [policies/]\ndev_certs: true\n";
    std::fs::write(d.join("moat.yaml"), config).unwrap();
}

#[test]
fn moat_explain_prints_the_decision_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    acl_setup(d, "");
    let out = ok(&moat(
        d,
        &["explain", "--user", "alice", "publish", "plant/7/temp"],
    ));
    assert!(out.starts_with("allow publish \"plant/7/temp\"\n"), "{out}");
    assert!(
        out.contains("rule     policies/acl.yaml:6 allow all plant/#"),
        "{out}"
    );
    let out = ok(&moat(
        d,
        &["explain", "--user", "alice", "receive", "plant/secret/k"],
    ));
    assert!(out.starts_with("deny receive"), "{out}");
    assert!(
        out.contains("policies/acl.yaml:4 deny receive plant/secret/#"),
        "{out}"
    );
    // Subscribe is judged on every topic the filter can match.
    let out = ok(&moat(d, &["explain", "--user", "alice", "subscribe", "#"]));
    assert!(out.starts_with("deny subscribe \"#\""), "{out}");
    assert!(out.contains("rule     builtin default-deny"), "{out}");
    assert!(
        out.contains(
            "reason   the filter also matches topics denied here (subscribe_overlap: strict)"
        ),
        "{out}"
    );
    // Which subscribe semantics applies, and where it is set.
    assert!(
        out.contains("overlap  strict (builtin subscribe_overlap: strict): a filter that also matches topics the client may not subscribe to is refused"),
        "{out}"
    );
    // Certificate identity, placeholder, source network and a QoS condition.
    let gw = |source: &str, qos: &str| {
        ok(&moat(
            d,
            &[
                "explain",
                "--cert-cn",
                "gw-9",
                "--source",
                source,
                "--qos",
                qos,
                "publish",
                "gw/gw-9/up",
            ],
        ))
    };
    let out = gw("10.1.2.3", "1");
    assert!(out.starts_with("allow"), "{out}");
    assert!(
        out.contains("policies/acl.yaml:9 allow publish gw/{cert.cn}/#"),
        "{out}"
    );
    assert!(out.contains("certificate CN \"gw-9\""), "{out}");
    assert!(gw("192.168.1.1", "1").starts_with("deny"));
    let out = gw("10.1.2.3", "2");
    assert!(out.contains("reason   QoS 2 above max_qos 1"), "{out}");
    // Bad input is an error, not a decision.
    let out = moat(d, &["explain", "--user", "alice", "publish", "plant/#"]);
    assert!(!out.status.success());
}

#[test]
fn moat_explain_and_check_show_the_withhold_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    acl_setup(d, "");
    std::fs::write(
        d.join("policies/overlap.yaml"),
        "subscribe_overlap: withhold\nacl:\n  - deny: subscribe\n    topics: [\"$SYS/#\"]\n    subscribe_overlap: strict\n  - allow: receive\n    topics: [other/#]\n",
    )
    .unwrap();
    let out = ok(&moat(d, &["explain", "--user", "alice", "subscribe", "#"]));
    assert!(out.starts_with("allow subscribe \"#\""), "{out}");
    assert!(
        out.contains("withheld at delivery (subscribe_overlap: withhold)"),
        "{out}"
    );
    assert!(
        out.contains("overlap  withhold (policies/overlap.yaml:1 subscribe_overlap: withhold): a filter that also matches topics the client may not subscribe to is granted; those topics are withheld at delivery; 1 deny rule(s) set their own subscribe_overlap"),
        "{out}"
    );
    // alice may receive other/x but not subscribe to it: withheld at delivery.
    let out = ok(&moat(
        d,
        &["explain", "--user", "alice", "receive", "other/x"],
    ));
    assert!(out.starts_with("deny receive"), "{out}");
    assert!(out.contains("rule     builtin default-deny"), "{out}");
    assert!(
        out.contains("reason   withheld at delivery: the client may not subscribe to this topic"),
        "{out}"
    );
    let out = ok(&moat(d, &["check", "-c", "moat.yaml"]));
    assert!(
        out.contains("overlap   withhold (policies/overlap.yaml:1 subscribe_overlap: withhold)"),
        "{out}"
    );
}

#[test]
fn moat_check_runs_the_policy_tests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    acl_setup(
        d,
        "tests:\n  - { user: alice, action: subscribe, topic: \"plant/#\", expect: allow }\n  - { user: alice, action: receive, topic: plant/secret/x, expect: deny }\n",
    );
    let out = ok(&moat(d, &["check", "-c", "moat.yaml"]));
    assert!(out.contains("acl       3 rule(s)"), "{out}");
    assert!(
        out.contains("overlap   strict (builtin subscribe_overlap: strict)"),
        "{out}"
    );
    assert!(out.contains("tests     2 passed, 0 failed"), "{out}");
    // A case whose expectation the policy does not meet fails the check, naming the case.
    acl_setup(
        d,
        "tests:\n  - { user: alice, action: publish, topic: plant/x, expect: allow }\n  - { user: bob, action: publish, topic: plant/x, expect: allow }\n",
    );
    let out = moat(d, &["check", "-c", "moat.yaml"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("policies/acl.yaml:15:") && stdout.contains("expected allow, got deny"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 policy test(s) failed"), "{stderr}");
}

/// A PKI, a policy and a moat.yaml whose client certificates are checked against
/// `clients.crl`; returns the CA (to sign CRLs) and a client certificate.
fn crl_setup(d: &Path) -> (moat::certs::Pem, moat::certs::Pem) {
    use moat::certs;
    let ca = certs::generate_ca("cli CRL CA", 5).unwrap();
    let server = certs::generate_server(&ca, &["localhost".into()], &[], 5).unwrap();
    let carol = certs::generate_client(&ca, "carol", 5).unwrap();
    std::fs::write(d.join("ca.crt"), &ca.cert).unwrap();
    std::fs::write(d.join("server.crt"), &server.cert).unwrap();
    std::fs::write(d.join("server.key"), &server.key).unwrap();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), "anonymous: false\nusers: []\n").unwrap();
    let config = "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
                  tls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n\
                  \x20 client_certs: required\n  crls: [clients.crl]\n\
                  broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
                  policies: [policies/]\ndev_certs: false\n";
    std::fs::write(d.join("moat.yaml"), config).unwrap();
    (ca, carol)
}

#[test]
fn crl_files_in_pem_or_der_pass_moat_check_and_files_without_a_crl_fail_it_naming_the_file() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, carol) = crl_setup(d);
    let crl = moat::certs::generate_crl(&ca, &[&carol]).unwrap();
    let der = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(crl.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    for bytes in [crl.as_bytes().to_vec(), der] {
        std::fs::write(d.join("clients.crl"), bytes).unwrap();
        let out = ok(&moat(d, &["check", "-c", "moat.yaml"]));
        assert!(
            out.contains("crl       clients.crl: 1 revoked by CN=cli CRL CA"),
            "{out}"
        );
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a certificate",
            ca.cert.clone().into_bytes(),
            "PEM certificate",
        ),
        (
            "text",
            b"carol is revoked\n".to_vec(),
            "neither PEM nor a DER CRL",
        ),
        ("nothing", Vec::new(), "empty file"),
    ];
    for (what, bytes, reason) in cases {
        std::fs::write(d.join("clients.crl"), bytes).unwrap();
        let out = moat(d, &["check", "-c", "moat.yaml"]);
        assert!(!out.status.success(), "moat check accepted {what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("clients.crl: "), "{what}: {err}");
        assert!(err.contains(reason), "{what}: {err}");
    }
}

#[test]
fn moat_run_refuses_to_start_with_a_crl_file_that_holds_no_crl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, _) = crl_setup(d);
    std::fs::write(d.join("clients.crl"), &ca.cert).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(d)
        .args(["run", "-c", "moat.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status =
        status.unwrap_or_else(|| panic!("moat started with a CRL file without a CRL: {err}"));
    assert!(!status.success());
    assert!(
        err.contains("clients.crl: no CRL in file (it holds a PEM certificate)"),
        "{err}"
    );
}
