//! `moat certs` as a small production PKI, through the real binary: a CA whose key lives
//! apart from the output (`--ca-cert/--ca-key`), key types (P-256, P-384, Ed25519), renewal
//! that keeps the key (`--reuse-key`), and `moat certs crl`, whose CRL a running moat loads and
//! refuses the revoked client with (by certificate file, then by serial, the first entry kept).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn moat(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "moat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test installs it)")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA in `offline/` (P-384), a server certificate (Ed25519) into `tls/` and client
/// certificates (Ed25519, P-256) into `clients/`, all signed with the CA's files named.
fn pki(d: &Path) {
    moat(
        d,
        &["certs", "ca", "--out", "offline", "--key-type", "p384"],
    );
    let ca = ["--ca-cert", "offline/ca.crt", "--ca-key", "offline/ca.key"];
    let server = [
        "certs",
        "server",
        "--out",
        "tls",
        "--ip",
        "127.0.0.1",
        "--key-type",
        "ed25519",
    ];
    moat(d, &[&server[..], &ca[..]].concat());
    for (cn, key) in [("dev1", "ed25519"), ("dev2", "p256")] {
        let client = [
            "certs",
            "client",
            "--out",
            "clients",
            "--cn",
            cn,
            "--key-type",
            key,
        ];
        moat(d, &[&client[..], &ca[..]].concat());
    }
}

#[test]
fn key_types_and_a_renewal_that_keeps_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    // The CA key is not next to the output.
    assert!(!d.join("tls/ca.key").exists() && !d.join("clients/ca.key").exists());
    let describe = |file: &str| text(&openssl(d, &["x509", "-noout", "-text", "-in", file]));
    assert!(describe("offline/ca.crt").contains("NIST CURVE: P-384"));
    assert!(describe("clients/dev1.crt").contains("ED25519"));
    assert!(describe("clients/dev2.crt").contains("P-256"));
    // Keys other TLS stacks load (ring's own Ed25519 PKCS#8 v2 is refused by OpenSSL 3).
    for key in [
        "offline/ca.key",
        "tls/server.key",
        "clients/dev1.key",
        "clients/dev2.key",
    ] {
        let out = openssl(d, &["pkey", "-noout", "-in", key]);
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for leaf in ["tls/server.crt", "clients/dev1.crt", "clients/dev2.crt"] {
        let out = openssl(d, &["verify", "-CAfile", "offline/ca.crt", leaf]);
        assert!(out.status.success(), "{leaf}: {}", text(&out));
    }

    let key = std::fs::read(d.join("clients/dev1.key")).unwrap();
    let serial = |file: &str| text(&openssl(d, &["x509", "-noout", "-serial", "-in", file]));
    let before = serial("clients/dev1.crt");
    let renew = [
        "certs",
        "client",
        "--out",
        "clients",
        "--cn",
        "dev1",
        "--reuse-key",
        "--days",
        "30",
        "--ca-cert",
        "offline/ca.crt",
        "--ca-key",
        "offline/ca.key",
    ];
    let out = moat(d, &renew);
    assert_eq!(
        out.trim(),
        "clients/dev1.crt",
        "only the certificate is written"
    );
    assert_eq!(std::fs::read(d.join("clients/dev1.key")).unwrap(), key);
    assert_ne!(serial("clients/dev1.crt"), before, "a new certificate");
    let cert_key = text(&openssl(
        d,
        &["x509", "-noout", "-pubkey", "-in", "clients/dev1.crt"],
    ));
    let own_key = text(&openssl(d, &["pkey", "-pubout", "-in", "clients/dev1.key"]));
    assert_eq!(
        cert_key, own_key,
        "the renewed certificate is for the kept key"
    );
    assert!(describe("clients/dev1.crt").contains("ED25519"));

    // A renewal needs the key it keeps, and does not pick a new type.
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(d)
        .args([
            "certs",
            "client",
            "--out",
            "clients",
            "--cn",
            "nobody",
            "--reuse-key",
        ])
        .args(["--ca-cert", "offline/ca.crt", "--ca-key", "offline/ca.key"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients/nobody.key"));
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(d)
        .args([
            "certs",
            "ca",
            "--out",
            "offline",
            "--reuse-key",
            "--key-type",
            "p256",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// mosquitto_pub with a client certificate from `clients/`: whether the publish went through.
fn publish_as(d: &Path, port: &str, cn: &str) -> bool {
    Command::new("mosquitto_pub")
        .current_dir(d)
        .args(["-h", "127.0.0.1", "-p", port, "--cafile", "offline/ca.crt"])
        .args(["--cert", &format!("clients/{cn}.crt")])
        .args(["--key", &format!("clients/{cn}.key")])
        .args(["-i", cn, "-t", &format!("devices/{cn}"), "-m", "hi"])
        .output()
        .expect("mosquitto_pub is installed (scripts/test installs it)")
        .status
        .success()
}

#[test]
fn a_crl_from_moat_certs_crl_makes_moat_refuse_that_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let ca = ["--ca-cert", "offline/ca.crt", "--ca-key", "offline/ca.key"];
    let out = moat(
        d,
        &[
            &[
                "certs",
                "crl",
                "--cert",
                "clients/dev1.crt",
                "--out",
                "tls/clients.crl",
            ][..],
            &ca[..],
        ]
        .concat(),
    );
    assert!(out.contains("(1 revoked)"), "{out}");
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/p.yaml"),
        "anonymous: false\nacl:\n  - allow: all\n    topics: [\"devices/{cert.cn}\"]\n    certs: [dev1, dev2]\n",
    )
    .unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: tls/server.crt\n  key: tls/server.key\n  client_ca: offline/ca.crt\n\
         \x20 client_certs: required\n  crls: [tls/clients.crl]\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: false\n",
    )
    .unwrap();
    let check = moat(d, &["check", "-c", "moat.yaml"]);
    assert!(check.contains("tls/clients.crl: 1 revoked"), "{check}");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let up = common::wait_for_line(&lines, &mut seen, &["listening", "listener=mqtts"]);
    let port = up.rsplit(':').next().unwrap().trim().to_owned();

    assert!(
        !publish_as(d, &port, "dev1"),
        "a revoked certificate got in"
    );
    common::wait_for_line(&lines, &mut seen, &["moat::audit", "revoked"]);
    assert!(publish_as(d, &port, "dev2"), "{seen:#?}");

    // Revoke dev2 by serial (as `openssl x509 -serial` prints it): the CRL keeps dev1, moat
    // reloads it on the file change.
    let serial = text(&openssl(
        d,
        &["x509", "-noout", "-serial", "-in", "clients/dev2.crt"],
    ));
    let out = moat(
        d,
        &[
            &[
                "certs",
                "crl",
                "--serial",
                serial.trim(),
                "--out",
                "tls/clients.crl",
            ][..],
            &ca[..],
        ]
        .concat(),
    );
    assert!(out.contains("(2 revoked)"), "{out}");
    common::wait_for_line(&lines, &mut seen, &["TLS material reloaded"]);
    assert!(
        !publish_as(d, &port, "dev2"),
        "revoked by serial, still admitted"
    );
    assert!(!publish_as(d, &port, "dev1"), "the first entry was lost");
    let _ = child.kill();
    let _ = child.wait();
}
