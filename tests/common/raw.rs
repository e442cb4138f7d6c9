//! Raw MQTT sessions over TLS (or plain TCP, straight to the embedded broker): packets built byte
//! by byte, read back whole, decoded with moat's codec only to look inside them.

use bytes::Bytes;
use moat::mqtt::{self, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::packets::{frame, push_str};
use super::{Harness, Tls};

/// The protocol version of a raw session (`true` = MQTT 5).
pub fn version(v5: bool) -> ProtocolVersion {
    if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

pub async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// Reads one whole packet.
pub async fn read_packet<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = super::read_exact(s, 2).await;
    while out.last().is_some_and(|b| b & 0x80 != 0) {
        out.extend(super::read_exact(s, 1).await);
    }
    let h = mqtt::check(&out, usize::MAX).unwrap().unwrap();
    out.extend(super::read_exact(s, h.remaining_len).await);
    out
}

/// Reads one packet and decodes it.
pub async fn read_decoded<S: AsyncRead + Unpin>(s: &mut S, v5: bool) -> Packet {
    let bytes = read_packet(s).await;
    mqtt::decode(Bytes::from(bytes.clone()), version(v5))
        .unwrap_or_else(|e| panic!("undecodable {bytes:02x?}: {e}"))
}

/// A CONNECT (clean start, keep alive 60) as `user`/`{user}-pw`, with v5 `props`.
pub fn connect(id: &str, user: &str, v5: bool, props: &[u8]) -> Vec<u8> {
    let password = format!("{user}-pw");
    connect_with(id, Some((user, &password)), true, 60, v5, props)
}

/// A CONNECT with every choice open: credentials, Clean Start (Clean Session in 3.1.1), keep
/// alive and v5 `props` (a property block shorter than 128 bytes).
pub fn connect_with(
    id: &str,
    login: Option<(&str, &str)>,
    clean: bool,
    keep_alive: u16,
    v5: bool,
    props: &[u8],
) -> Vec<u8> {
    let mut flags = if clean { 0x02 } else { 0x00 };
    if login.is_some() {
        flags |= 0xc0;
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', if v5 { 5 } else { 4 }, flags];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if v5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    push_str(&mut body, id);
    if let Some((user, password)) = login {
        push_str(&mut body, user);
        push_str(&mut body, password);
    }
    frame(0x10, &body)
}

/// A raw session whose CONNACK said yes.
pub async fn session(h: &Harness, id: &str, user: &str, v5: bool, props: &[u8]) -> Tls {
    resume(h, id, user, true, v5, props).await.0
}

/// A raw session as `user`, with Clean Start `clean`, whose CONNACK said yes; with the
/// CONNACK's Session Present flag.
pub async fn resume(
    h: &Harness,
    id: &str,
    user: &str,
    clean: bool,
    v5: bool,
    props: &[u8],
) -> (Tls, bool) {
    let mut s = h.tls(None).await;
    let password = format!("{user}-pw");
    let connect = connect_with(id, Some((user, &password)), clean, 60, v5, props);
    send(&mut s, &connect).await;
    match read_decoded(&mut s, v5).await {
        Packet::ConnAck(ack) if ack.code == 0 => (s, ack.session_present),
        other => panic!("{id}: expected a successful CONNACK, got {other:?}"),
    }
}

/// A PUBLISH (v5 with an empty property block).
pub fn publish(v5: bool, qos: u8, dup: bool, topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | if dup { 0x08 } else { 0 }, &body)
}

/// A SUBSCRIBE of `(filter, options)` pairs.
pub fn subscribe(v5: bool, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (f, opts) in filters {
        push_str(&mut body, f);
        body.push(*opts);
    }
    frame(0x82, &body)
}

/// Subscribes and returns the SUBACK's codes.
pub async fn subscribed<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    v5: bool,
    pkid: u16,
    filters: &[(&str, u8)],
) -> Vec<u8> {
    send(s, &subscribe(v5, pkid, filters)).await;
    match read_decoded(s, v5).await {
        Packet::SubAck(a) if a.pkid == pkid => a.codes,
        other => panic!("expected SUBACK {pkid}, got {other:?}"),
    }
}

/// An UNSUBSCRIBE of `filters`.
pub fn unsubscribe(v5: bool, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        push_str(&mut body, f);
    }
    frame(0xa2, &body)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) for `pkid`, success.
pub fn ack(byte1: u8, pkid: u16) -> Vec<u8> {
    frame(byte1, &pkid.to_be_bytes())
}

/// Sends PINGREQ and returns every packet that came before the PINGRESP.
pub async fn until_pong(s: &mut Tls) -> Vec<Vec<u8>> {
    send(s, &[0xc0, 0x00]).await;
    let mut got = Vec::new();
    loop {
        let p = read_packet(s).await;
        if p == [0xd0, 0x00] {
            return got;
        }
        got.push(p);
    }
}

/// Publishes at `qos` and completes the exchange (PUBACK, or PUBREC → PUBREL → PUBCOMP).
pub async fn publish_complete(
    s: &mut Tls,
    v5: bool,
    qos: u8,
    topic: &str,
    pkid: u16,
    payload: &[u8],
) {
    send(s, &publish(v5, qos, false, topic, pkid, payload)).await;
    match qos {
        0 => {}
        1 => expect_ack(s, v5, 0x40, pkid).await,
        _ => {
            expect_ack(s, v5, 0x50, pkid).await;
            send(s, &ack(0x62, pkid)).await;
            expect_ack(s, v5, 0x70, pkid).await;
        }
    }
}

/// Reads one packet and checks it is a successful acknowledgement of this type for `pkid`.
pub async fn expect_ack(s: &mut Tls, v5: bool, byte1: u8, pkid: u16) {
    let got = read_decoded(s, v5).await;
    let ok = match (&got, byte1) {
        (Packet::PubAck(a), 0x40) | (Packet::PubRec(a), 0x50) | (Packet::PubComp(a), 0x70) => {
            a.pkid == pkid && a.reason == 0
        }
        (Packet::PubRel(a), 0x62) => a.pkid == pkid && a.reason == 0,
        _ => false,
    };
    assert!(ok, "expected {byte1:#04x} for {pkid}, got {got:?}");
}
