//! Property tests for the whole codec: round trips for generated valid packets of every type and
//! version, agreement between decoder and encoder on mutated inputs, and "never panics" on
//! arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

use super::header::check;
use super::packet::*;
use super::properties::AckProperties;
use super::PacketType;
use super::{MqttStr, ProtocolVersion, QoS};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![V31, V3, V5])
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn string() -> impl Strategy<Value = MqttStr> {
    "[a-zA-Z0-9 é€𝄞/+#$-]{0,12}".prop_map(MqttStr::from)
}

fn topic() -> impl Strategy<Value = MqttStr> {
    "[a-z$]{1,4}(/[a-z0-9é]{0,4}){0,3}".prop_map(MqttStr::from)
}

fn filter() -> impl Strategy<Value = MqttStr> {
    (topic(), 0..5u8).prop_map(|(t, k)| {
        let t = t.as_str();
        MqttStr::from(match k {
            0 => t.to_owned(),
            1 => format!("{t}/#"),
            2 => format!("+/{t}"),
            3 => "#".to_owned(),
            _ => format!("$share/g1/{t}"),
        })
    })
}

fn data() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn users(v5: bool) -> impl Strategy<Value = Vec<(MqttStr, MqttStr)>> {
    proptest::collection::vec((string(), string()), 0..3)
        .prop_map(move |u| if v5 { u } else { Vec::new() })
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn opt<S: Strategy>(s: S, v5: bool) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::of(s).prop_map(move |o| if v5 { o } else { None })
}

fn ack_props(v5: bool) -> impl Strategy<Value = AckProperties> {
    (opt(string(), v5), users(v5)).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

fn publish(v5: bool) -> impl Strategy<Value = Publish> {
    let props = (
        opt(0..=1u8, v5),
        opt(any::<u32>(), v5),
        opt(1..=u16::MAX, v5),
        opt(topic(), v5),
        opt(data(), v5),
        users(v5),
        proptest::collection::vec(1..=268_435_455u32, 0..3),
        opt(string(), v5),
    )
        .prop_map(
            move |(pfi, mei, alias, rt, cd, up, sids, ct)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: alias,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
                subscription_identifiers: if v5 { sids } else { Vec::new() },
                content_type: ct,
            },
        );
    (
        qos(),
        any::<(bool, bool, bool)>(),
        topic(),
        pkid(),
        props,
        data(),
    )
        .prop_map(
            |(qos, (dup, retain, empty), topic, id, properties, payload)| {
                let alias = properties.topic_alias.is_some();
                Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic: if empty && alias {
                        MqttStr::default()
                    } else {
                        topic
                    },
                    pkid: (qos != QoS::AtMostOnce).then_some(id),
                    properties,
                    payload,
                }
            },
        )
}

fn ack(t: PacketType, v5: bool) -> impl Strategy<Value = Packet> {
    let codes: Vec<u8> = (0..=255u8)
        .filter(|&c| super::reason::allowed_in(t, c))
        .collect();
    (pkid(), select(codes), ack_props(v5)).prop_map(move |(pkid, reason, properties)| {
        let a = Ack {
            pkid,
            reason: if v5 { reason } else { 0 },
            properties,
        };
        match t {
            PacketType::PubAck => Packet::PubAck(a),
            PacketType::PubRec => Packet::PubRec(a),
            PacketType::PubRel => Packet::PubRel(a),
            _ => Packet::PubComp(a),
        }
    })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Subscribe> {
    let options = (qos(), any::<(bool, bool)>(), 0..3u8).prop_map(move |(qos, (nl, rap), rh)| {
        SubscribeOptions {
            qos,
            no_local: v5 && nl,
            retain_as_published: v5 && rap,
            retain_handling: match (v5, rh) {
                (true, 1) => RetainHandling::SendIfNew,
                (true, 2) => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            },
        }
    });
    let entries = proptest::collection::vec((filter(), options), 1..4).prop_map(|mut v| {
        for (f, o) in &mut v {
            if f.as_str().starts_with("$share/") {
                o.no_local = false; // [MQTT-3.8.3-4]
            }
        }
        v
    });
    (pkid(), opt(1..=268_435_455u32, v5), users(v5), entries).prop_map(
        |(pkid, sid, user_properties, filters)| Subscribe {
            pkid,
            properties: SubscribeProperties {
                subscription_identifier: sid,
                user_properties,
            },
            filters,
        },
    )
}

fn suback(v5: bool) -> impl Strategy<Value = SubAck> {
    let codes: Vec<u8> = if v5 {
        (0..=255u8)
            .filter(|&c| super::reason::allowed_in(PacketType::SubAck, c))
            .collect()
    } else {
        vec![0, 1, 2, 0x80]
    };
    (
        pkid(),
        ack_props(v5),
        proptest::collection::vec(select(codes), 1..5),
    )
        .prop_map(|(pkid, properties, codes)| SubAck {
            pkid,
            properties,
            codes,
        })
}

fn unsubscribe(v5: bool) -> impl Strategy<Value = Unsubscribe> {
    (pkid(), users(v5), proptest::collection::vec(filter(), 1..4)).prop_map(
        |(pkid, user_properties, filters)| Unsubscribe {
            pkid,
            user_properties,
            filters,
        },
    )
}

fn unsuback(v5: bool) -> impl Strategy<Value = UnsubAck> {
    let codes = select(vec![0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]);
    (
        pkid(),
        ack_props(v5),
        proptest::collection::vec(codes, 1..4),
    )
        .prop_map(move |(pkid, properties, codes)| UnsubAck {
            pkid,
            properties,
            codes: if v5 { codes } else { Vec::new() },
        })
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let v5 = v.is_v5();
    let codes: Vec<u8> = if v5 {
        (0..=255u8)
            .filter(|&c| super::reason::allowed_in(PacketType::ConnAck, c))
            .collect()
    } else {
        (0..=5).collect()
    };
    let props = (
        (
            opt(any::<u32>(), v5),
            opt(1..=u16::MAX, v5),
            opt(0..=1u8, v5),
        ),
        (
            opt(any::<bool>(), v5),
            opt(1..=u32::MAX, v5),
            opt(string(), v5),
        ),
        (opt(any::<u16>(), v5), opt(string(), v5), users(v5)),
        (
            opt(any::<bool>(), v5),
            opt(any::<u16>(), v5),
            opt(string(), v5),
        ),
        (opt(string(), v5), opt(data(), v5)),
    )
        .prop_map(
            |((se, rm, mq), (ra, mps, aci), (tam, rs, up), (wsa, ska, ri), (am, ad))| {
                ConnAckProperties {
                    session_expiry: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: wsa.map(|b| !b),
                    shared_subscription_available: wsa,
                    server_keep_alive: ska,
                    response_information: ri.clone(),
                    server_reference: ri,
                    // Authentication Data only with a Method.
                    authentication_data: am.as_ref().and(ad),
                    authentication_method: am,
                }
            },
        );
    (any::<bool>(), select(codes), props).prop_map(move |(sp, code, properties)| ConnAck {
        session_present: sp && code == 0 && v != V31,
        code,
        properties,
    })
}

fn disconnect(v5: bool) -> impl Strategy<Value = Disconnect> {
    let codes: Vec<u8> = (0..=255u8)
        .filter(|&c| super::reason::allowed_in(PacketType::Disconnect, c))
        .collect();
    (
        select(codes),
        opt(any::<u32>(), v5),
        opt(string(), v5),
        opt(string(), v5),
        users(v5),
    )
        .prop_map(move |(reason, se, rs, sr, up)| Disconnect {
            reason: if v5 { reason } else { 0 },
            properties: DisconnectProperties {
                session_expiry: se,
                reason_string: rs,
                server_reference: sr,
                user_properties: up,
            },
        })
}

fn auth() -> impl Strategy<Value = Auth> {
    (
        select(vec![0u8, 0x18, 0x19]),
        string(),
        opt(data(), true),
        users(true),
    )
        .prop_map(|(reason, method, data, user_properties)| Auth {
            reason,
            properties: AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                reason_string: None,
                user_properties,
            },
        })
}

/// Every non-CONNECT packet valid in `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    let mut arms = vec![
        publish(v5).prop_map(Packet::Publish).boxed(),
        ack(PacketType::PubAck, v5).boxed(),
        ack(PacketType::PubRec, v5).boxed(),
        ack(PacketType::PubRel, v5).boxed(),
        ack(PacketType::PubComp, v5).boxed(),
        subscribe(v5).prop_map(Packet::Subscribe).boxed(),
        suback(v5).prop_map(Packet::SubAck).boxed(),
        unsubscribe(v5).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(v5).prop_map(Packet::UnsubAck).boxed(),
        connack(v).prop_map(Packet::ConnAck).boxed(),
        disconnect(v5).prop_map(Packet::Disconnect).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
    ];
    if v5 {
        arms.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(arms).boxed()
}

fn connect() -> impl Strategy<Value = Connect> {
    let will = (
        topic(),
        data(),
        qos(),
        any::<bool>(),
        opt(1..=u32::MAX, true),
        users(true),
    );
    (
        version(),
        any::<(bool, bool, bool)>(),
        any::<u16>(),
        "[a-zA-Z0-9-]{0,23}",
        proptest::option::of(will),
        proptest::option::of(string()),
        proptest::option::of(data()),
        (
            opt(any::<u32>(), true),
            opt(1..=u16::MAX, true),
            opt(any::<bool>(), true),
        ),
        (opt(string(), true), opt(data(), true)),
    )
        .prop_map(
            |(v, (clean, _, _), ka, id, will, user, pass, (se, rm, rri), (am, ad))| {
                let v5 = v.is_v5();
                let id = if v == V31 && id.is_empty() {
                    "x".to_owned()
                } else {
                    id
                };
                let clean = clean || (v == V3 && id.is_empty());
                Connect {
                    protocol: v,
                    clean_start: clean,
                    keep_alive: ka,
                    client_id: id.as_str().into(),
                    will: will.map(|(topic, payload, qos, retain, delay, up)| Will {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties: WillProperties {
                            will_delay_interval: delay.filter(|_| v5),
                            user_properties: if v5 { up } else { Vec::new() },
                            ..WillProperties::default()
                        },
                    }),
                    password: if v5 || user.is_some() { pass } else { None },
                    username: user,
                    properties: if v5 {
                        ConnectProperties {
                            session_expiry: se,
                            receive_maximum: rm,
                            request_response_information: rri,
                            authentication_data: am.as_ref().and(ad),
                            authentication_method: am,
                            ..ConnectProperties::default()
                        }
                    } else {
                        ConnectProperties::default()
                    },
                }
            },
        )
}

fn mutate(bytes: &Bytes, pos: usize, val: u8, cut: usize) -> Bytes {
    let mut v = bytes.to_vec();
    if !v.is_empty() {
        let i = pos % v.len();
        v[i] = val;
    }
    v.truncate(v.len().saturating_sub(cut));
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn packet_round_trip((v, p) in version().prop_flat_map(|v| (Just(v), packet(v)))) {
        let bytes = p.to_bytes(v).unwrap();
        let h = check(&bytes, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(h.frame_len(), bytes.len());
        let decoded = decode(bytes.clone(), v).unwrap();
        prop_assert_eq!(&decoded, &p);
        prop_assert_eq!(decoded.to_bytes(v).unwrap(), bytes);
    }

    #[test]
    fn connect_round_trip(c in connect()) {
        let mut out = BytesMut::new();
        c.encode(&mut out).unwrap();
        let bytes = out.freeze();
        let decoded = Connect::decode(bytes.clone()).unwrap();
        prop_assert_eq!(&decoded, &c);
        let mut again = BytesMut::new();
        decoded.encode(&mut again).unwrap();
        prop_assert_eq!(again.freeze(), bytes);
    }

    /// Whatever the decoder accepts, the encoder accepts, and the re-encoding means the same.
    #[test]
    fn mutated_packets_never_panic_and_agree(
        (v, p) in version().prop_flat_map(|v| (Just(v), packet(v))),
        pos in any::<usize>(), val in any::<u8>(), cut in 0..3usize,
    ) {
        let bytes = mutate(&p.to_bytes(v).unwrap(), pos, val, cut);
        let _ = check(&bytes, 1024);
        if let Ok(q) = decode(bytes, v) {
            let canonical = q.to_bytes(v).unwrap();
            prop_assert_eq!(decode(canonical, v).unwrap(), q);
        }
    }

    #[test]
    fn mutated_connects_never_panic_and_agree(
        c in connect(), pos in any::<usize>(), val in any::<u8>(), cut in 0..3usize,
    ) {
        let mut out = BytesMut::new();
        c.encode(&mut out).unwrap();
        let bytes = mutate(&out.freeze(), pos, val, cut);
        if let Ok(q) = Connect::decode(bytes) {
            let mut again = BytesMut::new();
            q.encode(&mut again).unwrap();
            prop_assert_eq!(Connect::decode(again.freeze()).unwrap(), q);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = check(&bytes, usize::MAX);
        let _ = check(&bytes, 16);
        let b = Bytes::from(bytes);
        for v in [V31, V3, V5] {
            let _ = decode(b.clone(), v);
        }
        let _ = Connect::decode(b);
    }

    #[test]
    fn arbitrary_bodies_never_panic(byte1 in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..48)) {
        // Well-framed but random bodies reach every packet parser.
        let frame = super::test_util::frame(byte1, &body);
        for v in [V31, V3, V5] {
            if let Ok(q) = decode(frame.clone(), v) {
                let canonical = q.to_bytes(v).unwrap();
                prop_assert_eq!(decode(canonical, v).unwrap(), q);
            }
        }
        let _ = Connect::decode(frame);
    }

    #[test]
    fn matches_never_panics(f in "[a-z/+#$]{0,12}", t in "[a-z/$]{0,12}") {
        let _ = super::topic::matches(&f, &t);
        let _ = super::topic::split_shared(&f);
        let _ = super::topic::validate_topic_filter(&f);
    }
}
