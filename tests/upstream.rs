//! `broker.upstream` as an operator writes it, with the real `moat` binary in front of real
//! mosquitto brokers (issue 16 item 2): a host name, failover and round robin over several
//! addresses, a broker with a password file (fixed credentials, the identity as user name),
//! TLS toward the broker with certificates from `moat certs`, a rotated password file read
//! again on SIGHUP, and a broker that is down. Each
//! refusal reaches the client as its own version's CONNACK code, and the log names the broker
//! address and what it answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mosquitto::{password_file, Mosquitto};
use common::packets::{connect_v4, connect_v5};
use common::process::{write_config, MoatProcess};
use common::Pki;

/// moat in `dir` (harness PKI, default policy) with `broker` as its `broker:` section.
fn moat(dir: &Path, broker: &str) -> (MoatProcess, Pki) {
    let pki = Pki::new(dir);
    write_config(dir, "127.0.0.1:0", broker);
    (MoatProcess::start(dir), pki)
}

/// One client's CONNACK code through moat: alice over MQTT 3.1.1, or over 5.0 when `v5`.
async fn connack(moat: &MoatProcess, pki: &Pki, id: &str, v5: bool) -> u8 {
    let mut s = common::tls_connect(moat.addr, common::client_config(&pki.ca.cert, None))
        .await
        .unwrap();
    let connect = match v5 {
        true => connect_v5(id, Some("alice"), Some("alice-pw")),
        false => connect_v4(id, Some("alice"), Some("alice-pw")),
    };
    common::connack_code(&mut s, &connect)
        .await
        .expect("a CONNACK")
}

/// A loopback port nothing listens on (taken from the OS and released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many clients the broker's log says connected so far (lines read within `wait`).
fn connections_seen(broker: &Mosquitto, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while let Ok(line) = broker
        .log
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if line.contains("New client connected") {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_host_name_upstream_is_resolved_and_a_dead_first_address_fails_over() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = closed_port();
    // A name that never resolves (`.invalid`, RFC 6761), a closed port, then `localhost`.
    let (mut moat, pki) = moat(
        dir.path(),
        &format!(
            "broker:\n  upstream: [\"nowhere.invalid:1883\", \"127.0.0.1:{dead}\", \"localhost:{}\"]\n",
            broker.port
        ),
    );
    assert_eq!(connack(&moat, &pki, "c1", false).await, 0);
    assert_eq!(connack(&moat, &pki, "c2", true).await, 0);
    let failed = moat.wait_for(&["broker address failed", "nowhere.invalid:1883", "resolve"]);
    assert!(!failed.contains("alice-pw"), "{failed}");
    moat.wait_for(&["broker address failed", &format!("127.0.0.1:{dead}")]);
}

#[tokio::test]
async fn round_robin_spreads_sessions_over_the_brokers() {
    let (a, b) = (Mosquitto::start(), Mosquitto::start());
    let dir = tempfile::tempdir().unwrap();
    let (moat, pki) = moat(
        dir.path(),
        &format!(
            "broker:\n  upstream:\n    addresses: [\"127.0.0.1:{}\", \"localhost:{}\"]\n    strategy: round_robin\n",
            a.port, b.port
        ),
    );
    for i in 0..4 {
        assert_eq!(connack(&moat, &pki, &format!("rr{i}"), i % 2 == 1).await, 0);
    }
    let wait = Duration::from_millis(300);
    assert_eq!(
        (connections_seen(&a, wait), connections_seen(&b, wait)),
        (2, 2)
    );
}

#[tokio::test]
async fn a_broker_down_is_server_unavailable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut moat, pki) = moat(
        dir.path(),
        &format!("broker:\n  upstream: \"127.0.0.1:{}\"\n", closed_port()),
    );
    let started = Instant::now();
    assert_eq!(connack(&moat, &pki, "down3", false).await, 0x03);
    assert_eq!(connack(&moat, &pki, "down5", true).await, 0x88);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    moat.wait_for(&["broker unavailable", "127.0.0.1:", "connect"]);
}

#[tokio::test]
async fn fixed_credentials_open_a_broker_with_a_password_file_and_wrong_ones_are_named() {
    let secrets = tempfile::tempdir().unwrap();
    let users = secrets.path().join("mosquitto.pw");
    password_file(&users, &[("edge", "edge-secret-1")]);
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        users.display()
    ));
    let upstream = |password: &str, dir: &Path| {
        std::fs::write(dir.join("broker.pw"), format!("{password}\n")).unwrap();
        format!(
            "broker:\n  upstream:\n    addresses: \"localhost:{}\"\n    credentials: {{ username: edge, password_file: broker.pw }}\n",
            broker.port
        )
    };
    let good = tempfile::tempdir().unwrap();
    let (moat_ok, pki) = moat(good.path(), &upstream("edge-secret-1", good.path()));
    assert_eq!(connack(&moat_ok, &pki, "ok3", false).await, 0);
    assert_eq!(connack(&moat_ok, &pki, "ok5", true).await, 0);

    let bad = tempfile::tempdir().unwrap();
    let (mut moat_bad, pki) = moat(bad.path(), &upstream("wrong-secret-2", bad.path()));
    assert_eq!(connack(&moat_bad, &pki, "bad3", false).await, 0x05);
    assert_eq!(connack(&moat_bad, &pki, "bad5", true).await, 0x87);
    // mosquitto answers a wrong password with "not authorized": 0x05 (3.1.1), 0x87 (5.0).
    let line = moat_bad.wait_for(&[
        "refused moat's CONNECT",
        &format!("localhost:{}", broker.port),
        "(0x05)",
    ]);
    assert!(line.contains("not authorized"), "{line}");
    moat_bad.wait_for(&["broker refused moat's CONNECT", "code=0x87", "localhost:"]);
    let log = moat_bad.log();
    assert!(
        !log.contains("wrong-secret-2"),
        "the password reached the log: {log}"
    );
}

#[tokio::test]
async fn a_rotated_broker_password_file_is_used_after_sighup_and_an_empty_one_keeps_the_old() {
    let secrets = tempfile::tempdir().unwrap();
    let users = secrets.path().join("mosquitto.pw");
    // The broker's side was rotated first: moat still holds the old password.
    password_file(&users, &[("edge", "edge-secret-2")]);
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        users.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.pw");
    std::fs::write(&file, "edge-secret-1\n").unwrap();
    let yaml = format!(
        "broker:\n  upstream:\n    addresses: \"127.0.0.1:{}\"\n    credentials: {{ username: edge, password_file: broker.pw }}\n",
        broker.port
    );
    let (mut moat, pki) = moat(dir.path(), &yaml);
    assert_eq!(connack(&moat, &pki, "old", false).await, 0x05);

    common::write_atomically(&file, b"edge-secret-2\n");
    moat.signal("-HUP");
    moat.wait_for(&["broker.upstream password and TLS files reloaded", "SIGHUP"]);
    assert_eq!(connack(&moat, &pki, "new", false).await, 0);

    // A rotation half done (an empty file) is refused, naming the file; the running one stays.
    std::fs::write(&file, "").unwrap();
    moat.signal("-HUP");
    let line = moat.wait_for(&["broker.upstream files reload refused", "SIGHUP"]);
    assert!(line.contains("broker.pw"), "{line}");
    assert_eq!(connack(&moat, &pki, "kept", true).await, 0);
    let log = moat.log();
    assert!(
        !log.contains("edge-secret"),
        "a password reached the log: {log}"
    );
}

#[tokio::test]
async fn the_identity_as_user_name_with_a_password_from_a_file() {
    let secrets = tempfile::tempdir().unwrap();
    let users = secrets.path().join("mosquitto.pw");
    // The broker knows alice (with moat's shared password), not bob.
    password_file(&users, &[("alice", "moat-to-broker")]);
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        users.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broker.pw"), "moat-to-broker\n").unwrap();
    let (moat, pki) = moat(
        dir.path(),
        &format!(
            "broker:\n  upstream:\n    addresses: \"127.0.0.1:{}\"\n    credentials: {{ identity_as_username: true, password_file: broker.pw }}\n",
            broker.port
        ),
    );
    assert_eq!(connack(&moat, &pki, "alice-1", false).await, 0);
    let mut s = common::tls_connect(moat.addr, common::client_config(&pki.ca.cert, None))
        .await
        .unwrap();
    let code =
        common::connack_code(&mut s, &connect_v4("bob-1", Some("bob"), Some("bob-pw"))).await;
    assert_eq!(code, Some(0x05));
}

#[tokio::test]
async fn tls_toward_the_broker_with_certificates_from_moat_certs() {
    let pki_dir = tempfile::tempdir().unwrap();
    let out = pki_dir.path().to_str().unwrap();
    for args in [
        vec!["certs", "ca", "--cn", "broker CA", "--out", out],
        vec!["certs", "server", "--dns", "localhost", "--out", out],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let p = pki_dir.path();
    // mosquitto started as root reads its files as the `mosquitto` user.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(p.to_path_buf(), 0o755), (p.join("server.key"), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
        p.join("ca.crt").display(),
        p.join("server.crt").display(),
        p.join("server.key").display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let (moat_tls, pki) = moat(
        dir.path(),
        &format!(
            "broker:\n  upstream:\n    addresses: \"localhost:{}\"\n    tls: {{ ca: {} }}\n",
            broker.port,
            p.join("ca.crt").display()
        ),
    );
    assert_eq!(connack(&moat_tls, &pki, "tls3", false).await, 0);
    assert_eq!(connack(&moat_tls, &pki, "tls5", true).await, 0);

    // A broker whose certificate the configured CA did not sign: refused, and the log says TLS.
    let other = tempfile::tempdir().unwrap();
    let (mut moat_wrong, pki) = moat(
        other.path(),
        &format!(
            "broker:\n  upstream:\n    addresses: \"localhost:{}\"\n    tls: {{ ca: ca.crt }}\n",
            broker.port
        ),
    );
    assert_eq!(connack(&moat_wrong, &pki, "tls-bad", false).await, 0x03);
    moat_wrong.wait_for(&["broker address failed", "TLS with"]);
}
