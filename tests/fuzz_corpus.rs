//! The fuzzers' committed corpora, kept honest and replayed in `cargo test`.
//!
//! - `fuzz/corpus/decode/`: one valid packet of every type in every protocol version, plus a
//!   stream of several packets, built with the codec's own types. Every seed must decode in its
//!   version, and the files on disk must be exactly these seeds.
//! - `fuzz/corpus/ws/`: WebSocket byte streams (frames of every kind, limits, refused upgrade
//!   requests), built here; every file, seeds and regression inputs alike, is replayed through
//!   the `ws` target's own code (`fuzz/fuzz_targets/shared/ws.rs`).
//! - `fuzz/corpus/policy/`: moat.yaml and policy files (copies of the shipped ones and a few
//!   written for the fuzzer); every file is replayed through the `policy` target's loader
//!   (`fuzz/fuzz_targets/shared/policy.rs`), and the seeds must load.
//! - `fuzz/corpus/proxy/`: PROXY protocol headers (hand-written: v1 TCP4/TCP6/UNKNOWN, v2 with
//!   a TLV, v2 LOCAL); every file is replayed through the `proxy` target's checks
//!   (`fuzz/fuzz_targets/shared/proxy.rs`), and the seeds must parse.
//!
//! Beside the seeds, each folder holds inputs the fuzzers found that add coverage (named by their
//! SHA-1) and `regression-…` inputs that once failed. The `session` corpus is `arbitrary` input
//! for a target that needs the `fuzzing` feature; only the fuzzer replays it (`scripts/fuzz`).
//! `MOAT_WRITE_CORPUS=1 cargo test --test fuzz_corpus` rewrites the generated seeds after a
//! codec change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use std::path::Path;

use bytes::{Bytes, BytesMut};
use moat::mqtt::{self, *};

#[path = "../fuzz/fuzz_targets/shared/policy.rs"]
mod policy_input;
#[path = "../fuzz/fuzz_targets/shared/proxy.rs"]
mod proxy_input;
#[path = "../fuzz/fuzz_targets/shared/ws.rs"]
mod ws_input;

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

/// The files of one corpus folder, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// A client's WebSocket frame (masked, as a client must send it [RFC 6455 §5.3]).
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// Every WebSocket seed: (file name, flags byte, what the peer sends after it, the MQTT bytes
/// moat reads from it or `None` for a refused upgrade).
fn ws_seeds() -> Vec<(&'static str, u8, Vec<u8>, Option<usize>)> {
    use ws_input::{CERT, ECHO, GUARDED, RAW, SMALL};
    let mut connect = BytesMut::new();
    self::connect(ProtocolVersion::V3_1_1)
        .encode(&mut connect)
        .unwrap();
    let connect = connect.to_vec();
    let all = Some(connect.len());
    let (head, tail) = connect.split_at(7);
    let binary = |p: &[u8]| frame(true, 0x2, p);
    // An upgrade request for `path` with the handshake's headers and `extra` ones.
    let request = |path: &str, extra: &[&str]| {
        let mut lines = vec![
            format!("GET {path} HTTP/1.1"),
            "Host: moat".to_owned(),
            "Upgrade: websocket".to_owned(),
            "Connection: Upgrade".to_owned(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
            "Sec-WebSocket-Version: 13".to_owned(),
        ];
        lines.extend(extra.iter().map(|h| (*h).to_owned()));
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    };
    let big = [0x30; 60];
    vec![
        ("connect", 0, binary(&connect), all),
        (
            "fragments",
            0,
            [frame(false, 0x2, head), frame(true, 0x0, tail)].concat(),
            all,
        ),
        (
            "echo-two-messages",
            ECHO,
            [binary(head), binary(tail)].concat(),
            all,
        ),
        (
            "ping-pong-close",
            0,
            [
                frame(true, 0x9, b"are you there"),
                binary(&connect),
                frame(true, 0xa, b"unsolicited"),
                frame(true, 0x8, &[0x03, 0xe8]),
            ]
            .concat(),
            all,
        ),
        ("text", 0, frame(true, 0x1, b"MQTT in text"), Some(0)),
        ("too-big", SMALL, binary(&[0x30; 100]), Some(0)),
        (
            "too-big-message",
            SMALL,
            [
                frame(false, 0x2, &big),
                frame(false, 0x0, &big),
                frame(false, 0x0, &big),
                frame(true, 0x0, &big),
            ]
            .concat(),
            Some(0),
        ),
        (
            "empty-messages",
            ECHO,
            [
                binary(b""),
                frame(true, 0x9, b""),
                binary(b""),
                binary(b"\xc0\x00"),
            ]
            .concat(),
            Some(2),
        ),
        ("guarded", GUARDED | CERT | ECHO, binary(&connect), all),
        ("unmasked", 0, vec![0x82, 0x02, 0xc0, 0x00], Some(0)),
        ("reserved-bits", 0, vec![0xc2, 0x80, 0, 0, 0, 0], Some(0)),
        (
            "huge-length",
            0,
            [
                &[0x82, 0xff][..],
                &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4],
            ]
            .concat(),
            Some(0),
        ),
        (
            "request-wrong-path",
            RAW,
            request("/other", &["Sec-WebSocket-Protocol: mqtt"]),
            None,
        ),
        ("request-no-subprotocol", RAW, request("/mqtt", &[]), None),
        (
            "request-origin-and-forwarded",
            RAW | GUARDED | CERT,
            request(
                "/mqtt",
                &[
                    "Sec-WebSocket-Protocol: mqttv3.1, mqtt",
                    "Origin: https://APP.example",
                    "X-Forwarded-For: 203.0.113.9, 192.0.2.7",
                ],
            ),
            Some(0),
        ),
        (
            "not-http",
            RAW,
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec(),
            None,
        ),
    ]
}

#[test]
fn ws_seed_corpus_is_committed_and_every_input_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ws");
    let seeds = ws_seeds();
    if std::env::var_os("MOAT_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, flags, bytes, _) in &seeds {
            std::fs::write(dir.join(name), [&[*flags], bytes.as_slice()].concat()).unwrap();
        }
    }
    let on_disk = corpus("ws");
    for (name, flags, bytes, mqtt) in &seeds {
        let found = on_disk.iter().find(|(n, _)| n == name);
        let input = [&[*flags], bytes.as_slice()].concat();
        assert_eq!(
            found.map(|(_, b)| b),
            Some(&input),
            "{name} is missing or stale (run with MOAT_WRITE_CORPUS=1)"
        );
        assert_eq!(ws_input::run(&input), *mqtt, "MQTT bytes read from {name}");
    }
    for (_, bytes) in &on_disk {
        let _ = ws_input::run(bytes);
    }
}

#[test]
fn policy_corpus_seeds_load_and_every_input_replays() {
    let files = corpus("policy");
    let load = |name: &str| {
        let (_, bytes) = files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("fuzz/corpus/policy/{name} is missing"));
        policy_input::load(bytes)
    };
    for config in ["moat.yaml", "production-moat.yaml"] {
        assert!(load(config).0.is_some(), "{config} loads as moat.yaml");
    }
    for policy in [
        "example-policy.yaml",
        "production-policy.yaml",
        "password-file.yaml",
        "two-files.yaml",
    ] {
        let (_, loaded) = load(policy);
        let loaded = loaded.unwrap_or_else(|| panic!("{policy} compiles"));
        policy_input::exercise(&loaded);
    }
    for (_, bytes) in &files {
        if let (_, Some(policy)) = policy_input::load(bytes) {
            policy_input::exercise(&policy);
        }
    }
}

#[test]
fn proxy_corpus_seeds_parse_and_every_input_replays() {
    let files = corpus("proxy");
    for seed in [
        "v1-tcp4",
        "v1-tcp6",
        "v1-unknown",
        "v2-local",
        "v2-tcp4-tlv",
    ] {
        let (_, bytes) = files
            .iter()
            .find(|(n, _)| n == seed)
            .unwrap_or_else(|| panic!("fuzz/corpus/proxy/{seed} is missing"));
        assert!(proxy_input::run(bytes).is_some(), "{seed} parses");
    }
    for (_, bytes) in &files {
        let _ = proxy_input::run(bytes);
    }
}
