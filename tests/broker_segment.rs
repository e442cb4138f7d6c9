//! On the broker segment no client can hurt another (issue 13), against the embedded rumqttd
//! and against a real mosquitto upstream: what moat drops toward a client never puts the
//! broker's acknowledgements out of order, QoS 2 is exactly once through moat, and a filter
//! the broker cannot serve gets a SUBACK failure code instead of ending the session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::mosquitto::Mosquitto;
use common::raw::{
    ack, expect_ack, publish, publish_complete, read_decoded, send, session, subscribed, until_pong,
};
use common::{Harness, Opts, Tls};
use moat::mqtt::Packet;

/// alice may subscribe to and receive `a/+`, except that `a/secret` is never delivered to her;
/// she may subscribe to `$SYS/#`. bob may do anything.
const ACL: &str = r##"acl:
  - deny: receive
    topics: ["a/secret"]
  - allow: all
    topics: ["a/+"]
    users: [alice]
  - allow: subscribe
    topics: ["$SYS/#"]
    users: [alice]
  - allow: all
    topics: ["#"]
    users: [bob]
"##;

/// Maximum Packet Size the MQTT 5 subscriber announces (property 0x27): 200-byte deliveries
/// are dropped by moat [MQTT-3.1.2-25].
const SMALL_PACKETS: [u8; 5] = [0x27, 0, 0, 0, 128];

async fn harness(upstream: Option<&Mosquitto>) -> Harness {
    common::start(Opts {
        policy: format!(
            "anonymous: false\nusers:\n  - {{ name: alice, password: \"{}\" }}\n  - {{ name: bob, password: \"{}\" }}\n{ACL}",
            common::hash("alice-pw"),
            common::hash("bob-pw"),
        ),
        broker: upstream.map_or_else(|| common::EMBEDDED_BROKER.to_string(), |m| m.upstream_yaml()),
        ..Opts::default()
    })
    .await
}

fn tag(v5: bool) -> &'static str {
    if v5 {
        "v5"
    } else {
        "v4"
    }
}

/// Reads one delivery: (packet id, topic, payload).
async fn delivery(s: &mut Tls, v5: bool) -> (u16, String, Vec<u8>) {
    match read_decoded(s, v5).await {
        Packet::Publish(p) => (
            p.pkid.unwrap_or(0),
            p.topic.as_str().to_string(),
            p.payload.to_vec(),
        ),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

// === acknowledgements in the broker's order ===

/// A subscriber that acknowledges late, with deliveries moat drops (receive deny; in MQTT 5
/// also above its Maximum Packet Size) between its own: it stays connected and gets every
/// allowed message, in order. rumqttd closes a connection on an acknowledgement out of its
/// delivery order, so moat's own acks for the dropped ones must wait for the client's.
async fn drops_between_unacknowledged_deliveries(h: &Harness, v5: bool, qos: u8) {
    let name = format!("{}-q{qos}", tag(v5));
    let props: &[u8] = if v5 { &SMALL_PACKETS } else { &[] };
    let mut sub = session(h, &format!("sub-{name}"), "alice", v5, props).await;
    assert_eq!(subscribed(&mut sub, v5, 1, &[("a/+", qos)]).await, [qos]);
    let mut publ = session(h, &format!("pub-{name}"), "bob", v5, &[]).await;
    let mut ids = 0u16;
    let mut next_id = || {
        ids += 1;
        ids
    };
    let mut got = Vec::new();
    let mut expected = Vec::new();
    for round in 0..3 {
        let (one, two) = (format!("one-{round}"), format!("two-{round}"));
        publish_complete(&mut publ, v5, qos, "a/one", next_id(), one.as_bytes()).await;
        let first = delivery(&mut sub, v5).await;
        publish_complete(&mut publ, v5, qos, "a/secret", next_id(), b"dropped").await;
        if v5 {
            publish_complete(&mut publ, v5, qos, "a/big", next_id(), &[b'x'; 200]).await;
        }
        publish_complete(&mut publ, v5, qos, "a/two", next_id(), two.as_bytes()).await;
        // The broker delivers in order: the dropped ones went by before this one.
        let second = delivery(&mut sub, v5).await;
        // Only now does the subscriber acknowledge, in order; moat's acknowledgements for the
        // dropped deliveries belong between these two.
        let (a, b) = (first.0, second.0);
        if qos == 1 {
            send(&mut sub, &[ack(0x40, a), ack(0x40, b)].concat()).await;
        } else {
            send(&mut sub, &[ack(0x50, a), ack(0x50, b)].concat()).await;
            expect_ack(&mut sub, v5, 0x62, a).await;
            expect_ack(&mut sub, v5, 0x62, b).await;
            send(&mut sub, &[ack(0x70, a), ack(0x70, b)].concat()).await;
        }
        got.extend([first, second].map(|(_, topic, payload)| (topic, payload)));
        expected.extend([
            ("a/one".to_string(), one.into_bytes()),
            ("a/two".to_string(), two.into_bytes()),
        ]);
    }
    assert_eq!(got, expected, "{name}");
    burst_acknowledged_at_once(&mut sub, &mut publ, v5, qos, &name).await;
    // Still connected, and nothing else arrived.
    assert_eq!(until_pong(&mut sub).await, Vec::<Vec<u8>>::new(), "{name}");
}

/// Messages in one burst: within mosquitto's default in-flight window (20). mosquitto 2.0.11
/// did not send what it had queued behind a full QoS 2 window once every PUBCOMP was in (its
/// own log shows them all); 2.0.13 fixed inflight-quota bugs.
const BURST: u16 = 18;

/// The same drops in a burst the subscriber acknowledges as it reads: moat's acknowledgements
/// and the client's race to the broker (the driver must keep the order the state chose).
async fn burst_acknowledged_at_once(sub: &mut Tls, publ: &mut Tls, v5: bool, qos: u8, name: &str) {
    let mut burst = Vec::new();
    let mut expected = Vec::new();
    for i in 0..BURST {
        let (topic, payload) = match i % 3 {
            0 => ("a/secret", b"dropped".to_vec()),
            1 if v5 => ("a/big", vec![b'x'; 200]),
            _ => ("a/burst", i.to_string().into_bytes()),
        };
        if topic == "a/burst" {
            expected.push(payload.clone());
        }
        burst.extend(publish(v5, qos, false, topic, 100 + i, &payload));
    }
    send(publ, &burst).await;
    let first = if qos == 1 { 0x40 } else { 0x50 };
    for i in 0..BURST {
        expect_ack(publ, v5, first, 100 + i).await;
    }
    if qos == 2 {
        let rels: Vec<u8> = (0..BURST).flat_map(|i| ack(0x62, 100 + i)).collect();
        send(publ, &rels).await;
        for i in 0..BURST {
            expect_ack(publ, v5, 0x70, 100 + i).await;
        }
    }
    let (mut got, mut open) = (Vec::new(), 0usize);
    while got.len() < expected.len() || open > 0 {
        match read_decoded(sub, v5).await {
            Packet::Publish(p) => {
                let id = p.pkid.unwrap_or(0);
                send(sub, &ack(first, id)).await;
                open += usize::from(qos == 2);
                got.push(p.payload.to_vec());
            }
            Packet::PubRel(r) => {
                send(sub, &ack(0x70, r.pkid)).await;
                open -= 1;
            }
            other => panic!("{name}: expected a delivery, got {other:?}"),
        }
    }
    assert_eq!(got, expected, "{name}: burst");
}

#[tokio::test]
async fn embedded_broker_keeps_a_subscriber_whose_deliveries_moat_drops() {
    let h = harness(None).await;
    for v5 in [false, true] {
        for qos in [1, 2] {
            drops_between_unacknowledged_deliveries(&h, v5, qos).await;
        }
    }
}

#[tokio::test]
async fn mosquitto_upstream_keeps_a_subscriber_whose_deliveries_moat_drops() {
    let broker = Mosquitto::start();
    let h = harness(Some(&broker)).await;
    for v5 in [false, true] {
        for qos in [1, 2] {
            drops_between_unacknowledged_deliveries(&h, v5, qos).await;
        }
    }
}

// === QoS 2 exactly once ===

/// Reads until PUBCOMP `pkid`, allowing the PUBREC a resend may still bring.
async fn until_pubcomp(s: &mut Tls, v5: bool, pkid: u16) {
    for _ in 0..3 {
        match read_decoded(s, v5).await {
            Packet::PubComp(a) if a.pkid == pkid && a.reason == 0 => return,
            Packet::PubRec(a) if a.pkid == pkid && a.reason == 0 => {}
            other => panic!("expected PUBCOMP {pkid}, got {other:?}"),
        }
    }
    panic!("no PUBCOMP {pkid}");
}

/// A QoS 2 PUBLISH resent (DUP) before its PUBREL, once before and once after the broker's
/// PUBREC can be back, and then each packet id reused for a new message after PUBCOMP: every
/// message arrives once, with its own payload [MQTT-4.3.3-10].
async fn qos2_resend_then_reuse(h: &Harness, v5: bool) {
    let name = tag(v5);
    let mut sub = session(h, &format!("once-sub-{name}"), "alice", v5, &[]).await;
    assert_eq!(subscribed(&mut sub, v5, 1, &[("a/+", 1)]).await, [1]);
    let mut publ = session(h, &format!("once-pub-{name}"), "bob", v5, &[]).await;

    // Packet id 7: the resend follows at once, before the broker has answered.
    let mut both = publish(v5, 2, false, "a/q2", 7, b"one");
    both.extend(publish(v5, 2, true, "a/q2", 7, b"one"));
    send(&mut publ, &both).await;
    expect_ack(&mut publ, v5, 0x50, 7).await;
    send(&mut publ, &ack(0x62, 7)).await;
    until_pubcomp(&mut publ, v5, 7).await;

    // Packet id 8: resent after the PUBREC came back.
    send(&mut publ, &publish(v5, 2, false, "a/q2", 8, b"two")).await;
    expect_ack(&mut publ, v5, 0x50, 8).await;
    send(&mut publ, &publish(v5, 2, true, "a/q2", 8, b"two")).await;
    expect_ack(&mut publ, v5, 0x50, 8).await;
    send(&mut publ, &ack(0x62, 8)).await;
    expect_ack(&mut publ, v5, 0x70, 8).await;

    // Both ids reused for new messages.
    publish_complete(&mut publ, v5, 2, "a/q2", 7, b"three").await;
    publish_complete(&mut publ, v5, 2, "a/q2", 8, b"four").await;
    publish_complete(&mut publ, v5, 0, "a/q2", 0, b"end").await;

    let mut got = Vec::new();
    while got.last().map(Vec::as_slice) != Some(b"end".as_slice()) && got.len() < 8 {
        let (pkid, _, payload) = delivery(&mut sub, v5).await;
        if pkid != 0 {
            send(&mut sub, &ack(0x40, pkid)).await;
        }
        got.push(payload);
    }
    let want: Vec<Vec<u8>> = ["one", "two", "three", "four", "end"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    assert_eq!(got, want, "{name}");
    assert_eq!(until_pong(&mut sub).await, Vec::<Vec<u8>>::new(), "{name}");
}

#[tokio::test]
async fn embedded_broker_qos2_resend_then_reuse_is_exactly_once_mqtt_4_3_3_10() {
    let h = harness(None).await;
    for v5 in [false, true] {
        qos2_resend_then_reuse(&h, v5).await;
    }
}

#[tokio::test]
async fn mosquitto_upstream_qos2_resend_then_reuse_is_exactly_once_mqtt_4_3_3_10() {
    let broker = Mosquitto::start();
    let h = harness(Some(&broker)).await;
    for v5 in [false, true] {
        qos2_resend_then_reuse(&h, v5).await;
    }
}

// === filters the broker cannot serve ===

/// `$SYS/#` and a normal filter in one SUBSCRIBE: the session stays up and the normal filter is
/// served; `$SYS/#` gets `dollar` (what the broker answers, or moat for the embedded one).
async fn dollar_filter_beside_a_normal_one(h: &Harness, v5: bool, dollar: u8) {
    let name = tag(v5);
    let mut s = session(h, &format!("sys-{name}"), "alice", v5, &[]).await;
    assert_eq!(
        subscribed(&mut s, v5, 3, &[("$SYS/#", 0), ("a/b", 0)]).await,
        [dollar, 0],
        "{name}"
    );
    let mut publ = session(h, &format!("sys-pub-{name}"), "bob", v5, &[]).await;
    publish_complete(&mut publ, v5, 1, "a/b", 1, b"still here").await;
    let (_, topic, payload) = delivery(&mut s, v5).await;
    assert_eq!((topic.as_str(), &payload[..]), ("a/b", &b"still here"[..]));
    assert_eq!(until_pong(&mut s).await, Vec::<Vec<u8>>::new(), "{name}");
}

#[tokio::test]
async fn embedded_broker_cannot_serve_dollar_filters_suback_0x83_v5_0x80_v311() {
    let h = harness(None).await;
    dollar_filter_beside_a_normal_one(&h, false, 0x80).await;
    dollar_filter_beside_a_normal_one(&h, true, 0x83).await;
}

#[tokio::test]
async fn mosquitto_upstream_serves_dollar_filters_itself() {
    let broker = Mosquitto::start();
    let h = harness(Some(&broker)).await;
    dollar_filter_beside_a_normal_one(&h, false, 0).await;
    dollar_filter_beside_a_normal_one(&h, true, 0).await;
}
