//! Packet dispatch: the [`Packet`] enum, [`decode`] and [`Packet::encode`].
//!
//! What it owns: checks every packet shares — the frame holds exactly one packet, the type is not
//! reserved (0 always, 15 outside v5), the fixed-header flags are the required ones
//! (PUBREL/SUBSCRIBE/UNSUBSCRIBE 0b0010, others 0 [MQTT-2.1.3-1], catalogue §C.46) and the body
//! is consumed exactly ("consumed == remaining length", §C.53).
//! Why it is separate: the per-packet files only parse their own grammar (like mini-redis's
//! `cmd/mod.rs`, this file does nothing but dispatch).
//! What it must not do: decide whether a packet is allowed in the current session state or
//! direction (server-only packets from a client, second CONNECT) — except that [`decode`] never
//! parses a CONNECT: only [`Connect::decode`] does, before a version exists.

use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::header::{check, FixedHeader};
use super::wire::{put_packet, Reader};
use super::PacketType;
use super::ProtocolVersion;

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod ping;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use ack::{Ack, PubAck, PubComp, PubRec, PubRel};
pub use auth::{Auth, AuthProperties};
pub use connack::{ConnAck, ConnAckProperties};
pub use connect::{Connect, ConnectProperties, Will, WillProperties};
pub use disconnect::{Disconnect, DisconnectProperties};
pub use ping::{PINGREQ, PINGRESP};
pub use publish::{Publish, PublishProperties};
pub use suback::SubAck;
pub use subscribe::{
    RetainHandling, Subscribe, SubscribeOptions, SubscribeProperties, SubscribeRequest,
};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

/// Any MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (only from [`Connect::decode`]).
    Connect(Connect),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (v5 only).
    Auth(Auth),
}

/// Decodes one whole packet (`frame` includes its fixed header, as produced by
/// [`check`] + split) in the grammar of `version`.
///
/// A CONNECT frame is refused with [`DecodeError::UnexpectedConnect`] [MQTT-3.1.0-2]: the first
/// CONNECT goes through [`Connect::decode`], and any later one is a protocol error.
pub fn decode(frame: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let (packet, header, mut r) = open(frame, version)?;
    let v = version;
    let decoded = match packet {
        PacketType::Connect => return Err(DecodeError::UnexpectedConnect),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::read(&mut r, v)?),
        PacketType::Publish => Packet::Publish(Publish::read(header.flags(), &mut r, v)?),
        PacketType::PubAck => Packet::PubAck(Ack::read(packet, &mut r, v)?),
        PacketType::PubRec => Packet::PubRec(Ack::read(packet, &mut r, v)?),
        PacketType::PubRel => Packet::PubRel(Ack::read(packet, &mut r, v)?),
        PacketType::PubComp => Packet::PubComp(Ack::read(packet, &mut r, v)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::read(&mut r, v)?),
        PacketType::SubAck => Packet::SubAck(SubAck::read(&mut r, v)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::read(&mut r, v)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(&mut r, v)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::read(&mut r, v)?),
        PacketType::Auth => Packet::Auth(Auth::read(&mut r)?),
    };
    r.finish(packet)?;
    Ok(decoded)
}

/// Decodes a SUBSCRIBE frame filter by filter ([`SubscribeRequest`]); `Ok(None)` when the frame
/// is another packet type. Every check except the per-filter syntax is [`decode`]'s.
pub fn decode_subscribe_request(
    frame: Bytes,
    version: ProtocolVersion,
) -> Result<Option<SubscribeRequest>, DecodeError> {
    let (packet, _, mut r) = open(frame, version)?;
    if packet != PacketType::Subscribe {
        return Ok(None);
    }
    let request = SubscribeRequest::read(&mut r, version)?;
    r.finish(packet)?;
    Ok(Some(request))
}

/// The checks every packet shares: exactly one whole frame, a type that exists in `version`,
/// the required fixed-header flags. Returns the body reader.
fn open(
    frame: Bytes,
    version: ProtocolVersion,
) -> Result<(PacketType, FixedHeader, Reader), DecodeError> {
    let header = check(&frame, usize::MAX)?.ok_or(DecodeError::FrameLength {
        expected: 0,
        actual: frame.len(),
    })?;
    if header.frame_len() != frame.len() {
        return Err(DecodeError::FrameLength {
            expected: header.frame_len(),
            actual: frame.len(),
        });
    }
    let reserved = DecodeError::ReservedPacketType {
        byte1: header.byte1,
    };
    let packet = header.packet_type().ok_or(reserved.clone())?;
    if packet == PacketType::Auth && !version.is_v5() {
        return Err(reserved); // [v3:MQTT-2.2.2-2]: type 15 is reserved in 3.1.1
    }
    if let Some(required) = packet.required_flags() {
        if header.flags() != required {
            return Err(DecodeError::InvalidFlags {
                packet,
                flags: header.flags(),
            }); // [MQTT-2.1.3-1]
        }
    }
    let r = Reader::new(frame.slice(header.header_len..));
    Ok((packet, header, r))
}

// === impl Packet ===

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// Appends the packet's canonical encoding for `version` to `out`. A CONNECT is written in
    /// its own `protocol` (the `version` argument is ignored for it). Every check runs before the
    /// first byte is appended, so on error `out` is unchanged.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let v = version;
        let t = self.packet_type();
        match self {
            Self::Connect(p) => p.encode(out),
            Self::ConnAck(p) => p.encode(v, out),
            Self::Publish(p) => p.encode(v, out),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.encode(t, v, out)
            }
            Self::Subscribe(p) => p.encode(v, out),
            Self::SubAck(p) => p.encode(v, out),
            Self::Unsubscribe(p) => p.encode(v, out),
            Self::UnsubAck(p) => p.encode(v, out),
            Self::PingReq | Self::PingResp => put_packet(out, (t as u8) << 4, &[], &[]),
            Self::Disconnect(p) => p.encode(v, out),
            Self::Auth(p) => p.encode(v, out),
        }
    }

    /// Convenience: the encoding as a fresh `Bytes`.
    pub fn to_bytes(&self, version: ProtocolVersion) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(version, &mut out)?;
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests;
