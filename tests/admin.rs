//! The admin listener: health and readiness, authentication off loopback, and `/metrics`
//! counters moving while real clients connect, publish, get refused and get banned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;

use common::{Opts, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The admin section every harness here gets: loopback, port 0.
const ADMIN_LOOPBACK: &str = "admin: { listen: \"127.0.0.1:0\" }\n";

/// One HTTP/1.1 request on a fresh connection: status code and body.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: moat\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    request(tcp, path, None).await
}

fn admin_addr(h: &common::Harness) -> SocketAddr {
    h.running
        .admin_addr()
        .expect("admin listener")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_on_a_running_moat() {
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(get(admin, "/nothing-here").await.0, 404);
}

/// A loopback port with nothing listening on it (bound, read, released).
fn dead_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

#[tokio::test]
async fn readyz_is_503_while_the_upstream_broker_is_down_and_200_once_it_answers() {
    let port = dead_port();
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        broker: format!("broker:\n  upstream: {{ v3: \"127.0.0.1:{port}\" }}\n"),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: broker unreachable\n")
    );
    // Alive all the same.
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let metrics = get(admin, "/metrics").await.1;
    assert_eq!(sample(&metrics, "moat_broker_up", &[]), 0.0, "{metrics}");

    // The broker comes up on that port: ready once the cached probe (2 s) has aged.
    let _broker = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _) = get(admin, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_from_the_start_of_a_shutdown() {
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    // A connection still in its TLS handshake holds the drain open (up to the grace period).
    let idle = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(h.running.readiness().check().await, Ok(()));
    let stopping = tokio::spawn(h.running.shutdown());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(admin, "/readyz").await;
        if status == 503 {
            assert_eq!(body, "not ready: draining\n");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never draining");
        tokio::task::yield_now().await;
    }
    drop(idle);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[test]
fn moat_check_refuses_an_admin_listener_off_loopback_without_tls_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:8883\" }\n\
                admin:\n  listen: \"0.0.0.0:9100\"\n";
    std::fs::write(dir.path().join("moat.yaml"), yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(dir.path())
        .args(["check", "-c", "moat.yaml"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("moat.yaml:4:11"), "{stderr}");
    assert!(
        stderr.contains("admin.listen '0.0.0.0:9100' is not a loopback address"),
        "{stderr}"
    );
}

#[tokio::test]
async fn off_loopback_the_admin_listener_serves_tls_and_wants_the_token() {
    const TOKEN: &str = "s3cret-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let token_file = dir.path().join("admin.token");
    // Any address that is not loopback counts; 0.0.0.0 binds everywhere, and the test reaches
    // it through 127.0.0.1. The harness's server certificate serves the admin port too.
    let h = common::start(Opts {
        extra: format!(
            "admin:\n  listen: \"0.0.0.0:0\"\n  tls: {{ cert: server.crt, key: server.key }}\n  token_file: {}\n",
            token_file.display()
        ),
        ..Opts::default()
    })
    .await;
    let port = admin_addr(&h).port();
    let admin: SocketAddr = ([127, 0, 0, 1], port).into();
    let tls = |token: Option<&'static str>| {
        let config = h.client_config(None);
        async move {
            let tls = common::tls_connect(admin, config).await.unwrap();
            request(tls, "/healthz", token).await
        }
    };
    assert_eq!(tls(None).await.0, 401);
    assert_eq!(tls(Some("s3cret-admin-token-012345678X")).await.0, 401);
    assert_eq!(tls(Some(TOKEN)).await, (200, "ok\n".to_string()));
    // Plain HTTP on the TLS port gets no answer an HTTP client could read.
    let (status_plain, _) = {
        let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        let mut tcp = tcp;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf)).await;
        (
            String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            (),
        )
    };
    assert!(!status_plain);
}

/// The value of one sample: `name` with every `labels` pair (others may be present).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest),
            None => (series, ""),
        };
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric == name && all).then(|| value.parse::<f64>().ok())?
    });
    found.unwrap_or(0.0)
}

/// The policy of the metrics test: alice may publish and subscribe under `t/`, and the rule on
/// line 8 denies her `secret/`.
fn metrics_policy() -> String {
    format!(
        "anonymous: false\nusers:\n  - {{ name: alice, password: \"{}\" }}\nacl:\n  - allow: all\n    topics: [\"t/#\"]\n    users: [alice]\n  - deny: publish\n    topics: [\"secret/#\"]\n    users: [alice]\n",
        common::hash("alice-pw")
    )
}

#[tokio::test]
async fn metrics_move_as_clients_connect_publish_get_refused_and_get_banned() {
    // The default auto-ban (10 failed logins within a minute ban the source for 5 minutes),
    // and 127.0.0.64/28 denied by the network rules.
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        policy: metrics_policy(),
        network: "network:\n  allow: [\"127.0.0.0/8\"]\n  deny: [\"127.0.0.64/28\"]\n\
                  limits:\n  connections: { per_ip: off, global: off }\n"
            .into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    let scrape = || async move {
        let (status, body) = get(admin, "/metrics").await;
        assert_eq!(status, 200);
        body
    };
    let before = scrape().await;
    let mqtts = [("listener", "mqtts"), ("transport", "tls")];
    assert_eq!(
        sample(&before, "moat_connections_accepted_total", &mqtts),
        0.0
    );
    assert_eq!(sample(&before, "moat_broker_up", &[]), 1.0);
    assert!(before.ends_with("# EOF\n"), "not OpenMetrics: {before}");

    // A client connects and publishes; one publish is denied by the rule on line 8.
    let (client, mut rx) = common::rumqttc_v4(&h, "m1", Some(("alice", "alice-pw")), None)
        .await
        .unwrap();
    client
        .subscribe("t/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish("secret/x", rumqttc::QoS::AtMostOnce, false, b"no".to_vec())
        .await
        .unwrap();
    for i in 0..3 {
        client
            .publish("t/a", rumqttc::QoS::AtLeastOnce, false, vec![b'x'; 100 + i])
            .await
            .unwrap();
    }
    for _ in 0..3 {
        common::recv(&mut rx).await.unwrap();
    }
    let during = scrape().await;
    assert_eq!(
        sample(&during, "moat_connections_accepted_total", &mqtts),
        1.0
    );
    assert_eq!(sample(&during, "moat_connections_open", &mqtts), 1.0);
    assert_eq!(sample(&during, "moat_sessions_active", &[]), 1.0);
    assert_eq!(sample(&during, "moat_tls_handshakes_total", &[]), 1.0);
    assert_eq!(
        sample(&during, "moat_connect_outcomes_total", &[("code", "0x00")]),
        1.0
    );
    assert_eq!(
        sample(&during, "moat_upstream_connect_seconds_count", &[]),
        1.0
    );
    // Buckets are cumulative once, as written: the `+Inf` bucket is the count, none above it.
    let buckets: Vec<f64> = during
        .lines()
        .filter(|l| l.starts_with("moat_upstream_connect_seconds_bucket{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 13, "{during}");
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.iter().all(|&b| b <= 1.0),
        "{buckets:?}"
    );
    assert_eq!(
        sample(
            &during,
            "moat_upstream_connect_seconds_bucket",
            &[("le", "+Inf")]
        ),
        1.0
    );
    // CONNECT, SUBSCRIBE, 4 PUBLISH at least (PUBACKs too); 3 deliveries and their acks out.
    assert!(
        sample(&during, "moat_messages_total", &[("direction", "in")]) >= 5.0,
        "{during}"
    );
    assert!(
        sample(&during, "moat_messages_total", &[("direction", "out")]) >= 4.0,
        "{during}"
    );
    assert!(
        sample(&during, "moat_bytes_total", &[("direction", "in")]) >= 300.0,
        "{during}"
    );
    assert!(
        sample(&during, "moat_bytes_total", &[("direction", "out")]) >= 300.0,
        "{during}"
    );
    let denied = during
        .lines()
        .find(|l| l.starts_with("moat_acl_denials_total{"))
        .unwrap_or_else(|| panic!("no denial counted: {during}"));
    assert!(denied.contains("action=\"publish\""), "{denied}");
    assert!(
        denied.contains("test.yaml:8\"}"),
        "the rule is file:line: {denied}"
    );
    assert!(denied.ends_with(" 1"), "{denied}");

    // Refused at admission by the network rules: counted by listener and reason.
    assert!(common::probe_from("127.0.0.70", h.addr, WAIT)
        .await
        .is_some());
    let refused = [("listener", "mqtts"), ("reason", "network")];
    // Ten failed logins from one source: each a CONNACK "bad user name or password", then the
    // source is banned and its next connection refused before TLS.
    let attacker = "127.0.0.20";
    for i in 0..10 {
        let mut s = common::tls_from(&h, attacker).await.unwrap();
        let connect = common::packets::connect_v4(&format!("x{i}"), Some("alice"), Some("wrong"));
        assert_eq!(common::connack_code(&mut s, &connect).await, Some(0x04));
    }
    assert_eq!(
        common::probe_from(attacker, h.addr, WAIT).await,
        Some(vec![])
    );
    let after = scrape().await;
    assert_eq!(
        sample(&after, "moat_connections_refused_total", &refused),
        1.0
    );
    let banned = [("listener", "mqtts"), ("reason", "banned")];
    assert_eq!(
        sample(&after, "moat_connections_refused_total", &banned),
        1.0
    );
    assert_eq!(
        sample(&after, "moat_connect_outcomes_total", &[("code", "0x86")]),
        10.0
    );
    assert!(sample(&after, "moat_bans_active", &[]) >= 1.0, "{after}");
    assert!(sample(&after, "moat_bans_set_total", &[]) >= 1.0, "{after}");
    assert_eq!(
        sample(&after, "moat_connections_accepted_total", &mqtts),
        13.0
    );
    assert_eq!(sample(&after, "moat_tls_handshakes_total", &[]), 11.0);

    // Read at scrape time: the certificate, the process.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        sample(
            &after,
            "moat_cert_expiry_timestamp_seconds",
            &[("cert", "server")]
        ) > now
    );
    assert!(
        sample(
            &after,
            "moat_cert_expiry_timestamp_seconds",
            &[("cert", "client_ca")]
        ) > now
    );
    assert!(sample(&after, "moat_process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&after, "moat_process_open_fds", &[]) > 5.0);

    // The client leaves: nothing stays open.
    client.disconnect().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while sample(&scrape().await, "moat_sessions_active", &[]) != 0.0 {
        assert!(std::time::Instant::now() < deadline, "session never closed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Metric family names a scrape declares (`# TYPE name kind`).
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_metric_is_documented_and_the_shipped_dashboard_and_alerts_use_only_served_ones() {
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        ..Opts::default()
    })
    .await;
    let text = get(admin_addr(&h), "/metrics").await.1;
    let served = families(&text);
    assert!(served.len() > 20, "{text}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/METRICS.md")).unwrap();
    for family in &served {
        assert!(
            doc.contains(&format!("`{family}")),
            "{family} is not in docs/METRICS.md"
        );
    }
    for file in [
        "examples/monitoring/grafana-dashboard.json",
        "examples/monitoring/alerts.yml",
    ] {
        let shipped = std::fs::read_to_string(root.join(file)).unwrap();
        let mut used = 0;
        for (at, _) in shipped.match_indices("moat_") {
            let name: String = shipped[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| served.iter().any(|x| x == f))
                })
                .unwrap_or(&name);
            assert!(
                served.iter().any(|f| f == family),
                "{file} uses {name}, which moat does not serve"
            );
            used += 1;
        }
        assert!(used > 5, "{file}");
    }
}

#[tokio::test]
async fn on_a_unix_socket_the_admin_listener_answers_and_only_its_owner_and_group_may_connect() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    // A socket left by an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let h = common::start(Opts {
        extra: format!("admin: {{ unix: {} }}\n", path.display()),
        ..Opts::default()
    })
    .await;
    assert_eq!(h.running.admin_addr(), Some(path.to_str().unwrap()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    assert_eq!(
        request(unix, "/readyz", None).await,
        (200, "ready\n".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_run_logs_the_admin_port_it_bound_and_counts_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    let policy = d.join("policies/p.yaml");
    std::fs::write(&policy, "anonymous: false\n").unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls: { cert: server.crt, key: server.key }\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: false\n\
         admin: { listen: \"127.0.0.1:0\" }\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let listening = common::wait_for_line(&lines, &mut seen, &["listening", "listener=admin"]);
    let admin: SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap()
        .parse()
        .unwrap();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let reloads = |text: &str, what: &str, outcome: &str| {
        let labels = [("what", what), ("outcome", outcome)];
        (
            sample(text, "moat_reloads_total", &labels),
            sample(text, "moat_reload_last_timestamp_seconds", &labels),
        )
    };
    assert_eq!(
        reloads(&get(admin, "/metrics").await.1, "policy", "refused"),
        (0.0, 0.0)
    );

    // Counted right after the log line is written: scrape until the count is there.
    let until = |what: &'static str, outcome: &'static str, at_least: f64| async move {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let text = get(admin, "/metrics").await.1;
            if reloads(&text, what, outcome).0 >= at_least {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} {outcome}: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };

    // A broken policy file is refused (the running policy stays) and counted.
    common::write_atomically(&policy, b"anonymous: [\n");
    common::wait_for_line(&lines, &mut seen, &["policy reload refused", "file change"]);
    let text = until("policy", "refused", 1.0).await;
    assert!(reloads(&text, "policy", "refused").1 > 1.7e9, "{text}");
    assert_eq!(reloads(&text, "policy", "ok").0, 0.0);
    // SIGHUP reloads the policy (fixed meanwhile) and the TLS files.
    common::write_atomically(&policy, b"anonymous: false\n");
    common::wait_for_line(&lines, &mut seen, &["policy reloaded", "file change"]);
    common::signal(&child, "-HUP");
    common::wait_for_line(&lines, &mut seen, &["TLS material reloaded", "SIGHUP"]);
    let text = until("tls", "ok", 1.0).await;
    assert!(reloads(&text, "policy", "ok").0 >= 1.0, "{text}");
    assert_eq!(reloads(&text, "tls", "ok").0, 1.0, "{text}");
    assert_eq!(reloads(&text, "tls", "refused").0, 0.0, "{text}");
    // moat.yaml itself is counted too: read on that SIGHUP, then refused when broken.
    assert_eq!(reloads(&text, "config", "ok").0, 1.0, "{text}");
    let config = std::fs::read(d.join("moat.yaml")).unwrap();
    common::write_atomically(&d.join("moat.yaml"), b"listeners: [\n");
    common::signal(&child, "-HUP");
    common::wait_for_line(&lines, &mut seen, &["moat.yaml reload refused", "SIGHUP"]);
    let text = until("config", "refused", 1.0).await;
    assert!(reloads(&text, "config", "refused").1 > 1.7e9, "{text}");
    assert_eq!(reloads(&text, "config", "ok").0, 1.0, "{text}");
    common::write_atomically(&d.join("moat.yaml"), &config);

    common::signal(&child, "-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_connections_over_the_cap_wait_for_a_free_slot() {
    let h = common::start(Opts {
        extra: "admin: { listen: \"127.0.0.1:0\", max_connections: 1 }\n".into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    // The one slot, held by a connection that says nothing.
    let idle = tokio::net::TcpStream::connect(admin).await.unwrap();
    // Let the server take that connection (and so its permit) first.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut second = tokio::net::TcpStream::connect(admin).await.unwrap();
        second
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            second.read_to_end(&mut buf),
        )
        .await;
        if waited.is_err() {
            // Not served while the slot is taken; served once it is free.
            drop(idle);
            tokio::time::timeout(WAIT, second.read_to_end(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
            return;
        }
        // The idle connection was not accepted yet when this one came: try again.
        assert!(std::time::Instant::now() < deadline, "the cap never held");
    }
}
