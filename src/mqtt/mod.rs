//! The MQTT codec: a pure, strict, zero-copy decoder and encoder for MQTT 3.1, 3.1.1 and 5.0.
//!
//! What it owns: turning one framed packet (`bytes::Bytes`) into a typed [`Packet`] and back.
//! Why it is separate: moat forwards the *original bytes* of a packet only when this codec accepted
//! it, so the decoder must give every accepted byte string exactly one reading (minimal variable
//! byte integers, no trailing bytes, exact property lengths, no duplicated single-value properties,
//! reserved bits zero). Two parsers that read the same bytes differently are an ACL bypass
//! (red-team catalogue §C.53).
//! What it must not do: I/O, buffering of partial packets, clocks, or session decisions (topic
//! aliases, packet-id tracking, ACLs). It depends on `bytes` and `thiserror` only: no async runtime.
//!
//! Files:
//! - `header.rs`     fixed header, remaining length, [`header::check`] (size check before allocation)
//! - here            what every file shares: [`PacketType`], [`ProtocolVersion`], [`QoS`]
//! - `wire.rs`       primitive readers/writers (u8/u16/u32, variable byte integer, binary, string)
//! - `string.rs`     [`MqttStr`], the validated MQTT UTF-8 string
//! - `properties.rs` MQTT 5 property reader/writer: per-packet allow table, duplicates, value ranges
//! - `topic.rs`      topic name/filter validation, `$share/` unwrap, filter matching
//! - `reason.rs`     [`ReasonCode`] (v5) and [`ConnectReturnCode`] (3.1.1) with the v5→v3 mapping
//! - `error.rs`      [`FrameError`], [`DecodeError`], [`ConnectError`], [`EncodeError`]
//! - `packet/`       one file per packet kind, each with decode, encode and byte-level tests
//!
//! Spec ids in comments and error variants use MQTT 5.0 numbering unless written `v3:` (3.1.1
//! numbering differs for the same rule).

pub mod error;
pub mod header;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod string;
pub mod topic;
mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod test_util;

pub use error::{ConnectError, DecodeError, EncodeError, FrameError};
pub use header::{check, FixedHeader};
pub use packet::{
    decode, decode_subscribe_request, Ack, Auth, AuthProperties, ConnAck, ConnAckProperties,
    Connect, ConnectProperties, Disconnect, DisconnectProperties, Packet, PubAck, PubComp, PubRec,
    PubRel, Publish, PublishProperties, RetainHandling, SubAck, Subscribe, SubscribeOptions,
    SubscribeProperties, SubscribeRequest, UnsubAck, Unsubscribe, Will, WillProperties,
};
pub use properties::{AckProperties, UserProperties, MAX_USER_PROPERTIES};
pub use reason::{ConnectReturnCode, ReasonCode};
pub use string::MqttStr;

/// The protocol version negotiated by CONNECT. The codec needs it for every other packet because
/// the grammars differ (v5 has properties and reason codes; a v3.1.1 parser reading v5 bytes sees
/// different filters — catalogue §B.39).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

// === impl ProtocolVersion ===

impl ProtocolVersion {
    /// The Protocol Level byte of CONNECT (3, 4 or 5).
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The Protocol Name written in CONNECT (`MQIsdp` or `MQTT`).
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// The version as operators write it (`3.1`, `3.1.1`, `5`), for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::V3_1 => "3.1",
            Self::V3_1_1 => "3.1.1",
            Self::V5 => "5",
        }
    }

    /// True for MQTT 5.0 (properties and reason codes present).
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

/// The 15 MQTT control packet types (type 0 is reserved and has no variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgment (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2, part 1).
    PubRec = 5,
    /// Publish release (QoS 2, part 2).
    PubRel = 6,
    /// Publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgment.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgment.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5 only; reserved in 3.1.1).
    Auth = 15,
}

// === impl PacketType ===

impl PacketType {
    /// The packet type in the high nibble of `byte1`; `None` for the reserved type 0.
    pub fn from_byte1(byte1: u8) -> Option<PacketType> {
        Some(match byte1 >> 4 {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The flags nibble every packet except PUBLISH must carry: 0b0010 for PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE, 0 for the rest [MQTT-2.1.3-1]. `None` for PUBLISH (its flags carry data).
    pub fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

/// Quality of service of a PUBLISH, a Will or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0.
    #[default]
    AtMostOnce = 0,
    /// QoS 1.
    AtLeastOnce = 1,
    /// QoS 2.
    ExactlyOnce = 2,
}

// === impl QoS ===

impl QoS {
    /// Parses a 2-bit QoS value; 3 (and anything larger) is `None` [MQTT-3.3.1-4].
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

impl TryFrom<u8> for QoS {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Self::from_u8(v).ok_or(v)
    }
}
