//! The malformed-packet suite: the red-team catalogue's bad packets (§A–§C, §G), sent over a real
//! TLS connection to moat with its real embedded broker, for MQTT 3.1.1 and 5.0.
//!
//! For every case: the exact bytes moat answers with (a CONNACK code, a v5 DISCONNECT reason
//! code before the close, or a local acknowledgement), whether it closes, and proof that nothing
//! reached the broker — a watcher subscribed to `#` directly on the broker sees nothing before a
//! marker published afterwards, and a refused CONNECT opens no upstream connection. Each bad
//! packet is sent in the same write as the CONNECT before it and a `leak/…` PUBLISH after it, so
//! the suite also proves that pipelined packets are judged in order and that nothing after a
//! refusal is forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

mod common;

use common::packets::{frame, push_str};
use common::{Harness, Opts};
use moat::mqtt::{self, Packet, ProtocolVersion};
use tokio::io::AsyncWriteExt;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// What moat must do with a bad packet sent after a successful CONNECT.
enum Expect {
    /// Send exactly these bytes after the CONNACK, then close.
    Close(Vec<u8>),
    /// Answer with exactly these bytes and keep the session (a PINGREQ still works after).
    Reply(Vec<u8>),
}

/// v5 DISCONNECT with a reason code, as moat writes it (no properties).
fn disconnect(code: u8) -> Expect {
    Expect::Close(vec![0xe0, 0x02, code, 0x00])
}

/// 3.1.1: no packet can say why, so the answer is the close itself.
fn close() -> Expect {
    Expect::Close(Vec::new())
}

/// Hex with spaces, or `'text'` for ASCII: `"30 05 00 03 'a/b'"`.
fn wire(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('\'') {
        out.extend(hex(&rest[..start]));
        let end = start + 1 + rest[start + 1..].find('\'').expect("closing quote");
        out.extend_from_slice(&rest.as_bytes()[start + 1..end]);
        rest = &rest[end + 1..];
    }
    out.extend(hex(rest));
    out
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// A CONNECT built field by field, to break one field at a time.
#[derive(Clone)]
struct Connect {
    name: &'static str,
    level: u8,
    flags: u8,
    keep_alive: u16,
    props: Vec<u8>,
    client_id: String,
    will: Option<(Vec<u8>, &'static str, &'static [u8])>,
    user: Option<&'static str>,
    pass: Option<&'static str>,
}

impl Connect {
    /// alice, clean session, keep alive 60, in `v`.
    fn new(v: ProtocolVersion, client_id: &str) -> Connect {
        Connect {
            name: "MQTT",
            level: v.level(),
            flags: 0xc2,
            keep_alive: 60,
            props: if v.is_v5() { vec![0] } else { vec![] },
            client_id: client_id.to_string(),
            will: None,
            user: Some("alice"),
            pass: Some("alice-pw"),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        push_str(&mut body, self.name);
        body.push(self.level);
        body.push(self.flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        body.extend_from_slice(&self.props);
        push_str(&mut body, &self.client_id);
        if let Some((props, topic, payload)) = &self.will {
            body.extend_from_slice(props);
            push_str(&mut body, topic);
            body.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            body.extend_from_slice(payload);
        }
        if let Some(u) = self.user {
            push_str(&mut body, u);
        }
        if let Some(p) = self.pass {
            push_str(&mut body, p);
        }
        frame(0x10, &body)
    }
}

/// A PUBLISH QoS 0 in `v`'s grammar (v5: empty property block).
fn publish(v: ProtocolVersion, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    if v.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// Reads one whole packet.
async fn read_packet(s: &mut common::Tls) -> Vec<u8> {
    let mut out = common::read_exact(s, 2).await;
    while out.last().is_some_and(|b| b & 0x80 != 0) {
        out.extend(common::read_exact(s, 1).await);
    }
    let h = mqtt::check(&out, usize::MAX).unwrap().unwrap();
    out.extend(common::read_exact(s, h.remaining_len).await);
    out
}

/// Splits the first packet off `bytes`.
fn split_first(bytes: &[u8]) -> (&[u8], &[u8]) {
    let h = mqtt::check(bytes, usize::MAX)
        .unwrap()
        .unwrap_or_else(|| panic!("no whole packet in {bytes:02x?}"));
    bytes.split_at(h.frame_len().min(bytes.len()))
}

fn assert_connack_ok(v: ProtocolVersion, bytes: &[u8], name: &str) {
    match mqtt::decode(bytes::Bytes::copy_from_slice(bytes), v) {
        Ok(Packet::ConnAck(ack)) => assert_eq!(ack.code, 0, "{name}: CONNACK {bytes:02x?}"),
        other => panic!("{name}: expected CONNACK, got {other:?} from {bytes:02x?}"),
    }
}

/// Runs every post-CONNECT case of one version.
async fn run_session_cases(h: &Harness, v: ProtocolVersion, cases: Vec<(&str, Vec<u8>, Expect)>) {
    for (i, (name, bad, expect)) in cases.into_iter().enumerate() {
        eprintln!("case: {name}");
        let id = format!("mal-{}-{i}", v.level());
        let mut s = h.tls(None).await;
        let mut bytes = Connect::new(v, &id).bytes();
        bytes.extend_from_slice(&bad);
        match expect {
            Expect::Close(tail) => {
                // Nothing after the refused packet may reach the broker.
                bytes.extend(publish(v, &format!("leak/{}/{i}", v.level()), b"after"));
                let (got, closed) = common::exchange(&mut s, &bytes).await;
                assert!(!got.is_empty(), "{name}: no CONNACK");
                let (connack, rest) = split_first(&got);
                assert_connack_ok(v, connack, name);
                assert_eq!(rest, &tail[..], "{name}: answered {rest:02x?}");
                assert!(closed, "{name}: connection left open");
            }
            Expect::Reply(reply) => {
                s.write_all(&bytes).await.unwrap();
                let connack = read_packet(&mut s).await;
                assert_connack_ok(v, &connack, name);
                let got = common::read_exact(&mut s, reply.len()).await;
                assert_eq!(got, reply, "{name}");
                // The session is still up and the broker still in step with it: a SUBSCRIBE
                // makes a round trip through the broker (which drops a connection that sent it
                // an acknowledgement it did not expect).
                let (subscribe, suback) = match v {
                    V5 => (
                        wire("82 0d 42 42 00 00 07 'alive/x' 00"),
                        wire("90 04 42 42 00 00"),
                    ),
                    _ => (
                        wire("82 0c 42 42 00 07 'alive/x' 00"),
                        wire("90 03 42 42 00"),
                    ),
                };
                s.write_all(&subscribe).await.unwrap();
                assert_eq!(read_packet(&mut s).await, suback, "{name}: no SUBACK");
                s.write_all(&[0xe0, 0x00]).await.unwrap();
                let (_, closed) = common::read_until_close(&mut s, common::WAIT).await;
                assert!(closed, "{name}: DISCONNECT did not end the session");
            }
        }
    }
}

/// Runs CONNECTs that must be refused with exactly `expect` (empty: close without CONNACK),
/// opening no broker connection.
async fn run_connect_cases(h: &Harness, cases: Vec<(&str, Vec<u8>, Vec<u8>)>) {
    for (name, connect, expect) in cases {
        let before = h.upstream_connects();
        let mut s = h.tls(None).await;
        let mut bytes = connect;
        bytes.extend(publish(V4, "leak/connect", b"after refused connect"));
        let (got, closed) = common::exchange(&mut s, &bytes).await;
        assert_eq!(got, expect, "{name}: answered {got:02x?}");
        assert!(closed, "{name}: connection left open");
        assert_eq!(h.upstream_connects(), before, "{name}: reached the broker");
    }
}

async fn assert_broker_saw_nothing(h: &Harness, watch: &mut common::BrokerWatch) {
    let seen = common::broker_saw_before_marker(h, watch).await;
    assert_eq!(seen, vec![], "the broker saw these");
}

fn user_property_flood(n: usize) -> Vec<u8> {
    let mut props = Vec::new();
    for _ in 0..n {
        props.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'v']);
    }
    let mut body = Vec::new();
    push_str(&mut body, "a/b");
    body.push(props.len() as u8 | 0x80);
    body.push((props.len() >> 7) as u8);
    body.extend(props);
    frame(0x30, &body)
}

#[tokio::test]
async fn mqtt5_bad_packets_after_connect_get_the_right_reason_code_and_reach_nothing() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        // §A.2–3 topic aliases (moat owns the table; the broker never sees an alias).
        ("A.2 alias-only PUBLISH, unknown alias [MQTT-3.3.2-12]", wire("30 07 00 00 03 23 00 05 70"), disconnect(0x82)),
        ("A.2 topic alias 0 [MQTT-3.3.2-8]", wire("30 0a 00 03 'a/b' 03 23 00 00 70"), disconnect(0x94)),
        ("A.2 topic alias above the maximum [MQTT-3.3.2-9]", wire("30 0a 00 03 'a/b' 03 23 ff ff 70"), disconnect(0x94)),
        ("A.3 duplicated Topic Alias", wire("30 0a 00 00 06 23 00 01 23 00 02 70"), disconnect(0x82)),
        // §A.5, §A.11 invalid filters: SUBACK 0x8F in place, the rest as usual.
        ("A.11 invalid filter a/#/b [MQTT-4.7.1-1]", wire("82 0b 00 01 00 00 05 'a/#/b' 00"), Expect::Reply(wire("90 04 00 01 00 8f"))),
        (
            "A.5 malformed shared filters [MQTT-4.8.2-1]",
            wire("82 35 00 02 00 00 09 '$share//a' 00 00 0b '$share/g+/a' 00 00 0a '$share/#/a' 00 00 08 '$share/g' 00"),
            Expect::Reply(wire("90 07 00 02 00 8f 8f 8f 8f")),
        ),
        (
            "A.11 valid and invalid filters in one SUBSCRIBE",
            wire("82 11 00 03 00 00 03 'a/b' 01 00 02 'a#' 00 00 00 00"),
            Expect::Reply(wire("90 06 00 03 00 01 8f 8f")),
        ),
        ("A.6 No Local on a shared subscription [MQTT-3.8.3-4]", wire("82 12 00 01 00 00 0c '$share/g/a/b' 04"), disconnect(0x82)),
        // §A.10 wildcards in a topic name.
        ("A.10 PUBLISH to a/# [MQTT-3.3.2-2]", wire("30 06 00 03 'a/#' 00"), disconnect(0x90)),
        ("A.10 PUBLISH to a/+/b", wire("30 08 00 05 'a/+/b' 00"), disconnect(0x90)),
        ("A.10 PUBLISH to +", wire("30 04 00 01 '+' 00"), disconnect(0x90)),
        // §A.12 UTF-8.
        ("A.12 U+0000 in a topic [MQTT-1.5.4-2]", wire("30 06 00 03 61 00 62 00"), disconnect(0x81)),
        ("A.12 overlong '/' [MQTT-1.5.4-1]", wire("30 07 00 04 61 c0 af 62 00"), disconnect(0x81)),
        ("A.12 overlong NUL", wire("30 06 00 03 61 c0 80 00"), disconnect(0x81)),
        ("A.12 surrogate U+D800", wire("30 07 00 04 61 ed a0 80 00"), disconnect(0x81)),
        ("A.12 truncated sequence", wire("30 06 00 03 61 e2 82 00"), disconnect(0x81)),
        ("A.12 U+0000 in a user property", wire("30 0e 00 03 'a/b' 08 26 00 01 00 00 01 'v' 'x'"), disconnect(0x81)),
        // §A.25–26.
        ("A.25 Response Topic with a wildcard [MQTT-3.3.2-14]", wire("30 0c 00 03 'a/b' 06 08 00 03 'a/#'"), disconnect(0x82)),
        ("A.26 client PUBLISH with a Subscription Identifier [MQTT-3.3.4-6]", wire("30 08 00 03 'a/b' 02 0b 01"), disconnect(0x82)),
        ("A.26 Subscription Identifier 0", wire("82 0b 00 01 02 0b 00 00 03 'a/b' 00"), disconnect(0x82)),
        ("A.26 two Subscription Identifiers", wire("82 0d 00 01 04 0b 01 0b 02 00 03 'a/b' 00"), disconnect(0x82)),
        // §B state machine.
        ("B.29 second CONNECT [MQTT-3.1.0-2]", common::packets::connect_v5("again", Some("bob"), Some("bob-pw")), disconnect(0x82)),
        ("B.31 AUTH without an Authentication Method [MQTT-4.12.0-1]", wire("f0 00"), disconnect(0x82)),
        ("B.32 CONNACK from a client", wire("20 03 00 00 00"), disconnect(0x82)),
        ("B.32 mosquitto#2163 CONNACK with bad flags", wire("29 02 00 01"), disconnect(0x81)),
        ("B.32 SUBACK from a client", wire("90 04 00 01 00 00"), disconnect(0x82)),
        ("B.32 UNSUBACK from a client", wire("b0 04 00 01 00 00"), disconnect(0x82)),
        ("B.32 PINGRESP from a client", wire("d0 00"), disconnect(0x82)),
        ("B.33 PUBREL for an unknown id", wire("62 02 00 09"), Expect::Reply(wire("70 03 00 09 92"))),
        (
            "B.33 refused QoS 2 PUBLISH, then its PUBREL",
            wire("34 0c 00 06 '$SYS/x' 00 07 00 'x' 62 02 00 07"),
            Expect::Reply(wire("50 03 00 07 87 70 03 00 07 92")),
        ),
        ("B.33 PUBACK for a delivery that never happened", wire("40 02 00 0b"), Expect::Reply(Vec::new())),
        ("B.34 DISCONNECT raising Session Expiry 0 → 3600", wire("e0 07 00 05 11 00 00 0e 10"), disconnect(0x82)),
        // §C parser attacks.
        ("C.42 five-byte remaining length [MQTT-1.5.5-1]", wire("30 80 80 80 80 01"), disconnect(0x81)),
        ("C.42 non-minimal remaining length", wire("c0 80 00"), disconnect(0x81)),
        ("C.42 non-minimal property length", wire("30 07 00 03 'a/b' 80 00"), disconnect(0x81)),
        ("C.42 five-byte Subscription Identifier", wire("82 0d 00 01 06 0b 80 80 80 80 01 00 01 'a' 00"), disconnect(0x81)),
        ("C.43 declared length of 256 MiB", wire("30 ff ff ff 7f"), disconnect(0x95)),
        ("C.45 topic length past the packet", wire("30 07 ff ff 61 62 63 64 65"), disconnect(0x81)),
        ("C.45 property length shorter than its property", wire("30 09 00 03 'a/b' 01 23 00 01"), disconnect(0x81)),
        ("C.45 property length past the packet", wire("30 08 00 03 'a/b' 09 68 69"), disconnect(0x81)),
        ("C.45 last filter length past the packet", wire("82 09 00 01 00 00 09 'a/b' 00"), disconnect(0x81)),
        ("C.46 SUBSCRIBE with flags 0 [MQTT-3.8.1-1]", wire("80 09 00 01 00 00 03 'a/b' 00"), disconnect(0x81)),
        ("C.46 UNSUBSCRIBE with flags 0 [MQTT-3.10.1-1]", wire("a0 08 00 01 00 00 03 'a/b'"), disconnect(0x81)),
        ("C.46 PUBREL with flags 0 [MQTT-3.6.1-1]", wire("60 02 00 01"), disconnect(0x81)),
        ("C.46 PINGREQ with flags", wire("c1 00"), disconnect(0x81)),
        ("C.46 DISCONNECT with flags [MQTT-3.14.1-1]", wire("e1 00"), disconnect(0x81)),
        ("C.46 packet type 0", wire("00 00"), disconnect(0x81)),
        ("C.47 PUBLISH QoS 3 [MQTT-3.3.1-4]", wire("36 08 00 03 'a/b' 00 01 00"), disconnect(0x81)),
        ("C.47 subscription QoS 3", wire("82 09 00 01 00 00 03 'a/b' 03"), disconnect(0x81)),
        ("C.47 DUP on QoS 0 [MQTT-3.3.1-2]", wire("38 06 00 03 'a/b' 00"), disconnect(0x81)),
        ("C.48 PUBLISH QoS 1 with packet id 0 [MQTT-2.2.1-3]", wire("32 08 00 03 'a/b' 00 00 00"), disconnect(0x82)),
        ("C.48 SUBSCRIBE with packet id 0", wire("82 09 00 00 00 00 03 'a/b' 00"), disconnect(0x82)),
        ("C.48 UNSUBSCRIBE with packet id 0", wire("a2 08 00 00 00 00 03 'a/b'"), disconnect(0x82)),
        ("C.49 empty topic without an alias", wire("30 05 00 00 00 68 69"), disconnect(0x82)),
        ("C.49 SUBSCRIBE without filters [MQTT-3.8.3-2]", wire("82 03 00 01 00"), disconnect(0x82)),
        ("C.49 UNSUBSCRIBE without filters [MQTT-3.10.3-2]", wire("a2 03 00 01 00"), disconnect(0x82)),
        ("C.50 Payload Format Indicator 7", wire("30 0a 00 03 'a/b' 02 01 07 68 69"), disconnect(0x82)),
        ("C.50 unknown property 0x7f", wire("30 0a 00 03 'a/b' 02 7f 00 68 69"), disconnect(0x81)),
        ("C.50 property id in two bytes", wire("30 0b 00 03 'a/b' 03 80 01 00 68 69"), disconnect(0x81)),
        ("C.50 duplicated Message Expiry", wire("30 11 00 03 'a/b' 0a 02 00 00 00 01 02 00 00 00 02 'x'"), disconnect(0x82)),
        ("C.51 Server Reference in PUBLISH", wire("30 0c 00 03 'a/b' 06 1c 00 03 'abc'"), disconnect(0x81)),
        ("C.51 Session Expiry in PUBLISH", wire("30 0b 00 03 'a/b' 05 11 00 00 00 01"), disconnect(0x81)),
        ("C.51 Authentication Method in PUBLISH", wire("30 0a 00 03 'a/b' 04 15 00 01 'x'"), disconnect(0x81)),
        ("C.52 user-property flood", user_property_flood(mqtt::MAX_USER_PROPERTIES + 1), disconnect(0x83)),
        // §G.87: a PUBREL carrying properties falls into rumqttd's "ignore" branch; moat reads it.
        ("G.87 PUBREL with an invalid reason code", wire("62 03 00 09 80"), disconnect(0x82)),
    ];
    run_session_cases(&h, V5, cases).await;
    assert_broker_saw_nothing(&h, &mut watch).await;
}

#[tokio::test]
async fn mqtt311_bad_packets_after_connect_close_the_connection_and_reach_nothing() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        // §A.5, §A.11: 3.1.1 has no SUBACK code for a bad filter: protocol violation, close.
        (
            "A.11 invalid filter a/#/b [v3:MQTT-4.7.1-2]",
            wire("82 0a 00 01 00 05 'a/#/b' 00"),
            close(),
        ),
        (
            "A.11 invalid filter a+/b [v3:MQTT-4.7.1-3]",
            wire("82 09 00 01 00 05 'a+/b' 00"),
            close(),
        ),
        (
            "A.5 shared filter without a name",
            wire("82 0e 00 01 00 09 '$share//a' 00"),
            close(),
        ),
        (
            "A.10 PUBLISH to a/# [v3:MQTT-3.3.2-2]",
            wire("30 05 00 03 'a/#'"),
            close(),
        ),
        (
            "A.10 PUBLISH to a/+/b",
            wire("30 07 00 05 'a/+/b'"),
            close(),
        ),
        (
            "A.12 U+0000 in a topic [v3:MQTT-1.5.3-2]",
            wire("30 05 00 03 61 00 62"),
            close(),
        ),
        (
            "A.12 overlong '/' [v3:MQTT-1.5.3-1]",
            wire("30 06 00 04 61 c0 af 62"),
            close(),
        ),
        (
            "A.12 surrogate U+D800",
            wire("30 06 00 04 61 ed a0 80"),
            close(),
        ),
        (
            "A.12 truncated sequence",
            wire("30 05 00 03 61 e2 82"),
            close(),
        ),
        (
            "B.29 second CONNECT [v3:MQTT-3.1.0-2]",
            common::packets::connect_v4("again", Some("bob"), Some("bob-pw")),
            close(),
        ),
        (
            "B.31 AUTH is a reserved type in 3.1.1 [v3:MQTT-2.2.2-2]",
            wire("f0 00"),
            close(),
        ),
        ("B.32 CONNACK from a client", wire("20 02 00 00"), close()),
        ("B.32 SUBACK from a client", wire("90 03 00 01 00"), close()),
        ("B.32 UNSUBACK from a client", wire("b0 02 00 01"), close()),
        ("B.32 PINGRESP from a client", wire("d0 00"), close()),
        (
            "B.33 PUBREL for an unknown id",
            wire("62 02 00 09"),
            Expect::Reply(wire("70 02 00 09")),
        ),
        (
            "B.33 refused QoS 2 PUBLISH, a resend, then its PUBREL",
            wire("34 0b 00 06 '$SYS/x' 00 07 'x' 3c 0b 00 06 '$SYS/x' 00 07 'x' 62 02 00 07"),
            Expect::Reply(wire("50 02 00 07 50 02 00 07 70 02 00 07")),
        ),
        (
            "B.33 PUBACK for a delivery that never happened",
            wire("40 02 00 0b"),
            Expect::Reply(Vec::new()),
        ),
        (
            "B.39 v5 No Local bit in a 3.1.1 SUBSCRIBE [v3:MQTT-3.8.3-4]",
            wire("82 08 00 01 00 03 'a/b' 04"),
            close(),
        ),
        (
            "C.42 five-byte remaining length",
            wire("30 80 80 80 80 01"),
            close(),
        ),
        (
            "C.42 non-minimal remaining length",
            wire("c0 80 00"),
            close(),
        ),
        (
            "C.43 declared length of 256 MiB",
            wire("30 ff ff ff 7f"),
            close(),
        ),
        (
            "C.45 topic length past the packet",
            wire("30 07 ff ff 61 62 63 64 65"),
            close(),
        ),
        (
            "C.45 last filter length past the packet",
            wire("82 08 00 01 00 09 'a/b' 00"),
            close(),
        ),
        (
            "C.46 SUBSCRIBE with flags 0 [v3:MQTT-2.2.2-1]",
            wire("80 08 00 01 00 03 'a/b' 00"),
            close(),
        ),
        (
            "C.46 UNSUBSCRIBE with flags 0",
            wire("a0 07 00 01 00 03 'a/b'"),
            close(),
        ),
        ("C.46 PUBREL with flags 0", wire("60 02 00 01"), close()),
        ("C.46 PINGREQ with flags", wire("c1 00"), close()),
        ("C.46 DISCONNECT with flags", wire("e1 00"), close()),
        ("C.46 packet type 0", wire("00 00"), close()),
        (
            "C.47 PUBLISH QoS 3 [v3:MQTT-3.3.1-4]",
            wire("36 07 00 03 'a/b' 00 01"),
            close(),
        ),
        (
            "C.47 subscription QoS 3",
            wire("82 08 00 01 00 03 'a/b' 03"),
            close(),
        ),
        (
            "C.48 PUBLISH QoS 1 with packet id 0 [v3:MQTT-2.3.1-1]",
            wire("32 07 00 03 'a/b' 00 00"),
            close(),
        ),
        (
            "C.48 SUBSCRIBE with packet id 0",
            wire("82 08 00 00 00 03 'a/b' 00"),
            close(),
        ),
        (
            "C.48 UNSUBSCRIBE with packet id 0",
            wire("a2 07 00 00 00 03 'a/b'"),
            close(),
        ),
        (
            "C.49 zero-length topic [v3:MQTT-4.7.3-1]",
            wire("30 04 00 00 68 69"),
            close(),
        ),
        (
            "C.49 SUBSCRIBE without filters [v3:MQTT-3.8.3-3]",
            wire("82 02 00 01"),
            close(),
        ),
        (
            "C.49 UNSUBSCRIBE without filters [v3:MQTT-3.10.3-2]",
            wire("a2 02 00 01"),
            close(),
        ),
        (
            "C.53 PUBACK with a v5 reason code",
            wire("40 03 00 01 00"),
            close(),
        ),
        (
            "C.53 DISCONNECT with a v5 reason code",
            wire("e0 01 00"),
            close(),
        ),
    ];
    run_session_cases(&h, V4, cases).await;
    assert_broker_saw_nothing(&h, &mut watch).await;
}

#[tokio::test]
async fn bad_connects_get_the_version_s_connack_code_and_open_no_broker_connection() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    let v4 = |id: &str| Connect::new(V4, id);
    let v5 = |id: &str| Connect::new(V5, id);
    let with = |mut c: Connect, f: &dyn Fn(&mut Connect)| {
        f(&mut c);
        c.bytes()
    };
    let will = |c: &mut Connect, flags: u8| {
        c.flags |= flags;
        c.will = Some((if c.level == 5 { vec![0] } else { vec![] }, "a/b", b"x"));
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // §B.37 client identifiers: CONNACK 0x02 (3.x) / 0x85 (5.0).
        ("B.37 3.1.1 empty id without clean session [v3:MQTT-3.1.3-8]", with(v4(""), &|c| c.flags &= !0x02), wire("20 02 00 02")),
        ("B.37 id with '/'", v4("a/b").bytes(), wire("20 02 00 02")),
        ("B.37 id starting with '$'", v4("$x").bytes(), wire("20 02 00 02")),
        ("B.37 id '#'", v4("#").bytes(), wire("20 02 00 02")),
        ("B.37 id '+' (v5)", v5("+").bytes(), wire("20 03 00 85 00")),
        ("B.37 MQTT 3.1 empty id", with(v4(""), &|c| { c.name = "MQIsdp"; c.level = 3 }), wire("20 02 00 02")),
        ("B.37 MQTT 3.1 id of 24 bytes", with(v4("abcdefghijklmnopqrstuvwx"), &|c| { c.name = "MQIsdp"; c.level = 3 }), wire("20 02 00 02")),
        // §B.38 protocol name and level.
        ("B.38 MQIsdp with level 4 [MQTT-3.1.2-1]", with(v4("c1"), &|c| c.name = "MQIsdp"), wire("20 02 00 01")),
        ("B.38 MQTT with level 3", with(v4("c1"), &|c| c.level = 3), wire("20 02 00 01")),
        ("B.38 level 6 [MQTT-3.1.2-2]", with(v4("c1"), &|c| c.level = 6), wire("20 02 00 01")),
        ("B.38 bridge bit, level 0x84", with(v4("c1"), &|c| c.level = 0x84), wire("20 02 00 01")),
        ("B.38 bridge bit, level 0x85", with(v5("c1"), &|c| c.level = 0x85), wire("20 02 00 01")),
        // §B.40 flags: 3.1.1 closes without a CONNACK [v3:MQTT-3.1.4-1]; 5.0 says why.
        ("B.40 reserved flag bit [v3:MQTT-3.1.2-3]", with(v4("c1"), &|c| c.flags |= 0x01), vec![]),
        ("B.40 reserved flag bit (v5) [MQTT-3.1.2-3]", with(v5("c1"), &|c| c.flags |= 0x01), wire("20 03 00 81 00")),
        ("B.40 Will QoS 3 [MQTT-3.1.2-12]", with(v4("c1"), &|c| will(c, 0x1c)), vec![]),
        ("B.40 Will QoS 3 (v5)", with(v5("c1"), &|c| will(c, 0x1c)), wire("20 03 00 81 00")),
        ("B.40 Will Retain without Will Flag [MQTT-3.1.2-13]", with(v4("c1"), &|c| c.flags |= 0x20), vec![]),
        ("B.40 Will QoS without Will Flag (v5)", with(v5("c1"), &|c| c.flags |= 0x08), wire("20 03 00 81 00")),
        ("B.40 password without user name [v3:MQTT-3.1.2-22]", with(v4("c1"), &|c| { c.flags &= !0x80; c.user = None }), vec![]),
        ("B.40 user name flag, field missing", with(v4("c1"), &|c| { c.flags = 0x82; c.user = None; c.pass = None }), vec![]),
        (
            "B.40 hivemq#493 Will flag without Will fields",
            wire("10 27 00 04 4d 51 54 54 04 06 b1 9c 00 06 69 52 30 69 33 61 00 13 6f 32 43 73 77 4a 32 4b 52 70 65 37 4e 61 4a 38 72 65 54"),
            vec![],
        ),
        ("B.40 CONNECT fixed-header flags [MQTT-2.1.3-1]", { let mut b = v4("c1").bytes(); b[0] = 0x11; b }, vec![]),
        ("B.40 trailing bytes", { let mut b = v4("c1").bytes(); b[1] += 2; b.extend([0xde, 0xad]); b }, vec![]),
        ("B.40 trailing bytes (v5)", { let mut b = v5("c1").bytes(); b[1] += 2; b.extend([0xde, 0xad]); b }, wire("20 03 00 81 00")),
        // §A.12 strings in CONNECT.
        ("A.12 U+0000 in the client id", with(v4("a\0b"), &|_| {}), vec![]),
        ("A.12 U+0000 in the client id (v5)", with(v5("a\0b"), &|_| {}), wire("20 03 00 81 00")),
        // §A.17 identities that would become wildcards never authenticate.
        ("A.17 user name '+'", with(v4("c1"), &|c| c.user = Some("+")), wire("20 02 00 04")),
        // §B.31 enhanced authentication is not offered.
        ("B.31 Authentication Method SCRAM-SHA-1 [MQTT-4.12.0-1]", with(v5("c1"), &|c| c.props = wire("0e 15 00 0b 'SCRAM-SHA-1'")), wire("20 03 00 8c 00")),
        // §C.50 CONNECT properties.
        ("C.50 two Session Expiry Intervals", with(v5("c1"), &|c| c.props = wire("0a 11 00 00 00 00 11 00 00 00 3c")), wire("20 03 00 82 00")),
        ("C.50 Receive Maximum 0", with(v5("c1"), &|c| c.props = wire("03 21 00 00")), wire("20 03 00 82 00")),
        ("C.50 Maximum Packet Size 0", with(v5("c1"), &|c| c.props = wire("05 27 00 00 00 00")), wire("20 03 00 82 00")),
        ("C.50 Request Problem Information 2", with(v5("c1"), &|c| c.props = wire("02 17 02")), wire("20 03 00 82 00")),
        ("C.50 unknown property 0x7f", with(v5("c1"), &|c| c.props = wire("02 7f 00")), wire("20 03 00 81 00")),
        ("C.51 Topic Alias in CONNECT", with(v5("c1"), &|c| c.props = wire("03 23 00 01")), wire("20 03 00 81 00")),
        // §B.35 Will properties of the wrong kind.
        ("B.35 Session Expiry in Will properties", with(v5("c1"), &|c| { c.flags |= 0x04; c.will = Some((wire("05 11 00 00 00 01"), "a/b", b"x")) }), wire("20 03 00 81 00")),
        ("A.18 Will topic with a wildcard", with(v5("c1"), &|c| { c.flags |= 0x04; c.will = Some((vec![0], "a/#", b"x")) }), wire("20 03 00 90 00")),
        // §C.43 size before allocation, in CONNECT.
        ("C.43 CONNECT declaring 256 MiB", wire("10 ff ff ff 7f"), vec![]),
    ];
    run_connect_cases(&h, cases).await;
    assert_broker_saw_nothing(&h, &mut watch).await;
}

#[tokio::test]
async fn receive_maximum_exceeded_is_disconnect_0x93() {
    // QoS 2 PUBLISHes whose PUBREL never comes stay open: the 1025th is one too many.
    let h = common::start(Opts::default()).await;
    let mut s = h.tls(None).await;
    s.write_all(&Connect::new(V5, "recv-max").bytes())
        .await
        .unwrap();
    let connack = read_packet(&mut s).await;
    let Ok(Packet::ConnAck(ack)) = mqtt::decode(bytes::Bytes::from(connack), V5) else {
        panic!("no CONNACK")
    };
    let max = ack
        .properties
        .receive_maximum
        .expect("Receive Maximum advertised");
    let qos2 = |id: u16| {
        let mut body = Vec::new();
        push_str(&mut body, "rm/x");
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&[0, b'x']);
        frame(0x34, &body)
    };
    // `max` open exchanges are allowed: every one gets the broker's PUBREC.
    let bytes: Vec<u8> = (1..=max).flat_map(qos2).collect();
    s.write_all(&bytes).await.unwrap();
    for id in 1..=max {
        let p = read_packet(&mut s).await;
        assert_eq!(p[0], 0x50, "PUBREC {id}: {p:02x?}");
    }
    // One more is DISCONNECT 0x93 [MQTT-3.3.4-7].
    let (got, closed) = common::exchange(&mut s, &qos2(max + 1)).await;
    assert_eq!(got, [0xe0, 0x02, 0x93, 0x00]);
    assert!(closed);
}

#[tokio::test]
async fn a_connect_split_into_single_bytes_and_packets_behind_it_work() {
    // §C.54: one byte per TLS record, then CONNECT + SUBSCRIBE + PUBLISH in one record.
    let h = common::start(Opts::default()).await;
    let mut s = h.tls(None).await;
    for b in Connect::new(V4, "drip").bytes() {
        s.write_all(&[b]).await.unwrap();
        s.flush().await.unwrap();
    }
    assert_eq!(read_packet(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    let mut s = h.tls(None).await;
    let mut bytes = Connect::new(V4, "pipelined").bytes();
    bytes.extend(subscribe_v4("pipe/#"));
    bytes.extend(publish(V4, "pipe/1", b"first"));
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(read_packet(&mut s).await, [0x90, 0x03, 0x00, 0x01, 0x00]);
    let delivered = read_packet(&mut s).await;
    assert_eq!(delivered, publish(V4, "pipe/1", b"first"));
}

/// A 3.1.1 SUBSCRIBE with packet id 1, QoS 0.
fn subscribe_v4(filter: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    push_str(&mut body, filter);
    body.push(0);
    frame(0x82, &body)
}

#[tokio::test]
async fn deliveries_larger_than_the_client_s_maximum_packet_size_are_dropped() {
    // [MQTT-3.1.2-25]: the subscriber says 64 bytes; a 200-byte QoS 1 message is dropped (and
    // acknowledged to the broker by moat), a small one after it still arrives.
    let h = common::start(Opts::default()).await;
    let mut sub = h.tls(None).await;
    let mut c = Connect::new(V5, "small-sub");
    c.props = wire("05 27 00 00 00 40");
    let mut bytes = c.bytes();
    let mut subscribe = vec![0, 1, 0];
    push_str(&mut subscribe, "mps/#");
    subscribe.push(1);
    bytes.extend(frame(0x82, &subscribe));
    sub.write_all(&bytes).await.unwrap();
    read_packet(&mut sub).await; // CONNACK
    assert_eq!(
        read_packet(&mut sub).await,
        [0x90, 0x04, 0x00, 0x01, 0x00, 0x01]
    );

    let (publ, _) = common::rumqttc_v5(&h, "mps-pub", Some(("bob", "bob-pw")))
        .await
        .unwrap();
    use rumqttc::v5::mqttbytes::QoS;
    publ.publish("mps/big", QoS::AtLeastOnce, false, vec![b'x'; 200])
        .await
        .unwrap();
    publ.publish("mps/small", QoS::AtMostOnce, false, "ok")
        .await
        .unwrap();
    let got = read_packet(&mut sub).await;
    let Ok(Packet::Publish(p)) = mqtt::decode(bytes::Bytes::from(got), V5) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("mps/small", &b"ok"[..])
    );
}

#[tokio::test]
async fn keep_alive_0_is_served_with_moat_s_maximum_and_enforced() {
    // §B.36 / §G.89: rumqttd drops a keep-alive-0 CONNECT without a CONNACK; moat accepts it,
    // keeps its own keep alive upstream, tells an MQTT 5 client the maximum (Server Keep Alive,
    // [MQTT-3.2.2-21]) and closes a silent client after 1.5 × that [MQTT-3.1.2-24].
    let h = common::start(Opts {
        extra: "limits: { max_keepalive: 1s }\n".into(),
        ..Opts::default()
    })
    .await;
    let mut v4 = Connect::new(V4, "ka0-4");
    v4.keep_alive = 0;
    let mut s = h.tls(None).await;
    s.write_all(&v4.bytes()).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    let mut v5 = Connect::new(V5, "ka0-5");
    v5.keep_alive = 0;
    let mut s5 = h.tls(None).await;
    s5.write_all(&v5.bytes()).await.unwrap();
    let Ok(Packet::ConnAck(ack)) = mqtt::decode(read_packet(&mut s5).await.into(), V5) else {
        panic!("no CONNACK")
    };
    assert_eq!((ack.code, ack.properties.server_keep_alive), (0, Some(1)));
    // Enforcing that keep alive (DISCONNECT 0x8D after 1.5 s of silence) is tested without
    // real time: `session::connect::tests` (0 gets the maximum), `session::machine::tests`
    // and `session::driver::tests` (the close at 1.5 × keep alive, on a paused clock).
}
