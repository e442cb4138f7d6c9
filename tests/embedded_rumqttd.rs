//! The embedded segment behaves like a conformant MQTT 5 broker (issue 18): what a client sees
//! through moat with the patched rumqttd (`vendor/rumqttd`, PATCHES.md), one test per gap rumqttd
//! 0.20 had, and two at the broker itself (what moat never lets a client send it).
//!
//! Negative checks ("nothing else arrived") use a marker: a message the subscriber is sure to
//! get, published after the one that must not arrive, on a filter of its own. rumqttd handles one
//! connection's packets in order and moat forwards them in order, so anything owed before the
//! marker would have come first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::raw::{
    ack, connect_with, publish, publish_complete, read_decoded, resume, send, session, subscribed,
    unsubscribe,
};
use common::{Harness, Opts, Tls};
use moat::mqtt::{self, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: bool = true;

/// Session Expiry Interval (property 0x11) of `secs` seconds.
fn expiry(secs: u32) -> Vec<u8> {
    let mut p = vec![0x11];
    p.extend_from_slice(&secs.to_be_bytes());
    p
}

/// Subscription options: QoS, No Local, Retain As Published, Retain Handling (§3.8.3.1).
fn options(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    qos | if no_local { 0x04 } else { 0 }
        | if retain_as_published { 0x08 } else { 0 }
        | (retain_handling << 4)
}

/// A PUBLISH with the RETAIN flag.
fn retained(qos: u8, topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = publish(V5, qos, false, topic, pkid, payload);
    p[0] |= 0x01;
    p
}

/// A v5 DISCONNECT (normal) with these properties.
fn disconnect(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, props.len() as u8];
    body.extend_from_slice(props);
    common::packets::frame(0xe0, &body)
}

/// Says goodbye and waits until moat closes the connection.
async fn leave(mut s: Tls, props: &[u8]) {
    send(&mut s, &disconnect(props)).await;
    let (_, closed) = common::read_until_close(&mut s, common::WAIT).await;
    assert!(closed, "moat kept the connection open after DISCONNECT");
}

/// Reads the next packet, which must be a delivery, and completes its QoS 1/2 exchange.
async fn delivery(s: &mut Tls, v5: bool) -> mqtt::Publish {
    let p = match read_decoded(s, v5).await {
        Packet::Publish(p) => p,
        other => panic!("expected a delivery, got {other:?}"),
    };
    match (p.qos, p.pkid) {
        (QoS::AtLeastOnce, Some(id)) => send(s, &ack(0x40, id)).await,
        (QoS::ExactlyOnce, Some(id)) => {
            send(s, &ack(0x50, id)).await;
            match read_decoded(s, v5).await {
                Packet::PubRel(r) if r.pkid == id => send(s, &ack(0x70, id)).await,
                other => panic!("expected PUBREL {id}, got {other:?}"),
            }
        }
        _ => {}
    }
    p
}

/// (topic, payload) of a delivery.
fn what(p: &mqtt::Publish) -> (String, String) {
    (
        p.topic.as_str().to_string(),
        String::from_utf8_lossy(&p.payload).into_owned(),
    )
}

/// `publisher` sends the marker (QoS 0 on `marker`); the next delivery to `subscriber` must be
/// it: nothing else was owed before.
async fn nothing_before_marker(subscriber: &mut Tls, publisher: &mut Tls, v5: bool, why: &str) {
    send(
        publisher,
        &publish(v5, 0, false, "marker", 0, why.as_bytes()),
    )
    .await;
    let got = delivery(subscriber, v5).await;
    assert_eq!(
        what(&got),
        ("marker".to_string(), why.to_string()),
        "{why}: something arrived before the marker"
    );
}

async fn harness() -> Harness {
    common::start(Opts::default()).await
}

// === QoS of deliveries and the subscriber's Receive Maximum ===

/// Every message is delivered at the lower of its own QoS and the subscription's, in 3.1.1 and
/// in 5.0 [MQTT-3.8.4-8] (rumqttd 0.20 used the subscription's QoS for every delivery).
#[tokio::test]
async fn delivered_qos_is_the_lower_of_published_and_granted_mqtt_3_8_4_8() {
    let h = harness().await;
    for v5 in [false, true] {
        let tag = if v5 { "v5" } else { "v4" };
        let mut sub = session(&h, &format!("qos-sub-{tag}"), "alice", v5, &[]).await;
        let filters = [("q/0", 0), ("q/1", 1), ("q/2", 2)];
        assert_eq!(subscribed(&mut sub, v5, 1, &filters).await, [0, 1, 2]);
        let mut publ = session(&h, &format!("qos-pub-{tag}"), "bob", v5, &[]).await;
        let mut id = 0;
        for (filter, _) in filters {
            for qos in 0..=2u8 {
                id += 1;
                publish_complete(&mut publ, v5, qos, filter, id, &[b'0' + qos]).await;
            }
        }
        let mut got = Vec::new();
        for _ in 0..9 {
            let p = delivery(&mut sub, v5).await;
            got.push((what(&p), p.qos as u8));
        }
        got.sort();
        let mut expected = Vec::new();
        for (filter, granted) in filters {
            for qos in 0..=2u8 {
                let payload = char::from(b'0' + qos).to_string();
                expected.push(((filter.to_string(), payload), qos.min(granted)));
            }
        }
        expected.sort();
        assert_eq!(
            got, expected,
            "{tag}: (topic, published QoS) → delivered QoS"
        );
    }
}

/// A subscriber's Receive Maximum bounds its unacknowledged QoS 1/2 deliveries
/// [MQTT-3.3.4-9]; the next one follows its PUBACK. Meanwhile its own QoS 1 PUBLISH is still
/// acknowledged (the broker holds deliveries, not acknowledgements).
#[tokio::test]
async fn receive_maximum_of_the_subscriber_is_honoured_mqtt_3_3_4_9() {
    let h = harness().await;
    let receive_maximum = [0x21, 0, 2];
    let mut sub = session(&h, "rm-sub", "alice", V5, &receive_maximum).await;
    assert_eq!(subscribed(&mut sub, V5, 1, &[("rm/x", 1)]).await, [1]);
    let mut publ = session(&h, "rm-pub", "bob", V5, &[]).await;
    for i in 1..=3u16 {
        publish_complete(&mut publ, V5, 1, "rm/x", i, format!("m{i}").as_bytes()).await;
    }
    let mut open = Vec::new();
    for _ in 0..2 {
        match read_decoded(&mut sub, V5).await {
            Packet::Publish(p) if p.qos == QoS::AtLeastOnce => open.push(p),
            other => panic!("expected a QoS 1 delivery, got {other:?}"),
        }
    }
    // Two unacknowledged: the third waits. The broker handled it before this PUBLISH, so had
    // it been sent, it would come before this PUBLISH's PUBACK.
    send(&mut sub, &publish(V5, 1, false, "rm/own", 9, b"own")).await;
    common::raw::expect_ack(&mut sub, V5, 0x40, 9).await;
    send(&mut sub, &ack(0x40, open[0].pkid.unwrap())).await;
    let third = delivery(&mut sub, V5).await;
    assert_eq!(what(&third), ("rm/x".to_string(), "m3".to_string()));
}

// === Session Expiry ===

/// A session survives its client's disconnect for its Session Expiry Interval, with its
/// subscriptions and the QoS 1 messages published meanwhile [MQTT-3.1.2-23], and is gone after
/// it; a Session Expiry Interval in DISCONNECT replaces the CONNECT's (§3.14.2.2.2).
/// The interval itself is what is tested, so this test waits for it to pass (1.5 s).
#[tokio::test]
async fn session_survives_disconnect_for_its_expiry_mqtt_3_1_2_23() {
    let h = harness().await;
    // Resumed within 10 s, with the messages published while it was away.
    let (mut keeper, present) = resume(&h, "keeper", "alice", true, V5, &expiry(10)).await;
    assert!(!present);
    let filters = [("se/#", 1), ("se-more/#", 1), ("marker", 0)];
    assert_eq!(subscribed(&mut keeper, V5, 1, &filters).await, [1, 1, 0]);
    leave(keeper, &[]).await;
    let mut publ = session(&h, "se-pub", "bob", V5, &[]).await;
    publish_complete(&mut publ, V5, 1, "se/1", 1, b"one").await;
    publish_complete(&mut publ, V5, 1, "se/2", 2, b"two").await;
    let (mut keeper, present) = resume(&h, "keeper", "alice", false, V5, &expiry(1)).await;
    assert!(present, "the session was not kept [MQTT-3.1.2-23]");
    let got = [
        delivery(&mut keeper, V5).await,
        delivery(&mut keeper, V5).await,
    ];
    assert_eq!(got.each_ref().map(|p| p.qos), [QoS::AtLeastOnce; 2]);
    assert_eq!(
        got.each_ref().map(what),
        [("se/1", "one"), ("se/2", "two")].map(|(t, p)| (t.to_string(), p.to_string()))
    );
    // A resumed subscription is the new connection's: UNSUBSCRIBE ends it.
    send(&mut keeper, &unsubscribe(V5, 2, &["se-more/#"])).await;
    assert!(matches!(read_decoded(&mut keeper, V5).await, Packet::UnsubAck(a) if a.pkid == 2));
    publish_complete(&mut publ, V5, 1, "se-more/x", 3, b"unsubscribed").await;
    nothing_before_marker(&mut keeper, &mut publ, V5, "resumed, unsubscribed").await;
    // Now 1 s (this CONNECT's interval); `stretched` asks for 60 s in its DISCONNECT.
    leave(keeper, &[]).await;
    let (stretched, _) = resume(&h, "stretched", "alice", true, V5, &expiry(1)).await;
    leave(stretched, &expiry(60)).await;
    publish_complete(&mut publ, V5, 1, "se/3", 4, b"three").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (_, present) = resume(&h, "stretched", "alice", false, V5, &expiry(0)).await;
    assert!(present, "DISCONNECT's Session Expiry Interval was ignored");
    let (mut keeper, present) = resume(&h, "keeper", "alice", false, V5, &[]).await;
    assert!(!present, "the session outlived its Session Expiry Interval");
    // Gone with its subscription and its queued message: only the marker arrives.
    assert_eq!(subscribed(&mut keeper, V5, 1, &[("marker", 0)]).await, [0]);
    publish_complete(&mut publ, V5, 1, "se/4", 5, b"four").await;
    nothing_before_marker(&mut keeper, &mut publ, V5, "expired session").await;
}

/// Without a Session Expiry Interval (0) the session ends with the connection, Clean Start 0
/// or not [MQTT-3.1.2-23]; a DISCONNECT that sets 0 ends a longer one.
#[tokio::test]
async fn session_expiry_zero_ends_the_session_with_the_connection() {
    let h = harness().await;
    let (mut s, _) = resume(&h, "brief", "alice", false, V5, &[]).await;
    assert_eq!(subscribed(&mut s, V5, 1, &[("b/#", 1)]).await, [1]);
    leave(s, &[]).await;
    let (s, present) = resume(&h, "brief", "alice", false, V5, &expiry(60)).await;
    assert!(
        !present,
        "a session without Session Expiry Interval was kept"
    );
    leave(s, &expiry(0)).await;
    let (s, present) = resume(&h, "brief", "alice", false, V5, &[]).await;
    assert!(
        !present,
        "DISCONNECT with Session Expiry Interval 0 kept the session"
    );
    leave(s, &[]).await;
    // 3.1.1 keeps its meaning: Clean Session 0 keeps the session.
    let (mut s, _) = resume(&h, "brief-v4", "alice", false, false, &[]).await;
    assert_eq!(subscribed(&mut s, false, 1, &[("b/#", 1)]).await, [1]);
    send(&mut s, &[0xe0, 0x00]).await;
    common::read_until_close(&mut s, common::WAIT).await;
    let (_, present) = resume(&h, "brief-v4", "alice", false, false, &[]).await;
    assert!(present, "3.1.1 Clean Session 0 no longer keeps the session");
}

// === Subscription options ===

/// No Local: a subscriber with No Local never gets its own messages [MQTT-3.8.3-3]; others do.
#[tokio::test]
async fn no_local_subscriber_never_gets_its_own_messages_mqtt_3_8_3_3() {
    let h = harness().await;
    let mut alice = session(&h, "nl-alice", "alice", V5, &[]).await;
    let mut bob = session(&h, "nl-bob", "bob", V5, &[]).await;
    let nl = options(1, true, false, 0);
    assert_eq!(subscribed(&mut alice, V5, 1, &[("nl/x", nl)]).await, [1]);
    assert_eq!(subscribed(&mut bob, V5, 1, &[("nl/x", nl)]).await, [1]);
    publish_complete(&mut alice, V5, 1, "nl/x", 1, b"alice's").await;
    let got = delivery(&mut bob, V5).await;
    assert_eq!(what(&got), ("nl/x".to_string(), "alice's".to_string()));
    publish_complete(&mut bob, V5, 1, "nl/x", 1, b"bob's").await;
    let got = delivery(&mut alice, V5).await;
    assert_eq!(
        what(&got),
        ("nl/x".to_string(), "bob's".to_string()),
        "a No Local subscriber got its own message"
    );
}

/// Retain As Published: with it, a live delivery keeps the RETAIN flag the publisher set;
/// without it, the flag is 0 [MQTT-3.3.1-12, MQTT-3.3.1-13].
#[tokio::test]
async fn retain_as_published_keeps_the_retain_flag_mqtt_3_3_1_12() {
    let h = harness().await;
    let mut kept = session(&h, "rap-kept", "alice", V5, &[]).await;
    let mut plain = session(&h, "rap-plain", "bob", V5, &[]).await;
    let rap = options(1, false, true, 0);
    assert_eq!(subscribed(&mut kept, V5, 1, &[("rap/x", rap)]).await, [1]);
    assert_eq!(subscribed(&mut plain, V5, 1, &[("rap/x", 1)]).await, [1]);
    let mut publ = session(&h, "rap-pub", "bob", V5, &[]).await;
    publish_complete(&mut publ, V5, 1, "rap/x", 1, b"plain").await;
    send(&mut publ, &retained(1, "rap/x", 2, b"retained")).await;
    for (s, flags) in [(&mut kept, [false, true]), (&mut plain, [false, false])] {
        let got = [delivery(s, V5).await, delivery(s, V5).await];
        assert_eq!(
            got.each_ref().map(|p| (what(p).1, p.retain)),
            [
                ("plain".to_string(), flags[0]),
                ("retained".to_string(), flags[1])
            ]
        );
    }
}

/// Retain Handling 0 sends the retained messages at every SUBSCRIBE, 1 only when the
/// subscription is new, 2 never [MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11]; a SUBSCRIBE to a
/// filter the client has replaces that subscription, QoS included [MQTT-3.8.4-3].
#[tokio::test]
async fn retain_handling_and_resubscribe_mqtt_3_3_1_9() {
    let h = harness().await;
    let mut publ = session(&h, "rh-pub", "bob", V5, &[]).await;
    send(&mut publ, &retained(1, "r/1", 1, b"kept")).await;
    common::raw::expect_ack(&mut publ, V5, 0x40, 1).await;
    let mut sub = session(&h, "rh-sub", "alice", V5, &[]).await;
    assert_eq!(subscribed(&mut sub, V5, 1, &[("marker", 0)]).await, [0]);
    let retained_kept = |p: &mqtt::Publish| {
        assert_eq!(what(p), ("r/1".to_string(), "kept".to_string()));
        assert!(
            p.retain,
            "a retained message sent on SUBSCRIBE has RETAIN set"
        );
    };

    let cases = [
        // (filter, retain handling, sent?)
        ("r/#", 0, true),
        ("r/#", 0, true),  // again: 0 sends at every SUBSCRIBE
        ("r/#", 1, false), // an existing subscription
        ("r/+", 1, true),  // a new one
        ("r/1", 2, false), // never
        ("r/1", 2, false),
    ];
    for (i, (filter, handling, sent)) in cases.into_iter().enumerate() {
        let pkid = 10 + i as u16;
        let opts = options(1, false, false, handling);
        assert_eq!(subscribed(&mut sub, V5, pkid, &[(filter, opts)]).await, [1]);
        if sent {
            retained_kept(&delivery(&mut sub, V5).await);
        }
        let why = format!("{filter} retain handling {handling}");
        nothing_before_marker(&mut sub, &mut publ, V5, &why).await;
    }

    // 3.1.1 has no Retain Handling: retained messages come with every SUBSCRIBE [MQTT-3.8.4-3].
    let mut v4 = session(&h, "rh-sub-v4", "alice", false, &[]).await;
    for pkid in 1..=2 {
        assert_eq!(subscribed(&mut v4, false, pkid, &[("r/#", 1)]).await, [1]);
        retained_kept(&delivery(&mut v4, false).await);
    }

    // Re-subscribing replaces the subscription: QoS 0, then QoS 1 on the same filter.
    assert_eq!(subscribed(&mut sub, V5, 30, &[("up/x", 0)]).await, [0]);
    assert_eq!(subscribed(&mut sub, V5, 31, &[("up/x", 1)]).await, [1]);
    publish_complete(&mut publ, V5, 1, "up/x", 2, b"after").await;
    let got = delivery(&mut sub, V5).await;
    assert_eq!(
        (what(&got).1, got.qos),
        ("after".to_string(), QoS::AtLeastOnce)
    );
    nothing_before_marker(&mut sub, &mut publ, V5, "one subscription per filter").await;
}

/// Only a PUBLISH with RETAIN set touches a topic's retained message: an empty PUBLISH without
/// it leaves the message [MQTT-3.3.1-8]; an empty one with it removes it [MQTT-3.3.1-6].
#[tokio::test]
async fn only_retained_publishes_touch_the_retained_message_mqtt_3_3_1_8() {
    let h = harness().await;
    let mut publ = session(&h, "rd-pub", "bob", V5, &[]).await;
    send(&mut publ, &retained(1, "rd/x", 1, b"kept")).await;
    common::raw::expect_ack(&mut publ, V5, 0x40, 1).await;
    publish_complete(&mut publ, V5, 1, "rd/x", 2, b"").await;
    let mut sub = session(&h, "rd-sub", "alice", V5, &[]).await;
    assert_eq!(
        subscribed(&mut sub, V5, 1, &[("marker", 0), ("rd/x", 1)]).await,
        [0, 1]
    );
    let got = delivery(&mut sub, V5).await;
    assert_eq!((what(&got).1, got.retain), ("kept".to_string(), true));
    send(&mut publ, &retained(1, "rd/x", 3, b"")).await;
    common::raw::expect_ack(&mut publ, V5, 0x40, 3).await;
    // The empty retained PUBLISH itself reaches the subscriber; then nothing is retained.
    assert_eq!(what(&delivery(&mut sub, V5).await).1, "");
    assert_eq!(subscribed(&mut sub, V5, 2, &[("rd/x", 1)]).await, [1]);
    nothing_before_marker(&mut sub, &mut publ, V5, "retained message removed").await;
}

/// DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will (§3.14.2.1);
/// a normal one does not [MQTT-3.14.4-3].
#[tokio::test]
async fn disconnect_with_will_message_publishes_the_will() {
    let h = harness().await;
    let mut watcher = session(&h, "will-watch", "bob", V5, &[]).await;
    assert_eq!(
        subscribed(&mut watcher, V5, 1, &[("will/#", 0), ("marker", 0)]).await,
        [0, 0]
    );
    for (id, reason, sent) in [("will-normal", 0x00, false), ("will-asked", 0x04, true)] {
        let mut s = h.tls(None).await;
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0xc6, 0, 60, 0];
        common::packets::push_str(&mut body, id);
        body.push(0); // will properties
        common::packets::push_str(&mut body, &format!("will/{id}"));
        common::packets::push_str(&mut body, "gone");
        common::packets::push_str(&mut body, "alice");
        common::packets::push_str(&mut body, "alice-pw");
        send(&mut s, &common::packets::frame(0x10, &body)).await;
        assert!(matches!(read_decoded(&mut s, V5).await, Packet::ConnAck(a) if a.code == 0));
        send(&mut s, &[0xe0, 0x02, reason, 0x00]).await;
        common::read_until_close(&mut s, common::WAIT).await;
        if sent {
            let got = delivery(&mut watcher, V5).await;
            assert_eq!(what(&got), (format!("will/{id}"), "gone".to_string()));
        }
        let mut publ = session(&h, &format!("{id}-marker"), "bob", V5, &[]).await;
        nothing_before_marker(&mut watcher, &mut publ, V5, id).await;
    }
}

// === Shared subscriptions ===

/// One client with a plain and a shared subscription to one filter: two subscriptions, two
/// copies; after UNSUBSCRIBE of the shared one, one copy. rumqttd 0.20's router thread panicked
/// on this (a `debug_assert!`; dev builds of moat now keep rumqttd's debug assertions on), and
/// its shared subscription went on delivering after UNSUBSCRIBE.
#[tokio::test]
async fn plain_and_shared_subscription_to_one_filter() {
    let h = harness().await;
    let mut sub = session(&h, "sh-sub", "alice", V5, &[]).await;
    let filters = [("sh/x", 1), ("$share/g/sh/x", 1), ("marker", 0)];
    assert_eq!(subscribed(&mut sub, V5, 1, &filters).await, [1, 1, 0]);
    let mut publ = session(&h, "sh-pub", "bob", V5, &[]).await;
    publish_complete(&mut publ, V5, 1, "sh/x", 1, b"both").await;
    for _ in 0..2 {
        let got = delivery(&mut sub, V5).await;
        assert_eq!(what(&got), ("sh/x".to_string(), "both".to_string()));
    }
    nothing_before_marker(&mut sub, &mut publ, V5, "two subscriptions").await;
    send(&mut sub, &unsubscribe(V5, 2, &["$share/g/sh/x"])).await;
    match read_decoded(&mut sub, V5).await {
        Packet::UnsubAck(a) => assert_eq!((a.pkid, a.codes), (2, vec![0])),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    publish_complete(&mut publ, V5, 1, "sh/x", 2, b"plain").await;
    let got = delivery(&mut sub, V5).await;
    assert_eq!(what(&got), ("sh/x".to_string(), "plain".to_string()));
    nothing_before_marker(&mut sub, &mut publ, V5, "one subscription left").await;
}

/// A shared subscription is its group and its filter together [MQTT-4.8.2]: one group name
/// over two filters is two groups (rumqttd 0.20 kept one read position for both and lost
/// messages). A kept session that leaves with a shared delivery unacknowledged takes nothing
/// down (rumqttd 0.20's router panicked on it: `expect("group must exists")`).
#[tokio::test]
async fn shared_subscriptions_are_group_and_filter() {
    let h = harness().await;
    let mut sub = session(&h, "shg-sub", "alice", V5, &[]).await;
    let filters = [("$share/g/sh/x", 1), ("$share/g/sh/z", 1)];
    assert_eq!(subscribed(&mut sub, V5, 1, &filters).await, [1, 1]);
    let mut publ = session(&h, "shg-pub", "bob", V5, &[]).await;
    publish_complete(&mut publ, V5, 1, "sh/z", 1, b"z").await;
    assert_eq!(what(&delivery(&mut sub, V5).await).1, "z");
    publish_complete(&mut publ, V5, 1, "sh/x", 2, b"x").await;
    assert_eq!(what(&delivery(&mut sub, V5).await).1, "x");

    let (mut keeper, _) = resume(&h, "shg-keeper", "alice", true, V5, &expiry(60)).await;
    assert_eq!(
        subscribed(&mut keeper, V5, 1, &[("$share/k/sh/y", 1)]).await,
        [1]
    );
    publish_complete(&mut publ, V5, 1, "sh/y", 3, b"unacknowledged").await;
    match read_decoded(&mut keeper, V5).await {
        Packet::Publish(p) => assert_eq!(p.payload.as_ref(), b"unacknowledged"),
        other => panic!("expected a delivery, got {other:?}"),
    }
    leave(keeper, &[]).await;
    // The broker is still there for everyone, and the group delivers again on resume.
    publish_complete(&mut publ, V5, 1, "sh/x", 4, b"still up").await;
    assert_eq!(what(&delivery(&mut sub, V5).await).1, "still up");
    let (mut keeper, present) = resume(&h, "shg-keeper", "alice", false, V5, &expiry(60)).await;
    assert!(present);
    let mut got = Vec::new();
    publish_complete(&mut publ, V5, 1, "sh/y", 5, b"after resume").await;
    while got.last().map(String::as_str) != Some("after resume") {
        got.push(what(&delivery(&mut keeper, V5).await).1);
        assert!(got.len() <= 2, "{got:?}");
    }
}

// === UNSUBSCRIBE ===

/// Every UNSUBSCRIBE gets one UNSUBACK [MQTT-3.10.4-4], even when no filter matched
/// [MQTT-3.10.4-5], with one reason code per filter in 5.0 [MQTT-3.11.3-1]: 0x11 for a filter
/// that had no subscription.
#[tokio::test]
async fn one_unsuback_per_unsubscribe_mqtt_3_10_4_4() {
    let h = harness().await;
    for v5 in [false, true] {
        let mut s = session(&h, "unsub", "alice", v5, &[]).await;
        assert_eq!(
            subscribed(&mut s, v5, 1, &[("u/a", 0), ("u/b", 0)]).await,
            [0, 0]
        );
        for (pkid, filters, codes) in [
            (2, &["u/a", "u/none", "u/b"][..], vec![0x00, 0x11, 0x00]),
            (3, &["u/none"][..], vec![0x11]),
        ] {
            send(&mut s, &unsubscribe(v5, pkid, filters)).await;
            match read_decoded(&mut s, v5).await {
                Packet::UnsubAck(a) => {
                    let expected = if v5 { codes } else { Vec::new() };
                    assert_eq!((a.pkid, a.codes), (pkid, expected), "v5 {v5}");
                }
                other => panic!("expected UNSUBACK {pkid}, got {other:?}"),
            }
        }
    }
}

// === At the broker itself ===

/// A plain TCP connection to the embedded broker's MQTT 3.1.1 port, logged in with moat's
/// per-boot password, with this keep alive; the CONNACK's return code.
async fn broker_session(h: &Harness, id: &str, keep_alive: u16) -> (TcpStream, u8) {
    let target = h.running.broker();
    let mut s = TcpStream::connect(target.v3.first_socket_addr().unwrap())
        .await
        .unwrap();
    let password = target
        .credentials
        .load()
        .password()
        .unwrap_or("")
        .to_string();
    let connect = connect_with(id, Some(("moat", &password)), true, keep_alive, false, &[]);
    send(&mut s, &connect).await;
    match read_decoded(&mut s, false).await {
        Packet::ConnAck(a) => (s, a.code),
        other => panic!("{id}: expected CONNACK, got {other:?}"),
    }
}

/// Keep alive 0 turns the keep-alive mechanism off [MQTT-3.1.2-10]: rumqttd 0.20 closed such
/// connections without a CONNACK. moat always sends its own keep alive upstream, so this is
/// checked at the broker.
#[tokio::test]
async fn broker_accepts_keep_alive_zero_mqtt_3_1_2_10() {
    let h = harness().await;
    let (mut s, code) = broker_session(&h, "ka0", 0).await;
    assert_eq!(code, 0);
    assert_eq!(subscribed(&mut s, false, 1, &[("ka/x", 0)]).await, [0]);
}

/// A client that sends DISCONNECT and closes while another connects: rumqttd 0.20 could hear
/// the close after it had removed the first connection on its DISCONNECT and given its id to
/// the next client, and then dropped that client as well. Clients connect straight to the
/// broker (moat waits for the broker to close first, which hides the race); each cycle hands
/// over from one connection to the next as closely as a client can.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_drops_no_client_after_another_disconnects() {
    const LOOPS: usize = 8;
    const CYCLES: usize = 100;
    let h = harness().await;
    let loops: Vec<_> = (0..LOOPS)
        .map(|l| {
            let target = h.running.broker().clone();
            tokio::spawn(async move {
                let password = target
                    .credentials
                    .load()
                    .password()
                    .unwrap_or("")
                    .to_string();
                let login = Some(("moat", password.as_str()));
                let subscribe = common::raw::subscribe(false, 1, &[("reuse/x", 0)]);
                let mut failed = Vec::new();
                let mut prev: Option<TcpStream> = None;
                for i in 0..CYCLES {
                    let id = format!("reuse-{l}-{i}");
                    let mut s = TcpStream::connect(target.v3.first_socket_addr().unwrap())
                        .await
                        .unwrap();
                    if let Some(p) = prev.as_mut() {
                        send(p, &[0xe0, 0x00]).await;
                    }
                    send(&mut s, &connect_with(&id, login, true, 60, false, &[])).await;
                    if let Some(mut p) = prev.take() {
                        tokio::task::yield_now().await;
                        p.shutdown().await.ok();
                    }
                    // CONNACK, then SUBSCRIBE → SUBACK through the router: the session is alive.
                    // A client the broker dropped sees its connection close instead.
                    let alive = async {
                        let mut connack = [0u8; 4];
                        s.read_exact(&mut connack).await?;
                        s.write_all(&subscribe).await?;
                        let mut suback = [0u8; 5];
                        s.read_exact(&mut suback).await?;
                        Ok::<_, std::io::Error>((connack, suback))
                    };
                    match tokio::time::timeout(common::WAIT, alive).await {
                        Ok(Ok(([0x20, 2, 0, 0], [0x90, 3, 0, 1, 0]))) => prev = Some(s),
                        other => failed.push(format!("{id}: {other:?}")),
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for l in loops {
        failed.extend(l.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of {}: {failed:?}",
        failed.len(),
        LOOPS * CYCLES
    );
}

// === How sessions reach the broker ===

/// Established TCP connections in this process's network namespace with `port` at either end,
/// from `/proc/self/net/tcp` and `tcp6`. Only established ones: the port may have been another
/// harness's a moment ago (tests of this binary run side by side), whose closed connections
/// linger in TIME_WAIT.
fn tcp_connections_on(port: u16) -> Vec<String> {
    let port = format!(":{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address, remote address, state (01: ESTABLISHED).
            if f.len() > 3 && f[3] == "01" && (f[1].ends_with(&port) || f[2].ends_with(&port)) {
                found.push(line.trim().to_string());
            }
        }
    }
    found
}

/// A 3.1.1 and a 5.0 session through moat, each getting its own message back; then how many
/// TCP connections the broker's two ports have.
async fn sessions_and_broker_connections(h: &Harness) -> Vec<String> {
    let mut sessions = Vec::new();
    for v5 in [false, V5] {
        let id = if v5 { "link-v5" } else { "link-v4" };
        let mut s = session(h, id, "alice", v5, &[]).await;
        assert_eq!(subscribed(&mut s, v5, 1, &[(id, 0)]).await, [0]);
        send(&mut s, &publish(v5, 0, false, id, 0, b"round trip")).await;
        assert_eq!(
            what(&delivery(&mut s, v5).await),
            (id.to_string(), "round trip".to_string())
        );
        sessions.push(s);
    }
    let target = h.running.broker();
    let ports = [&target.v3, &target.v5].map(|r| r.first_socket_addr().unwrap().port());
    ports.iter().flat_map(|p| tcp_connections_on(*p)).collect()
}

/// With the default `broker.embedded.link` (memory), sessions reach rumqttd in memory: no TCP
/// connection to its loopback ports, while both ports stay bound for anyone who uses them.
#[tokio::test]
async fn sessions_reach_the_embedded_broker_in_memory() {
    let h = harness().await;
    let tcp = sessions_and_broker_connections(&h).await;
    assert!(tcp.is_empty(), "TCP connections to the broker: {tcp:#?}");
    assert_eq!(h.upstream_connects(), 2);
    // The listener still answers (the broker's password is moat's alone).
    let (_s, code) = broker_session(&h, "direct", 30).await;
    assert_eq!(code, 0);
}

/// `broker.embedded.link: loopback` keeps the loopback TCP connection per session.
#[tokio::test]
async fn the_loopback_link_connects_each_session_to_the_listener() {
    let h = common::start(Opts {
        broker: "broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\", link: loopback }\n"
            .to_string(),
        ..Opts::default()
    })
    .await;
    // Both ends of each session's connection are in this process: two entries per session.
    let tcp = sessions_and_broker_connections(&h).await;
    assert_eq!(tcp.len(), 4, "{tcp:#?}");
}
