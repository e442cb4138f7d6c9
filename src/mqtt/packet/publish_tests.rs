//! Byte-level PUBLISH tests (catalogue §A.1–3, §A.10, §A.12, §A.25–26, §C.42–51).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::error::DecodeError;
use crate::mqtt::packet::{decode, Packet};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::string::StringError;
use crate::mqtt::test_util::{hex, round_trip};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn dec(h: &str, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    decode(hex(h), v)
}

fn publish(h: &str, v: ProtocolVersion) -> Publish {
    match dec(h, v) {
        Ok(Packet::Publish(p)) => p,
        other => panic!("{h}: {other:?}"),
    }
}

fn reason(h: &str, v: ProtocolVersion) -> ReasonCode {
    dec(h, v).unwrap_err().reason()
}

#[test]
fn v311_qos0_and_qos1_round_trip() {
    let bytes = hex("30 07 00 03 61 2f 62 68 69");
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/b".into(),
        pkid: None,
        properties: PublishProperties::default(),
        payload: Bytes::from_static(b"hi"),
    };
    round_trip(&bytes, V3, &Packet::Publish(p.clone()));
    let bytes = hex("3b 09 00 03 61 2f 62 00 07 68 69");
    let p = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        pkid: Some(7),
        ..p
    };
    round_trip(&bytes, V3, &Packet::Publish(p));
}

#[test]
fn payload_is_a_slice_of_the_frame() {
    let frame = hex("34 0a 00 03 61 2f 62 00 07 78 79 7a");
    let range = frame.as_ptr_range();
    let Ok(Packet::Publish(p)) = decode(frame.clone(), V3) else {
        panic!("decode failed")
    };
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"xyz");
    assert!(range.contains(&p.payload.as_ptr()), "payload was copied");
    assert!(
        range.contains(&p.topic.as_bytes().as_ptr()),
        "topic was copied"
    );
}

#[test]
fn wildcard_topic_mqtt_3_3_2_2() {
    for h in [
        "30 05 00 03 61 2f 23",
        "30 07 00 05 61 2f 2b 2f 62",
        "30 04 00 02 61 23",
        "30 03 00 01 2b",
    ] {
        let e = dec(h, V3).unwrap_err();
        assert!(
            matches!(e, DecodeError::InvalidTopicName { .. }),
            "{h}: {e:?}"
        );
    }
    assert_eq!(
        reason("30 06 00 03 61 2f 23 00", V5),
        ReasonCode::TopicNameInvalid
    );
}

#[test]
fn nul_and_ill_formed_utf8_topic_mqtt_1_5_4_1_mqtt_1_5_4_2() {
    let e = dec("30 05 00 03 61 00 62", V3).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::InvalidString {
            source: StringError::Nul,
            ..
        }
    ));
    for h in [
        "30 06 00 04 61 c0 af 62",
        "30 05 00 03 61 c0 80",
        "30 06 00 04 61 ed a0 80",
        "30 05 00 03 61 e2 82",
    ] {
        let e = dec(h, V3).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::InvalidString {
                    source: StringError::InvalidUtf8 { .. },
                    ..
                }
            ),
            "{h}"
        );
        assert_eq!(reason(h, V5), ReasonCode::MalformedPacket);
    }
}

#[test]
fn qos_3_mqtt_3_3_1_4() {
    let e = dec("36 07 00 03 61 2f 62 00 01", V3).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidQoS { .. }));
    assert_eq!(e.spec(), Some("MQTT-3.3.1-4"));
}

#[test]
fn dup_on_qos0_mqtt_3_3_1_2() {
    assert_eq!(dec("38 05 00 03 61 2f 62", V3), Err(DecodeError::DupOnQoS0));
}

#[test]
fn packet_id_zero_mqtt_2_2_1_3() {
    let h = "32 07 00 03 61 2f 62 00 00";
    assert!(matches!(dec(h, V3), Err(DecodeError::ZeroPacketId { .. })));
    assert_eq!(
        reason("32 08 00 03 61 2f 62 00 00 00", V5),
        ReasonCode::ProtocolError
    );
}

#[test]
fn empty_topic_v311_mqtt_4_7_3_1() {
    let e = dec("30 04 00 00 68 69", V3).unwrap_err();
    assert_eq!(e.spec(), Some("MQTT-4.7.3-1"));
    // v5 without a Topic Alias: protocol error.
    assert_eq!(
        dec("30 04 00 00 00 70", V5),
        Err(DecodeError::EmptyTopicWithoutAlias)
    );
}

#[test]
fn topic_alias_set_and_use_v5() {
    let p = publish("30 10 00 09 61 6c 6c 6f 77 65 64 2f 78 03 23 00 01 70", V5);
    assert_eq!(p.topic, "allowed/x");
    assert_eq!(p.properties.topic_alias, Some(1));
    assert_eq!(&p.payload[..], b"p");
    let bytes = hex("30 07 00 00 03 23 00 01 70");
    let p = publish("30 07 00 00 03 23 00 01 70", V5);
    assert!(p.topic.is_empty());
    round_trip(&bytes, V5, &Packet::Publish(p));
}

#[test]
fn topic_alias_zero_mqtt_3_3_2_8() {
    let e = dec("30 0a 00 03 61 2f 62 03 23 00 00 70", V5).unwrap_err();
    assert_eq!(e, DecodeError::TopicAliasZero);
    assert_eq!(e.reason(), ReasonCode::TopicAliasInvalid);
}

#[test]
fn duplicate_topic_alias_is_protocol_error() {
    // Catalogue §A.3: rumqttd takes the last, a naive proxy the first.
    let e = dec("30 0a 00 00 06 23 00 01 23 00 02 70", V5).unwrap_err();
    assert_eq!(e, DecodeError::DuplicateProperty { id: 0x23 });
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn property_length_mismatch_is_malformed() {
    // Declared property length 1 holding a 3-byte property.
    let e = dec("30 09 00 03 61 2f 62 01 23 00 01", V5).unwrap_err();
    assert!(matches!(e, DecodeError::Truncated { .. }));
    // Property length larger than the packet.
    assert_eq!(
        reason("30 06 00 03 61 2f 62 05", V5),
        ReasonCode::MalformedPacket
    );
    // Non-minimal property length.
    assert!(matches!(
        dec("30 07 00 03 61 2f 62 80 00", V5),
        Err(DecodeError::MalformedVarInt { .. })
    ));
}

#[test]
fn inner_length_overrun_is_truncated() {
    assert!(matches!(
        dec("30 07 ff ff 61 62 63 64 65", V3),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn five_byte_remaining_length_mqtt_1_5_5_1() {
    assert_eq!(reason("30 80 80 80 80 01", V5), ReasonCode::MalformedPacket);
    // In a Subscription Identifier.
    assert!(matches!(
        dec("30 0c 00 03 61 2f 62 06 0b 80 80 80 80 01", V5),
        Err(DecodeError::MalformedVarInt { .. })
    ));
}

#[test]
fn property_not_allowed_in_publish() {
    for h in [
        "30 0c 00 03 61 2f 62 06 1c 00 03 61 62 63", // Server Reference
        "30 0b 00 03 61 2f 62 05 11 00 00 00 01",    // Session Expiry
        "30 0a 00 03 61 2f 62 04 15 00 01 6d",       // Authentication Method
    ] {
        let e = dec(h, V5).unwrap_err();
        assert!(matches!(e, DecodeError::PropertyNotAllowed { .. }), "{h}");
        assert_eq!(e.reason(), ReasonCode::MalformedPacket);
    }
    assert!(matches!(
        dec("30 08 00 03 61 2f 62 02 7f 00", V5),
        Err(DecodeError::UnknownProperty { id: 0x7f })
    ));
}

#[test]
fn property_values_out_of_range_are_protocol_errors() {
    assert_eq!(
        reason("30 08 00 03 61 2f 62 02 01 07", V5),
        ReasonCode::ProtocolError
    );
    assert_eq!(
        reason("30 08 00 03 61 2f 62 02 0b 00", V5),
        ReasonCode::ProtocolError
    );
}

#[test]
fn response_topic_wildcard_mqtt_3_3_2_14() {
    let e = dec("30 0c 00 03 61 2f 62 06 08 00 03 61 2f 23", V5).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidResponseTopic { .. }));
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn client_subscription_identifier_is_exposed_mqtt_3_3_4_6() {
    // The codec accepts it (a server may send it); the session refuses it from clients.
    let p = publish("30 08 00 03 61 2f 62 02 0b 01", V5);
    assert_eq!(p.properties.subscription_identifiers, vec![1]);
}

#[test]
fn v5_all_properties_round_trip() {
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t/1".into(),
        pkid: Some(0xbeef),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(30),
            topic_alias: Some(3),
            response_topic: Some("resp/1".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("k".into(), "v".into())],
            subscription_identifiers: vec![1, 268_435_455],
            content_type: Some("application/json".into()),
        },
        payload: Bytes::from_static(b"{}"),
    };
    let bytes = p.clone();
    let wire = Packet::Publish(bytes).to_bytes(V5).unwrap();
    round_trip(&wire, V5, &Packet::Publish(p));
}

#[test]
fn encode_refuses_invalid_publish() {
    let mut p = publish("30 07 00 03 61 2f 62 68 69", V3);
    p.topic = "a/#".into();
    assert!(Packet::Publish(p.clone()).to_bytes(V3).is_err());
    p.topic = "a/b".into();
    p.pkid = Some(1); // QoS 0 with an id
    assert!(Packet::Publish(p.clone()).to_bytes(V3).is_err());
    p.qos = QoS::AtLeastOnce;
    p.pkid = Some(0);
    assert!(Packet::Publish(p.clone()).to_bytes(V3).is_err());
    p.pkid = Some(1);
    p.properties.topic_alias = Some(1);
    assert!(
        Packet::Publish(p.clone()).to_bytes(V3).is_err(),
        "v5 field in v3"
    );
    assert!(Packet::Publish(p).to_bytes(V5).is_ok());
}
