//! Byte-level PUBACK/PUBREC/PUBREL/PUBCOMP tests, including the v5 short forms.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::error::DecodeError;
use crate::mqtt::packet::{decode, Packet};
use crate::mqtt::properties::AckProperties;
use crate::mqtt::test_util::{hex, round_trip};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn v311_acks_round_trip() {
    round_trip(&hex("40 02 00 01"), V3, &Packet::PubAck(Ack::new(1)));
    round_trip(&hex("50 02 12 34"), V3, &Packet::PubRec(Ack::new(0x1234)));
    round_trip(&hex("62 02 00 07"), V3, &Packet::PubRel(Ack::new(7)));
    round_trip(&hex("70 02 ff ff"), V3, &Packet::PubComp(Ack::new(0xffff)));
}

#[test]
fn v311_ack_with_extra_bytes_is_trailing() {
    assert!(matches!(
        decode(hex("40 03 00 01 00"), V3),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn pubrel_flags_mqtt_3_6_1_1() {
    let e = decode(hex("60 02 00 01"), V3).unwrap_err();
    assert_eq!(
        e,
        DecodeError::InvalidFlags {
            packet: PacketType::PubRel,
            flags: 0
        }
    );
    assert_eq!(e.spec(), Some("MQTT-2.1.3-1"));
    assert!(
        decode(hex("42 02 00 01"), V3).is_err(),
        "PUBACK flags must be 0"
    );
}

#[test]
fn packet_id_zero_mqtt_2_2_1_3() {
    for h in ["40 02 00 00", "50 02 00 00", "62 02 00 00", "70 02 00 00"] {
        assert!(
            matches!(decode(hex(h), V5), Err(DecodeError::ZeroPacketId { .. })),
            "{h}"
        );
    }
}

#[test]
fn v5_short_forms_decode_and_encode_minimally() {
    // Remaining length 2: reason 0, no properties.
    round_trip(&hex("40 02 00 01"), V5, &Packet::PubAck(Ack::new(1)));
    // Remaining length 3: reason, no properties.
    let ack = Ack {
        reason: 0x87,
        ..Ack::new(1)
    };
    round_trip(&hex("40 03 00 01 87"), V5, &Packet::PubAck(ack));
    // Longer, non-canonical forms of the same meaning decode; they re-encode short.
    let p = decode(hex("40 04 00 01 00 00"), V5).unwrap();
    assert_eq!(p, Packet::PubAck(Ack::new(1)));
    assert_eq!(p.to_bytes(V5).unwrap(), hex("40 02 00 01"));
    assert_eq!(
        decode(hex("40 03 00 01 00"), V5).unwrap(),
        Packet::PubAck(Ack::new(1))
    );
}

#[test]
fn v5_ack_with_properties_round_trip() {
    let ack = Ack {
        pkid: 9,
        reason: 0x10,
        properties: AckProperties {
            reason_string: Some("no subscribers".into()),
            user_properties: vec![("k".into(), "v".into())],
        },
    };
    let bytes = Packet::PubAck(ack.clone()).to_bytes(V5).unwrap();
    round_trip(&bytes, V5, &Packet::PubAck(ack));
    // Reason 0 with properties still writes the reason byte.
    let ack = Ack {
        properties: AckProperties {
            reason_string: Some("x".into()),
            ..AckProperties::default()
        },
        ..Ack::new(2)
    };
    let bytes = hex("70 08 00 02 00 04 1f 00 01 78");
    round_trip(&bytes, V5, &Packet::PubComp(ack));
}

#[test]
fn v5_reason_code_must_fit_the_packet_mqtt_3_4_2_1() {
    // 0x92 (packet id not found) is for PUBREL/PUBCOMP only.
    assert!(matches!(
        decode(hex("40 03 00 01 92"), V5),
        Err(DecodeError::InvalidReasonCode { .. })
    ));
    assert!(decode(hex("70 03 00 01 92"), V5).is_ok());
    assert!(decode(hex("62 03 00 01 87"), V5).is_err());
}

#[test]
fn v5_ack_property_rules() {
    // Topic Alias is not allowed in an ack.
    assert!(matches!(
        decode(hex("40 07 00 01 00 03 23 00 01"), V5),
        Err(DecodeError::PropertyNotAllowed { .. })
    ));
    // Duplicate Reason String.
    assert!(matches!(
        decode(hex("40 0c 00 01 00 08 1f 00 01 61 1f 00 01 62"), V5),
        Err(DecodeError::DuplicateProperty { id: 0x1f })
    ));
}

#[test]
fn v3_encode_refuses_reason_and_properties() {
    let ack = Ack {
        reason: 0x87,
        ..Ack::new(1)
    };
    assert!(Packet::PubAck(ack).to_bytes(V3).is_err());
    assert!(Packet::PubAck(Ack::new(0)).to_bytes(V5).is_err());
}
