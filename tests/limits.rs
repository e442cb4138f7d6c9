//! Per-client limits, end to end: throttle and disconnect measured against the broker's view,
//! Receive Maximum, subscriptions, topic and client-id sizes, keep alive bounds, per-user
//! overrides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::time::{Duration, Instant};

use common::{packets, Opts};
use tokio::io::AsyncWriteExt;

/// Loopback may connect, no connection rate limits; `limits` is the `limits.client:` body.
fn with_client_limits(client: &str, users: &str) -> Opts {
    Opts {
        network: format!(
            "network:\n  allow: [\"127.0.0.0/8\"]\n\
             limits:\n  connections: {{ per_ip: off, global: off }}\n  client: {client}\n{users}"
        ),
        ..Opts::default()
    }
}

fn publish_v5(topic: &str, qos: u8, id: u16) -> Vec<u8> {
    let mut body = Vec::new();
    packets::push_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.push(0); // no properties
    body.extend_from_slice(b"x");
    packets::frame(0x30 | (qos << 1), &body)
}

/// The reason code of the v5 DISCONNECT at the end of what the server sent before closing.
async fn disconnect_reason(
    s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    send: &[u8],
) -> Option<u8> {
    let (got, closed) = common::exchange(s, send).await;
    assert!(closed, "the server did not close the connection");
    let at = got
        .windows(4)
        .rposition(|w| w[0] == 0xe0 && w[1] == 0x02 && w[3] == 0x00)?;
    got.get(at + 2).copied()
}

/// A v5 CONNECT property, searched in a CONNACK body (good enough for these small CONNACKs).
fn has_property(connack: &[u8], id: u8, value: &[u8]) -> bool {
    let mut needle = vec![id];
    needle.extend_from_slice(value);
    connack
        .get(3..)
        .unwrap_or_default()
        .windows(needle.len())
        .any(|w| w == needle)
}

#[tokio::test]
async fn throttle_slows_a_publisher_end_to_end_and_loses_nothing() {
    // The rate itself is measured without real time in `session::machine::tests` (201
    // messages at 100/s: the last is read 1.99 s after the first); here the throttle is wired
    // end to end: 21 messages at 100/s with a burst of 1 take 0.19 s (the 21st is read 19
    // intervals after the second), all arrive, in order.
    let h = common::start(with_client_limits(
        "{ publish: { rate: 100/s, burst: 1, on_exceed: throttle } }",
        "",
    ))
    .await;
    let mut watch = h.broker_watch().await;
    let mut s = h.tls(None).await;
    let connect = packets::connect_v4("fast", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let mut burst = Vec::new();
    for i in 0..21 {
        burst.extend(packets::publish_qos0("rate/t", format!("{i}").as_bytes()));
    }
    let sent = Instant::now();
    s.write_all(&burst).await.unwrap();
    s.flush().await.unwrap();
    for i in 0..21 {
        let m = watch.next().await.expect("message missing at the broker");
        assert_eq!((m.0.as_str(), m.1), ("rate/t", format!("{i}").into_bytes()));
    }
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(185),
        "21 messages in {took:?}"
    );
    assert!(h.running.stats().throttled > 0);
    assert_eq!(h.running.stats().limit_disconnects, 0);
}

#[tokio::test]
async fn disconnect_mode_closes_a_publisher_above_its_rate_with_0x96() {
    let h = common::start(with_client_limits(
        "{ publish: { rate: 10/s, burst: 5, on_exceed: disconnect } }",
        "",
    ))
    .await;
    let mut watch = h.broker_watch().await;
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("flood", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let mut burst = Vec::new();
    for _ in 0..50 {
        burst.extend(publish_v5("rate/d", 0, 0));
    }
    assert_eq!(disconnect_reason(&mut s, &burst).await, Some(0x96));
    let passed = common::broker_saw_before_marker(&h, &mut watch).await;
    assert!(
        (5..=6).contains(&passed.len()),
        "{} publishes reached the broker",
        passed.len()
    );
    assert_eq!(h.running.stats().limit_disconnects, 1);
}

#[tokio::test]
async fn byte_rate_in_disconnect_mode_is_0x97_and_3_1_1_is_closed() {
    let h = common::start(with_client_limits(
        "{ publish: { bytes: 1KiB/s, byte_burst: 2KiB, on_exceed: disconnect } }",
        "",
    ))
    .await;
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("bytes", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let mut big = Vec::new();
    packets::push_str(&mut big, "b/t");
    big.push(0);
    big.extend(vec![b'x'; 1500]);
    let one = packets::frame(0x30, &big);
    let two: Vec<u8> = one.iter().chain(one.iter()).copied().collect();
    assert_eq!(disconnect_reason(&mut s, &two).await, Some(0x97));

    let mut s = h.tls(None).await;
    let connect = packets::connect_v4("bytes3", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let p = packets::publish_qos0("b/t", &[b'x'; 1500]);
    let (got, closed) = common::exchange(&mut s, &[p.clone(), p].concat()).await;
    assert!(
        closed && got.is_empty(),
        "3.1.1 is closed without a word: {got:02x?}"
    );
}

#[tokio::test]
async fn receive_maximum_is_advertised_and_enforced_with_0x93_mqtt_3_3_4_7() {
    let h = common::start(with_client_limits(
        "{ max_inflight: 2 }",
        "  users:\n    bob: { max_inflight: 7 }\n",
    ))
    .await;
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("inflight", Some("alice"), Some("alice-pw"));
    let connack = common::connack(&mut s, &connect).await.unwrap();
    assert_eq!(connack[1], 0);
    assert!(has_property(&connack, 0x21, &[0, 2]), "{connack:02x?}");
    // Three QoS 1 PUBLISHes in one write: the third is one more than Receive Maximum.
    let three: Vec<u8> = (1..=3).flat_map(|id| publish_v5("q/t", 1, id)).collect();
    assert_eq!(disconnect_reason(&mut s, &three).await, Some(0x93));

    // bob's own limit (users: override) is advertised to bob.
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("bob", Some("bob"), Some("bob-pw"));
    let connack = common::connack(&mut s, &connect).await.unwrap();
    assert!(has_property(&connack, 0x21, &[0, 7]), "{connack:02x?}");
    // Acknowledged exchanges free their place: 20 QoS 1 PUBLISHes one after another pass.
    for id in 1..=20u16 {
        s.write_all(&publish_v5("q/t", 1, id)).await.unwrap();
        let ack = common::read_exact(&mut s, 4).await;
        assert_eq!(ack[0] >> 4, 4, "PUBACK expected, got {ack:02x?}");
    }
}

#[tokio::test]
async fn subscriptions_topic_levels_and_client_id_are_capped() {
    let h = common::start(with_client_limits(
        "{ subscribe: { max_per_session: 2 }, max_topic_levels: 3, max_client_id: 8 }",
        "",
    ))
    .await;
    // Three filters when two are allowed: 0x97 Quota exceeded.
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("subs", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    let mut body = vec![0, 1, 0];
    for f in ["a/1", "a/2", "a/3"] {
        packets::push_str(&mut body, f);
        body.push(0);
    }
    let subscribe = packets::frame(0x82, &body);
    assert_eq!(disconnect_reason(&mut s, &subscribe).await, Some(0x97));

    // Four levels when three are allowed: 0x90 Topic Name invalid.
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("levels", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
    assert_eq!(
        disconnect_reason(&mut s, &publish_v5("a/b/c/d", 0, 0)).await,
        Some(0x90)
    );

    // A client id longer than 8 bytes: CONNACK 0x85 (v5) / 0x02 (3.1.1).
    let mut s = h.tls(None).await;
    let connect = packets::connect_v5("0123456789", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0x85));
    let mut s = h.tls(None).await;
    let connect = packets::connect_v4("0123456789", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &connect).await, Some(0x02));
    assert_eq!(h.upstream_connects(), 2);
}

#[tokio::test]
async fn keep_alive_below_the_minimum_is_raised_and_announced() {
    let h = common::start(with_client_limits(
        "{ keepalive: { min: 5s, max: 30s } }",
        "",
    ))
    .await;
    for (asked, told) in [(1u16, 5u16), (600, 30)] {
        let mut connect = packets::connect_v5("ka", Some("alice"), Some("alice-pw"));
        // Keep alive sits after the protocol name (6), level (1) and flags (1): bytes 10–11.
        connect[10..12].copy_from_slice(&asked.to_be_bytes());
        let mut s = h.tls(None).await;
        let connack = common::connack(&mut s, &connect).await.unwrap();
        assert_eq!(connack[1], 0);
        assert!(
            has_property(&connack, 0x13, &told.to_be_bytes()),
            "asked {asked}, CONNACK {connack:02x?}"
        );
    }
}

#[tokio::test]
async fn flapping_bans_the_client_id() {
    let h = common::start(Opts {
        network: "network:\n  allow: [\"127.0.0.0/8\"]\n\
                  limits:\n  connections: { per_ip: off, global: off }\n\
                  auto_ban:\n  failed_auth: { count: 0, within: 1m, ban_for: 1m }\n  \
                  flapping: { count: 3, within: 1m, ban_for: 1m, ban: [client_id] }\n"
            .into(),
        ..Opts::default()
    })
    .await;
    let connect = packets::connect_v5("flappy", Some("alice"), Some("alice-pw"));
    for _ in 0..3 {
        let mut s = h.tls(None).await;
        assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
        // DISCONNECT, and wait for the close so the session has ended.
        let (_, closed) = common::exchange(&mut s, &[0xe0, 0x00]).await;
        assert!(closed);
    }
    // The third end is counted when the session task finishes: poll, bounded.
    let mut code = None;
    for _ in 0..50 {
        let mut s = h.tls(None).await;
        code = common::connack_code(&mut s, &connect).await;
        if code == Some(0x8a) {
            break;
        }
        let _ = common::exchange(&mut s, &[0xe0, 0x00]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, Some(0x8a));
    // Only the client id is banned.
    let mut s = h.tls(None).await;
    let other = packets::connect_v5("steady", Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut s, &other).await, Some(0));
}
