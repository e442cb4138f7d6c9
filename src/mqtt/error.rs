//! The codec's errors: framing, decoding (peer faults), CONNECT refusal, encoding (our faults).
//!
//! What it owns: one documented variant per refusal, the normative id it enforces, and the one
//! mapping from a decode error to an MQTT 5 reason code ([`DecodeError::reason`]) and from a
//! CONNECT error to the CONNACK reason to send ([`ConnectError::connack_reason`]).
//! Why it is separate: peer faults (`FrameError`, `DecodeError`, `ConnectError`) and our faults
//! (`EncodeError`) are different types (house rule 3); the session maps them to the wire once.
//! What it must not do: pick codes for policy refusals (ACL, authn) — those are the session's.

use super::reason::ReasonCode;
use super::string::StringError;
use super::topic::TopicError;
use super::PacketType;
use super::ProtocolVersion;

/// The fixed header cannot be accepted (see [`super::header::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Remaining length in 5 bytes, or not minimal [MQTT-1.5.5-1].
    #[error("malformed remaining length (5 bytes or non-minimal) [MQTT-1.5.5-1]")]
    MalformedLength,
    /// The declared packet is larger than the limit.
    #[error("packet of {declared} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Fixed header plus remaining length, as declared.
        declared: usize,
        /// The limit in force.
        max: usize,
    },
}

// === impl FrameError ===

impl FrameError {
    /// MalformedPacket (0x81) or PacketTooLarge (0x95).
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::MalformedLength => ReasonCode::MalformedPacket,
            Self::TooLarge { .. } => ReasonCode::PacketTooLarge,
        }
    }
}

/// Why a packet (other than a refused CONNECT) was not accepted. Every variant is a peer fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The fixed header itself is invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame passed to `decode` is not exactly one packet (header says `expected` bytes).
    #[error("frame of {actual} bytes does not hold exactly one packet of {expected} bytes")]
    FrameLength {
        /// Length from the fixed header.
        expected: usize,
        /// Length of the slice passed in.
        actual: usize,
    },
    /// Packet type 0, or 15 (AUTH) outside MQTT 5 [MQTT-2.1.3-1] [v3:MQTT-2.2.2-2].
    #[error("reserved packet type in byte 0x{byte1:02x}")]
    ReservedPacketType {
        /// The first byte.
        byte1: u8,
    },
    /// Reserved fixed-header flag bits are wrong [MQTT-2.1.3-1] [v3:MQTT-2.2.2-1].
    #[error("invalid fixed-header flags 0x{flags:x} for {packet:?} [MQTT-2.1.3-1]")]
    InvalidFlags {
        /// The packet.
        packet: PacketType,
        /// The flags nibble received.
        flags: u8,
    },
    /// A field runs past the end of the packet or of its property block.
    #[error("{what} runs past the end of the packet")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes left after the last field: consumed != remaining length.
    #[error("{extra} trailing bytes after the last field of {packet:?}")]
    TrailingBytes {
        /// The packet.
        packet: PacketType,
        /// Unconsumed bytes.
        extra: usize,
    },
    /// A variable byte integer longer than 4 bytes or not minimal [MQTT-1.5.5-1].
    #[error("malformed variable byte integer in {what} [MQTT-1.5.5-1]")]
    MalformedVarInt {
        /// The field being read.
        what: &'static str,
    },
    /// A string field is not a valid MQTT UTF-8 string [MQTT-1.5.4-1, MQTT-1.5.4-2].
    #[error("{what}: {source}")]
    InvalidString {
        /// The field.
        what: &'static str,
        /// The rule it breaks.
        source: StringError,
    },
    /// QoS 3 in PUBLISH, a Will or subscription options [MQTT-3.3.1-4].
    #[error("QoS 3 in {what} [{spec}]")]
    InvalidQoS {
        /// Where.
        what: &'static str,
        /// The normative id.
        spec: &'static str,
    },
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
    /// Packet Identifier 0 where one is required [MQTT-2.2.1-3] [v3:MQTT-2.3.1-1].
    #[error("packet identifier 0 in {packet:?} [MQTT-2.2.1-3]")]
    ZeroPacketId {
        /// The packet.
        packet: PacketType,
    },
    /// Topic name invalid (wildcard, empty in v3) [MQTT-3.3.2-2, MQTT-4.7.0-1, MQTT-4.7.3-1].
    #[error("{what}: {source}")]
    InvalidTopicName {
        /// Which field (topic, Will topic).
        what: &'static str,
        /// The rule it breaks.
        source: TopicError,
    },
    /// Response Topic is not a valid topic name [MQTT-3.3.2-14].
    #[error("invalid Response Topic: {source} [MQTT-3.3.2-14]")]
    InvalidResponseTopic {
        /// The rule it breaks.
        source: TopicError,
    },
    /// Zero-length topic without a Topic Alias (v5 §3.3.2.1).
    #[error("empty topic name without a Topic Alias")]
    EmptyTopicWithoutAlias,
    /// A topic filter is invalid [MQTT-4.7.1-1/-2, MQTT-4.8.2-1/-2].
    #[error("invalid topic filter: {source}")]
    InvalidTopicFilter {
        /// The rule it breaks.
        source: TopicError,
    },
    /// No Local on a shared subscription [MQTT-3.8.3-4].
    #[error("No Local set on a shared subscription [MQTT-3.8.3-4]")]
    NoLocalOnShared,
    /// SUBSCRIBE/UNSUBSCRIBE without a filter, or SUBACK/UNSUBACK without a code
    /// [MQTT-3.8.3-2, MQTT-3.10.3-2] [v3:MQTT-3.8.3-3].
    #[error("{packet:?} has an empty payload [{spec}]")]
    EmptyPayload {
        /// The packet.
        packet: PacketType,
        /// The normative id.
        spec: &'static str,
    },
    /// Reserved bits set in the subscription options [MQTT-3.8.3-5] [v3:MQTT-3.8.3-4].
    #[error("reserved bits in subscription options 0x{options:02x} [{spec}]")]
    SubscriptionOptionsReserved {
        /// The options byte.
        options: u8,
        /// The normative id.
        spec: &'static str,
    },
    /// Retain Handling 3 (v5 §3.8.3.1).
    #[error("retain handling 3 is a protocol error")]
    RetainHandling3,
    /// A reason/return code the packet may not carry [MQTT-3.4.2-1 etc.].
    #[error("reason code 0x{code:02x} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet.
        packet: PacketType,
        /// The code.
        code: u8,
    },
    /// Reserved bits set in a CONNACK/CONNECT flags byte.
    #[error("reserved bits set in {what} [{spec}]")]
    ReservedBits {
        /// Which byte.
        what: &'static str,
        /// The normative id.
        spec: &'static str,
    },
    /// CONNACK with Session Present = 1 and a non-zero code [MQTT-3.2.2-6] [v3:MQTT-3.2.2-4].
    #[error("session present with a failure code [MQTT-3.2.2-6]")]
    SessionPresentOnFailure,
    /// Will QoS/Retain without the Will Flag, or Will QoS 3 [MQTT-3.1.2-11/-12/-13].
    #[error("invalid will flags [{spec}]")]
    WillFlags {
        /// The normative id.
        spec: &'static str,
    },
    /// 3.1/3.1.1 password flag without user name flag [v3:MQTT-3.1.2-22].
    #[error("password without user name [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// A CONNECT after the first packet [MQTT-3.1.0-2]. (`decode` never parses CONNECT.)
    #[error("CONNECT after CONNECT [MQTT-3.1.0-2]")]
    UnexpectedConnect,
    /// An unknown property identifier (v5 §2.2.2.2: malformed).
    #[error("unknown property identifier 0x{id:x}")]
    UnknownProperty {
        /// The identifier.
        id: u32,
    },
    /// A property not valid for this packet type (v5 §2.2.2.2: malformed).
    #[error("property 0x{id:02x} is not allowed in {context}")]
    PropertyNotAllowed {
        /// The identifier.
        id: u8,
        /// The packet (or Will properties).
        context: &'static str,
    },
    /// A single-value property appears twice (v5 §3.x "Protocol Error to include … more than once").
    #[error("property 0x{id:02x} appears more than once")]
    DuplicateProperty {
        /// The identifier.
        id: u8,
    },
    /// A property value out of range (Receive Maximum 0, a 0/1 byte set to 2, …).
    #[error("property 0x{id:02x} has invalid value {value}")]
    InvalidPropertyValue {
        /// The identifier.
        id: u8,
        /// The value.
        value: u32,
    },
    /// Topic Alias 0 [MQTT-3.3.2-8].
    #[error("topic alias 0 [MQTT-3.3.2-8]")]
    TopicAliasZero,
    /// Authentication Data without Authentication Method (v5 §3.1.2.11.10).
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// AUTH with properties but no Authentication Method (v5 §3.15.2.2.2).
    #[error("AUTH without authentication method")]
    AuthMethodMissing,
    /// More user properties than [`super::MAX_USER_PROPERTIES`] (catalogue §C.52).
    #[error("more than {max} user properties")]
    TooManyUserProperties {
        /// The cap.
        max: usize,
    },
}

// === impl DecodeError ===

impl DecodeError {
    /// The MQTT 5 reason code for a DISCONNECT (or CONNACK) answering this error. 3.x sessions
    /// close the connection instead.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Frame(e) => e.reason(),
            Self::ZeroPacketId { .. }
            | Self::EmptyTopicWithoutAlias
            | Self::InvalidResponseTopic { .. }
            | Self::NoLocalOnShared
            | Self::RetainHandling3
            | Self::InvalidReasonCode { .. }
            | Self::SessionPresentOnFailure
            | Self::UnexpectedConnect
            | Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue { .. }
            | Self::AuthDataWithoutMethod
            | Self::AuthMethodMissing
            // v5 §3.8.3 / §3.10.3: "a SUBSCRIBE (UNSUBSCRIBE) packet with no Payload is a
            // Protocol Error" [MQTT-3.8.3-2, MQTT-3.10.3-2].
            | Self::EmptyPayload { .. } => ReasonCode::ProtocolError,
            Self::InvalidTopicName { .. } => ReasonCode::TopicNameInvalid,
            Self::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            // Not malformed by the spec, but refused by this implementation's limit.
            Self::TooManyUserProperties { .. } => ReasonCode::ImplementationSpecificError,
            _ => ReasonCode::MalformedPacket,
        }
    }

    /// The normative statement this error enforces, if there is one.
    pub fn spec(&self) -> Option<&'static str> {
        Some(match self {
            Self::Frame(FrameError::MalformedLength) | Self::MalformedVarInt { .. } => {
                "MQTT-1.5.5-1"
            }
            Self::ReservedPacketType { .. } | Self::InvalidFlags { .. } => "MQTT-2.1.3-1",
            Self::InvalidString { source, .. } => return source.spec(),
            Self::InvalidTopicName { source, .. } | Self::InvalidTopicFilter { source } => {
                return source.spec()
            }
            Self::InvalidQoS { spec, .. }
            | Self::EmptyPayload { spec, .. }
            | Self::SubscriptionOptionsReserved { spec, .. }
            | Self::ReservedBits { spec, .. }
            | Self::WillFlags { spec } => spec,
            Self::DupOnQoS0 => "MQTT-3.3.1-2",
            Self::ZeroPacketId { .. } => "MQTT-2.2.1-3",
            Self::InvalidResponseTopic { .. } => "MQTT-3.3.2-14",
            Self::NoLocalOnShared => "MQTT-3.8.3-4",
            Self::SessionPresentOnFailure => "MQTT-3.2.2-6",
            Self::PasswordWithoutUsername => "v3:MQTT-3.1.2-22",
            Self::UnexpectedConnect => "MQTT-3.1.0-2",
            Self::TopicAliasZero => "MQTT-3.3.2-8",
            _ => return None,
        })
    }
}

/// Why a CONNECT was refused by the codec, shaped so that [`ConnectError::connack_reason`] is
/// the one mapping to the answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The first packet is not a CONNECT [MQTT-3.1.0-1]: close, no CONNACK.
    #[error("first packet is {0:?}, not CONNECT [MQTT-3.1.0-1]")]
    NotConnect(Option<PacketType>),
    /// Unknown protocol name/level combination (`MQIsdp`/4, `MQTT`/3, level 6, bridge bit
    /// 0x83/0x84) [MQTT-3.1.2-1, MQTT-3.1.2-2]. `claimed_level` is the raw level byte (0 if the
    /// packet ended before it): the answer is v5 (0x84) when it is 5, else 3.1.1 (0x01).
    #[error("unsupported protocol name or level {claimed_level} [MQTT-3.1.2-2]")]
    UnsupportedProtocol {
        /// The level byte as sent.
        claimed_level: u8,
    },
    /// The CONNECT is malformed or a protocol error; `version` is known when name and level were
    /// valid. The v5 CONNACK code is `error.reason()` (0x81, 0x82, 0x90 …); 3.x closes.
    #[error("invalid CONNECT: {error}")]
    Malformed {
        /// The version, once name and level were read.
        version: Option<ProtocolVersion>,
        /// What is wrong.
        error: DecodeError,
    },
    /// The client identifier cannot be accepted by any server: 3.1.1 empty id with clean
    /// session 0 [v3:MQTT-3.1.3-8], 3.1 empty id. (Length > 23 in 3.1 is the session's call.)
    #[error("client identifier not valid [MQTT-3.1.3-8]")]
    ClientIdNotValid {
        /// The version.
        version: ProtocolVersion,
    },
}

// === impl ConnectError ===

impl ConnectError {
    /// The version the CONNACK should be written in, or `None` when the connection is closed
    /// without one.
    pub fn version(&self) -> Option<ProtocolVersion> {
        match self {
            Self::NotConnect(_) => None,
            Self::UnsupportedProtocol { claimed_level: 5 } => Some(ProtocolVersion::V5),
            Self::UnsupportedProtocol { .. } => Some(ProtocolVersion::V3_1_1),
            Self::Malformed { version, .. } => *version,
            Self::ClientIdNotValid { version } => Some(*version),
        }
    }

    /// The CONNACK reason to send before closing, as an MQTT 5 reason code for a CONNACK
    /// written in `version` (normally [`ConnectError::version`]); `None` means close without a
    /// CONNACK. The session translates it for 3.x clients (`ConnectReturnCode::from_v5`, in
    /// its one mapping to the wire).
    pub fn connack_reason(&self, version: ProtocolVersion) -> Option<ReasonCode> {
        match self {
            Self::NotConnect(_) => None,
            Self::UnsupportedProtocol { .. } => Some(ReasonCode::UnsupportedProtocolVersion),
            Self::ClientIdNotValid { .. } => Some(ReasonCode::ClientIdentifierNotValid),
            // 3.x: malformed CONNECT → close [v3:MQTT-3.1.4-1].
            Self::Malformed { error, .. } => version.is_v5().then(|| error.reason()),
        }
    }
}

/// Why a packet could not be encoded: a fault in *our* packet (or a value the target version cannot
/// express), never the peer's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string field breaks the MQTT string rules.
    #[error("{what}: {source}")]
    InvalidString {
        /// The field.
        what: &'static str,
        /// The rule.
        source: StringError,
    },
    /// Binary data longer than 65 535 bytes.
    #[error("{what} is {len} bytes, more than 65535")]
    BinaryTooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The packet would exceed the 268 435 455-byte remaining length (or a property block its
    /// variable byte integer).
    #[error("remaining length {len} exceeds 268435455")]
    PacketTooLarge {
        /// The length it would need.
        len: usize,
    },
    /// The field cannot be expressed in this protocol version.
    #[error("{what} cannot be encoded in {version:?}")]
    NotInVersion {
        /// The field.
        what: &'static str,
        /// The target version.
        version: ProtocolVersion,
    },
    /// Packet id 0, or QoS and packet id disagree (QoS 0 with an id, QoS>0 without).
    #[error("invalid packet identifier for {packet:?}")]
    PacketId {
        /// The packet.
        packet: PacketType,
    },
    /// An empty list where the spec needs one element.
    #[error("{packet:?} needs at least one entry")]
    EmptyPayload {
        /// The packet.
        packet: PacketType,
    },
    /// Topic name or filter invalid.
    #[error("{what}: {source}")]
    InvalidTopic {
        /// The field.
        what: &'static str,
        /// The rule.
        source: TopicError,
    },
    /// A property value outside its range, or a reason code the packet cannot carry.
    #[error("invalid value {value} for {what}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// More user properties than [`super::MAX_USER_PROPERTIES`].
    #[error("more than {max} user properties")]
    TooManyUserProperties {
        /// The cap.
        max: usize,
    },
}
