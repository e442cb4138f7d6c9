//! Topic ACLs end to end: real clients (raw bytes, rumqttc 3.1.1 and 5.0, mosquitto) over TLS
//! against the embedded broker, with exact codes, and proof that nothing denied reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::packets::{frame, push_str};
use common::{packets, Harness, Opts, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const ACL: &str = r##"acl:
  - allow: publish
    topics: ["test/marker"]
    users: [alice]
  - deny: publish
    topics: ["forbidden/#"]
    disconnect: true
  - deny: receive
    topics: ["sensors/secret/#"]
  - allow: [subscribe, receive]
    topics: ["sensors/#"]
    groups: [sensors]
  - allow: publish
    topics: ["sensors/#"]
    users: [bob]
  - allow: all
    topics: ["a/+", "allowed/#"]
    users: [alice]
  - allow: subscribe
    topics: ["capped/#"]
    users: [alice]
    max_qos: 1
  - allow: all
    topics: ["devices/{username}/#", "certs/{cert.cn}/#"]
  - allow: all
    topics: ["#"]
    users: [bob]
"##;

fn acl_policy(acl: &str) -> String {
    format!(
        "anonymous: false\nusers:\n  - {{ name: alice, password: \"{}\", groups: [sensors] }}\n  - {{ name: bob, password: \"{}\" }}\n{acl}",
        common::hash("alice-pw"),
        common::hash("bob-pw"),
    )
}

async fn start() -> Harness {
    common::start(Opts {
        policy: acl_policy(ACL),
        ..Opts::default()
    })
    .await
}

// === raw MQTT helpers ===

fn publish(qos: u8, topic: &str, pkid: u16, props: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if let Some(props) = props {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

fn subscribe(pkid: u16, filters: &[(&str, u8)], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (f, qos) in filters {
        push_str(&mut body, f);
        body.push(*qos);
    }
    frame(0x82, &body)
}

/// Reads one whole MQTT packet.
async fn read_packet(s: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut out = common::read_exact(s, 2).await;
    let mut len = usize::from(out[1] & 0x7f);
    let mut shift = 7;
    let mut last = out[1];
    while last & 0x80 != 0 {
        last = common::read_exact(s, 1).await[0];
        out.push(last);
        len |= usize::from(last & 0x7f) << shift;
        shift += 7;
    }
    out.extend(common::read_exact(s, len).await);
    out
}

async fn send(s: &mut TlsStream<TcpStream>, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// A raw session as `user`, CONNACK checked to be a success.
async fn session(h: &Harness, id: &str, user: &str, v5: bool) -> TlsStream<TcpStream> {
    let mut s = h.tls(None).await;
    let pass = format!("{user}-pw");
    let connect = if v5 {
        packets::connect_v5(id, Some(user), Some(&pass))
    } else {
        packets::connect_v4(id, Some(user), Some(&pass))
    };
    send(&mut s, &connect).await;
    let connack = read_packet(&mut s).await;
    assert_eq!(connack[0], 0x20);
    assert_eq!(connack[3], 0, "CONNACK {connack:02x?}");
    s
}

/// Sends PINGREQ and returns every packet that came before PINGRESP (moat's local answers are
/// queued in order, so this is "everything moat answered before now").
async fn until_pong(s: &mut TlsStream<TcpStream>) -> Vec<Vec<u8>> {
    send(s, &[0xc0, 0x00]).await;
    let mut got = Vec::new();
    loop {
        let p = read_packet(s).await;
        if p == [0xd0, 0x00] {
            return got;
        }
        got.push(p);
    }
}

fn topics(seen: &[(String, Vec<u8>)]) -> Vec<&str> {
    seen.iter().map(|(t, _)| t.as_str()).collect()
}

// === publish ===

#[tokio::test]
async fn v311_denied_publish_is_acknowledged_and_dropped_mqtt_3_3_5_2() {
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let mut s = session(&h, "a4", "alice", false).await;
    send(&mut s, &publish(0, "secret/q0", 0, None, b"x")).await;
    send(&mut s, &publish(1, "secret/q1", 1, None, b"x")).await;
    send(&mut s, &publish(2, "secret/q2", 2, None, b"x")).await;
    // MQTT 3.1.1 cannot say no: positive PUBACK / PUBREC [MQTT-3.3.5-2].
    assert_eq!(
        until_pong(&mut s).await,
        vec![vec![0x40, 2, 0, 1], vec![0x50, 2, 0, 2]]
    );
    // moat answers the PUBREL of the QoS 2 exchange it owns.
    send(&mut s, &[0x62, 2, 0, 2]).await;
    assert_eq!(until_pong(&mut s).await, vec![vec![0x70, 2, 0, 2]]);
    send(&mut s, &publish(1, "allowed/x", 3, None, b"ok")).await;
    assert_eq!(read_packet(&mut s).await, [0x40, 2, 0, 3]);
    assert_eq!(
        topics(&common::broker_saw_before_marker(&h, &mut watch).await),
        ["allowed/x"]
    );
}

#[tokio::test]
async fn v5_denied_publish_gets_0x87_and_is_dropped() {
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let mut s = session(&h, "a5", "alice", true).await;
    send(&mut s, &publish(0, "secret/q0", 0, Some(&[]), b"x")).await;
    send(&mut s, &publish(1, "secret/q1", 1, Some(&[]), b"x")).await;
    send(&mut s, &publish(2, "secret/q2", 2, Some(&[]), b"x")).await;
    assert_eq!(
        until_pong(&mut s).await,
        vec![vec![0x40, 3, 0, 1, 0x87], vec![0x50, 3, 0, 2, 0x87]]
    );
    send(&mut s, &publish(1, "allowed/x", 3, Some(&[]), b"ok")).await;
    assert_eq!(read_packet(&mut s).await, [0x40, 2, 0, 3]);
    assert_eq!(
        topics(&common::broker_saw_before_marker(&h, &mut watch).await),
        ["allowed/x"]
    );
}

#[tokio::test]
async fn a_disconnect_rule_ends_the_session_v311_close_v5_0x87() {
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let mut s = session(&h, "d4", "alice", false).await;
    let (got, closed) = common::exchange(&mut s, &publish(0, "forbidden/x", 0, None, b"x")).await;
    assert!(got.is_empty() && closed, "{got:02x?}");
    let mut s = session(&h, "d5", "alice", true).await;
    let (got, closed) =
        common::exchange(&mut s, &publish(1, "forbidden/x", 1, Some(&[]), b"x")).await;
    assert_eq!(got, [0xe0, 2, 0x87, 0]);
    assert!(closed);
    assert!(common::broker_saw_before_marker(&h, &mut watch)
        .await
        .is_empty());
}

#[tokio::test]
async fn alias_remap_to_a_denied_topic_is_judged_on_the_resolved_topic_catalogue_a1() {
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let mut s = session(&h, "alias", "alice", true).await;
    let alias1 = [0x23, 0x00, 0x01];
    // alias 1 → allowed/x, then alias-only: both delivered to allowed/x.
    send(&mut s, &publish(0, "allowed/x", 0, Some(&alias1), b"p1")).await;
    send(&mut s, &publish(0, "", 0, Some(&alias1), b"p2")).await;
    // remap alias 1 → secret/y (denied), then alias-only: both denied with 0x87.
    send(&mut s, &publish(1, "secret/y", 1, Some(&alias1), b"p3")).await;
    send(&mut s, &publish(1, "", 2, Some(&alias1), b"p4")).await;
    assert_eq!(
        until_pong(&mut s).await,
        vec![vec![0x40, 3, 0, 1, 0x87], vec![0x40, 3, 0, 2, 0x87]]
    );
    let seen = common::broker_saw_before_marker(&h, &mut watch).await;
    assert_eq!(
        seen,
        vec![
            ("allowed/x".to_string(), b"p1".to_vec()),
            ("allowed/x".to_string(), b"p2".to_vec())
        ]
    );
}

#[tokio::test]
async fn will_on_a_denied_topic_is_refused_at_connect_catalogue_a18() {
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let before = h.upstream_connects();
    let will_connect = |level: u8, topic: &str| {
        // CONNECT, clean session + will (QoS 0) + user + password.
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0xc6, 0, 60];
        if level == 5 {
            body.push(0);
        }
        push_str(&mut body, "w1");
        if level == 5 {
            body.push(0);
        }
        push_str(&mut body, topic);
        push_str(&mut body, "gone");
        push_str(&mut body, "alice");
        push_str(&mut body, "alice-pw");
        frame(0x10, &body)
    };
    let mut s = h.tls(None).await;
    let (got, closed) = common::exchange(&mut s, &will_connect(4, "factory/plc/cmd")).await;
    assert_eq!(got, [0x20, 2, 0, 0x05]);
    assert!(closed);
    let mut s = h.tls(None).await;
    let (got, closed) = common::exchange(&mut s, &will_connect(5, "$SYS/x")).await;
    assert_eq!(got, [0x20, 3, 0, 0x87, 0]);
    assert!(closed);
    assert_eq!(h.upstream_connects(), before);
    // An allowed will topic connects.
    let mut s = h.tls(None).await;
    send(&mut s, &will_connect(4, "allowed/will")).await;
    assert_eq!(read_packet(&mut s).await, [0x20, 2, 0, 0]);
    assert!(common::broker_saw_before_marker(&h, &mut watch)
        .await
        .is_empty());
}

// === subscribe ===

#[tokio::test]
async fn subscribe_filters_are_judged_one_by_one_and_merged_in_order() {
    let h = start().await;
    for v5 in [false, true] {
        let no = if v5 { 0x87 } else { 0x80 };
        let mut s = session(&h, &format!("s-{v5}"), "alice", v5).await;
        // a/+ allows a/b and a/+, never a/#, +/# or $share/g/#; $share/g/a/c is judged on a/c.
        // (A shared and a plain subscription to the same filter from one client trip a
        // debug assertion in rumqttd's router: see the note in docs/ARCHITECTURE.md.)
        let filters = [
            ("a/b", 1),
            ("a/#", 0),
            ("+/#", 0),
            ("a/+", 2),
            ("$share/g/#", 0),
            ("$share/g/a/c", 0),
            ("capped/x", 2),
        ];
        send(&mut s, &subscribe(1, &filters, v5)).await;
        let suback = read_packet(&mut s).await;
        let codes = &suback[if v5 { 5 } else { 4 }..];
        // max_qos 1 on capped/#: granted QoS 1 instead of 2.
        assert_eq!(codes, [1, no, no, 2, no, 0, 1], "v5={v5}");
        assert_eq!(&suback[2..4], [0, 1]);
    }
}

#[tokio::test]
async fn an_all_denied_subscribe_never_reaches_the_broker() {
    let h = start().await;
    let mut s = session(&h, "deny-all", "alice", false).await;
    send(&mut s, &subscribe(7, &[("#", 0), ("$SYS/#", 0)], false)).await;
    // Had the broker seen pkid 7, its SUBACK would arrive before the one for pkid 8.
    send(&mut s, &subscribe(8, &[("a/b", 0)], false)).await;
    assert_eq!(read_packet(&mut s).await, [0x90, 4, 0, 7, 0x80, 0x80]);
    assert_eq!(read_packet(&mut s).await, [0x90, 3, 0, 8, 0]);
    assert!(until_pong(&mut s).await.is_empty());
}

#[tokio::test]
async fn hash_rule_never_grants_dollar_sys() {
    let h = start().await;
    let mut s = session(&h, "bob-sys", "bob", false).await;
    send(&mut s, &subscribe(2, &[("#", 0), ("$SYS/#", 0)], false)).await;
    assert_eq!(read_packet(&mut s).await, [0x90, 4, 0, 2, 0, 0x80]);
    let mut shared = session(&h, "bob-share", "bob", false).await;
    send(&mut shared, &subscribe(3, &[("$share/g/#", 0)], false)).await;
    assert_eq!(read_packet(&mut shared).await, [0x90, 3, 0, 3, 0]);
    let mut watch = h.broker_watch().await;
    send(&mut s, &publish(1, "$SYS/broker/x", 3, None, b"x")).await;
    assert_eq!(read_packet(&mut s).await, [0x40, 2, 0, 3]);
    assert!(common::broker_saw_before_marker(&h, &mut watch)
        .await
        .is_empty());
}

// === rumqttc and mosquitto ===

/// rumqttc 3.1.1 client whose every incoming packet is reported.
async fn rumqttc4(
    h: &Harness,
    id: &str,
    user: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Packet>,
) {
    use rumqttc::{Event, MqttOptions, TlsConfiguration, Transport};
    let mut opts = MqttOptions::new(id, "localhost", h.addr.port());
    opts.set_credentials(user, format!("{user}-pw"));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        h.client_config(None),
    )));
    let (client, mut ev) = rumqttc::AsyncClient::new(opts, 200);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(p) = e {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(rumqttc::Packet::ConnAck(_))) => {}
        other => panic!("no CONNACK: {other:?}"),
    }
    (client, rx)
}

/// rumqttc 5.0 client whose every incoming packet is reported.
async fn rumqttc5(
    h: &Harness,
    id: &str,
    user: &str,
) -> (
    rumqttc::v5::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{Event, MqttOptions};
    use rumqttc::{TlsConfiguration, Transport};
    let mut opts = MqttOptions::new(id, "localhost", h.addr.port());
    opts.set_credentials(user, format!("{user}-pw"));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        h.client_config(None),
    )));
    let (client, mut ev) = rumqttc::v5::AsyncClient::new(opts, 200);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(p) = e {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Packet::ConnAck(_))) => {}
        other => panic!("no CONNACK: {other:?}"),
    }
    (client, rx)
}

async fn next<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, want: impl Fn(&T) -> bool) -> T {
    loop {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("timed out")
            .expect("client gone");
        if want(&p) {
            return p;
        }
    }
}

#[tokio::test]
async fn rumqttc_v311_sees_suback_failure_and_a_positive_puback() {
    use rumqttc::{Packet, QoS, SubscribeReasonCode};
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let (c, mut rx) = rumqttc4(&h, "rc4", "alice").await;
    c.subscribe("a/#", QoS::AtLeastOnce).await.unwrap();
    let Packet::SubAck(ack) = next(&mut rx, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure]);
    c.subscribe("a/b", QoS::AtLeastOnce).await.unwrap();
    let Packet::SubAck(ack) = next(&mut rx, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    c.publish("secret/x", QoS::AtLeastOnce, false, "no")
        .await
        .unwrap();
    next(&mut rx, |p| matches!(p, Packet::PubAck(_))).await;
    assert!(common::broker_saw_before_marker(&h, &mut watch)
        .await
        .is_empty());
}

/// The DISCONNECT carries its Property Length (0): rumqttc drops the short `e0 01 87` as
/// malformed and would never learn why it was disconnected.
#[tokio::test]
async fn rumqttc_v5_sees_the_disconnect_reason() {
    use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{ConnectionError, MqttOptions, StateError};
    use rumqttc::{TlsConfiguration, Transport};
    let h = start().await;
    let mut opts = MqttOptions::new("rc5-d", "localhost", h.addr.port());
    opts.set_credentials("alice", "alice-pw");
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        h.client_config(None),
    )));
    let (c, mut ev) = rumqttc::v5::AsyncClient::new(opts, 10);
    c.publish("forbidden/x", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = ev.poll().await {
                return e;
            }
        }
    })
    .await
    .expect("the session was not ended");
    // rumqttc reports a server's DISCONNECT as this error; a malformed one as a decode error.
    assert!(
        matches!(
            ended,
            ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code: DisconnectReasonCode::NotAuthorized,
                ..
            })
        ),
        "{ended:?}"
    );
}

#[tokio::test]
async fn rumqttc_v5_sees_not_authorized_in_suback_and_puback() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    let h = start().await;
    let mut watch = h.broker_watch().await;
    let (c, mut rx) = rumqttc5(&h, "rc5", "alice").await;
    c.subscribe("+/#", QoS::AtLeastOnce).await.unwrap();
    let Packet::SubAck(ack) = next(&mut rx, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.return_codes, [SubscribeReasonCode::NotAuthorized]);
    c.publish("secret/x", QoS::AtLeastOnce, false, "no")
        .await
        .unwrap();
    let Packet::PubAck(ack) = next(&mut rx, |p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    c.publish("allowed/y", QoS::AtLeastOnce, false, "yes")
        .await
        .unwrap();
    let Packet::PubAck(ack) = next(&mut rx, |p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.reason, PubAckReason::Success);
    assert_eq!(
        topics(&common::broker_saw_before_marker(&h, &mut watch).await),
        ["allowed/y"]
    );
}

#[tokio::test]
async fn mosquitto_clients_are_refused_with_their_own_words() {
    let h = start().await;
    let ca = h.dir.path().join("ca.crt");
    let port = h.addr.port().to_string();
    let args = |id: &str| {
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
    // Every filter denied: mosquitto_sub gives up.
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("mosquitto_sub")
            .args(args("msub"))
            .args(["-t", "#", "-W", "5"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied"), "mosquitto_sub: {err}");
    // MQTT 5, QoS 1 to a denied topic: the client reports "not authorized".
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(args("mpub"))
        .args(["-V", "5", "-q", "1", "-t", "secret/x", "-m", "no"])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("not authorized"), "mosquitto_pub: {err}");
    // An allowed topic works.
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(args("mpub2"))
        .args(["-V", "5", "-q", "1", "-t", "allowed/x", "-m", "yes"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// === delivery ===

#[tokio::test]
async fn delivery_is_checked_and_dropped_qos_state_is_acknowledged() {
    use rumqttc::QoS;
    let h = start().await;
    let (a4, mut rx4) = rumqttc4(&h, "recv4", "alice").await;
    a4.subscribe("sensors/#", QoS::AtLeastOnce).await.unwrap();
    let (a5, mut rx5) = rumqttc5(&h, "recv5", "alice").await;
    a5.subscribe("sensors/#", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await
        .unwrap();
    let (bob, _bob_rx) = rumqttc4(&h, "bob-pub", "bob").await;
    let mut got4 = Vec::new();
    let mut got5 = Vec::new();
    // Both subscriptions are live once their SUBACKs are in (awaited, not polled).
    loop {
        match tokio::time::timeout(WAIT, rx4.recv()).await {
            Ok(Some(rumqttc::Packet::SubAck(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("no SUBACK (3.1.1): {other:?}"),
        }
    }
    loop {
        match tokio::time::timeout(WAIT, rx5.recv()).await {
            Ok(Some(rumqttc::v5::mqttbytes::v5::Packet::SubAck(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("no SUBACK (5.0): {other:?}"),
        }
    }
    bob.publish("sensors/probe", QoS::AtMostOnce, false, "p")
        .await
        .unwrap();
    // 150 denied deliveries: more than rumqttd's in-flight window (100), so had moat not
    // acknowledged the dropped QoS 1/2 deliveries to the broker, nothing would follow them.
    for i in 0..150 {
        bob.publish("sensors/secret/k", QoS::AtLeastOnce, false, format!("s{i}"))
            .await
            .unwrap();
    }
    bob.publish("sensors/ok", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    // Awaited, not polled: each subscriber's deliveries until sensors/ok.
    let ok = "sensors/ok".to_string();
    while !got4.contains(&ok) {
        match tokio::time::timeout(WAIT, rx4.recv()).await {
            Ok(Some(rumqttc::Packet::Publish(p))) => got4.push(p.topic.clone()),
            Ok(Some(_)) => {}
            other => panic!("sensors/ok never delivered (3.1.1): {got4:?} {other:?}"),
        }
    }
    while !got5.contains(&ok) {
        match tokio::time::timeout(WAIT, rx5.recv()).await {
            Ok(Some(rumqttc::v5::mqttbytes::v5::Packet::Publish(p))) => {
                got5.push(String::from_utf8_lossy(&p.topic).to_string())
            }
            Ok(Some(_)) => {}
            other => panic!("sensors/ok never delivered (5.0): {got5:?} {other:?}"),
        }
    }
    for got in [&got4, &got5] {
        assert!(
            got.iter()
                .all(|t| t == "sensors/probe" || t == "sensors/ok"),
            "{got:?}"
        );
    }
}

#[tokio::test]
async fn reload_revoking_a_subscription_stops_deliveries_at_once() {
    let h = start().await;
    let mut s = session(&h, "live", "alice", false).await;
    send(&mut s, &subscribe(1, &[("sensors/#", 0)], false)).await;
    assert_eq!(read_packet(&mut s).await, [0x90, 3, 0, 1, 0]);
    let mut bob = session(&h, "bob-live", "bob", false).await;
    // Live once a probe comes back.
    let mut live = false;
    for _ in 0..50 {
        send(&mut bob, &publish(0, "sensors/probe", 0, None, b"p")).await;
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(200), read_packet(&mut s)).await {
            assert_eq!(p, publish(0, "sensors/probe", 0, None, b"p"));
            live = true;
            break;
        }
    }
    assert!(live);
    // The new policy keeps alice's subscribe right but lets her receive sensors/ok/# only.
    let revoked = ACL.replace(
        "  - allow: [subscribe, receive]\n    topics: [\"sensors/#\"]\n    groups: [sensors]\n",
        "  - allow: receive\n    topics: [\"sensors/ok/#\"]\n    groups: [sensors]\n",
    );
    assert_ne!(revoked, ACL);
    let text = acl_policy(&revoked);
    let policy = moat::policy::compile(&[moat::policy::PolicySource {
        path: "reloaded.yaml".into(),
        text,
    }])
    .unwrap();
    h.running.reload_policy(policy);
    send(&mut bob, &publish(0, "sensors/x", 0, None, b"revoked")).await;
    send(&mut bob, &publish(0, "sensors/ok/done", 0, None, b"ok")).await;
    // Same filter, same publisher: the broker delivers in order, so the first thing alice gets
    // after the reload is sensors/ok/done (stray probes aside).
    loop {
        let p = read_packet(&mut s).await;
        if p == publish(0, "sensors/probe", 0, None, b"p") {
            continue;
        }
        assert_eq!(p, publish(0, "sensors/ok/done", 0, None, b"ok"));
        break;
    }
}

// === subscribe semantics: withhold ===

/// The conformance policy under the mosquitto-style semantics: `#` is granted, and messages on
/// `test/nosubscribe` are withheld at delivery.
const WITHHOLD: &str = r##"subscribe_overlap: withhold
acl:
  - deny: subscribe
    topics: ["test/nosubscribe"]
  - allow: all
    topics: ["#"]
"##;

#[tokio::test]
async fn withhold_grants_hash_and_withholds_the_denied_topic_from_real_clients() {
    use rumqttc::{Packet, QoS, SubscribeReasonCode};
    use tokio::io::AsyncBufReadExt;
    let h = common::start(Opts {
        policy: acl_policy(WITHHOLD),
        ..Opts::default()
    })
    .await;
    // mosquitto_sub (MQTT 5) on `#`: under strict it would be refused and exit.
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &h.addr.port().to_string()])
        .arg("--cafile")
        .arg(h.ca_file())
        .args(["-u", "alice", "-P", "alice-pw", "-i", "msub-withhold"])
        .args(["-V", "5", "-q", "1", "-t", "#", "-v"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().unwrap()).lines();
    // rumqttc (3.1.1) on `#` too: SUBACK grants it.
    let (c4, mut rx4) = rumqttc4(&h, "rc4-withhold", "alice").await;
    c4.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    let Packet::SubAck(ack) = next(&mut rx4, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // Subscribing to the denied topic by name is still refused.
    c4.subscribe("test/nosubscribe", QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next(&mut rx4, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure]);
    // Probes from bob until mosquitto_sub's subscription is live.
    let (bob, _bob_rx) = rumqttc4(&h, "bob-withhold", "bob").await;
    let mut live = false;
    for _ in 0..50 {
        bob.publish("test/probe", QoS::AtMostOnce, false, "p")
            .await
            .unwrap();
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            let line = line.unwrap().expect("mosquitto_sub ended: `#` refused?");
            assert_eq!(line, "test/probe p");
            live = true;
            break;
        }
    }
    assert!(live, "mosquitto_sub never received a probe");
    // One publisher, one subscription: the broker delivers in order, so whatever arrives
    // before test/ok is what moat let through of the denied message.
    for (topic, payload) in [("test/nosubscribe", "secret"), ("test/ok", "ok")] {
        bob.publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("test/ok never delivered")
            .unwrap()
            .expect("mosquitto_sub ended");
        if line == "test/probe p" {
            continue;
        }
        assert_eq!(line, "test/ok ok");
        break;
    }
    let mut got = Vec::new();
    while !got.contains(&"test/ok".to_string()) {
        if let rumqttc::Packet::Publish(p) =
            next(&mut rx4, |p| matches!(p, Packet::Publish(_))).await
        {
            got.push(p.topic);
        }
    }
    assert!(
        got.iter().all(|t| t == "test/probe" || t == "test/ok"),
        "{got:?}"
    );
    sub.kill().await.unwrap();
}

// === placeholders and hostile identities ===

/// A client certificate with any CN, signed by the test CA (`moat certs` refuses such names).
fn client_cert_unchecked(h: &Harness, cn: &str) -> moat::certs::Pem {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let ca_key = KeyPair::from_pem(&h.pki.ca.key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&h.pki.ca.cert, ca_key).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    moat::certs::Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

#[tokio::test]
async fn hostile_identities_never_fill_a_placeholder_catalogue_a17() {
    let h = common::start(Opts {
        policy: acl_policy(ACL),
        tls_extra: "  cert_identity: false\n".into(),
        ..Opts::default()
    })
    .await;
    let mut watch = h.broker_watch().await;
    // Usernames and client ids with + # / are refused at the door.
    for evil in ["+", "#", "a/b"] {
        let mut s = h.tls(None).await;
        let (got, _) =
            common::exchange(&mut s, &packets::connect_v4("c", Some(evil), Some("x"))).await;
        assert_eq!(got, [0x20, 2, 0, 0x04], "username {evil:?}");
        let mut s = h.tls(None).await;
        let (got, _) = common::exchange(
            &mut s,
            &packets::connect_v5(evil, Some("alice"), Some("alice-pw")),
        )
        .await;
        assert_eq!(got, [0x20, 3, 0, 0x85, 0], "client id {evil:?}");
    }
    // Certificate CNs are not checked as names when the CN is not the identity: the
    // {cert.cn} placeholder must still refuse to turn them into wildcards or levels.
    for (cn, filters, topic) in [
        ("#", vec!["certs/#", "certs/+/#"], "certs/x/y"),
        ("+", vec!["certs/+/#", "certs/#"], "certs/x/y"),
        ("a/b", vec!["certs/a/b/#", "certs/a/#"], "certs/a/b/x"),
    ] {
        let cert = client_cert_unchecked(&h, cn);
        let mut s = common::tls_connect(h.addr, h.client_config(Some(&cert)))
            .await
            .unwrap();
        send(
            &mut s,
            &packets::connect_v4("cn", Some("alice"), Some("alice-pw")),
        )
        .await;
        assert_eq!(read_packet(&mut s).await, [0x20, 2, 0, 0]);
        let subs: Vec<(&str, u8)> = filters.iter().map(|f| (*f, 0)).collect();
        send(&mut s, &subscribe(1, &subs, false)).await;
        let suback = read_packet(&mut s).await;
        assert!(
            suback[4..].iter().all(|c| *c == 0x80),
            "CN {cn:?}: {suback:02x?}"
        );
        send(&mut s, &publish(1, topic, 2, None, b"x")).await;
        assert_eq!(read_packet(&mut s).await, [0x40, 2, 0, 2]);
    }
    // The placeholder works for honest values: alice's own devices/alice/…, not bob's.
    let good = h.pki.client("gw-1");
    let mut s = common::tls_connect(h.addr, h.client_config(Some(&good)))
        .await
        .unwrap();
    send(
        &mut s,
        &packets::connect_v4("gw", Some("alice"), Some("alice-pw")),
    )
    .await;
    assert_eq!(read_packet(&mut s).await, [0x20, 2, 0, 0]);
    send(&mut s, &publish(0, "certs/gw-1/t", 0, None, b"1")).await;
    send(&mut s, &publish(0, "devices/alice/t", 0, None, b"2")).await;
    send(&mut s, &publish(1, "devices/bob/t", 5, None, b"3")).await;
    assert_eq!(read_packet(&mut s).await, [0x40, 2, 0, 5]);
    assert_eq!(
        topics(&common::broker_saw_before_marker(&h, &mut watch).await),
        ["certs/gw-1/t", "devices/alice/t"]
    );
}

#[tokio::test]
async fn no_rule_means_deny_for_an_authenticated_client() {
    let h = common::start(Opts {
        policy: acl_policy(""),
        ..Opts::default()
    })
    .await;
    let mut s = session(&h, "nobody", "alice", true).await;
    send(&mut s, &publish(1, "any/topic", 1, Some(&[]), b"x")).await;
    send(&mut s, &subscribe(2, &[("any/topic", 0)], true)).await;
    assert_eq!(
        until_pong(&mut s).await,
        vec![vec![0x40, 3, 0, 1, 0x87], vec![0x90, 4, 0, 2, 0, 0x87]]
    );
}
