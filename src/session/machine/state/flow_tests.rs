//! The session machine fed with packets, no sockets: packet-id bookkeeping (catalogue §B.33),
//! Receive Maximum, the client's Maximum Packet Size, DISCONNECT rules (§B.34), invalid
//! filters in MQTT 5 SUBSCRIBEs (§A.5, §A.11), acknowledgements in the broker's order, QoS 2
//! resends, and filters the embedded broker cannot serve (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use std::sync::Arc;

use bytes::Bytes;

use super::super::{State, Step};
use super::Terms;
use crate::mqtt::{self, Packet, ProtocolVersion, QoS};
use crate::policy::{ClientLimits, Policy, PolicySource, Subject};
use crate::session::error::{Exceeded, PeerFault, PolicyRefusal, Refusal};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// === impl State (tests) ===

impl State {
    /// [`State::on_client`] for tests of the decisions alone (no rates are set here, so `now`
    /// does not matter).
    fn on_client_packet(&mut self, frame: Bytes, policy: &Arc<Policy>) -> Result<Step, Refusal> {
        let now = std::time::Instant::now();
        self.on_client(now, frame, policy).map(|(step, _)| step)
    }
}

fn state(v: ProtocolVersion, terms: Terms) -> State {
    let subject = Subject::describe(Some("alice"), Some("c1"), None, None, [127, 0, 0, 1].into());
    State::new(v, 8, subject).with_terms(terms)
}

/// Flow rules are not policy: every topic is allowed here.
fn open_policy() -> Arc<Policy> {
    let source = PolicySource {
        path: "p.yaml".into(),
        text: "acl:\n  - allow: all\n    topics: [\"#\"]\n".into(),
    };
    Arc::new(crate::policy::compile(&[source]).unwrap())
}

fn enc(p: Packet, v: ProtocolVersion) -> Bytes {
    p.to_bytes(v).unwrap()
}

fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &[u8]) -> Packet {
    Packet::Publish(mqtt::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid: id,
        properties: Default::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

fn ack(id: u16, reason: u8) -> mqtt::Ack {
    mqtt::Ack {
        reason,
        ..mqtt::Ack::new(id)
    }
}

/// The packet inside a `Step::Reply`, decoded.
fn reply(step: Result<Step, Refusal>, v: ProtocolVersion) -> Packet {
    match step {
        Ok(Step::Reply(b)) => mqtt::decode(b, v).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn forwarded(step: &Result<Step, Refusal>) -> bool {
    matches!(step, Ok(Step::Forward(_)))
}

#[test]
fn pubrel_for_an_unknown_id_is_answered_locally_mqtt_4_3_3_11() {
    // v5: PUBCOMP 0x92 "Packet Identifier not found"; the broker never sees the PUBREL.
    let mut s = state(V5, Terms::default());
    let step = s.on_client_packet(enc(Packet::PubRel(ack(9, 0)), V5), &open_policy());
    assert_eq!(reply(step, V5), Packet::PubComp(ack(9, 0x92)));
    // 3.1.1 has no reason codes: a plain PUBCOMP.
    let mut s = state(V3, Terms::default());
    let step = s.on_client_packet(enc(Packet::PubRel(ack(9, 0)), V3), &open_policy());
    assert_eq!(reply(step, V3), Packet::PubComp(ack(9, 0)));
}

#[test]
fn pubrel_in_a_resumed_session_belongs_to_the_broker_mqtt_4_4_0_1() {
    let resumed = Terms {
        resumed: true,
        ..Terms::default()
    };
    let mut s = state(V3, resumed);
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubRel(ack(9, 0)), V3),
        &open_policy()
    )));
}

#[test]
fn qos2_flow_through_the_broker_mqtt_4_3_3_4() {
    let mut s = state(V5, Terms::default());
    let p = enc(publish("a/b", QoS::ExactlyOnce, Some(5), b"x"), V5);
    assert!(forwarded(&s.on_client_packet(p.clone(), &open_policy())));
    // PUBREL before the broker's PUBREC is a protocol error.
    let early = s.on_client_packet(enc(Packet::PubRel(ack(5, 0)), V5), &open_policy());
    assert!(
        matches!(early, Err(Refusal::Peer(PeerFault::Protocol(_)))),
        "{early:?}"
    );

    let mut s = state(V5, Terms::default());
    assert!(forwarded(&s.on_client_packet(p.clone(), &open_policy())));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubRec(ack(5, 0)), V5),
        &open_policy()
    )));
    // A resend of the PUBLISH after the broker's PUBREC is answered by moat, never forwarded.
    assert_eq!(
        reply(s.on_client_packet(p.clone(), &open_policy()), V5),
        Packet::PubRec(ack(5, 0))
    );
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubRel(ack(5, 0)), V5),
        &open_policy()
    )));
    // After PUBREL the id is not free until PUBCOMP [MQTT-4.3.3-6].
    assert!(matches!(
        s.on_client_packet(p.clone(), &open_policy()),
        Err(Refusal::Peer(PeerFault::Protocol(_)))
    ));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubComp(ack(5, 0)), V5),
        &open_policy()
    )));
    // Complete: a second PUBREL for it is unknown now.
    let again = s.on_client_packet(enc(Packet::PubRel(ack(5, 0)), V5), &open_policy());
    assert_eq!(reply(again, V5), Packet::PubComp(ack(5, 0x92)));
    // And the id is free for a new message.
    assert!(forwarded(&s.on_client_packet(p, &open_policy())));
}

#[test]
fn packet_id_in_use_with_another_qos_mqtt_2_2_1_3() {
    let mut s = state(V3, Terms::default());
    let q1 = enc(publish("a/b", QoS::AtLeastOnce, Some(3), b"x"), V3);
    let q2 = enc(publish("a/b", QoS::ExactlyOnce, Some(3), b"x"), V3);
    assert!(forwarded(&s.on_client_packet(q1.clone(), &open_policy())));
    assert!(
        forwarded(&s.on_client_packet(q1, &open_policy())),
        "QoS 1 resend"
    );
    assert!(matches!(
        s.on_client_packet(q2, &open_policy()),
        Err(Refusal::Peer(PeerFault::Protocol(_)))
    ));
}

#[test]
fn refused_qos2_is_finished_by_moat_and_resends_are_not_delivered_mqtt_4_3_3_10() {
    // 3.1.1: a refused QoS 2 PUBLISH gets a positive PUBREC; the resend gets it again and
    // never reaches the broker; the PUBREL is answered by moat.
    let mut s = state(V3, Terms::default());
    let p = enc(publish("$SYS/x", QoS::ExactlyOnce, Some(7), b"x"), V3);
    assert!(matches!(
        s.on_client_packet(p.clone(), &open_policy()),
        Ok(Step::Refuse {
            reply: Some(_),
            forward: None,
            ..
        })
    ));
    assert_eq!(
        reply(s.on_client_packet(p.clone(), &open_policy()), V3),
        Packet::PubRec(ack(7, 0))
    );
    // Reusing the id with QoS 1 while moat holds the exchange is a protocol error.
    let q1 = enc(publish("a/b", QoS::AtLeastOnce, Some(7), b"x"), V3);
    assert!(matches!(
        s.on_client_packet(q1, &open_policy()),
        Err(Refusal::Peer(PeerFault::Protocol(_)))
    ));
    assert_eq!(
        reply(
            s.on_client_packet(enc(Packet::PubRel(ack(7, 0)), V3), &open_policy()),
            V3
        ),
        Packet::PubComp(ack(7, 0))
    );
    // After PUBCOMP the id is free: an allowed QoS 2 PUBLISH with it goes to the broker.
    let allowed = enc(publish("a/b", QoS::ExactlyOnce, Some(7), b"y"), V3);
    assert!(forwarded(&s.on_client_packet(allowed, &open_policy())));
}

#[test]
fn one_inflight_limit_the_policys_max_inflight_in_3_1_1_too_mqtt_3_3_4_7() {
    let limits = ClientLimits {
        max_inflight: 2,
        ..ClientLimits::default()
    };
    let rule = limits.rule.clone();
    let mut s = state(V3, Terms::default()).with_limits(limits.clone());
    let p = |id, v| enc(publish("a/b", QoS::AtLeastOnce, Some(id), b"x"), v);
    assert!(forwarded(&s.on_client_packet(p(1, V3), &open_policy())));
    assert!(forwarded(&s.on_client_packet(p(2, V3), &open_policy())));
    match s.on_client_packet(p(3, V3), &open_policy()) {
        Err(Refusal::Policy(PolicyRefusal::Limit(Exceeded::Inflight, r))) => assert_eq!(r, rule),
        other => panic!("expected the inflight limit, got {other:?}"),
    }
    // The broker's PUBACK, on its way to the client, ends an exchange and frees a place.
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubAck(ack(1, 0)), V3),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(p(3, V3), &open_policy())));
    // MQTT 5 with a broker that allows fewer: the advertised Receive Maximum is the limit, and
    // the refusal names it rather than the policy's rule.
    let terms = Terms {
        receive_maximum: Some(1),
        ..Terms::default()
    };
    let mut s = state(V5, terms).with_limits(limits);
    assert!(forwarded(&s.on_client_packet(p(1, V5), &open_policy())));
    match s.on_client_packet(p(2, V5), &open_policy()) {
        Err(Refusal::Policy(PolicyRefusal::Limit(Exceeded::Inflight, r))) => {
            assert_ne!(r, rule);
            assert!(r.to_string().contains("Receive Maximum"), "{r}");
        }
        other => panic!("expected the inflight limit, got {other:?}"),
    }
}

#[test]
fn receive_maximum_exceeded_mqtt_3_3_4_7() {
    let terms = Terms {
        receive_maximum: Some(2),
        ..Terms::default()
    };
    let mut s = state(V5, terms);
    let p = |id| enc(publish("a/b", QoS::AtLeastOnce, Some(id), b"x"), V5);
    assert!(forwarded(&s.on_client_packet(p(1), &open_policy())));
    assert!(forwarded(&s.on_client_packet(p(2), &open_policy())));
    // A resend of an open one does not count.
    assert!(forwarded(&s.on_client_packet(p(2), &open_policy())));
    // QoS 0 does not count.
    assert!(forwarded(&s.on_client_packet(
        enc(publish("a/b", QoS::AtMostOnce, None, b"x"), V5),
        &open_policy()
    )));
    assert!(matches!(
        s.on_client_packet(p(3), &open_policy()),
        Err(Refusal::Policy(PolicyRefusal::Limit(Exceeded::Inflight, _)))
    ));
    // The broker's PUBACK frees one.
    let mut s = state(V5, terms);
    assert!(forwarded(&s.on_client_packet(p(1), &open_policy())));
    assert!(forwarded(&s.on_client_packet(p(2), &open_policy())));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubAck(ack(1, 0)), V5),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(p(3), &open_policy())));
    // A PUBREC with an error code ends a QoS 2 exchange too.
    let q2 = enc(publish("a/b", QoS::ExactlyOnce, Some(4), b"x"), V5);
    assert!(matches!(
        s.on_client_packet(q2.clone(), &open_policy()),
        Err(Refusal::Policy(PolicyRefusal::Limit(Exceeded::Inflight, _)))
    ));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubAck(ack(2, 0)), V5),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(q2, &open_policy())));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubRec(ack(4, 0x80)), V5),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(p(5), &open_policy())));
}

#[test]
fn acks_for_unknown_deliveries_never_reach_the_broker() {
    let mut s = state(V3, Terms::default());
    for p in [
        Packet::PubAck(ack(11, 0)),
        Packet::PubRec(ack(11, 0)),
        Packet::PubComp(ack(11, 0)),
    ] {
        assert!(matches!(
            s.on_client_packet(enc(p, V3), &open_policy()),
            Ok(Step::Nothing)
        ));
    }
    // A real delivery: each ack goes through once, in order.
    assert!(forwarded(&s.on_broker_packet(
        enc(publish("a/b", QoS::ExactlyOnce, Some(11), b"x"), V3),
        &open_policy()
    )));
    assert!(matches!(
        s.on_client_packet(enc(Packet::PubComp(ack(11, 0)), V3), &open_policy()),
        Ok(Step::Nothing)
    ));
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubRec(ack(11, 0)), V3),
        &open_policy()
    )));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubRel(ack(11, 0)), V3),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubComp(ack(11, 0)), V3),
        &open_policy()
    )));
    assert!(matches!(
        s.on_client_packet(enc(Packet::PubComp(ack(11, 0)), V3), &open_policy()),
        Ok(Step::Nothing)
    ));
    // QoS 1 delivery.
    assert!(forwarded(&s.on_broker_packet(
        enc(publish("a/b", QoS::AtLeastOnce, Some(12), b"x"), V3),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubAck(ack(12, 0)), V3),
        &open_policy()
    )));
    assert!(matches!(
        s.on_client_packet(enc(Packet::PubAck(ack(12, 0)), V3), &open_policy()),
        Ok(Step::Nothing)
    ));
}

#[test]
fn deliveries_larger_than_the_client_accepts_are_dropped_and_acked_mqtt_3_1_2_25() {
    let terms = Terms {
        client_max_packet_size: Some(32),
        ..Terms::default()
    };
    let mut s = state(V5, terms);
    let big = [b'x'; 40];
    // Small enough: forwarded (and acknowledged, so that moat's acks below go out at once).
    assert!(forwarded(&s.on_broker_packet(
        enc(publish("a/b", QoS::AtLeastOnce, Some(1), b"ok"), V5),
        &open_policy()
    )));
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubAck(ack(1, 0)), V5),
        &open_policy()
    )));
    // QoS 0: dropped.
    assert!(matches!(
        s.on_broker_packet(
            enc(publish("a/b", QoS::AtMostOnce, None, &big), V5),
            &open_policy()
        ),
        Ok(Step::Nothing)
    ));
    // QoS 1: moat sends the PUBACK to the broker.
    let step = s.on_broker_packet(
        enc(publish("a/b", QoS::AtLeastOnce, Some(2), &big), V5),
        &open_policy(),
    );
    assert_eq!(reply(step, V5), Packet::PubAck(ack(2, 0)));
    // QoS 2: PUBREC, then moat answers the broker's PUBREL with PUBCOMP.
    let step = s.on_broker_packet(
        enc(publish("a/b", QoS::ExactlyOnce, Some(3), &big), V5),
        &open_policy(),
    );
    assert_eq!(reply(step, V5), Packet::PubRec(ack(3, 0)));
    let step = s.on_broker_packet(enc(Packet::PubRel(ack(3, 0)), V5), &open_policy());
    assert_eq!(reply(step, V5), Packet::PubComp(ack(3, 0)));
    // The client never saw id 2 or 3: its acks for them are dropped.
    assert!(matches!(
        s.on_client_packet(enc(Packet::PubAck(ack(2, 0)), V5), &open_policy()),
        Ok(Step::Nothing)
    ));
}

#[test]
fn disconnect_may_not_raise_a_zero_session_expiry_v5_3_14_2_2_2() {
    let zero = Terms {
        session_expiry_zero: true,
        ..Terms::default()
    };
    // Catalogue §B.34: `e0 07 00 05 11 00 00 0e 10`.
    let raise = Bytes::from_static(&[0xe0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x0e, 0x10]);
    let mut s = state(V5, zero);
    assert!(matches!(
        s.on_client_packet(raise.clone(), &open_policy()),
        Err(Refusal::Peer(PeerFault::Protocol(_)))
    ));
    // Setting it to 0 again, or a CONNECT that had an expiry, is fine.
    let keep = Bytes::from_static(&[0xe0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00]);
    assert!(matches!(
        s.on_client_packet(keep, &open_policy()),
        Ok(Step::Goodbye(_))
    ));
    let mut s = state(V5, Terms::default());
    assert!(matches!(
        s.on_client_packet(raise, &open_policy()),
        Ok(Step::Goodbye(_))
    ));
}

/// A v5 SUBSCRIBE with the given filters (options QoS 1).
fn subscribe(id: u16, filters: &[&str]) -> Bytes {
    let mut body = vec![(id >> 8) as u8, id as u8, 0];
    for f in filters {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f.as_bytes());
        body.push(1);
    }
    let mut out = vec![0x82, body.len() as u8];
    out.extend(body);
    Bytes::from(out)
}

fn suback(id: u16, codes: &[u8]) -> Packet {
    Packet::SubAck(mqtt::SubAck {
        pkid: id,
        properties: Default::default(),
        codes: codes.to_vec(),
    })
}

#[test]
fn invalid_filters_get_suback_0x8f_mqtt_4_7_1_1() {
    // All invalid: answered by moat, nothing forwarded.
    let mut s = state(V5, Terms::default());
    match s.on_client_packet(subscribe(1, &["a/#/b", "$share//x"]), &open_policy()) {
        Ok(Step::Refuse {
            reply: Some(r),
            forward: None,
            ..
        }) => assert_eq!(mqtt::decode(r, V5).unwrap(), suback(1, &[0x8f, 0x8f])),
        other => panic!("{other:?}"),
    }
    // Mixed: the valid filters go to the broker alone; its SUBACK is merged in request order.
    let mut s = state(V5, Terms::default());
    match s.on_client_packet(subscribe(2, &["a/b", "a#", "c/+"]), &open_policy()) {
        Ok(Step::Refuse {
            reply: None,
            forward: Some(f),
            ..
        }) => assert_eq!(f, subscribe(2, &["a/b", "c/+"])),
        other => panic!("{other:?}"),
    }
    let merged = s.on_broker_packet(enc(suback(2, &[1, 0]), V5), &open_policy());
    match merged {
        Ok(Step::Forward(b)) => assert_eq!(mqtt::decode(b, V5).unwrap(), suback(2, &[1, 0x8f, 0])),
        other => panic!("{other:?}"),
    }
    // Mixed with a filter the policy refuses ($-filters until ACLs): three kinds of answer.
    let mut s = state(V5, Terms::default());
    match s.on_client_packet(subscribe(3, &["$SYS/#", "+#", "ok"]), &open_policy()) {
        Ok(Step::Refuse {
            reply: None,
            forward: Some(f),
            ..
        }) => assert_eq!(f, subscribe(3, &["ok"])),
        other => panic!("{other:?}"),
    }
    match s.on_broker_packet(enc(suback(3, &[1]), V5), &open_policy()) {
        Ok(Step::Forward(b)) => {
            assert_eq!(mqtt::decode(b, V5).unwrap(), suback(3, &[0x87, 0x8f, 1]))
        }
        other => panic!("{other:?}"),
    }
    // Policy refuses every valid one: one local SUBACK with both kinds of code.
    let mut s = state(V5, Terms::default());
    match s.on_client_packet(subscribe(4, &["", "$SYS/x"]), &open_policy()) {
        Ok(Step::Refuse {
            reply: Some(r),
            forward: None,
            ..
        }) => assert_eq!(mqtt::decode(r, V5).unwrap(), suback(4, &[0x8f, 0x87])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_filters_close_a_v311_session_v3_mqtt_4_7_1_1() {
    let mut body = vec![0, 1];
    body.extend_from_slice(&[0, 5]);
    body.extend_from_slice(b"a/#/b");
    body.push(0);
    let mut frame = vec![0x82, body.len() as u8];
    frame.extend(body);
    let mut s = state(V3, Terms::default());
    assert!(matches!(
        s.on_client_packet(Bytes::from(frame), &open_policy()),
        Err(Refusal::Peer(PeerFault::Packet(
            mqtt::DecodeError::InvalidTopicFilter { .. }
        )))
    ));
}

// === acknowledgements in the broker's order (issue 13) ===

/// alice may receive everything but `a/secret`, and subscribe to `$SYS/#` too.
fn receive_policy() -> Arc<Policy> {
    let source = PolicySource {
        path: "p.yaml".into(),
        text: "acl:\n  - deny: receive\n    topics: [\"a/secret\"]\n  - allow: all\n    topics: [\"#\", \"$SYS/#\"]\n"
            .into(),
    };
    Arc::new(crate::policy::compile(&[source]).unwrap())
}

/// The packets in one step's bytes (several when held acknowledgements were released with it).
fn packets(bytes: Bytes, v: ProtocolVersion) -> Vec<Packet> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = mqtt::check(&rest, usize::MAX).unwrap().unwrap().frame_len();
        out.push(mqtt::decode(rest.split_to(len), v).unwrap());
    }
    out
}

/// What a broker packet sends back to the broker now (none: held or nothing owed).
fn to_broker(step: Result<Step, Refusal>, v: ProtocolVersion) -> Vec<Packet> {
    match step {
        Ok(Step::Reply(b)) | Ok(Step::Refuse { reply: Some(b), .. }) => packets(b, v),
        Ok(Step::Nothing) | Ok(Step::Refuse { reply: None, .. }) => Vec::new(),
        other => panic!("expected an answer to the broker, got {other:?}"),
    }
}

/// What a client packet sends on to the broker (none: held or dropped).
fn on_to_broker(step: Result<Step, Refusal>, v: ProtocolVersion) -> Vec<Packet> {
    match step {
        Ok(Step::Forward(b)) => packets(b, v),
        Ok(Step::Nothing) => Vec::new(),
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn small_client() -> Terms {
    Terms {
        client_max_packet_size: Some(32),
        ..Terms::default()
    }
}

#[test]
fn acks_for_dropped_deliveries_wait_for_earlier_ones_qos1() {
    let (v, pol) = (V5, receive_policy());
    let mut s = state(v, small_client());
    let deliver = |s: &mut State, topic: &str, id: u16, payload: &[u8]| {
        s.on_broker_packet(
            enc(publish(topic, QoS::AtLeastOnce, Some(id), payload), v),
            &pol,
        )
    };
    // Nothing open: a dropped delivery is acknowledged at once.
    assert_eq!(
        to_broker(deliver(&mut s, "a/secret", 1, b"x"), v),
        [Packet::PubAck(ack(1, 0))]
    );
    assert!(forwarded(&deliver(&mut s, "a/x", 2, b"x")));
    // Receive deny and Maximum Packet Size drops behind an unacknowledged delivery: held.
    assert!(to_broker(deliver(&mut s, "a/secret", 3, b"x"), v).is_empty());
    assert!(to_broker(deliver(&mut s, "a/x", 4, &[b'x'; 40]), v).is_empty());
    assert!(forwarded(&deliver(&mut s, "a/y", 5, b"x")));
    assert!(to_broker(deliver(&mut s, "a/secret", 6, b"x"), v).is_empty());
    // The client's PUBACK goes first, then moat's, in delivery order, in one write.
    let sent = s.on_client_packet(enc(Packet::PubAck(ack(2, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [
            Packet::PubAck(ack(2, 0)),
            Packet::PubAck(ack(3, 0)),
            Packet::PubAck(ack(4, 0))
        ]
    );
    let sent = s.on_client_packet(enc(Packet::PubAck(ack(5, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [Packet::PubAck(ack(5, 0)), Packet::PubAck(ack(6, 0))]
    );
    // All complete: the next drop is acknowledged at once again.
    assert_eq!(
        to_broker(deliver(&mut s, "a/secret", 7, b"x"), v),
        [Packet::PubAck(ack(7, 0))]
    );
}

#[test]
fn qos2_pubrec_and_pubcomp_keep_the_broker_s_order() {
    let (v, pol) = (V3, receive_policy());
    let mut s = state(v, Terms::default());
    let deliver = |s: &mut State, topic: &str, id: u16| {
        s.on_broker_packet(
            enc(publish(topic, QoS::ExactlyOnce, Some(id), b"x"), v),
            &pol,
        )
    };
    assert!(forwarded(&deliver(&mut s, "a/x", 1)));
    assert!(to_broker(deliver(&mut s, "a/secret", 2), v).is_empty());
    assert!(forwarded(&deliver(&mut s, "a/y", 3)));
    // PUBREC: the client's 1, then moat's 2 (rumqttd checks PUBACK and PUBREC in one order).
    let sent = s.on_client_packet(enc(Packet::PubRec(ack(1, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [Packet::PubRec(ack(1, 0)), Packet::PubRec(ack(2, 0))]
    );
    let sent = s.on_client_packet(enc(Packet::PubRec(ack(3, 0)), v), &pol);
    assert_eq!(on_to_broker(sent, v), [Packet::PubRec(ack(3, 0))]);
    // The broker's PUBRELs come in that order; moat's PUBCOMP for 2 waits for the client's 1.
    assert!(forwarded(
        &s.on_broker_packet(enc(Packet::PubRel(ack(1, 0)), v), &pol)
    ));
    assert!(to_broker(
        s.on_broker_packet(enc(Packet::PubRel(ack(2, 0)), v), &pol),
        v
    )
    .is_empty());
    assert!(forwarded(
        &s.on_broker_packet(enc(Packet::PubRel(ack(3, 0)), v), &pol)
    ));
    // A resent PUBREL for moat's own exchange is answered by the held PUBCOMP, not twice.
    assert!(to_broker(
        s.on_broker_packet(enc(Packet::PubRel(ack(2, 0)), v), &pol),
        v
    )
    .is_empty());
    let sent = s.on_client_packet(enc(Packet::PubComp(ack(1, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [Packet::PubComp(ack(1, 0)), Packet::PubComp(ack(2, 0))]
    );
    let sent = s.on_client_packet(enc(Packet::PubComp(ack(3, 0)), v), &pol);
    assert_eq!(on_to_broker(sent, v), [Packet::PubComp(ack(3, 0))]);
    // Complete: a PUBREL for 2 now is one moat never saw (a resumed session's): forwarded.
    assert!(forwarded(
        &s.on_broker_packet(enc(Packet::PubRel(ack(2, 0)), v), &pol)
    ));
}

#[test]
fn client_acks_out_of_order_are_held_and_keep_their_reason_mqtt_4_6_0_2() {
    let (v, pol) = (V5, receive_policy());
    let mut s = state(v, Terms::default());
    for id in [1, 2, 3] {
        assert!(forwarded(&s.on_broker_packet(
            enc(publish("a/x", QoS::AtLeastOnce, Some(id), b"x"), v),
            &pol
        )));
    }
    // 3 and 2 before 1 (the client breaks [MQTT-4.6.0-2]): held, once.
    let no_match = ack(3, 0x10);
    assert!(on_to_broker(
        s.on_client_packet(enc(Packet::PubAck(no_match.clone()), v), &pol),
        v
    )
    .is_empty());
    assert!(on_to_broker(
        s.on_client_packet(enc(Packet::PubAck(no_match.clone()), v), &pol),
        v
    )
    .is_empty());
    assert!(on_to_broker(
        s.on_client_packet(enc(Packet::PubAck(ack(2, 0)), v), &pol),
        v
    )
    .is_empty());
    let sent = s.on_client_packet(enc(Packet::PubAck(ack(1, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [
            Packet::PubAck(ack(1, 0)),
            Packet::PubAck(ack(2, 0)),
            Packet::PubAck(no_match)
        ]
    );
}

#[test]
fn a_delivery_resent_by_the_broker_is_in_line_once() {
    let (v, pol) = (V3, receive_policy());
    let mut s = state(v, Terms::default());
    let p = enc(publish("a/x", QoS::AtLeastOnce, Some(1), b"x"), v);
    assert!(forwarded(&s.on_broker_packet(p.clone(), &pol)));
    assert!(forwarded(&s.on_broker_packet(p, &pol)));
    assert!(to_broker(
        s.on_broker_packet(
            enc(publish("a/secret", QoS::AtLeastOnce, Some(2), b"x"), v),
            &pol
        ),
        v
    )
    .is_empty());
    let sent = s.on_client_packet(enc(Packet::PubAck(ack(1, 0)), v), &pol);
    assert_eq!(
        on_to_broker(sent, v),
        [Packet::PubAck(ack(1, 0)), Packet::PubAck(ack(2, 0))]
    );
    // The client's second PUBACK for it belongs to nothing now.
    assert!(on_to_broker(
        s.on_client_packet(enc(Packet::PubAck(ack(1, 0)), v), &pol),
        v
    )
    .is_empty());
}

#[test]
fn a_broker_out_of_step_on_qos2_ends_the_session() {
    let (v, pol) = (V3, receive_policy());
    let mut s = state(v, Terms::default());
    assert!(forwarded(&s.on_broker_packet(
        enc(publish("a/x", QoS::ExactlyOnce, Some(1), b"x"), v),
        &pol
    )));
    // PUBREL before the PUBREC went to it.
    let early = s.on_broker_packet(enc(Packet::PubRel(ack(1, 0)), v), &pol);
    assert!(matches!(early, Err(Refusal::Broker(_))), "{early:?}");
    // A new delivery with an id whose QoS 2 exchange is still open.
    let mut s = state(v, Terms::default());
    assert!(forwarded(&s.on_broker_packet(
        enc(publish("a/x", QoS::ExactlyOnce, Some(1), b"x"), v),
        &pol
    )));
    assert!(forwarded(
        &s.on_client_packet(enc(Packet::PubRec(ack(1, 0)), v), &pol)
    ));
    let reused = s.on_broker_packet(
        enc(publish("a/x", QoS::AtLeastOnce, Some(1), b"x"), v),
        &pol,
    );
    assert!(matches!(reused, Err(Refusal::Broker(_))), "{reused:?}");
}

// === QoS 2 exactly once from the client (issue 13) ===

#[test]
fn a_qos2_resend_never_reaches_the_broker_twice_mqtt_4_3_3_10() {
    let mut s = state(V3, Terms::default());
    let p = enc(publish("a/b", QoS::ExactlyOnce, Some(7), b"one"), V3);
    let mut dup = p.to_vec();
    dup[0] |= 0x08;
    let dup = Bytes::from(dup);
    assert!(forwarded(&s.on_client_packet(p, &open_policy())));
    // Before the broker's PUBREC: that PUBREC answers the resend too.
    assert!(matches!(
        s.on_client_packet(dup.clone(), &open_policy()),
        Ok(Step::Nothing)
    ));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubRec(ack(7, 0)), V3),
        &open_policy()
    )));
    // After it: moat answers with the same PUBREC.
    assert_eq!(
        reply(s.on_client_packet(dup, &open_policy()), V3),
        Packet::PubRec(ack(7, 0))
    );
    assert!(forwarded(&s.on_client_packet(
        enc(Packet::PubRel(ack(7, 0)), V3),
        &open_policy()
    )));
    // A resent PUBREL before the PUBCOMP: the broker's PUBCOMP answers both (rumqttd would
    // release the next recorded message at a second PUBREL).
    assert!(matches!(
        s.on_client_packet(enc(Packet::PubRel(ack(7, 0)), V3), &open_policy()),
        Ok(Step::Nothing)
    ));
    assert!(forwarded(&s.on_broker_packet(
        enc(Packet::PubComp(ack(7, 0)), V3),
        &open_policy()
    )));
    // The id is free: a new message with it goes to the broker, as itself.
    let two = enc(publish("a/b", QoS::ExactlyOnce, Some(7), b"two"), V3);
    match s.on_client_packet(two.clone(), &open_policy()) {
        Ok(Step::Forward(b)) => assert_eq!(b, two),
        other => panic!("{other:?}"),
    }
}

// === filters the embedded broker cannot serve (issue 13) ===

#[test]
fn dollar_filters_the_embedded_broker_cannot_serve_get_0x83_and_the_rest_goes_on() {
    let embedded = Terms {
        embedded_broker: true,
        ..Terms::default()
    };
    let pol = receive_policy();
    let mut s = state(V5, embedded);
    match s.on_client_packet(subscribe(1, &["$SYS/#", "a/b", "$share/g/a/c"]), &pol) {
        Ok(Step::Refuse {
            reply: None,
            forward: Some(f),
            audits,
        }) => {
            assert_eq!(f, subscribe(1, &["a/b", "$share/g/a/c"]));
            assert_eq!(audits.len(), 1);
            assert_eq!(audits[0].topic, "$SYS/#");
        }
        other => panic!("{other:?}"),
    }
    match s.on_broker_packet(enc(suback(1, &[1, 1]), V5), &pol) {
        Ok(Step::Forward(b)) => assert_eq!(mqtt::decode(b, V5).unwrap(), suback(1, &[0x83, 1, 1])),
        other => panic!("{other:?}"),
    }
    // Alone in its SUBSCRIBE: answered by moat; MQTT 3.1.1 says 0x80.
    let mut s = state(V3, embedded);
    let mut frame = subscribe(2, &["$SYS/#"]).to_vec();
    frame.remove(4); // no property length in 3.1.1
    frame[1] -= 1;
    match s.on_client_packet(Bytes::from(frame), &pol) {
        Ok(Step::Refuse {
            reply: Some(r),
            forward: None,
            ..
        }) => assert_eq!(mqtt::decode(r, V3).unwrap(), suback(2, &[0x80])),
        other => panic!("{other:?}"),
    }
    // An external broker answers for itself: forwarded as it is.
    let mut s = state(V5, Terms::default());
    let frame = subscribe(3, &["$SYS/#", "a/b"]);
    match s.on_client_packet(frame.clone(), &pol) {
        Ok(Step::Forward(b)) => assert_eq!(b, frame),
        other => panic!("{other:?}"),
    }
}
