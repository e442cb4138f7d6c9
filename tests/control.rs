//! Runtime control through `moat ctl` (the real binary) against a running moat: sessions
//! listed and filtered, a kick, operator bans on a source and an identity ending live sessions
//! and refusing new ones, an unban; a policy-file ban ending a live session; a drain on SIGTERM
//! (clients told 0x8B spread over the period, `/readyz` 503 from its start, new connections
//! refused, exit 0); `moat ctl drain` with a Server Reference (0x9C) to a second instance,
//! where the client reconnects; moat.yaml reloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{packets, Opts, WAIT};
use tokio::sync::oneshot;

/// The admin section of the in-process harnesses: loopback, port 0.
const ADMIN_LOOPBACK: &str = "admin: { listen: \"127.0.0.1:0\" }\n";

/// How an MQTT 5 client's session ended: the DISCONNECT reason moat sent (none: closed
/// without one), its bytes, and when.
type Ended = (Option<u8>, Vec<u8>, Instant);

/// An MQTT 5 client through moat at `addr`, past a successful CONNACK; its end arrives on the
/// receiver. Raw bytes, not rumqttc: rumqttc 0.25 cannot read a DISCONNECT in its short form
/// (reason code, no property length), which MQTT 5 allows and moat sends.
async fn v5(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    id: &str,
    creds: (&str, &str),
) -> Result<oneshot::Receiver<Ended>, String> {
    let mut s = common::tls_connect(addr, tls)
        .await
        .map_err(|e| e.to_string())?;
    let connect = packets::connect_v5(id, Some(creds.0), Some(creds.1));
    match common::connack(&mut s, &connect).await {
        Some(body) if body.get(1) == Some(&0) => {}
        other => return Err(format!("CONNACK {other:02x?}")),
    }
    let (tx, rx) = oneshot::channel();
    // Owned by the test: it ends when moat closes the connection (or after a minute).
    tokio::spawn(async move {
        let (bytes, _) = common::read_until_close(&mut s, Duration::from_secs(60)).await;
        let at = Instant::now();
        let code = match bytes.first() {
            Some(0xe0) => bytes.get(2).copied(),
            _ => None,
        };
        let _ = tx.send((code, bytes, at));
    });
    Ok(rx)
}

/// Waits (bounded) for the end of a session.
async fn ended(end: oneshot::Receiver<Ended>) -> Ended {
    tokio::time::timeout(WAIT, end)
        .await
        .expect("the session did not end")
        .expect("reader gone")
}

/// DISCONNECT reason codes (MQTT 5, 3.14.2.1).
const ADMINISTRATIVE_ACTION: u8 = 0x98;
const SERVER_SHUTTING_DOWN: u8 = 0x8b;
const USE_ANOTHER_SERVER: u8 = 0x9c;

/// `moat ctl --admin ADDR ARGS…`: success, stdout, stderr.
async fn ctl(admin: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["ctl", "--admin", admin])
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

/// `moat ctl … --json`, parsed; panics with stderr when it fails.
async fn ctl_json(admin: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = ctl(admin, &all).await;
    assert!(ok, "moat ctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn admin_url(h: &common::Harness) -> String {
    format!("http://{}", h.running.admin_addr().expect("admin listener"))
}

fn ids(page: &serde_json::Value) -> Vec<u64> {
    page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_lists_filters_kicks_bans_and_unbans() {
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_url(&h);
    let alice_end = v5(
        h.addr,
        h.client_config(None),
        "dev-a",
        ("alice", "alice-pw"),
    )
    .await
    .unwrap();
    let (_bob, mut bob_rx) = common::rumqttc_v4(&h, "dev-b", Some(("bob", "bob-pw")), None)
        .await
        .unwrap();

    // Listed, with each filter; the table names them too.
    let all = ctl_json(&admin, &["sessions"]).await;
    assert_eq!(all["live"], 2, "{all}");
    assert_eq!(ids(&all).len(), 2);
    let alice = ctl_json(&admin, &["sessions", "--identity", "alice"]).await;
    let row = &alice["sessions"][0];
    assert_eq!(
        (
            row["client_id"].as_str(),
            row["protocol"].as_str(),
            row["listener"].as_str(),
            row["transport"].as_str()
        ),
        (Some("dev-a"), Some("5"), Some("mqtts"), Some("tls")),
        "{alice}"
    );
    let bob = ctl_json(&admin, &["sessions", "--client-id", "dev-b"]).await;
    assert_eq!(bob["sessions"][0]["identity"], "bob", "{bob}");
    assert_eq!(bob["sessions"][0]["protocol"], "3.1.1");
    let net = ctl_json(&admin, &["sessions", "--source", "127.0.0.0/8"]).await;
    assert_eq!(ids(&net).len(), 2);
    let none = ctl_json(&admin, &["sessions", "--listener", "elsewhere"]).await;
    assert_eq!(ids(&none).len(), 0);
    let page = ctl_json(&admin, &["sessions", "--limit", "1"]).await;
    assert_eq!(ids(&page).len(), 1);
    let next = page["next"].as_u64().expect("a second page");
    let rest = ctl_json(&admin, &["sessions", "--after", &next.to_string()]).await;
    assert_eq!(ids(&rest).len(), 1);
    assert_ne!(ids(&rest), ids(&page));
    let (ok, table, _) = ctl(&admin, &["sessions"]).await;
    assert!(
        ok && table.contains("alice") && table.contains("dev-b"),
        "{table}"
    );
    let (ok, _, err) = ctl(&admin, &["sessions", "--source", "not-an-address"]).await;
    assert!(!ok && err.contains("neither an IP address"), "{err}");

    // A kick: the MQTT 5 client is told Administrative action; bob stays.
    let alice_id = ids(&alice)[0];
    let kicked = ctl_json(&admin, &["kick", &alice_id.to_string()]).await;
    assert_eq!(kicked["identity"], "alice");
    let (code, bytes, _) = ended(alice_end).await;
    assert_eq!(code, Some(ADMINISTRATIVE_ACTION), "{bytes:02x?}");
    let (ok, _, err) = ctl(&admin, &["kick", &alice_id.to_string()]).await;
    assert!(!ok && err.contains("no live session"), "{err}");
    assert_eq!(ctl_json(&admin, &["sessions"]).await["live"], 1);

    // An identity ban ends alice's live session (0x98) and refuses her next CONNECT.
    let alice_end = v5(
        h.addr,
        h.client_config(None),
        "dev-a",
        ("alice", "alice-pw"),
    )
    .await
    .unwrap();
    let ban = ctl_json(
        &admin,
        &[
            "ban",
            "--identity",
            "alice",
            "--for",
            "10m",
            "--reason",
            "test",
        ],
    )
    .await;
    assert_eq!(ban["kind"], "admin", "{ban}");
    let (code, bytes, _) = ended(alice_end).await;
    assert_eq!(code, Some(ADMINISTRATIVE_ACTION), "{bytes:02x?}");
    let refused = v5(
        h.addr,
        h.client_config(None),
        "dev-a",
        ("alice", "alice-pw"),
    )
    .await;
    assert!(refused.is_err(), "a banned identity got in");
    // bob was not touched.
    assert_eq!(ids(&ctl_json(&admin, &["sessions"]).await), ids(&bob));

    // A source ban ends bob's live session (3.1.1: closed) and refuses new connections.
    ctl_json(&admin, &["ban", "--source", "127.0.0.1", "--for", "10m"]).await;
    tokio::time::timeout(WAIT, async { while bob_rx.recv().await.is_some() {} })
        .await
        .expect("bob's session was not closed");
    assert!(
        common::rumqttc_v4(&h, "dev-b", Some(("bob", "bob-pw")), None)
            .await
            .is_err(),
        "a banned source got in"
    );
    let bans = ctl_json(&admin, &["bans"]).await;
    assert_eq!(bans["bans"].as_array().unwrap().len(), 2, "{bans}");
    let (ok, table, _) = ctl(&admin, &["bans"]).await;
    assert!(ok && table.contains("address 127.0.0.1/32"), "{table}");

    // Unban: both connect again.
    let lifted = ctl_json(&admin, &["unban", "--source", "127.0.0.0/8"]).await;
    assert_eq!(lifted["lifted"].as_array().unwrap().len(), 1, "{lifted}");
    common::rumqttc_v4(&h, "dev-b", Some(("bob", "bob-pw")), None)
        .await
        .expect("bob is back");
    let (ok, out, _) = ctl(&admin, &["unban", "--identity", "alice"]).await;
    assert!(ok && out.contains("lifted admin ban"), "{out}");
    v5(
        h.addr,
        h.client_config(None),
        "dev-a",
        ("alice", "alice-pw"),
    )
    .await
    .expect("alice is back");
    assert_eq!(
        ctl_json(&admin, &["bans"]).await["bans"],
        serde_json::json!([])
    );
    let (ok, _, _) = ctl(&admin, &["ready"]).await;
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_added_to_a_policy_file_ends_the_live_session_it_covers() {
    let h = common::start(Opts::default()).await;
    let alice_end = v5(
        h.addr,
        h.client_config(None),
        "dev-a",
        ("alice", "alice-pw"),
    )
    .await
    .unwrap();
    let _bob = v5(h.addr, h.client_config(None), "dev-b", ("bob", "bob-pw"))
        .await
        .unwrap();
    let network = h.dir.path().join("policies/00-network.yaml");
    let text = format!(
        "{}bans:\n  - {{ username: alice, reason: test }}\n",
        common::LOOPBACK_NETWORK
    );
    std::fs::write(&network, text).unwrap();
    let path = h.dir.path().join("moat.yaml");
    let mut config = moat::ops::load::load_config(&path).unwrap();
    let report = h.running.reload_all(&mut config, &path, "test");
    assert!(report.ok, "{report:?}");
    let (code, bytes, _) = ended(alice_end).await;
    assert_eq!(code, Some(ADMINISTRATIVE_ACTION), "{bytes:02x?}");
    assert_eq!(h.running.live_sessions(), 1, "bob stays");
}

/// moat.yaml for a `moat run` child: one TLS listener on port 0, the admin listener on
/// loopback port 0, `extra` appended.
fn write_run_dir(d: &std::path::Path, extra: &str) -> common::Pki {
    let pki = common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), common::default_policy()).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(d.join("moat.yaml"), run_yaml("127.0.0.1:0", extra)).unwrap();
    pki
}

fn run_yaml(bind: &str, extra: &str) -> String {
    run_yaml_admin(bind, ADMIN_LOOPBACK, extra)
}

/// [`run_yaml`] with another `admin:` section. `extra` starts on line 12.
fn run_yaml_admin(bind: &str, admin: &str, extra: &str) -> String {
    format!(
        "listeners:\n  - {{ name: mqtts, kind: tls, bind: \"{bind}\" }}\n\
         tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
         broker:\n  embedded: {{ bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }}\n\
         policies: [policies/]\ndev_certs: false\n{admin}{extra}"
    )
}

/// A `moat run` child: its log lines, its MQTT address and its admin URL.
struct Child {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    mqtt: SocketAddr,
    admin: String,
}

impl Child {
    fn start(d: &std::path::Path) -> Child {
        Child::start_with(d, |_| {})
    }

    /// [`Child::start`], with `setup` run on the command first (its environment).
    fn start_with(d: &std::path::Path, setup: impl FnOnce(&mut Command)) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
        setup(&mut cmd);
        let (child, lines) = common::spawn_logged(cmd);
        let mut seen = Vec::new();
        let addr = |line: String| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap()
                .to_owned()
        };
        // The admin listener is bound before the front doors: read both lines once moat is up.
        common::wait_for_line(&lines, &mut seen, &["moat is up"]);
        let bound = |name: &str| {
            let line = seen
                .iter()
                .find(|l| l.contains("listening") && l.contains(&format!("listener={name}")))
                .unwrap_or_else(|| panic!("no listening line for {name}: {seen:#?}"));
            addr(line.clone())
        };
        let (mqtt, admin) = (bound("mqtts"), bound("admin"));
        Child {
            child,
            lines,
            seen,
            mqtt: mqtt.parse().unwrap(),
            admin: format!("http://{admin}"),
        }
    }

    fn line(&mut self, needles: &[&str]) -> String {
        common::wait_for_line(&self.lines, &mut self.seen, needles)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded by `within`) for the process to exit; its status.
    fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "moat did not exit; saw {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_over_the_period_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let period = Duration::from_secs(2);
    let pki = write_run_dir(dir.path(), "drain: { period: 2s }\n");
    let mut moat = Child::start(dir.path());
    let tls = common::client_config(&pki.ca.cert, None);
    let mut ends = Vec::new();
    for i in 0..4 {
        let id = format!("dev-{i}");
        let end = v5(moat.mqtt, tls.clone(), &id, ("alice", "alice-pw"))
            .await
            .unwrap();
        ends.push(end);
    }
    let (ready, _, _) = ctl(&moat.admin, &["ready"]).await;
    assert!(ready, "ready before the drain");

    moat.signal("-TERM");
    let started = Instant::now();
    moat.line(&["draining, then shutting down"]);
    // From the start: not ready, and no new connection gets in.
    let (ready, out, err) = ctl(&moat.admin, &["ready"]).await;
    assert!(!ready && err.contains("503"), "{err}");
    // Said once, on stderr: `moat: not ready: draining (503 Service Unavailable)`.
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.matches("not ready").count(), 1, "{err}");
    // The listeners drop their sockets when they see the drain signal, a moment after the log
    // line: poll (bounded) until a connect is refused. One that lands in the backlog meanwhile
    // is closed with the socket, never served.
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match tokio::net::TcpStream::connect(moat.mqtt).await {
            Err(_) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "new connections were still accepted 500 ms into the drain"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut at = Vec::new();
    for end in ends {
        let (code, bytes, when) = ended(end).await;
        assert_eq!(code, Some(SERVER_SHUTTING_DOWN), "{bytes:02x?}");
        at.push(when.duration_since(started));
    }
    at.sort();
    let (first, last) = (at[0], at[3]);
    // The last batch is due at 1½ s; the slack covers a loaded machine (`moat ctl` above is a
    // process start in a debug build): seen at 3.07 s with a load average of 10.
    assert!(last < period + Duration::from_secs(2), "{at:?}");
    // Spread: batches at 0, ½, 1 and 1½ s of the 2 s period, not all at once.
    assert!(
        last - first >= period / 2,
        "not spread over the period: {at:?}"
    );
    let status = moat.exit(WAIT);
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drain_points_mqtt5_clients_to_the_server_reference_where_they_reconnect() {
    // b: the peer instance, serving the same certificate (a rolling restart's other half).
    let b_dir = tempfile::tempdir().unwrap();
    let pki = write_run_dir(b_dir.path(), "");
    let mut b = Child::start(b_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "drain: {{ period: 0s, server_reference: \"{}\" }}\n",
        b.mqtt
    );
    write_run_dir(dir.path(), &extra);
    for f in ["server.crt", "server.key"] {
        std::fs::copy(b_dir.path().join(f), dir.path().join(f)).unwrap();
    }
    let mut moat = Child::start(dir.path());
    let tls = common::client_config(&pki.ca.cert, None);
    let end = v5(moat.mqtt, tls.clone(), "dev-r", ("alice", "alice-pw"))
        .await
        .unwrap();
    // The audit lines of an unban and of a refused ban name what was asked in words, not as
    // Rust's `Some("…")` / `None`.
    let (ok, out, err) = ctl(&moat.admin, &["unban", "--source", "203.0.113.7"]).await;
    assert!(
        ok && out.contains("no operator or automatic ban"),
        "{out} {err}"
    );
    let line = moat.line(&["admin action", "action=\"unban\""]);
    assert!(
        line.contains("subject=source 203.0.113.7 outcome="),
        "{line}"
    );
    let (ok, _, _) = ctl(&moat.admin, &["ban", "--client-id", "d 1", "--for", "99d"]).await;
    assert!(!ok, "a ban above 30 days is refused");
    let line = moat.line(&["admin action", "action=\"ban\""]);
    assert!(
        line.contains("subject=client id \"d 1\" for 99d "),
        "{line}"
    );
    assert!(!line.contains("None") && !line.contains("Some("), "{line}");
    let (ok, out, err) = ctl(&moat.admin, &["drain"]).await;
    assert!(ok && out.contains("draining"), "{out} {err}");
    let (code, bytes, _) = ended(end).await;
    assert_eq!(code, Some(USE_ANOTHER_SERVER), "{bytes:02x?}");
    let reference = b.mqtt.to_string();
    assert!(
        bytes
            .windows(reference.len())
            .any(|w| w == reference.as_bytes()),
        "no Server Reference: {bytes:02x?}"
    );
    // The client saw that one DISCONNECT and nothing after it, then the close.
    assert_eq!(bytes.len(), 2 + usize::from(bytes[1]), "{bytes:02x?}");
    moat.line(&["admin action", "drain"]);
    let status = moat.exit(WAIT);
    assert!(status.success(), "{status}");
    // It reconnects where it was sent, with the same certificate trust and credentials.
    let again = v5(b.mqtt, tls, "dev-r", ("alice", "alice-pw")).await;
    assert!(again.is_ok(), "{again:?}");
    b.line(&["session up", "client_id=dev-r"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_yaml_reload_applies_a_limit_and_reports_a_listener_address_as_needing_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = write_run_dir(d, "");
    let mut moat = Child::start(d);
    // A live limit and a listener address change; a reload applies the first, reports the
    // second (log WARN and the answer), and the listener stays where it is.
    let yaml = run_yaml("127.0.0.1:1", "limits: { max_keepalive: 30s }\n");
    std::fs::write(d.join("moat.yaml"), yaml).unwrap();
    let report = ctl_json(&moat.admin, &["reload"]).await;
    assert_eq!(
        report["applied"],
        serde_json::json!(["limits.max_keepalive"]),
        "{report}"
    );
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(["listeners"]),
        "{report}"
    );
    assert_eq!(report["ok"], true);
    let warn = moat.line(&["listeners changed but needs a restart"]);
    assert!(warn.contains("WARN"), "{warn}");
    // The listener stayed; a new session gets the new limit (CONNACK Server Keep Alive 30 for
    // the 60 it asked for).
    let tls = common::client_config(&pki.ca.cert, None);
    let mut s = common::tls_connect(moat.mqtt, tls).await.unwrap();
    let connect = packets::connect_v5("dev-k", Some("alice"), Some("alice-pw"));
    let connack = common::connack(&mut s, &connect).await.unwrap();
    assert!(
        connack.windows(3).any(|w| w == [0x13, 0x00, 30]),
        "no Server Keep Alive 30: {connack:02x?}"
    );

    // A broken moat.yaml is refused with file:line:column; SIGHUP logs the same.
    std::fs::write(d.join("moat.yaml"), "listeners: []\n").unwrap();
    let (ok, out, err) = ctl(&moat.admin, &["reload"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("moat.yaml:1:12:"), "{out} {err}");
    moat.signal("-HUP");
    let line = moat.line(&["moat.yaml reload refused", "SIGHUP"]);
    assert!(line.contains("moat.yaml:1:12:"), "{line}");
    moat.signal("-TERM");
    assert!(moat.exit(WAIT).success());
}

/// One MQTT 5 session of alice through `moat`, closed right after its CONNACK; returns once
/// moat logged its end (every line the session caused is then in `moat.seen`).
async fn one_session(moat: &mut Child, tls: Arc<rustls::ClientConfig>, id: &str) {
    let mut s = common::tls_connect(moat.mqtt, tls).await.unwrap();
    let connect = packets::connect_v5(id, Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    drop(s);
    moat.line(&["session closed", &format!("client_id={id}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_in_moat_yaml_changes_live_and_a_bad_one_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = write_run_dir(d, "");
    // moat.yaml decides the level only when RUST_LOG is not set.
    let mut moat = Child::start_with(d, |cmd| {
        cmd.env_remove("RUST_LOG");
    });
    let tls = common::client_config(&pki.ca.cert, None);
    let authenticated = |seen: &[String]| {
        seen.iter()
            .any(|l| l.contains("authenticated identity=alice"))
    };
    one_session(&mut moat, tls.clone(), "dev-1").await;
    assert!(!authenticated(&moat.seen), "a debug line at info");

    let debug = "log: { level: \"info,moat=debug\" }\n";
    std::fs::write(d.join("moat.yaml"), run_yaml("127.0.0.1:0", debug)).unwrap();
    moat.signal("-HUP");
    moat.line(&["log level changed", "SIGHUP", "info,moat=debug"]);
    one_session(&mut moat, tls.clone(), "dev-2").await;
    assert!(authenticated(&moat.seen), "no debug line after the reload");

    // A level the logger cannot read is refused with its place; the running level stays.
    let bad = "log: { level: \"info,moat=verbose\" }\n";
    std::fs::write(d.join("moat.yaml"), run_yaml("127.0.0.1:0", bad)).unwrap();
    let (ok, out, err) = ctl(&moat.admin, &["reload"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("moat.yaml:12:15:") && out.contains("invalid log.level"),
        "{out} {err}"
    );
    moat.seen.clear();
    one_session(&mut moat, tls.clone(), "dev-3").await;
    assert!(authenticated(&moat.seen), "the running level was dropped");

    // Back to info: the debug lines stop.
    std::fs::write(d.join("moat.yaml"), run_yaml("127.0.0.1:0", "")).unwrap();
    let report = ctl_json(&moat.admin, &["reload"]).await;
    assert_eq!(
        report["applied"],
        serde_json::json!(["log.level"]),
        "{report}"
    );
    moat.seen.clear();
    one_session(&mut moat, tls, "dev-4").await;
    assert!(
        !authenticated(&moat.seen),
        "debug lines after going back to info"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rust_log_set_a_changed_log_level_is_reported_as_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_run_dir(d, "");
    let mut moat = Child::start(d);
    let debug = "log: { level: debug }\n";
    std::fs::write(d.join("moat.yaml"), run_yaml("127.0.0.1:0", debug)).unwrap();
    let (ok, out, err) = ctl(&moat.admin, &["reload"]).await;
    assert!(ok, "{out} {err}");
    assert!(
        out.contains("log.level changed but RUST_LOG is set and wins"),
        "{out}"
    );
    assert!(out.contains("no live setting changed"), "{out}");
    let warn = moat.line(&["RUST_LOG is set and wins"]);
    assert!(warn.contains("WARN"), "{warn}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_admin_token_is_in_force_after_a_reload_and_a_broken_file_keeps_it() {
    const OLD: &str = "old-admin-token-0123456789";
    const NEW: &str = "new-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_run_dir(d, "");
    let served = d.join("admin.token");
    std::fs::write(&served, format!("{OLD}\n")).unwrap();
    let admin = "admin: { listen: \"127.0.0.1:0\", token_file: admin.token }\n";
    std::fs::write(
        d.join("moat.yaml"),
        run_yaml_admin("127.0.0.1:0", admin, ""),
    )
    .unwrap();
    // What the operator's `moat ctl` reads: the old token, and the new one.
    let (old, new) = (d.join("old.token"), d.join("new.token"));
    std::fs::write(&old, OLD).unwrap();
    std::fs::write(&new, NEW).unwrap();
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let mut moat = Child::start(d);
    let url = moat.admin.clone();
    let ready = |token: &'static str| {
        let admin = url.clone();
        let file = if token == OLD { old } else { new }.to_owned();
        async move { ctl(&admin, &["--token-file", &file, "ready"]).await }
    };
    assert!(ready(OLD).await.0);
    let (ok, _, err) = ready(NEW).await;
    assert!(!ok && err.contains("401"), "{err}");

    // Rotated: the reload (still authorized by the old token) puts the new one in force.
    common::write_atomically(&served, format!("{NEW}\n").as_bytes());
    let (ok, out, err) = ctl(&moat.admin, &["--token-file", old, "reload"]).await;
    assert!(ok, "{out} {err}");
    assert!(ready(NEW).await.0);
    let (ok, _, err) = ready(OLD).await;
    assert!(!ok && err.contains("401"), "{err}");
    assert!(out.contains("admin token: replaced"), "{out}");

    // An empty file (a rotation half done) is refused on SIGHUP; the running token stays.
    std::fs::write(&served, "").unwrap();
    moat.signal("-HUP");
    let line = moat.line(&["admin token reload refused", "SIGHUP"]);
    assert!(line.contains("admin.token"), "{line}");
    assert!(ready(NEW).await.0);
    let (ok, out, _) = ctl(&moat.admin, &["--token-file", new, "reload"]).await;
    assert!(
        !ok && out.contains("admin token: refused, running token kept"),
        "{out}"
    );
    assert!(ready(NEW).await.0);
}
