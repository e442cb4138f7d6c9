//! Byte-level CONNACK tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::error::DecodeError;
use crate::mqtt::packet::{decode, Packet};
use crate::mqtt::test_util::{hex, round_trip};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn v311_round_trip() {
    round_trip(&hex("20 02 00 00"), V3, &Packet::ConnAck(ConnAck::new(0)));
    let ack = ConnAck {
        session_present: true,
        ..ConnAck::new(0)
    };
    round_trip(&hex("20 02 01 00"), V3, &Packet::ConnAck(ack));
    round_trip(&hex("20 02 00 05"), V3, &Packet::ConnAck(ConnAck::new(5)));
}

#[test]
fn v31_never_sets_session_present() {
    let ack = ConnAck {
        session_present: true,
        ..ConnAck::new(0)
    };
    assert_eq!(
        Packet::ConnAck(ack).to_bytes(V31).unwrap(),
        hex("20 02 00 00")
    );
}

#[test]
fn v31_flags_byte_is_reserved() {
    // Fuzzer finding (fuzz/corpus/decode/regression-v31-connack-flags): 3.1 read this as
    // "session present" and re-encoded it without the flag, so two readings existed.
    assert!(matches!(
        decode(hex("20 02 01 00"), V31),
        Err(DecodeError::ReservedBits { .. })
    ));
    round_trip(&hex("20 02 00 00"), V31, &Packet::ConnAck(ConnAck::new(0)));
}

#[test]
fn v311_reserved_return_code_and_flags_mqtt_3_2_2_1() {
    assert!(matches!(
        decode(hex("20 02 00 06"), V3),
        Err(DecodeError::InvalidReasonCode { .. })
    ));
    assert!(matches!(
        decode(hex("20 02 02 00"), V3),
        Err(DecodeError::ReservedBits { .. })
    ));
    assert!(matches!(
        decode(hex("20 03 00 00 00"), V3),
        Err(DecodeError::TrailingBytes { .. })
    ));
    assert!(Packet::ConnAck(ConnAck::new(0x86)).to_bytes(V3).is_err());
}

#[test]
fn session_present_with_failure_mqtt_3_2_2_6() {
    assert_eq!(
        decode(hex("20 02 01 04"), V3),
        Err(DecodeError::SessionPresentOnFailure)
    );
}

#[test]
fn v5_round_trip_with_properties() {
    round_trip(
        &hex("20 03 00 00 00"),
        V5,
        &Packet::ConnAck(ConnAck::new(0)),
    );
    round_trip(
        &hex("20 03 00 87 00"),
        V5,
        &Packet::ConnAck(ConnAck::new(0x87)),
    );
    let ack = ConnAck {
        session_present: true,
        code: 0,
        properties: ConnAckProperties {
            session_expiry: Some(0),
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(false),
            maximum_packet_size: Some(262_144),
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_maximum: Some(10),
            reason_string: Some("ok".into()),
            user_properties: vec![("a".into(), "b".into())],
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(true),
            server_keep_alive: Some(60),
            response_information: Some("resp/".into()),
            server_reference: Some("other:8883".into()),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"r=abc")),
        },
    };
    let bytes = Packet::ConnAck(ack.clone()).to_bytes(V5).unwrap();
    round_trip(&bytes, V5, &Packet::ConnAck(ack));
}

#[test]
fn v5_invalid_code_and_properties() {
    // 0x8B (server shutting down) is a DISCONNECT code, not a CONNACK one.
    assert!(decode(hex("20 03 00 8b 00"), V5).is_err());
    // Maximum QoS 2 is a protocol error; Topic Alias not allowed in CONNACK.
    let e = decode(hex("20 05 00 00 02 24 02"), V5).unwrap_err();
    assert_eq!(e, DecodeError::InvalidPropertyValue { id: 0x24, value: 2 });
    assert!(matches!(
        decode(hex("20 06 00 00 03 23 00 01"), V5),
        Err(DecodeError::PropertyNotAllowed { .. })
    ));
    // The CVE-2021-28166 reproducer: a client-sent CONNACK is still a *well-formed* CONNACK
    // here; the session refuses it by direction.
    assert!(decode(hex("20 03 00 00 00"), V5).is_ok());
}
