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
