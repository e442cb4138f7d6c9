//! What an operator's tools see of moat: output into a closed pipe, and log lines written to a
//! file or a pipe (no colour codes, no per-connection rustls noise).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

/// moat.yaml on a free port with the harness's certificates and default policy in `d`.
fn setup(d: &Path) {
    common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/test.yaml"), common::default_policy()).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: false\n",
    )
    .unwrap();
}

#[test]
fn moat_check_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    // A pipe whose reader is gone before moat writes a byte: every write fails with EPIPE
    // (`moat check | head -1` once head has its line).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(dir.path())
        .args(["check", "-c", "moat.yaml"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
}

#[test]
fn a_client_connecting_by_address_leaves_no_rustls_warning_and_logs_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    // stderr is a pipe here, as under systemd or a log shipper; NO_COLOR is not set.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(dir.path())
        .args(["run", "-c", "moat.yaml"])
        .env_remove("NO_COLOR");
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let up = common::wait_for_line(&lines, &mut seen, &["listening", "listener=mqtts"]);
    let port = up.rsplit(':').next().unwrap().trim().to_owned();
    // mosquitto_pub sends the address it was given as SNI, as most device stacks do.
    let publish = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile"])
        .arg(dir.path().join("ca.crt"))
        .args(["-u", "alice", "-P", "alice-pw", "-t", "a/b", "-m", "hi"])
        .output()
        .expect("mosquitto_pub is installed (scripts/test installs it)");
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    // Logged after the ClientHello was read twice (SNI probe and handshake).
    common::wait_for_line(&lines, &mut seen, &["session up", "identity"]);
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(!log.contains("Illegal SNI"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log}"
    );
}
