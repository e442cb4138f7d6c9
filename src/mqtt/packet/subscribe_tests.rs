//! Byte-level SUBSCRIBE tests (catalogue §A.4–6, §A.11, §A.26, §B.39, §C.46–49).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::error::DecodeError;
use crate::mqtt::packet::{decode, decode_subscribe_request, Packet};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::test_util::{cat, frame, hex, round_trip};
use crate::mqtt::topic::TopicError;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn dec(h: &str, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    decode(hex(h), v)
}

/// SUBSCRIBE pkid 1 with one filter and options byte, in `v`'s grammar.
fn one(filter: &str, options: u8, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    let props: &[u8] = if v.is_v5() { &[0] } else { &[] };
    let len = (filter.len() as u16).to_be_bytes();
    decode(
        frame(
            0x82,
            &cat(&[&[0, 1], props, &len, filter.as_bytes(), &[options]]),
        ),
        v,
    )
}

#[test]
fn v311_shared_subscription_decodes() {
    let Packet::Subscribe(s) =
        dec("82 0f 00 01 00 0a 24 73 68 61 72 65 2f 67 2f 23 00", V3).unwrap()
    else {
        panic!()
    };
    assert_eq!(s.pkid, 1);
    assert_eq!(s.filters[0].0, "$share/g/#");
    assert_eq!(s.filters[0].1, SubscribeOptions::qos(QoS::AtMostOnce));
}

#[test]
fn v311_round_trip_many_filters() {
    let s = Subscribe {
        pkid: 10,
        properties: SubscribeProperties::default(),
        filters: vec![
            ("a/+".into(), SubscribeOptions::qos(QoS::AtMostOnce)),
            ("b/#".into(), SubscribeOptions::qos(QoS::AtLeastOnce)),
            ("#".into(), SubscribeOptions::qos(QoS::ExactlyOnce)),
        ],
    };
    let bytes = hex("82 12 00 0a 00 03 61 2f 2b 00 00 03 62 2f 23 01 00 01 23 02");
    round_trip(&bytes, V3, &Packet::Subscribe(s));
}

#[test]
fn v5_round_trip_options_and_properties() {
    let s = Subscribe {
        pkid: 2,
        properties: SubscribeProperties {
            subscription_identifier: Some(300),
            user_properties: vec![("k".into(), "v".into())],
        },
        filters: vec![(
            "a/b".into(),
            SubscribeOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
    };
    let bytes = Packet::Subscribe(s.clone()).to_bytes(V5).unwrap();
    assert_eq!(bytes.last(), Some(&0x2d));
    round_trip(&bytes, V5, &Packet::Subscribe(s));
}

#[test]
fn fixed_header_flags_mqtt_3_8_1_1() {
    let e = dec("80 08 00 01 00 03 61 2f 62 00", V3).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidFlags { .. }));
}

#[test]
fn v311_reserved_option_bits_mqtt_3_8_3_4() {
    // Catalogue §B.39: 0x04 is No Local in v5 but reserved in 3.1.1.
    let e = dec("82 08 00 01 00 03 61 2f 62 04", V3).unwrap_err();
    assert_eq!(
        e,
        DecodeError::SubscriptionOptionsReserved {
            options: 4,
            spec: "v3:MQTT-3.8.3-4"
        }
    );
    let Ok(Packet::Subscribe(s)) = dec("82 09 00 01 00 00 03 61 2f 62 04", V5) else {
        panic!()
    };
    assert!(s.filters[0].1.no_local);
    // The v5 bytes read with a v3 grammar are refused, not re-interpreted.
    assert!(dec("82 09 00 01 00 00 03 61 2f 62 04", V3).is_err());
}

#[test]
fn v5_reserved_option_bits_mqtt_3_8_3_5() {
    assert!(matches!(
        one("a/b", 0xc0, V5),
        Err(DecodeError::SubscriptionOptionsReserved { .. })
    ));
    assert_eq!(one("a/b", 0x30, V5), Err(DecodeError::RetainHandling3));
    assert_eq!(
        one("a/b", 0x30, V5).unwrap_err().reason(),
        ReasonCode::ProtocolError
    );
}

#[test]
fn qos_3_mqtt_3_8_3_4() {
    assert!(matches!(
        dec("82 08 00 01 00 03 61 2f 62 03", V3),
        Err(DecodeError::InvalidQoS { .. })
    ));
}

#[test]
fn packet_id_zero_mqtt_2_2_1_3() {
    assert!(matches!(
        dec("82 08 00 00 00 03 61 2f 62 00", V3),
        Err(DecodeError::ZeroPacketId { .. })
    ));
}

#[test]
fn empty_payload_mqtt_3_8_3_2() {
    let e = dec("82 02 00 01", V3).unwrap_err();
    assert_eq!(e.spec(), Some("v3:MQTT-3.8.3-3"));
    let e = dec("82 03 00 01 00", V5).unwrap_err();
    assert_eq!(e.spec(), Some("MQTT-3.8.3-2"));
    // v5 §3.8.3: "A SUBSCRIBE packet with no Payload is a Protocol Error".
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn request_reports_invalid_filters_in_place_mqtt_4_7_1_1() {
    // [`a/b`, `a/#/b` (invalid), `$share//x` (invalid), `c`] — the valid ones keep their options.
    let bytes = hex(
        "82 21 00 07 00 00 03 61 2f 62 01 00 05 61 2f 23 2f 62 00 00 09 24 73 68 61 72 65 2f 2f 78 02 00 01 63 02",
    );
    let req = decode_subscribe_request(bytes.clone(), V5)
        .unwrap()
        .unwrap();
    assert_eq!(req.pkid, 7);
    let shape: Vec<Result<&str, TopicError>> = req
        .entries
        .iter()
        .map(|e| match e {
            Ok((f, _)) => Ok(f.as_str()),
            Err((_, why)) => Err(*why),
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            Ok("a/b"),
            Err(TopicError::MisplacedMultiLevel),
            Err(TopicError::SharedEmptyName),
            Ok("c"),
        ]
    );
    // The strict reader refuses the same bytes, and both agree on a valid packet.
    assert!(matches!(
        dec("82 21 00 07 00 00 03 61 2f 62 01 00 05 61 2f 23 2f 62 00 00 09 24 73 68 61 72 65 2f 2f 78 02 00 01 63 02", V5),
        Err(DecodeError::InvalidTopicFilter { .. })
    ));
    let ok = hex("82 09 00 01 00 00 03 61 2f 62 01");
    let req = decode_subscribe_request(ok.clone(), V5).unwrap().unwrap();
    let Packet::Subscribe(s) = decode(ok, V5).unwrap() else {
        panic!("not a SUBSCRIBE")
    };
    assert_eq!(
        req.entries,
        s.filters.into_iter().map(Ok).collect::<Vec<_>>()
    );
    // Everything else stays fatal: a bad string, No Local on a share, trailing bytes.
    assert!(decode_subscribe_request(hex("82 08 00 01 00 00 02 61 00 00"), V5).is_err());
    assert_eq!(
        decode_subscribe_request(
            hex("82 12 00 01 00 00 0c 24 73 68 61 72 65 2f 67 2f 61 2f 62 04"),
            V5
        ),
        Err(DecodeError::NoLocalOnShared)
    );
    assert!(decode_subscribe_request(hex("82 0a 00 01 00 00 03 61 2f 62 01 ff"), V5).is_err());
    // Another packet type is not a subscribe request.
    assert_eq!(decode_subscribe_request(hex("c0 00"), V5), Ok(None));
}

#[test]
fn invalid_filters_mqtt_4_7_1_2_mqtt_4_7_1_3() {
    for f in ["a/#/b", "a#", "a+/b", "+#", "#/", ""] {
        for v in [V3, V5] {
            let e = one(f, 0, v).unwrap_err();
            assert!(matches!(e, DecodeError::InvalidTopicFilter { .. }), "{f}");
            assert_eq!(e.reason(), ReasonCode::MalformedPacket);
        }
    }
}

#[test]
fn malformed_shared_filters_mqtt_4_8_2_1_mqtt_4_8_2_2() {
    let cases = [
        ("$share//a", TopicError::SharedEmptyName),
        ("$share/g+/a", TopicError::SharedInvalidName),
        ("$share/#/a", TopicError::SharedInvalidName),
        ("$share/g", TopicError::SharedMissingFilter),
    ];
    for (f, want) in cases {
        assert_eq!(
            one(f, 0, V3),
            Err(DecodeError::InvalidTopicFilter { source: want }),
            "{f}"
        );
    }
}

#[test]
fn no_local_on_shared_mqtt_3_8_3_4() {
    let e = dec(
        "82 12 00 01 00 00 0c 24 73 68 61 72 65 2f 67 2f 61 2f 62 04",
        V5,
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::NoLocalOnShared);
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn subscription_identifier_rules() {
    // Catalogue §A.26: identifier 0, or two identifiers → protocol error.
    let e = dec("82 0b 00 01 02 0b 00 00 03 61 2f 62 00", V5).unwrap_err();
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
    let e = dec("82 0d 00 01 04 0b 01 0b 02 00 03 61 2f 62 00", V5).unwrap_err();
    assert_eq!(e, DecodeError::DuplicateProperty { id: 0x0b });
}

#[test]
fn truncated_filters() {
    // Last filter length overruns the packet.
    assert!(matches!(
        dec("82 08 00 01 00 09 61 2f 62 00", V3),
        Err(DecodeError::Truncated { .. })
    ));
    // Options byte missing.
    assert!(matches!(
        dec("82 07 00 01 00 03 61 2f 62", V3),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn encode_refuses_what_decode_refuses() {
    let mut s = Subscribe {
        pkid: 1,
        properties: SubscribeProperties::default(),
        filters: vec![("a/#/b".into(), SubscribeOptions::default())],
    };
    assert!(Packet::Subscribe(s.clone()).to_bytes(V3).is_err());
    s.filters[0].0 = "a/b".into();
    s.filters[0].1.no_local = true;
    assert!(
        Packet::Subscribe(s.clone()).to_bytes(V3).is_err(),
        "v5 option in v3"
    );
    assert!(Packet::Subscribe(s.clone()).to_bytes(V5).is_ok());
    s.filters.clear();
    assert!(Packet::Subscribe(s).to_bytes(V5).is_err());
}
