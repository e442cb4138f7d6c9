//! The shadow policy through the real binary: `moat run` enforces a policy that allows `a/#`
//! while a shadow set denies `a/secret`; publishes (and the subscription and deliveries) go
//! through, and the differences show on `/metrics`, in the `moat::shadow` log and in
//! `moat ctl shadow`, with both rules. A broken shadow file is refused by `moat check` and at
//! reload (file change and `moat ctl reload`) with file:line, while enforcement goes on and the
//! running shadow set stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{packets, Pki, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Line 5 is the enforced rule.
fn enforced_policy() -> String {
    format!(
        "anonymous: false\nusers:\n  - {{ name: alice, password: \"{}\" }}\nacl:\n  - allow: all\n    topics: [\"a/#\"]\n    users: [alice]\n",
        common::hash("alice-pw")
    )
}

/// Line 4 is the shadow rule that differs.
fn shadow_policy() -> String {
    format!(
        "users:\n  - {{ name: alice, password: \"{}\" }}\nacl:\n  - deny: all\n    topics: [a/secret]\n  - allow: all\n    topics: [\"a/#\"]\n    users: [alice]\n",
        common::hash("alice-pw")
    )
}

/// `addr=IP:PORT` of the `listening` line of `listener` among the lines `seen`.
fn listening(seen: &[String], listener: &str) -> SocketAddr {
    let line = seen
        .iter()
        .find(|l| l.contains("listening") && l.contains(listener))
        .unwrap_or_else(|| panic!("no listening line for {listener} in {seen:#?}"));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line}"));
    addr.trim_matches('"').parse().unwrap()
}

/// `moat ARGS…` in `dir`: success, stdout, stderr.
async fn moat(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(dir)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET path` on the admin listener: the body of a 200.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// `moat ctl --json shadow`, polled until `done` holds (the session counts a difference just
/// after it forwards the packet, so the client can be a moment ahead of the book).
async fn shadow_until(
    dir: &Path,
    admin: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ok, out, err) = moat(dir, &["ctl", "--admin", admin, "--json", "shadow"]).await;
        assert!(ok, "moat ctl shadow: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        if done(&report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got there: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(report: &serde_json::Value, action: &str) -> u64 {
    report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == action)
        .map(|p| p["count"].as_u64().unwrap())
        .sum()
}

/// alice publishes `a/secret` at QoS 0 and reads it back through her own subscription.
async fn round_trip(s: &mut common::Tls, payload: &[u8]) {
    s.write_all(&packets::publish_qos0("a/secret", payload))
        .await
        .unwrap();
    let expected = packets::publish_qos0("a/secret", payload);
    assert_eq!(common::read_exact(s, expected.len()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_differences_are_counted_logged_and_shown_while_the_enforced_policy_decides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::create_dir_all(d.join("candidate")).unwrap();
    std::fs::write(d.join("policies/acl.yaml"), enforced_policy()).unwrap();
    std::fs::write(d.join("network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    let shadow_file = d.join("candidate/acl.yaml");
    std::fs::write(&shadow_file, shadow_policy()).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         admin: { listen: \"127.0.0.1:0\" }\n\
         policies: [network.yaml, policies/]\n\
         shadow_policies: [network.yaml, candidate/]\n\
         dev_certs: false\n",
    )
    .unwrap();
    let (ok, out, err) = moat(d, &["check", "-c", "moat.yaml"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("never enforced"), "{out}");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let admin_addr = listening(&seen, "admin");
    let mqtt = listening(&seen, "mqtts");
    let admin = format!("http://{admin_addr}");

    // alice subscribes to a/secret and publishes there: the enforced set allows all of it.
    let tls = common::client_config(&pki.ca.cert, None);
    let mut s = common::tls_connect(mqtt, tls.clone()).await.unwrap();
    let connect = packets::connect_v4("dev-1", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let mut sub = vec![0, 1];
    packets::push_str(&mut sub, "a/secret");
    sub.push(0);
    s.write_all(&packets::frame(0x82, &sub)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 5).await, [0x90, 3, 0, 1, 0]);
    round_trip(&mut s, b"one").await;

    // Subscribe, publish and receive each differ once, naming both rules.
    let report = shadow_until(d, &admin, |r| {
        ["subscribe", "publish", "receive"]
            .iter()
            .all(|a| count(r, a) == 1)
    })
    .await;
    assert_eq!(report["configured"], true, "{report:#}");
    let publish = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == "publish")
        .unwrap();
    assert_eq!(publish["enforced"], "allow");
    assert_eq!(publish["shadow"], "deny");
    assert!(
        publish["enforced_rule"]
            .as_str()
            .unwrap()
            .ends_with("policies/acl.yaml:5"),
        "{publish}"
    );
    assert!(
        publish["shadow_rule"]
            .as_str()
            .unwrap()
            .ends_with("candidate/acl.yaml:4"),
        "{publish}"
    );
    let example = report["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "publish")
        .unwrap();
    assert_eq!(example["identity"], "alice");
    assert_eq!(example["client_id"], "dev-1");
    assert_eq!(example["subject"], "a/secret");
    assert_eq!(
        count(&report, "authenticate"),
        0,
        "same hash, same outcome: {report:#}"
    );
    // The table names both rules too.
    let (ok, table, err) = moat(d, &["ctl", "--admin", &admin, "shadow"]).await;
    assert!(ok, "{err}");
    assert!(
        table.contains("allow ") && table.contains("policies/acl.yaml:5"),
        "{table}"
    );
    assert!(
        table.contains("deny ") && table.contains("candidate/acl.yaml:4"),
        "{table}"
    );

    // The metric, by action and both rules.
    let metrics = get(admin_addr, "/metrics").await;
    let sample = metrics
        .lines()
        .find(|l| l.starts_with("moat_shadow_differences_total{action=\"publish\""))
        .unwrap_or_else(|| panic!("no publish sample in\n{metrics}"));
    assert!(sample.contains("enforced=\"allow\""), "{sample}");
    assert!(sample.contains("policies/acl.yaml:5\""), "{sample}");
    assert!(sample.contains("candidate/acl.yaml:4\""), "{sample}");
    assert!(sample.ends_with(" 1"), "{sample}");
    // And the log line, with both rules.
    let line = common::wait_for_line(&lines, &mut seen, &["shadow policy differs", "publish"]);
    assert!(line.contains("moat::shadow"), "{line}");
    assert!(line.contains("candidate/acl.yaml:4"), "{line}");
    assert!(line.contains("policies/acl.yaml:5"), "{line}");

    // A broken shadow file: `moat check` names it with file:line, …
    std::fs::write(&shadow_file, "acl:\n  - deny: al\n    topics: [a/secret]\n").unwrap();
    let (ok, out, err) = moat(d, &["check", "-c", "moat.yaml"]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("shadow policy set") && err.contains("candidate/acl.yaml:2:"),
        "{err}"
    );
    // … the file watcher's reload refuses it the same way, …
    let line = common::wait_for_line(&lines, &mut seen, &["shadow policy reload refused"]);
    assert!(line.contains("candidate/acl.yaml:2:"), "{line}");
    // … and so does `moat ctl reload`, which still puts the enforced set in force.
    let (ok, out, _) = moat(d, &["ctl", "--admin", &admin, "--json", "reload"]).await;
    assert!(!ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let policy = report["policy"].as_str().unwrap();
    assert!(policy.contains("candidate/acl.yaml:2:"), "{policy}");

    // Enforcement goes on; the running shadow set stays and keeps counting.
    round_trip(&mut s, b"two").await;
    let report = shadow_until(d, &admin, |r| count(r, "publish") == 2).await;
    assert_eq!(count(&report, "receive"), 2, "{report:#}");

    drop(s);
    common::signal(&child, "-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
