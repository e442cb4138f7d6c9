//! What an operator's tools see of moat: output into a closed pipe, and log lines written to a
//! file or a pipe (no colour codes, no per-connection rustls noise).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

/// moat.yaml on a free port with the harness's certificates and default policy in `d`.
fn setup(d: &Path) {
    setup_with(d, &common::default_policy(), "");
}

/// [`setup`] with another policy and more top-level YAML in moat.yaml.
fn setup_with(d: &Path, policy: &str, extra: &str) {
    common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/test.yaml"), policy).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        format!(
            "listeners:\n  - {{ name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }}\n\
             tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
             broker:\n  embedded: {{ bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }}\n\
             policies: [policies/]\ndev_certs: false\n{extra}"
        ),
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

/// Every string value in a JSON log line, nested or not.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn json_logs_hold_plain_values_and_one_session_closed_line_per_session() {
    let dir = tempfile::tempdir().unwrap();
    // alice may publish below a/ only: other/x is refused (an audit line with her identity).
    let policy = common::default_policy().replace("topics: [\"#\"]", "topics: [\"a/#\"]");
    setup_with(dir.path(), &policy, "log: { format: json }\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    // moat's default filter, as an operator runs it (the embedded broker's own lines are
    // warnings only).
    cmd.current_dir(dir.path())
        .args(["run", "-c", "moat.yaml"])
        .env_remove("RUST_LOG");
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let up = common::wait_for_line(&lines, &mut seen, &["listening", "mqtts"]);
    let up: serde_json::Value = serde_json::from_str(&up).unwrap();
    let addr = up["fields"]["addr"].as_str().unwrap().to_owned();
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let publish = |topic: &str, password: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "--cafile"])
            .arg(dir.path().join("ca.crt"))
            .args(["-V", "mqttv5", "-q", "1", "-i", "dev-1"])
            .args(["-u", "alice", "-P", password, "-t", topic, "-m", "hello"])
            .output()
            .expect("mosquitto_pub is installed (scripts/test installs it)")
    };
    // A session that carries one message and ends with the client's DISCONNECT.
    assert!(publish("a/b", "alice-pw").status.success());
    let closed = common::wait_for_line(&lines, &mut seen, &["session closed"]);
    // A publish the ACL refuses (PUBACK 0x87: mosquitto_pub still ends normally or not; the
    // audit line is what counts), and a CONNECT with a wrong password.
    let _ = publish("other/x", "alice-pw");
    common::wait_for_line(&lines, &mut seen, &["moat::audit", "other/x"]);
    common::wait_for_line(&lines, &mut seen, &["session closed"]);
    let _ = publish("a/b", "wrong");
    common::wait_for_line(&lines, &mut seen, &["moat::audit", "bad user name"]);
    let _ = child.kill();
    let _ = child.wait();

    let mut closed_lines = 0;
    for line in &seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let mut values = Vec::new();
        strings(&v, &mut values);
        for value in &values {
            assert!(!value.contains("Some("), "debug text in {line}");
            assert!(!value.contains("\\\""), "escaped quotes in {line}");
            assert!(!value.starts_with('"'), "a quoted string in {line}");
        }
        if v["fields"]["message"] == "session closed" {
            closed_lines += 1;
        }
    }
    assert_eq!(closed_lines, 2, "{seen:#?}");

    let closed: serde_json::Value = serde_json::from_str(&closed).unwrap();
    let f = &closed["fields"];
    assert_eq!(closed["level"], "INFO", "{closed}");
    assert_eq!(f["identity"], "alice", "{closed}");
    assert_eq!(f["client_id"], "dev-1", "{closed}");
    assert_eq!(f["reason"], "client disconnect", "{closed}");
    assert_eq!(f["messages_in"], 1, "{closed}");
    assert!(f["messages_out"].is_u64(), "{closed}");
    assert!(f["duration_ms"].is_u64(), "{closed}");
    // CONNECT is read in the CONNECT phase: here PUBLISH and DISCONNECT at least.
    assert!(f["bytes_in"].as_u64().unwrap() > 10, "{closed}");
    // PUBACK at least.
    assert!(f["bytes_out"].as_u64().unwrap() >= 4, "{closed}");

    let audit = seen
        .iter()
        .find(|l| l.contains("moat::audit") && l.contains("other/x"))
        .unwrap();
    let audit: serde_json::Value = serde_json::from_str(audit).unwrap();
    assert_eq!(audit["fields"]["identity"], "alice", "{audit}");
    assert_eq!(audit["fields"]["subject"], "other/x", "{audit}");
    assert_eq!(audit["fields"]["rule"], "builtin default-deny", "{audit}");
}
