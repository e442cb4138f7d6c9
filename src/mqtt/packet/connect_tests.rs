//! Byte-level CONNECT tests (catalogue §B.37, §B.38, §B.40, §C.50).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use bytes::{Bytes, BytesMut};

use super::*;
use crate::mqtt::error::{ConnectError, DecodeError};
use crate::mqtt::test_util::{cat, frame, hex};
use crate::mqtt::ReasonCode;

const V311: &str =
    "10 19 00 04 4d 51 54 54 04 c2 00 3c 00 02 63 31 00 05 61 6c 69 63 65 00 02 70 77";
const V5: &str = "10 0f 00 04 4d 51 54 54 05 02 00 3c 00 00 02 63 31";

/// A v5 CONNECT (clean start, keep alive 60, client id `c1`) with this property block body.
fn v5_with_props(props: &[u8]) -> Bytes {
    let head = hex("00 04 4d 51 54 54 05 02 00 3c");
    frame(
        0x10,
        &cat(&[&head, &[props.len() as u8], props, b"\x00\x02c1"]),
    )
}

fn err(bytes: Bytes) -> ConnectError {
    Connect::decode(bytes).unwrap_err()
}

fn malformed(bytes: Bytes) -> (Option<ProtocolVersion>, DecodeError) {
    match err(bytes) {
        ConnectError::Malformed { version, error } => (version, error),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn encode(c: &Connect) -> Bytes {
    let mut out = BytesMut::new();
    c.encode(&mut out).unwrap();
    out.freeze()
}

#[test]
fn v311_baseline_round_trip() {
    let bytes = hex(V311);
    let c = Connect::decode(bytes.clone()).unwrap();
    assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "c1");
    assert_eq!(c.username.as_ref().map(MqttStr::as_str), Some("alice"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(c.will, None);
    assert_eq!(encode(&c), bytes);
}

#[test]
fn v5_baseline_round_trip() {
    let bytes = hex(V5);
    let c = Connect::decode(bytes.clone()).unwrap();
    assert_eq!(c.protocol, ProtocolVersion::V5);
    assert_eq!(c.properties, ConnectProperties::default());
    assert_eq!(encode(&c), bytes);
}

#[test]
fn v31_decodes_and_converts_to_v311() {
    let bytes = hex("10 10 00 06 4d 51 49 73 64 70 03 02 00 3c 00 02 63 31");
    let mut c = Connect::decode(bytes.clone()).unwrap();
    assert_eq!(c.protocol, ProtocolVersion::V3_1);
    assert_eq!(encode(&c), bytes);
    c.protocol = ProtocolVersion::V3_1_1;
    assert_eq!(
        encode(&c),
        hex("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 63 31")
    );
}

#[test]
fn v31_long_client_id_is_exposed_not_refused() {
    let id = [b'x'; 30];
    let body = cat(&[&hex("00 06 4d 51 49 73 64 70 03 02 00 3c 00 1e"), &id]);
    let c = Connect::decode(frame(0x10, &body)).unwrap();
    assert_eq!(c.client_id.len(), 30);
}

#[test]
fn v31_empty_client_id_refused() {
    let bytes = hex("10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00");
    let e = err(bytes);
    assert_eq!(
        e,
        ConnectError::ClientIdNotValid {
            version: ProtocolVersion::V3_1
        }
    );
    assert_eq!(
        e.connack_reason(ProtocolVersion::V3_1),
        Some(ReasonCode::ClientIdentifierNotValid)
    );
}

#[test]
fn empty_client_id_without_clean_session_mqtt_3_1_3_8() {
    let e = err(hex("10 0c 00 04 4d 51 54 54 04 00 00 3c 00 00"));
    assert_eq!(e.version(), Some(ProtocolVersion::V3_1_1));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V3_1_1),
        Some(ReasonCode::ClientIdentifierNotValid)
    );
    // With clean session it is fine; in v5 it is the server's choice (assign one).
    assert!(Connect::decode(hex("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00")).is_ok());
    assert!(Connect::decode(hex("10 0d 00 04 4d 51 54 54 05 00 00 3c 00 00 00")).is_ok());
}

#[test]
fn protocol_name_level_confusion_mqtt_3_1_2_1_mqtt_3_1_2_2() {
    let cases = [
        ("10 10 00 06 4d 51 49 73 64 70 04 02 00 3c 00 02 63 31", 4), // MQIsdp/4
        ("10 0e 00 04 4d 51 54 54 03 02 00 3c 00 02 63 31", 3),       // MQTT/3
        ("10 0e 00 04 4d 51 54 54 06 02 00 3c 00 02 63 31", 6),       // level 6
        ("10 0e 00 04 4d 51 54 54 84 02 00 3c 00 02 63 31", 0x84),    // bridge bit
        ("10 0e 00 04 4d 51 54 54 83 02 00 3c 00 02 63 31", 0x83),    // bridge bit
    ];
    for (h, level) in cases {
        let e = err(hex(h));
        assert_eq!(
            e,
            ConnectError::UnsupportedProtocol {
                claimed_level: level
            },
            "{h}"
        );
        assert_eq!(e.version(), Some(ProtocolVersion::V3_1_1));
        assert_eq!(
            e.connack_reason(ProtocolVersion::V3_1_1),
            Some(ReasonCode::UnsupportedProtocolVersion)
        );
    }
    // A bad name with level 5 is answered in v5.
    let e = err(hex("10 0f 00 04 4d 51 54 58 05 02 00 3c 00 00 02 63 31"));
    assert_eq!(e.version(), Some(ProtocolVersion::V5));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V5),
        Some(ReasonCode::UnsupportedProtocolVersion)
    );
}

#[test]
fn first_packet_not_connect_mqtt_3_1_0_1() {
    let e = err(hex("30 0b 00 04 74 65 73 74 68 65 6c 6c 6f"));
    assert_eq!(e, ConnectError::NotConnect(Some(PacketType::Publish)));
    assert_eq!(e.version(), None);
    assert_eq!(e.connack_reason(ProtocolVersion::V5), None);
    assert_eq!(
        err(hex("40 02 00 01")),
        ConnectError::NotConnect(Some(PacketType::PubAck))
    );
}

#[test]
fn fixed_header_flags_mqtt_2_1_3_1() {
    let (v, e) = malformed(hex("11 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 63 31"));
    assert_eq!(v, Some(ProtocolVersion::V3_1_1));
    assert!(matches!(e, DecodeError::InvalidFlags { .. }));
}

#[test]
fn reserved_flag_mqtt_3_1_2_3() {
    let bytes = hex("10 0e 00 04 4d 51 54 54 04 03 00 3c 00 02 63 31");
    let e = err(bytes);
    assert!(matches!(
        &e,
        ConnectError::Malformed {
            error: DecodeError::ReservedBits {
                spec: "MQTT-3.1.2-3",
                ..
            },
            ..
        }
    ));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V3_1_1),
        None,
        "3.x closes"
    );
    let e = err(hex("10 0f 00 04 4d 51 54 54 05 03 00 3c 00 00 02 63 31"));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V5),
        Some(ReasonCode::MalformedPacket)
    );
}

#[test]
fn will_qos_3_mqtt_3_1_2_12() {
    let bytes = hex("10 16 00 04 4d 51 54 54 04 1e 00 3c 00 02 63 31 00 03 61 2f 62 00 01 78");
    let (_, e) = malformed(bytes);
    assert_eq!(
        e,
        DecodeError::WillFlags {
            spec: "v3:MQTT-3.1.2-14"
        }
    );
}

#[test]
fn will_flags_without_will_mqtt_3_1_2_11_mqtt_3_1_2_13() {
    // Will retain without will flag (v3: -15), will QoS without will flag (v3: -13).
    let (_, e) = malformed(hex("10 0e 00 04 4d 51 54 54 04 22 00 3c 00 02 63 31"));
    assert_eq!(
        e,
        DecodeError::WillFlags {
            spec: "v3:MQTT-3.1.2-15"
        }
    );
    let (_, e) = malformed(hex("10 0e 00 04 4d 51 54 54 04 0a 00 3c 00 02 63 31"));
    assert_eq!(
        e,
        DecodeError::WillFlags {
            spec: "v3:MQTT-3.1.2-13"
        }
    );
    let (_, e) = malformed(hex("10 0f 00 04 4d 51 54 54 05 0a 00 3c 00 00 02 63 31"));
    assert_eq!(
        e,
        DecodeError::WillFlags {
            spec: "MQTT-3.1.2-11"
        }
    );
}

#[test]
fn password_without_username_mqtt_3_1_2_22() {
    let (_, e) = malformed(hex(
        "10 12 00 04 4d 51 54 54 04 42 00 3c 00 02 63 31 00 02 70 77",
    ));
    assert_eq!(e, DecodeError::PasswordWithoutUsername);
    // Allowed in v5.
    let c = Connect::decode(hex(
        "10 13 00 04 4d 51 54 54 05 42 00 3c 00 00 02 63 31 00 02 70 77",
    ))
    .unwrap();
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn missing_fields_and_trailing_bytes_mqtt_3_1_4_1() {
    // Username flag set, field missing.
    let (_, e) = malformed(hex("10 0e 00 04 4d 51 54 54 04 82 00 3c 00 02 63 31"));
    assert!(matches!(e, DecodeError::Truncated { .. }));
    // hivemq-community-edition#493: Will flag set, Will payload missing.
    let (_, e) = malformed(hex(
        "102700044d5154540406b19c000669523069336100136f324373774a324b527065374e614a38726554",
    ));
    assert!(matches!(e, DecodeError::Truncated { .. }));
    // Trailing bytes after the last field.
    let (_, e) = malformed(hex("10 10 00 04 4d 51 54 54 04 02 00 3c 00 02 63 31 de ad"));
    assert_eq!(
        e,
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            extra: 2
        }
    );
    // Frame shorter than its header says.
    let (v, _) = malformed(hex("10 10 00 04 4d 51 54 54 04 02 00 3c 00 02 63 31"));
    assert_eq!(v, None);
}

#[test]
fn will_round_trip_v311_and_v5() {
    let bytes = hex("10 16 00 04 4d 51 54 54 04 2e 00 3c 00 02 63 31 00 03 61 2f 62 00 01 78");
    let c = Connect::decode(bytes.clone()).unwrap();
    let will = c.will.clone().unwrap();
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(will.topic, "a/b");
    assert_eq!(&will.payload[..], b"x");
    assert_eq!(encode(&c), bytes);

    let mut c5 = c.clone();
    c5.protocol = ProtocolVersion::V5;
    c5.will = Some(Will {
        properties: WillProperties {
            will_delay_interval: Some(10),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(b"id")),
            user_properties: vec![("k".into(), "v".into())],
        },
        ..will
    });
    let bytes = encode(&c5);
    assert_eq!(Connect::decode(bytes).unwrap(), c5);
}

#[test]
fn will_topic_with_wildcard_mqtt_4_7_1_1() {
    let e = err(hex(
        "10 17 00 04 4d 51 54 54 05 06 00 3c 00 00 02 63 31 00 00 03 61 2f 23 00 00",
    ));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V5),
        Some(ReasonCode::TopicNameInvalid)
    );
}

#[test]
fn v5_properties_round_trip() {
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 30,
        client_id: "dev-1".into(),
        will: None,
        username: Some("alice".into()),
        password: Some(Bytes::from_static(b"\x00\xffbinary")),
        properties: ConnectProperties {
            session_expiry: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"n,,n=alice")),
        },
    };
    let bytes = encode(&c);
    assert_eq!(Connect::decode(bytes.clone()).unwrap(), c);
    assert_eq!(encode(&Connect::decode(bytes.clone()).unwrap()), bytes);
}

#[test]
fn v5_scram_method_decodes() {
    let bytes = hex(
        "10 1d 00 04 4d 51 54 54 05 02 00 3c 0e 15 00 0b 53 43 52 41 4d 2d 53 48 41 2d 31 00 02 63 31",
    );
    let c = Connect::decode(bytes).unwrap();
    assert_eq!(
        c.properties
            .authentication_method
            .as_ref()
            .map(MqttStr::as_str),
        Some("SCRAM-SHA-1")
    );
}

#[test]
fn v5_duplicate_session_expiry_is_protocol_error() {
    let bytes =
        hex("10 19 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 00 11 00 00 00 3c 00 02 63 31");
    let e = err(bytes);
    assert!(matches!(
        e,
        ConnectError::Malformed {
            error: DecodeError::DuplicateProperty { id: 0x11 },
            ..
        }
    ));
    assert_eq!(
        e.connack_reason(ProtocolVersion::V5),
        Some(ReasonCode::ProtocolError)
    );
}

#[test]
fn v5_property_values_out_of_range() {
    for props in [
        &b"\x21\x00\x00"[..],    // Receive Maximum 0
        b"\x27\x00\x00\x00\x00", // Maximum Packet Size 0
        b"\x17\x02",             // Request Problem Information 2
        b"\x19\x02",             // Request Response Information 2
        b"\x16\x00\x01x",        // Authentication Data without Method
    ] {
        let e = err(v5_with_props(props));
        assert_eq!(
            e.connack_reason(ProtocolVersion::V5),
            Some(ReasonCode::ProtocolError),
            "{props:?}"
        );
    }
}

#[test]
fn v5_unknown_or_misplaced_property_is_malformed() {
    for props in [
        &b"\x7f\x00"[..],        // unknown id 0x7f
        b"\x80\x01\x00",         // id 128 as a 2-byte VBI
        b"\x80\x00\x00",         // non-minimal VBI id
        b"\x23\x00\x01",         // Topic Alias is PUBLISH-only
        b"\x18\x00\x00\x00\x01", // Will Delay outside the Will properties
        b"\x11\x00\x00",         // declared block too short for its value
    ] {
        let e = err(v5_with_props(props));
        assert_eq!(
            e.connack_reason(ProtocolVersion::V5),
            Some(ReasonCode::MalformedPacket),
            "{props:?}"
        );
    }
}

#[test]
fn v5_user_property_flood_is_capped() {
    let one = b"\x26\x00\x01k\x00\x01v";
    let props: Vec<u8> = one.repeat(crate::mqtt::MAX_USER_PROPERTIES + 1);
    let mut vbi = BytesMut::new();
    crate::mqtt::header::write_remaining_length(&mut vbi, props.len());
    let body = cat(&[
        &hex("00 04 4d 51 54 54 05 02 00 3c"),
        &vbi,
        &props,
        b"\x00\x02c1",
    ]);
    let e = err(frame(0x10, &body));
    assert!(matches!(
        e,
        ConnectError::Malformed {
            error: DecodeError::TooManyUserProperties { .. },
            ..
        }
    ));
}

#[test]
fn encode_refuses_v3_password_without_username() {
    let mut c = Connect::decode(hex(V311)).unwrap();
    c.username = None;
    assert!(c.encode(&mut BytesMut::new()).is_err());
    c.protocol = ProtocolVersion::V5;
    assert!(c.encode(&mut BytesMut::new()).is_ok());
}
