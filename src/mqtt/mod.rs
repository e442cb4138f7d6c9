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
mod test_util;

pub use error::{ConnectError, DecodeError, EncodeError, FrameError};
pub use header::{check, FixedHeader, PacketType};
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

    /// True for MQTT 5.0 (properties and reason codes present).
    pub fn is_v5(self) -> bool {
        self == Self::V5
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
