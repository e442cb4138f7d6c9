//! The connection cap fits the file descriptor limit: `moat run` under a low `ulimit -n` lowers
//! its default cap to what fits and holds it (the next client is reset, nothing runs into
//! EMFILE, rumqttd's accept loop never errors), and refuses to start when moat.yaml set a cap
//! that does not fit. With the embedded broker in memory (the default) a session holds one
//! descriptor, its client socket; over loopback (`broker.embedded.link: loopback`) three.
//!
//! moat runs as a child process under `sh -c 'ulimit -n N; exec moat run'` (dash sets the soft
//! and the hard limit): the limit is then moat's alone, so the test's own client sockets neither
//! count against it nor disturb other tests, and the real `moat run` start-up path is tested.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{packets, WAIT};

/// The limit moat runs under: (200 − 64 reserved) / 1 per connection = 136 connections with
/// the embedded broker in memory, / 3 = 45 over loopback.
const LIMIT: u64 = 200;

/// moat.yaml (with `extra` appended), certificates and the harness's default policy in `d`;
/// the embedded broker reached over `link`.
fn setup(d: &Path, link: &str, extra: &str) -> common::Pki {
    let pki = common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/test.yaml"), common::default_policy()).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        format!(
            "listeners:\n  - {{ name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }}\n\
             tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
             broker:\n  embedded: {{ bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\", link: {link} }}\n\
             policies: [policies/]\ndev_certs: false\n{extra}"
        ),
    )
    .unwrap();
    pki
}

/// `moat run` in `d` under `ulimit -n LIMIT`, and a channel of its log lines.
fn run_limited(d: &Path) -> (Child, Receiver<String>) {
    let mut cmd = Command::new("sh");
    cmd.current_dir(d)
        .args(["-c", &format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_moat"))
        .args(["run", "-c", "moat.yaml"]);
    common::spawn_logged(cmd)
}

/// Descriptors the process `pid` holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn alice(id: &str) -> Vec<u8> {
    packets::connect_v4(id, Some("alice"), Some("alice-pw"))
}

#[tokio::test]
async fn the_default_cap_is_lowered_to_the_descriptor_limit_and_held() {
    lowered_and_held("memory", 1).await;
}

#[tokio::test]
async fn over_loopback_each_session_holds_three_descriptors() {
    lowered_and_held("loopback", 3).await;
}

/// Under `ulimit -n LIMIT`, the default cap is lowered to what fits at `per` descriptors per
/// session, a full house holds `per` more descriptors per session than an idle moat, and
/// the cap holds.
async fn lowered_and_held(link: &str, per: usize) {
    const RESERVE: usize = 64;
    let fits = (LIMIT as usize - RESERVE) / per;
    let dir = tempfile::tempdir().unwrap();
    let pki = setup(dir.path(), link, "");
    let (mut child, lines) = run_limited(dir.path());
    let pid = child.id();
    let mut seen = Vec::new();
    let warning = common::wait_for_line(&lines, &mut seen, &["WARN", "file descriptor limit"]);
    let needed = 10_000 * per + RESERVE;
    for part in [
        "limit is 200".to_string(),
        format!("enough for {fits} connections"),
        "not the default 10000".to_string(),
        format!("ulimit -n {needed}"),
    ] {
        assert!(warning.contains(&part), "{part} missing: {warning}");
    }
    let listening = common::wait_for_line(&lines, &mut seen, &["listening", "listener=mqtts"]);
    let addr: SocketAddr = listening
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let up = format!("max_connections={fits}");
    common::wait_for_line(&lines, &mut seen, &["moat is up", &up]);
    let idle = open_fds(pid);

    // A full house: every session authenticated, so each holds its upstream connection too.
    let config = common::client_config(&pki.ca.cert, None);
    let mut held = Vec::new();
    for i in 0..fits {
        let mut s = common::tls_connect(addr, config.clone()).await.unwrap();
        assert_eq!(
            common::connack_code(&mut s, &alice(&format!("c{i}"))).await,
            Some(0),
            "session {i} of {fits}"
        );
        held.push(s);
    }
    let full = open_fds(pid);
    // One more is refused at accept with a reset, as any connection over the cap.
    assert_eq!(
        common::probe_from("127.0.0.1", addr, WAIT).await,
        Some(vec![])
    );
    assert!(
        full <= LIMIT as usize - 16,
        "a full house holds {full} of {LIMIT} descriptors (idle: {idle})"
    );
    // `per` for each session; a few may be the runtime's or a policy file's meanwhile.
    assert!(
        (full - idle).abs_diff(fits * per) <= 4,
        "{fits} sessions over {link} hold {} descriptors, not {per} each",
        full - idle
    );
    println!("descriptors: idle {idle}, full house of {fits} sessions {full}, limit {LIMIT}");

    // A closed session gives its slot back: the next client gets in.
    let mut gone = held.pop().unwrap();
    let (_, closed) = common::exchange(&mut gone, &[0xe0, 0x00]).await;
    assert!(closed, "DISCONNECT did not close the session");
    let mut again = None;
    for _ in 0..100 {
        if let Ok(mut s) = common::tls_connect(addr, config.clone()).await {
            if common::connack_code(&mut s, &alice("again")).await == Some(0) {
                again = Some(s);
                break;
            }
        }
        // moat releases the slot when the session task ends, just after it closed the socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the slot was never released");

    // Neither moat's accept nor rumqttd's ever hit the limit (rumqttd would log one error per
    // retry, without a pause).
    child.kill().unwrap();
    child.wait().unwrap();
    seen.extend(lines.try_iter());
    while let Ok(line) = lines.recv_timeout(WAIT) {
        seen.push(line);
    }
    let errors: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("Unable to accept") || l.contains("accept failed"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        !seen.iter().any(|l| l.contains("Too many open files")),
        "{seen:#?}"
    );
}

#[test]
fn an_explicit_cap_above_the_descriptor_limit_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "memory", "limits: { max_connections: 1000 }\n");
    let (mut child, lines) = run_limited(dir.path());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log: Vec<String> = lines.iter().collect();
    let text = log.join("\n");
    for part in [
        "limits.max_connections is 1000",
        "needs 1064 file descriptors",
        "the limit is 200",
        "enough for 136 connections",
        "ulimit -n 1064",
        "LimitNOFILE=1064",
    ] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    assert!(!text.contains("listening"), "{text}");
}
