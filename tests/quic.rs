//! MQTT over QUIC against the real listener and embedded broker: an in-process quinn client,
//! mosquitto_pub/mosquitto_sub through the real `moat tunnel` binary, and the refusals (ALPN,
//! extra streams, denied source, migration).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::quic::{self as qc, QuicMqtt};
use common::{packets, Harness, Opts};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

async fn start(quic_options: &str, client_certs: &'static str) -> Harness {
    common::start(Opts {
        client_certs,
        listeners: format!(
            "  - {{ name: quic, kind: quic, bind: \"127.0.0.1:0\"{quic_options} }}\n"
        ),
        ..Opts::default()
    })
    .await
}

fn subscribe_v4(id: u16, filter: &str) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    packets::push_str(&mut body, filter);
    body.push(0);
    packets::frame(0x82, &body)
}

#[tokio::test]
async fn quinn_client_publishes_and_subscribes_over_quic() {
    let h = start("", "optional").await;
    let addr = h.addr_of("quic");
    let endpoint = qc::endpoint();
    let mut sub = QuicMqtt::open(&endpoint, addr, &h).await;
    sub.write(&packets::connect_v4(
        "q-sub",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await;
    assert_eq!(sub.read_exact(4).await, CONNACK_OK);
    sub.write(&subscribe_v4(1, "quic/+")).await;
    assert_eq!(sub.read_exact(5).await, [0x90, 3, 0, 1, 0]);
    let mut publ = QuicMqtt::open(&endpoint, addr, &h).await;
    publ.write(&packets::connect_v5("q-pub", Some("bob"), Some("bob-pw")))
        .await;
    let connack = publ.read_exact(2).await;
    assert_eq!(connack[0], 0x20);
    let rest = publ.read_exact(connack[1] as usize).await;
    assert_eq!(rest[1], 0, "v5 CONNACK reason");
    // v5 PUBLISH: topic, empty properties, payload.
    let mut body = Vec::new();
    packets::push_str(&mut body, "quic/t");
    body.push(0);
    body.extend_from_slice(b"over quic");
    publ.write(&packets::frame(0x30, &body)).await;
    let expected = packets::publish_qos0("quic/t", b"over quic");
    assert_eq!(sub.read_exact(expected.len()).await, expected);
    // A clean DISCONNECT ends the stream and the server finishes its side.
    sub.write(&[0xe0, 0]).await;
    let (rest, closed) = sub.read_until_close().await;
    assert!(rest.is_empty() && closed);
}

#[tokio::test]
async fn wrong_alpn_is_refused_before_any_session() {
    let h = start("", "optional").await;
    let addr = h.addr_of("quic");
    let endpoint = qc::endpoint();
    // Catalogue §D.62: `h3` or no ALPN → no_application_protocol (crypto error 0x178).
    for alpn in [vec![&b"h3"[..]], vec![]] {
        let config = qc::client_config_alpn(&h.pki.ca.cert, &alpn, Duration::from_secs(5));
        let err = qc::connect(&endpoint, addr, config).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("120")
                || text.contains("no_application_protocol")
                || text.contains("0x178"),
            "{alpn:?}: {text}"
        );
    }
    // `mqtt` among others is fine.
    let config = qc::client_config_alpn(&h.pki.ca.cert, &[b"h3", b"mqtt"], Duration::from_secs(5));
    qc::connect(&endpoint, addr, config).await.unwrap();
    assert_eq!(h.upstream_connects(), 0);
}

#[tokio::test]
async fn second_stream_and_unidirectional_streams_are_not_granted() {
    let h = start("", "optional").await;
    let endpoint = qc::endpoint();
    let mut m = QuicMqtt::open(&endpoint, h.addr_of("quic"), &h).await;
    m.write(&packets::connect_v4(
        "one-stream",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await;
    assert_eq!(m.read_exact(4).await, CONNACK_OK);
    // Catalogue §D.63: the server granted one bidirectional and no unidirectional stream, so
    // the client's stack cannot open more; quinn's open waits for credit that never comes.
    // (There is no signal for "credit refused": a bounded wait is the test.)
    let second = tokio::time::timeout(Duration::from_millis(300), m.conn.open_bi()).await;
    assert!(second.is_err(), "a second bidirectional stream was granted");
    let uni = tokio::time::timeout(Duration::from_millis(300), m.conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was granted");
    // The MQTT stream is unaffected.
    m.write(&[0xc0, 0]).await;
    assert_eq!(m.read_exact(2).await, [0xd0, 0]);
}

#[tokio::test]
async fn denied_source_address_never_completes_a_handshake() {
    // `deny_sources` is the stop-gap admission hook (see server/quic.rs `admit_quic`).
    let h = start(", quic: { deny_sources: [127.0.0.0/8] }", "optional").await;
    let endpoint = qc::endpoint();
    let config = qc::client_config_alpn(&h.pki.ca.cert, &[b"mqtt"], Duration::from_millis(700));
    let err = qc::connect(&endpoint, h.addr_of("quic"), config)
        .await
        .unwrap_err();
    // Ignored, not refused: the client heard nothing and gave up.
    assert_eq!(err, quinn::ConnectionError::TimedOut);
    let stats = h.running.stats();
    assert!(stats.refused_at_accept >= 1, "{stats:?}");
    assert_eq!(
        stats.handshake_failures, 0,
        "a handshake was started: {stats:?}"
    );
    assert_eq!(h.upstream_connects(), 0);
}

#[tokio::test]
async fn migrated_connection_is_not_followed() {
    let h = start("", "optional").await;
    let endpoint = qc::endpoint();
    let config = qc::client_config_alpn(&h.pki.ca.cert, &[b"mqtt"], Duration::from_secs(1));
    let conn = qc::connect(&endpoint, h.addr_of("quic"), config)
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&packets::connect_v4(
        "mover",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await
    .unwrap();
    let mut connack = [0u8; 4];
    recv.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, CONNACK_OK);
    // Catalogue §D.64: the client moves to a new address (port); migration is off, so the
    // server drops everything from there and the connection dies of silence.
    endpoint
        .rebind(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .unwrap();
    send.write_all(&[0xc0, 0]).await.unwrap();
    let reason = tokio::time::timeout(common::WAIT, conn.closed())
        .await
        .unwrap();
    // Either way the server did not follow: it stayed silent (the client times out) or it
    // answered the unknown path with a stateless reset, which quinn may do for a packet it
    // cannot route. Only a PINGRESP would mean the migration was accepted.
    assert!(
        matches!(
            reason,
            quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset
        ),
        "{reason:?}"
    );
    let mut buf = [0u8; 2];
    assert!(
        recv.read_exact(&mut buf).await.is_err(),
        "PINGRESP after migration"
    );
}

#[tokio::test]
async fn client_certificate_over_quic_authenticates_by_cn() {
    let h = start("", "required").await;
    let alice = h.pki.client("alice");
    let dir = h.dir.path();
    std::fs::write(dir.join("alice.crt"), &alice.cert).unwrap();
    std::fs::write(dir.join("alice.key"), &alice.key).unwrap();
    let config = moat::transport::quic_client::client_config(
        &h.ca_file(),
        Some((&dir.join("alice.crt"), &dir.join("alice.key"))),
    )
    .unwrap();
    let endpoint = qc::endpoint();
    let conn = qc::connect(&endpoint, h.addr_of("quic"), config)
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&packets::connect_v4("alice-quic", None, None))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(common::WAIT, recv.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, CONNACK_OK);
    // Without a certificate the required-certificate handshake fails.
    let err = qc::connect(&endpoint, h.addr_of("quic"), qc::client_config(&h)).await;
    if let Ok(conn) = err {
        let reason = tokio::time::timeout(common::WAIT, conn.closed())
            .await
            .unwrap();
        assert!(
            matches!(reason, quinn::ConnectionError::ConnectionClosed(_)),
            "{reason}"
        );
    }
}

/// `moat tunnel` as the real binary, on a free port; returns the process and its port.
async fn tunnel(h: &Harness) -> (tokio::process::Child, u16) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["tunnel", "--listen", "127.0.0.1:0", "--connect"])
        .arg(h.addr_of("quic").to_string())
        .arg("--ca")
        .arg(h.ca_file())
        .args(["--server-name", "localhost"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(common::WAIT, lines.next_line())
        .await
        .expect("tunnel never said where it listens")
        .unwrap()
        .expect("tunnel exited");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(',').parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr.port())
}

#[tokio::test]
async fn mosquitto_clients_reach_the_broker_through_moat_tunnel() {
    let h = start("", "optional").await;
    let (_tunnel, port) = tunnel(&h).await;
    let port = port.to_string();
    let args = |id: &str| {
        vec![
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "alice",
            "-P",
            "alice-pw",
            "-i",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([id.to_owned()])
        .collect::<Vec<_>>()
    };
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(args("tsub"))
        .args(["-t", "tunnel/test", "-C", "1", "-q", "1", "-W", "20"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub is installed (.ci/run installs mosquitto-clients)");
    // mosquitto_sub has no readiness signal for "subscribed": publish until it exits with the
    // message (-C 1), bounded by 40 attempts.
    let mut exited = None;
    for _ in 0..40 {
        let status = tokio::process::Command::new("mosquitto_pub")
            .args(args("tpub"))
            .args(["-t", "tunnel/test", "-m", "through the tunnel", "-q", "1"])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "mosquitto_pub through the tunnel failed");
        if let Ok(status) = tokio::time::timeout(Duration::from_millis(300), sub.wait()).await {
            exited = Some(status.unwrap());
            break;
        }
    }
    let status = exited.expect("mosquitto_sub never received the message");
    assert!(status.success());
    let mut stdout = String::new();
    sub.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "through the tunnel");
    // A refused login through the tunnel gets moat's CONNACK (5 = not authorized).
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "alice", "-P", "wrong"])
        .args(["-t", "tunnel/x", "-m", "x"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("not authorised") || stderr.contains("bad user name or password"),
        "{stderr}"
    );
}
