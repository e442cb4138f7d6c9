//! Refusal in the kernel, end to end: with `limits.kernel_filter` on, a denied or banned
//! source's SYN is dropped by the listener's socket filter, so its connection never completes
//! and moat never accepts it; an admitted source connects as before; a policy reload or a new
//! ban changes what the kernel drops. Sources are played by binding to addresses in 127.0.0.0/8.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{packets, Opts, WAIT};

/// How long a connect may hang before the test calls it dropped (on loopback a handshake takes
/// microseconds; a dropped SYN is retransmitted only after a second).
const DROPPED: Duration = Duration::from_millis(400);

/// Whether a TCP connection from `src` to `addr` completes within [`DROPPED`]. A reset from the
/// user-space gate may arrive after the handshake: that still counts as connected (accepted).
async fn completes(src: &str, addr: SocketAddr) -> bool {
    match tokio::time::timeout(DROPPED, common::tcp_from(src, addr)).await {
        Err(_) => false,
        Ok(Ok(_)) => true,
        Ok(Err(e)) if common::is_reset(&e) => true,
        Ok(Err(e)) => panic!("connect from {src}: {e}"),
    }
}

fn network(deny: &str) -> String {
    format!(
        "network:\n  allow: [\"127.0.0.0/8\", \"::1\"]\n  deny: {deny}\n\
         limits:\n  connections: {{ per_ip: off, global: off }}\n\
         auto_ban:\n  failed_auth: {{ count: 1, within: 1m, ban_for: 1m, ban: [source] }}\n"
    )
}

fn alice(id: &str) -> Vec<u8> {
    packets::connect_v4(id, Some("alice"), Some("alice-pw"))
}

#[tokio::test]
async fn a_denied_source_never_reaches_accept_until_a_reload_lets_it_in() {
    let h = common::start(Opts {
        network: network("[\"127.0.0.64/28\"]"),
        kernel_filter: true,
        ..Opts::default()
    })
    .await;
    for _ in 0..3 {
        assert!(
            !completes("127.0.0.66", h.addr).await,
            "the SYN was answered"
        );
    }
    let stats = h.running.stats();
    assert_eq!(
        (stats.accepted, stats.admission.refused_network),
        (0, 0),
        "moat never saw the denied source"
    );
    // An admitted source gets a full session.
    let mut s = common::tls_from(&h, "127.0.0.2").await.unwrap();
    assert_eq!(common::connack_code(&mut s, &alice("ok")).await, Some(0));
    assert_eq!(h.running.stats().accepted, 1);

    // The deny goes away on reload: the kernel lets the source through (bounded poll: the
    // filter is rebuilt within moat's policy poll).
    std::fs::write(h.dir.path().join("policies/00-network.yaml"), network("[]")).unwrap();
    let config = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    moat::ops::reload::reload(h.running.policy(), &config, "test").unwrap();
    let reloaded = Instant::now();
    let mut session = None;
    while session.is_none() && reloaded.elapsed() < WAIT {
        if completes("127.0.0.66", h.addr).await {
            session = Some(common::tls_from(&h, "127.0.0.66").await.unwrap());
        }
    }
    let mut s = session.expect("the reload never reached the kernel filter");
    assert_eq!(common::connack_code(&mut s, &alice("back")).await, Some(0));
}

#[tokio::test]
async fn a_banned_source_is_dropped_by_the_kernel_soon_after_the_ban() {
    let h = common::start(Opts {
        network: network("[]"),
        kernel_filter: true,
        ..Opts::default()
    })
    .await;
    let attacker = "127.0.0.20";
    let mut s = common::tls_from(&h, attacker).await.unwrap();
    let wrong = packets::connect_v4("x", Some("alice"), Some("wrong"));
    assert_eq!(common::connack_code(&mut s, &wrong).await, Some(0x04));
    // The ban is in the gate at once; in the kernel after at most one rebuild.
    let banned = Instant::now();
    while completes(attacker, h.addr).await {
        assert!(banned.elapsed() < WAIT, "the ban never reached the kernel");
    }
    let accepted = h.running.stats().accepted;
    for _ in 0..3 {
        assert!(!completes(attacker, h.addr).await);
    }
    assert_eq!(h.running.stats().accepted, accepted, "accept did not move");
    // Others are not affected.
    let mut s = common::tls_from(&h, "127.0.0.21").await.unwrap();
    assert_eq!(common::connack_code(&mut s, &alice("ok")).await, Some(0));
}

#[tokio::test]
async fn ipv6_and_dual_stack_listeners_drop_denied_sources() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine: skipped");
        return;
    }
    // [::]: one socket for both families; IPv4 packets are judged by the IPv4 rules.
    let h = common::start(Opts {
        bind: "[::]:0",
        network: network("[\"::1\", \"127.0.0.9\"]"),
        kernel_filter: true,
        ..Opts::default()
    })
    .await;
    let port = h.addr.port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(!completes("::1", v6).await);
    assert!(!completes("127.0.0.9", v4).await);
    assert!(completes("127.0.0.8", v4).await);
    // The accept loop counts the admitted one (bounded wait: it runs on its own task).
    let t = Instant::now();
    while h.running.stats().accepted == 0 && t.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.running.stats().accepted,
        1,
        "only the admitted source was accepted"
    );
}

#[tokio::test]
async fn trusted_balancers_and_proxies_pass_the_filter_whatever_the_rules_say() {
    // 127.0.0.50 is denied by the policy, but admission lets it through as a relay where it is
    // a trusted balancer (PROXY protocol) or a trusted reverse proxy (X-Forwarded-For).
    let h = common::start(Opts {
        network: network("[127.0.0.50]"),
        listeners: "  - { name: lb, kind: tls, bind: \"127.0.0.1:0\", proxy_protocol: any, trusted_proxies: [127.0.0.50] }\n  \
                    - { name: ws, kind: wss, bind: \"127.0.0.1:0\", ws: { trusted_proxies: [127.0.0.50] } }\n"
            .into(),
        kernel_filter: true,
        ..Opts::default()
    })
    .await;
    let (lb, ws) = (h.addr_of("lb"), h.addr_of("ws"));
    assert!(completes("127.0.0.50", lb).await, "the trusted balancer");
    assert!(
        completes("127.0.0.50", ws).await,
        "the trusted reverse proxy"
    );
    assert!(
        !completes("127.0.0.50", h.addr).await,
        "denied on a plain listener"
    );
    // Other peers of a PROXY listener are judged by the rules in the kernel and refused as
    // untrusted in user space (with an audit line a misconfigured balancer needs).
    assert!(completes("127.0.0.51", lb).await, "reaches user space");
    assert!(
        completes("127.0.0.51", ws).await,
        "judged by the rules: admitted"
    );
}

/// The real binary: `moat run` with a deny list, then SIGHUP after the deny is removed.
#[test]
fn moat_run_drops_denied_sources_and_takes_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let policy = common::run_dir_with_policy(d, "00-network.yaml", &network("[127.0.0.77]"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let line = common::wait_for_line(&lines, &mut seen, &["listening", "mqtts"]);
    let addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert!(!completes("127.0.0.77", addr).await, "denied: no handshake");
        assert!(completes("127.0.0.78", addr).await, "admitted");
    });
    std::fs::write(&policy, network("[]")).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    common::wait_for_line(&lines, &mut seen, &["policy reloaded"]);
    let in_after_reload = rt.block_on(async {
        let t = Instant::now();
        while t.elapsed() < WAIT {
            if completes("127.0.0.77", addr).await {
                return true;
            }
        }
        false
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        in_after_reload,
        "the reload never reached the kernel filter"
    );
    // Nothing the test saw says the gate refused 127.0.0.77 in user space.
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("127.0.0.77") && l.contains("refused")),
        "{seen:#?}"
    );
}

/// `moat export nftables` on a real configuration: the listener's port, the deny set, and (when
/// `nft` is installed) a ruleset the kernel's parser accepts.
#[test]
fn moat_export_nftables_prints_a_ruleset_for_the_listener_ports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/00-network.yaml"),
        network("[192.0.2.0/24, \"2001:db8::/32\"]"),
    )
    .unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"0.0.0.0:8883\" }\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: true\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(d)
        .args(["export", "nftables", "-c", "moat.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("tcp dport 8883 ip saddr @deny_v4_0 drop"),
        "{text}"
    );
    assert!(text.contains("elements = { 192.0.2.0/24 }"), "{text}");
    assert!(text.contains("ip saddr != @allow_v4_0 drop"), "{text}");
    let file = d.join("moat.nft");
    std::fs::write(&file, &text).unwrap();
    if let Ok(check) = Command::new("nft").arg("-c").arg("-f").arg(&file).output() {
        assert!(
            check.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}
