//! Dispatcher tests (reserved types and flags, frame length, second CONNECT) and byte-level tests
//! for the small packets: SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ/PINGRESP, DISCONNECT, AUTH.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::error::FrameError;
use crate::mqtt::properties::AckProperties;
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::test_util::{hex, round_trip};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn dec(h: &str, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    decode(hex(h), v)
}

#[test]
fn reserved_packet_types_mqtt_2_1_3_1() {
    assert!(matches!(
        dec("00 00", V5),
        Err(DecodeError::ReservedPacketType { byte1: 0 })
    ));
    // AUTH is reserved outside v5.
    for v in [V31, V3] {
        assert!(matches!(
            dec("f0 00", v),
            Err(DecodeError::ReservedPacketType { .. })
        ));
    }
    assert_eq!(dec("f0 00", V5), Ok(Packet::Auth(Auth::default())));
}

#[test]
fn reserved_flags_mqtt_2_1_3_1() {
    for h in [
        "80 08 00 01 00 03 61 2f 62 00",
        "a0 07 00 01 00 03 61 2f 62",
        "60 02 00 01",
        "c1 00",
        "d1 00",
        "e1 00",
        "22 02 00 00",
    ] {
        let e = dec(h, V3).unwrap_err();
        assert!(matches!(e, DecodeError::InvalidFlags { .. }), "{h}");
        assert_eq!(e.reason(), ReasonCode::MalformedPacket);
    }
}

#[test]
fn second_connect_mqtt_3_1_0_2() {
    let e = dec("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 63 31", V3).unwrap_err();
    assert_eq!(e, DecodeError::UnexpectedConnect);
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn frame_must_be_exactly_one_packet() {
    assert!(matches!(
        dec("c0 00 c0 00", V3),
        Err(DecodeError::FrameLength { .. })
    ));
    assert!(matches!(
        dec("30 05 00 03", V3),
        Err(DecodeError::FrameLength { .. })
    ));
    assert!(matches!(dec("", V3), Err(DecodeError::FrameLength { .. })));
    assert_eq!(
        dec("c0 80 00", V3),
        Err(DecodeError::Frame(FrameError::MalformedLength))
    );
}

#[test]
fn ping_round_trip() {
    round_trip(&hex("c0 00"), V3, &Packet::PingReq);
    round_trip(&hex("d0 00"), V5, &Packet::PingResp);
    assert_eq!(&PINGREQ[..], &hex("c0 00")[..]);
    assert_eq!(&PINGRESP[..], &hex("d0 00")[..]);
    assert!(matches!(
        dec("c0 01 00", V3),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn suback_round_trip_and_codes_mqtt_3_9_3_2() {
    let ack = SubAck {
        pkid: 1,
        properties: AckProperties::default(),
        codes: vec![0, 1, 2, 0x80],
    };
    round_trip(&hex("90 06 00 01 00 01 02 80"), V3, &Packet::SubAck(ack));
    assert!(matches!(
        dec("90 03 00 01 87", V3),
        Err(DecodeError::InvalidReasonCode { .. })
    ));
    let ack = SubAck {
        pkid: 1,
        properties: AckProperties::default(),
        codes: vec![0x87, 0x8f, 0xa2, 1],
    };
    round_trip(&hex("90 07 00 01 00 87 8f a2 01"), V5, &Packet::SubAck(ack));
    assert!(
        dec("90 04 00 01 00 03", V5).is_err(),
        "0x03 is no SUBACK code"
    );
    assert!(matches!(
        dec("90 02 00 01", V3),
        Err(DecodeError::EmptyPayload { .. })
    ));
}

#[test]
fn unsubscribe_round_trip_and_rules_mqtt_3_10_3_2() {
    let u = Unsubscribe {
        pkid: 3,
        user_properties: vec![],
        filters: vec!["a/+".into(), "$share/g/#".into()],
    };
    let bytes = hex("a2 13 00 03 00 03 61 2f 2b 00 0a 24 73 68 61 72 65 2f 67 2f 23");
    round_trip(&bytes, V3, &Packet::Unsubscribe(u.clone()));
    let bytes5 = Packet::Unsubscribe(u.clone()).to_bytes(V5).unwrap();
    round_trip(&bytes5, V5, &Packet::Unsubscribe(u));
    // Empty payload, pkid 0, invalid filter.
    let e = dec("a2 02 00 01", V3).unwrap_err();
    assert_eq!(e.spec(), Some("v3:MQTT-3.10.3-2"));
    assert!(matches!(
        dec("a2 05 00 00 00 01 61", V3),
        Err(DecodeError::ZeroPacketId { .. })
    ));
    assert!(matches!(
        dec("a2 06 00 01 00 02 23 61", V3),
        Err(DecodeError::InvalidTopicFilter { .. })
    ));
}

#[test]
fn unsuback_round_trip() {
    let u = UnsubAck {
        pkid: 5,
        ..UnsubAck::default()
    };
    round_trip(&hex("b0 02 00 05"), V3, &Packet::UnsubAck(u.clone()));
    assert!(
        dec("b0 03 00 05 00", V3).is_err(),
        "3.1.1 UNSUBACK has no codes"
    );
    let u5 = UnsubAck {
        codes: vec![0x00, 0x11],
        ..u
    };
    round_trip(&hex("b0 05 00 05 00 00 11"), V5, &Packet::UnsubAck(u5));
    assert!(
        dec("b0 03 00 05 00", V5).is_err(),
        "v5 UNSUBACK needs codes"
    );
    assert!(
        dec("b0 04 00 05 00 01", V5).is_err(),
        "0x01 is no UNSUBACK code"
    );
}

#[test]
fn disconnect_v3_and_v5_short_forms() {
    round_trip(
        &hex("e0 00"),
        V3,
        &Packet::Disconnect(Disconnect::default()),
    );
    assert!(dec("e0 01 00", V3).is_err());
    round_trip(
        &hex("e0 00"),
        V5,
        &Packet::Disconnect(Disconnect::default()),
    );
    // A reason code goes out with its Property Length (0): clients that read §2.2.2-1 strictly
    // drop the short form.
    round_trip(
        &hex("e0 02 8e 00"),
        V5,
        &Packet::Disconnect(Disconnect::new(0x8e)),
    );
    // Other valid forms, read but never written.
    assert_eq!(
        dec("e0 01 8e", V5),
        Ok(Packet::Disconnect(Disconnect::new(0x8e)))
    );
    assert_eq!(
        dec("e0 01 00", V5),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        dec("e0 02 00 00", V5),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert!(dec("e0 01 92", V5).is_err(), "0x92 is no DISCONNECT code");
}

#[test]
fn disconnect_v5_properties() {
    // Catalogue §B.34: the codec decodes it; the session compares with CONNECT.
    let Packet::Disconnect(d) = dec("e0 07 00 05 11 00 00 0e 10", V5).unwrap() else {
        panic!()
    };
    assert_eq!(d.properties.session_expiry, Some(3600));
    let d = Disconnect {
        reason: 0x9c,
        properties: DisconnectProperties {
            session_expiry: None,
            reason_string: Some("moved".into()),
            server_reference: Some("b:1883".into()),
            user_properties: vec![("k".into(), "v".into())],
        },
    };
    let bytes = Packet::Disconnect(d.clone()).to_bytes(V5).unwrap();
    round_trip(&bytes, V5, &Packet::Disconnect(d));
    assert!(matches!(
        dec("e0 05 00 03 23 00 01", V5),
        Err(DecodeError::PropertyNotAllowed { .. })
    ));
}

#[test]
fn auth_round_trip_and_rules() {
    let a = Auth {
        reason: 0x18,
        properties: AuthProperties {
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(bytes::Bytes::from_static(b"c=biws")),
            reason_string: None,
            user_properties: vec![],
        },
    };
    let bytes = Packet::Auth(a.clone()).to_bytes(V5).unwrap();
    round_trip(&bytes, V5, &Packet::Auth(a));
    round_trip(&hex("f0 00"), V5, &Packet::Auth(Auth::default()));
    // Reason only (no property length) is malformed for AUTH.
    assert!(matches!(
        dec("f0 01 18", V5),
        Err(DecodeError::Truncated { .. })
    ));
    // Properties without a method.
    assert_eq!(dec("f0 02 18 00", V5), Err(DecodeError::AuthMethodMissing));
    // Authentication Data without Method.
    assert_eq!(
        dec("f0 06 18 04 16 00 01 78", V5),
        Err(DecodeError::AuthDataWithoutMethod)
    );
    assert!(dec("f0 02 87 00", V5).is_err(), "0x87 is no AUTH code");
    assert!(Packet::Auth(Auth::default()).to_bytes(V3).is_err());
}

#[test]
fn packet_type_matches_encoding() {
    let packets = [
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
        Packet::PubAck(Ack::new(1)),
        Packet::PubRel(Ack::new(1)),
    ];
    for p in packets {
        let b = p.to_bytes(V5).unwrap();
        assert_eq!(PacketType::from_byte1(b[0]), Some(p.packet_type()));
    }
}
