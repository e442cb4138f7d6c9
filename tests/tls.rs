//! End to end over the TLS listener: real clients, real embedded broker, port 0 everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{packets, Opts};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn rumqttc_v311_publishes_and_receives_through_moat() {
    let h = common::start(Opts::default()).await;
    let (sub, mut rx) = common::rumqttc_v4(&h, "sub-4", Some(("alice", "alice-pw")), None)
        .await
        .unwrap();
    sub.subscribe("plant/+/temp", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (publ, _) = common::rumqttc_v4(&h, "pub-4", Some(("bob", "bob-pw")), None)
        .await
        .unwrap();
    // The subscription is live once a probe published after it comes back.
    let mut got = None;
    for _ in 0..50 {
        publ.publish("plant/7/temp", rumqttc::QoS::AtLeastOnce, false, "21.5")
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got = Some(m);
            break;
        }
    }
    assert_eq!(got, Some(("plant/7/temp".to_string(), b"21.5".to_vec())));
}

#[tokio::test]
async fn rumqttc_v5_publishes_and_receives_through_moat() {
    use rumqttc::v5::mqttbytes::QoS;
    let h = common::start(Opts::default()).await;
    let (sub, mut rx) = common::rumqttc_v5(&h, "sub-5", Some(("alice", "alice-pw")))
        .await
        .unwrap();
    sub.subscribe("plant/#", QoS::ExactlyOnce).await.unwrap();
    let (publ, _) = common::rumqttc_v5(&h, "pub-5", Some(("bob", "bob-pw")))
        .await
        .unwrap();
    let mut got = None;
    for _ in 0..50 {
        publ.publish("plant/9/humidity", QoS::AtLeastOnce, false, "40")
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got = Some(m);
            break;
        }
    }
    assert_eq!(got, Some(("plant/9/humidity".to_string(), b"40".to_vec())));
}

#[tokio::test]
async fn mosquitto_clients_publish_and_subscribe_through_moat() {
    let h = common::start(Opts::default()).await;
    let ca = h.dir.path().join("ca.crt");
    let port = h.addr.port().to_string();
    let common_args = |id: &str| {
        vec![
            "-h".to_string(),
            "localhost".into(),
            "-p".into(),
            port.clone(),
            "--cafile".into(),
            ca.display().to_string(),
            "-u".into(),
            "alice".into(),
            "-P".into(),
            "alice-pw".into(),
            "-i".into(),
            id.into(),
        ]
    };
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(common_args("msub"))
        .args(["-t", "mosq/test", "-C", "1", "-q", "1", "-W", "20"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub is installed (.ci/run installs mosquitto-clients)");
    // mosquitto_sub has no readiness signal for "subscribed": publish until it exits with the
    // message (-C 1), bounded by 40 attempts.
    let mut exited = None;
    for _ in 0..40 {
        let status = tokio::process::Command::new("mosquitto_pub")
            .args(common_args("mpub"))
            .args([
                "-t",
                "mosq/test",
                "-m",
                "hello from mosquitto_pub",
                "-q",
                "1",
            ])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "mosquitto_pub failed");
        if let Ok(status) = tokio::time::timeout(Duration::from_millis(300), sub.wait()).await {
            exited = Some(status.unwrap());
            break;
        }
    }
    let status = exited.expect("mosquitto_sub never received the message");
    assert!(status.success());
    let mut stdout = String::new();
    use tokio::io::AsyncReadExt;
    sub.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "hello from mosquitto_pub");
}

#[tokio::test]
async fn refused_connects_get_the_right_connack_and_never_reach_the_broker() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // 3.1.1: 0x04 bad user name or password, 0x05 not authorized.
        (
            "v4 wrong password",
            packets::connect_v4("c1", Some("alice"), Some("nope")),
            vec![0x20, 2, 0, 0x04],
        ),
        (
            "v4 unknown user",
            packets::connect_v4("c1", Some("mallory"), Some("pw")),
            vec![0x20, 2, 0, 0x04],
        ),
        (
            "v4 anonymous",
            packets::connect_v4("c1", None, None),
            vec![0x20, 2, 0, 0x05],
        ),
        // 5.0: 0x86 bad user name or password, 0x87 not authorized.
        (
            "v5 wrong password",
            packets::connect_v5("c1", Some("alice"), Some("nope")),
            vec![0x20, 3, 0, 0x86, 0],
        ),
        (
            "v5 unknown user",
            packets::connect_v5("c1", Some("mallory"), Some("pw")),
            vec![0x20, 3, 0, 0x86, 0],
        ),
        (
            "v5 anonymous",
            packets::connect_v5("c1", None, None),
            vec![0x20, 3, 0, 0x87, 0],
        ),
    ];
    for (name, connect, expected) in cases {
        let before = h.upstream_connects();
        let mut s = h.tls(None).await;
        // A pipelined publish behind the refused CONNECT must never be forwarded.
        let mut bytes = connect.clone();
        bytes.extend(packets::publish_qos0("leak/after-refused-connect", b"x"));
        let (got, closed) = common::exchange(&mut s, &bytes).await;
        assert_eq!(got, expected, "{name}");
        assert!(closed, "{name}: connection left open");
        assert_eq!(
            h.upstream_connects(),
            before,
            "{name}: an upstream connection was opened"
        );
    }
    assert_eq!(
        common::broker_saw_before_marker(&h, &mut watch).await,
        vec![]
    );
}

#[tokio::test]
async fn required_client_certificates_gate_the_handshake_and_authenticate_by_cn() {
    let h = common::start(Opts {
        client_certs: "required",
        ..Opts::default()
    })
    .await;
    // No certificate: the handshake (or the first read after it, in TLS 1.3) fails.
    let no_cert = common::tls_connect(h.addr, h.client_config(None)).await;
    if let Ok(mut s) = no_cert {
        let (got, closed) = common::exchange(&mut s, &packets::connect_v4("c", None, None)).await;
        assert!(
            got.is_empty() && closed,
            "served a client without a certificate"
        );
    }
    // A certificate from another CA.
    let other_ca = moat::certs::generate_ca("evil CA", 5).unwrap();
    let foreign = moat::certs::generate_client(&other_ca, "alice", 5).unwrap();
    if let Ok(mut s) = common::tls_connect(h.addr, h.client_config(Some(&foreign))).await {
        let (got, closed) = common::exchange(&mut s, &packets::connect_v4("c", None, None)).await;
        assert!(
            got.is_empty() && closed,
            "served a certificate from a foreign CA"
        );
    }
    // An expired certificate from the right CA.
    let now = time::OffsetDateTime::now_utc();
    let expired = moat::certs::generate_client_with_validity(
        &h.pki.ca,
        "alice",
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    if let Ok(mut s) = common::tls_connect(h.addr, h.client_config(Some(&expired))).await {
        let (got, closed) = common::exchange(&mut s, &packets::connect_v4("c", None, None)).await;
        assert!(got.is_empty() && closed, "served an expired certificate");
    }
    assert_eq!(h.upstream_connects(), 0);
    assert!(h.running.stats().handshake_failures >= 2);

    // A good certificate authenticates by CN, without username or password.
    let alice = h.pki.client("alice");
    let mut s = common::tls_connect(h.addr, h.client_config(Some(&alice)))
        .await
        .unwrap();
    s.write_all(&packets::connect_v4("alice-dev", None, None))
        .await
        .unwrap();
    assert_eq!(common::read_exact(&mut s, 4).await, [0x20, 2, 0, 0]);
}

#[tokio::test]
async fn revoked_client_certificate_fails_the_handshake_with_a_pem_or_a_der_crl() {
    for der_crl in [false, true] {
        let h = common::start(Opts {
            client_certs: "required",
            revoked: vec!["carol"],
            der_crl,
            ..Opts::default()
        })
        .await;
        let carol = &h.revoked[0];
        if let Ok(mut s) = common::tls_connect(h.addr, h.client_config(Some(carol))).await {
            let (got, closed) =
                common::exchange(&mut s, &packets::connect_v4("c", None, None)).await;
            assert!(
                got.is_empty() && closed,
                "served a revoked certificate (DER CRL: {der_crl})"
            );
        }
        assert_eq!(h.upstream_connects(), 0);
        // The same CA's other certificates still work.
        let dave = h.pki.client("dave");
        let mut s = common::tls_connect(h.addr, h.client_config(Some(&dave)))
            .await
            .unwrap();
        s.write_all(&packets::connect_v4("dave-1", None, None))
            .await
            .unwrap();
        assert_eq!(common::read_exact(&mut s, 4).await, [0x20, 2, 0, 0]);
    }
}

#[tokio::test]
async fn bad_first_packets_are_closed_and_reach_nothing() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    // PUBLISH first [MQTT-3.1.0-1], PUBACK first, a declared remaining length of 256 MiB.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("publish first", packets::publish_qos0("a/b", b"hello")),
        ("puback first", vec![0x40, 0x02, 0x00, 0x01]),
        ("huge remaining length", vec![0x10, 0xff, 0xff, 0xff, 0x7f]),
        (
            "five-byte remaining length",
            vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
    ];
    for (name, bytes) in cases {
        let mut s = h.tls(None).await;
        let (got, closed) = common::exchange(&mut s, &bytes).await;
        assert!(got.is_empty(), "{name}: answered {got:02x?}");
        assert!(closed, "{name}: left open");
    }
    // Silence after the handshake is closed by the connect timeout: on tokio's paused clock in
    // `session::connect::tests` (no real second spent here).
    assert_eq!(h.upstream_connects(), 0);
    assert_eq!(
        common::broker_saw_before_marker(&h, &mut watch).await,
        vec![]
    );
}

#[tokio::test]
async fn embedded_broker_listens_on_loopback_only() {
    let h = common::start(Opts::default()).await;
    let target = h.running.broker().clone();
    assert!(
        target.v3.first_socket_addr().unwrap().ip().is_loopback()
            && target.v5.first_socket_addr().unwrap().ip().is_loopback()
    );
    // Every local non-loopback address of this machine must refuse the broker's ports.
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    let mut local = Vec::new();
    for pair in lines.windows(2) {
        if pair[1].contains("/32 host LOCAL") {
            if let Ok(ip) = pair[0]
                .trim()
                .trim_start_matches("|-- ")
                .parse::<std::net::IpAddr>()
            {
                if !ip.is_loopback() {
                    local.push(ip);
                }
            }
        }
    }
    for ip in local {
        for port in [
            target.v3.first_socket_addr().unwrap().port(),
            target.v5.first_socket_addr().unwrap().port(),
        ] {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((ip, port)),
            )
            .await;
            assert!(!matches!(r, Ok(Ok(_))), "broker reachable on {ip}:{port}");
        }
    }
    // And the broker refuses a client that does not know moat's per-boot password.
    let mut s = tokio::net::TcpStream::connect(target.v3.first_socket_addr().unwrap())
        .await
        .unwrap();
    s.write_all(&packets::connect_v4(
        "intruder",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await
    .unwrap();
    let mut buf = [0u8; 4];
    use tokio::io::AsyncReadExt;
    let r = tokio::time::timeout(common::WAIT, s.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)) || buf[3] != 0,
        "broker accepted an intruder"
    );
}
