//! The fuzzer's seed corpus (`fuzz/corpus/decode/`): one valid packet of every type in every
//! protocol version, plus a stream of several packets, built with the codec's own types.
//!
//! This test keeps the committed corpus honest: every seed must decode in its version, and the
//! files on disk must be exactly these seeds. `MOAT_WRITE_CORPUS=1 cargo test --test
//! fuzz_corpus` rewrites them after a codec change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use std::path::Path;

use bytes::{Bytes, BytesMut};
use moat::mqtt::{self, *};

const VERSIONS: [(ProtocolVersion, &str); 3] = [
    (ProtocolVersion::V3_1, "v31"),
    (ProtocolVersion::V3_1_1, "v311"),
    (ProtocolVersion::V5, "v5"),
];

fn s(text: &str) -> MqttStr {
    MqttStr::from(text)
}

fn connect(v: ProtocolVersion) -> Connect {
    let v5 = v.is_v5();
    Connect {
        protocol: v,
        clean_start: false,
        keep_alive: 30,
        client_id: s("seed-client"),
        will: Some(Will {
            topic: s("seed/will"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(s("seed/reply")),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    user_properties: vec![(s("k"), s("v"))],
                    ..Default::default()
                }
            } else {
                Default::default()
            },
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(b"alice-pw")),
        properties: if v5 {
            ConnectProperties {
                session_expiry: Some(3600),
                receive_maximum: Some(10),
                maximum_packet_size: Some(65_536),
                topic_alias_maximum: Some(4),
                request_problem_information: Some(true),
                user_properties: vec![(s("app"), s("seed"))],
                ..Default::default()
            }
        } else {
            Default::default()
        },
    }
}

fn packets(v: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let v5 = v.is_v5();
    let ack_props = || {
        if v5 {
            AckProperties {
                reason_string: Some(s("why")),
                user_properties: vec![(s("k"), s("v"))],
            }
        } else {
            AckProperties::default()
        }
    };
    let ack = |pkid, reason: u8| Ack {
        pkid,
        reason: if v5 { reason } else { 0 },
        properties: ack_props(),
    };
    let publish = |qos, pkid| Publish {
        dup: false,
        qos,
        retain: qos == QoS::AtLeastOnce,
        topic: s("seed/topic/é"),
        pkid,
        properties: if v5 {
            PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                topic_alias: Some(1),
                response_topic: Some(s("seed/reply")),
                correlation_data: Some(Bytes::from_static(b"id")),
                user_properties: vec![(s("k"), s("v"))],
                content_type: Some(s("text/plain")),
                ..Default::default()
            }
        } else {
            Default::default()
        },
        payload: Bytes::from_static(b"payload"),
    };
    let opts = |qos| SubscribeOptions {
        qos,
        no_local: v5,
        retain_as_published: v5,
        retain_handling: if v5 {
            RetainHandling::SendIfNew
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    let mut out = vec![
        (
            "connack",
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: 0,
                properties: if v5 {
                    ConnAckProperties {
                        receive_maximum: Some(100),
                        topic_alias_maximum: Some(8),
                        assigned_client_identifier: Some(s("moat-1")),
                        server_keep_alive: Some(60),
                        ..Default::default()
                    }
                } else {
                    Default::default()
                },
            }),
        ),
        (
            "publish-qos0",
            Packet::Publish(publish(QoS::AtMostOnce, None)),
        ),
        (
            "publish-qos1",
            Packet::Publish(publish(QoS::AtLeastOnce, Some(1))),
        ),
        (
            "publish-qos2",
            Packet::Publish(publish(QoS::ExactlyOnce, Some(2))),
        ),
        ("puback", Packet::PubAck(ack(1, 0x10))),
        ("pubrec", Packet::PubRec(ack(2, 0x87))),
        ("pubrel", Packet::PubRel(ack(2, 0x92))),
        ("pubcomp", Packet::PubComp(ack(2, 0))),
        (
            "subscribe",
            Packet::Subscribe(Subscribe {
                pkid: 3,
                properties: if v5 {
                    SubscribeProperties {
                        subscription_identifier: Some(7),
                        user_properties: vec![(s("k"), s("v"))],
                    }
                } else {
                    Default::default()
                },
                filters: vec![
                    (s("seed/+/temp"), opts(QoS::AtLeastOnce)),
                    (s("seed/#"), opts(QoS::ExactlyOnce)),
                    (s("$share/g/seed/x"), SubscribeOptions::qos(QoS::AtMostOnce)),
                ],
            }),
        ),
        (
            "suback",
            Packet::SubAck(SubAck {
                pkid: 3,
                properties: ack_props(),
                codes: vec![1, 2, 0x80],
            }),
        ),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                pkid: 4,
                user_properties: if v5 { vec![(s("k"), s("v"))] } else { vec![] },
                filters: vec![s("seed/#"), s("$share/g/seed/x")],
            }),
        ),
        (
            "unsuback",
            Packet::UnsubAck(UnsubAck {
                pkid: 4,
                properties: ack_props(),
                codes: if v5 { vec![0, 0x11] } else { vec![] },
            }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        (
            "disconnect",
            Packet::Disconnect(if v5 {
                Disconnect {
                    reason: 0x04,
                    properties: DisconnectProperties {
                        session_expiry: Some(0),
                        reason_string: Some(s("bye")),
                        ..Default::default()
                    },
                }
            } else {
                Disconnect::default()
            }),
        ),
    ];
    if v5 {
        out.push((
            "auth",
            Packet::Auth(Auth {
                reason: 0x18,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM-SHA-256")),
                    authentication_data: Some(Bytes::from_static(b"n,,n=user")),
                    ..Default::default()
                },
            }),
        ));
    }
    out
}

/// Every seed: (file name, bytes, version it must decode in).
fn seeds() -> Vec<(String, Vec<u8>, ProtocolVersion)> {
    let mut out = Vec::new();
    for (v, tag) in VERSIONS {
        let mut c = BytesMut::new();
        connect(v).encode(&mut c).unwrap();
        let mut stream = c.to_vec();
        out.push((format!("{tag}-connect"), c.to_vec(), v));
        for (name, p) in packets(v) {
            let bytes = p.to_bytes(v).unwrap().to_vec();
            stream.extend_from_slice(&bytes);
            out.push((format!("{tag}-{name}"), bytes, v));
        }
        // A whole session in one input: the target cuts it into frames like the reader does.
        out.push((format!("{tag}-stream"), stream, v));
    }
    out
}

#[test]
fn fuzz_seed_corpus_is_valid_and_committed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let seeds = seeds();
    for (name, bytes, v) in &seeds {
        let frame = Bytes::copy_from_slice(bytes);
        let len = mqtt::check(bytes, usize::MAX).unwrap().unwrap().frame_len();
        if name.ends_with("-connect") {
            assert!(Connect::decode(frame).is_ok(), "{name}");
        } else if len == bytes.len() {
            assert!(mqtt::decode(frame, *v).is_ok(), "{name}");
        }
    }
    if std::env::var_os("MOAT_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes, _) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes, _) in &seeds {
        let on_disk = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (run with MOAT_WRITE_CORPUS=1)"));
        assert_eq!(
            &on_disk, bytes,
            "{name} is stale (run with MOAT_WRITE_CORPUS=1)"
        );
    }
}
