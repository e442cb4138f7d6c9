//! CONNECT (§3.1): the first packet, decoded before the protocol version is known.
//!
//! What it owns: protocol name/level negotiation (`MQIsdp`/3, `MQTT`/4, `MQTT`/5 and nothing else,
//! catalogue §B.38), the connect flags (reserved bit, Will flags, v3 password-without-username,
//! §B.40), the payload (client id, Will, credentials) and the v5 CONNECT/Will properties.
//! Why it is separate: its errors decide a CONNACK code rather than a DISCONNECT, so it returns
//! [`ConnectError`]; and the session re-encodes it (3.1 → 3.1.1, credential rewrite).
//! What it must not do: judge identities (empty ids in v5, ids with `+#/$`, 3.1 ids > 23 bytes are
//! policy: `client_id.len()` is exposed), or check credentials.

use bytes::{BufMut, Bytes, BytesMut};

use super::super::error::{ConnectError, DecodeError, EncodeError};
use super::super::header::check;
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::string::MqttStr;
use super::super::topic::validate_topic_name;
use super::super::wire::{put_binary, put_packet, put_str, Reader};
use super::super::PacketType;
use super::super::{ProtocolVersion, QoS};

/// A CONNECT packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Negotiated from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (v5).
    pub clean_start: bool,
    /// Keep Alive in seconds (0 = off; the session enforces a maximum).
    pub keep_alive: u16,
    /// Client Identifier (may be empty except where [`ConnectError::ClientIdNotValid`] applies).
    pub client_id: MqttStr,
    /// The Will, when the Will Flag is set.
    pub will: Option<Will>,
    /// User Name, when its flag is set.
    pub username: Option<MqttStr>,
    /// Password (binary), when its flag is set.
    pub password: Option<Bytes>,
    /// v5 CONNECT properties (default for 3.x).
    pub properties: ConnectProperties,
}

/// The Will message carried by CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Will Topic: a valid topic name (no wildcards, non-empty).
    pub topic: MqttStr,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS (never 3).
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// v5 Will properties.
    pub properties: WillProperties,
}

/// v5 Will properties (§3.1.3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Will Delay Interval (0x18), seconds.
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator (0x01): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type (0x03).
    pub content_type: Option<MqttStr>,
    /// Response Topic (0x08): a valid topic name.
    pub response_topic: Option<MqttStr>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
}

/// v5 CONNECT properties (§3.1.2.11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Session Expiry Interval (0x11), seconds.
    pub session_expiry: Option<u32>,
    /// Receive Maximum (0x21), never 0.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27), never 0.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (0x19).
    pub request_response_information: Option<bool>,
    /// Request Problem Information (0x17).
    pub request_problem_information: Option<bool>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
    /// Authentication Method (0x15).
    pub authentication_method: Option<MqttStr>,
    /// Authentication Data (0x16), only with a method.
    pub authentication_data: Option<Bytes>,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_FLAG: u8 = 0x04;
const CLEAN: u8 = 0x02;
const RESERVED: u8 = 0x01;

// === impl Connect ===

impl Connect {
    /// Decodes a whole CONNECT frame (fixed header included).
    pub fn decode(frame: Bytes) -> Result<Connect, ConnectError> {
        let malformed = |version, error| ConnectError::Malformed { version, error };
        let header = match check(&frame, usize::MAX) {
            Ok(Some(h)) => h,
            Ok(None) => return Err(malformed(None, frame_len_error(0, frame.len()))),
            Err(e) => return Err(malformed(None, e.into())),
        };
        if header.packet_type() != Some(PacketType::Connect) {
            return Err(ConnectError::NotConnect(header.packet_type()));
        }
        if header.frame_len() != frame.len() {
            return Err(malformed(
                None,
                frame_len_error(header.frame_len(), frame.len()),
            ));
        }
        let mut r = Reader::new(frame.slice(header.header_len..));
        let version = read_protocol(&mut r)?;
        let wrap = |error| malformed(Some(version), error);
        if header.flags() != 0 {
            return Err(wrap(DecodeError::InvalidFlags {
                packet: PacketType::Connect,
                flags: header.flags(),
            })); // [MQTT-2.1.3-1]
        }
        let connect = read_body(&mut r, version).map_err(wrap)?;
        r.finish(PacketType::Connect).map_err(wrap)?;
        // [v3:MQTT-3.1.3-8] 3.1.1: an empty id needs Clean Session = 1. 3.1: ids are 1..=23 chars.
        let id_refused = match version {
            ProtocolVersion::V3_1 => connect.client_id.is_empty(),
            ProtocolVersion::V3_1_1 => connect.client_id.is_empty() && !connect.clean_start,
            ProtocolVersion::V5 => false,
        };
        if id_refused {
            return Err(ConnectError::ClientIdNotValid { version });
        }
        Ok(connect)
    }

    /// Encodes in `self.protocol`'s wire form (3.1 writes `MQIsdp`/3).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let v = self.protocol;
        let mut head = BytesMut::new();
        put_str(
            &mut head,
            &MqttStr::from(v.protocol_name()),
            "protocol name",
        )?;
        head.put_u8(v.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | ((will.qos as u8) << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            if self.username.is_none() && !v.is_v5() {
                return Err(EncodeError::NotInVersion {
                    what: "password without user name",
                    version: v,
                });
            }
            flags |= PASSWORD;
        }
        head.put_u8(flags);
        head.put_u16(self.keep_alive);
        if v.is_v5() {
            self.properties.writer()?.finish(&mut head)?;
        } else if self.properties != ConnectProperties::default() {
            return Err(not_in_version("CONNECT properties", v));
        }
        put_str(&mut head, &self.client_id, "client identifier")?;
        if let Some(will) = &self.will {
            if v.is_v5() {
                will.properties.writer()?.finish(&mut head)?;
            } else if will.properties != WillProperties::default() {
                return Err(not_in_version("Will properties", v));
            }
            validate_topic_name(will.topic.as_str()).map_err(|source| {
                EncodeError::InvalidTopic {
                    what: "will topic",
                    source,
                }
            })?;
            put_str(&mut head, &will.topic, "will topic")?;
            put_binary(&mut head, &will.payload, "will payload")?;
        }
        if let Some(username) = &self.username {
            put_str(&mut head, username, "user name")?;
        }
        if let Some(password) = &self.password {
            put_binary(&mut head, password, "password")?;
        }
        put_packet(out, (PacketType::Connect as u8) << 4, &head, &[])
    }
}

fn not_in_version(what: &'static str, version: ProtocolVersion) -> EncodeError {
    EncodeError::NotInVersion { what, version }
}

fn frame_len_error(expected: usize, actual: usize) -> DecodeError {
    DecodeError::FrameLength { expected, actual }
}

/// Protocol Name and Level → version [MQTT-3.1.2-1, MQTT-3.1.2-2].
fn read_protocol(r: &mut Reader) -> Result<ProtocolVersion, ConnectError> {
    let malformed = |error| ConnectError::Malformed {
        version: None,
        error,
    };
    let name = r.binary("protocol name").map_err(malformed)?;
    let level = r.u8("protocol level").map_err(malformed)?;
    match (name.as_ref(), level) {
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        // Includes the bridge bit (0x83/0x84), which must never be forwarded.
        _ => Err(ConnectError::UnsupportedProtocol {
            claimed_level: level,
        }),
    }
}

/// Connect flags, keep alive, properties and payload.
fn read_body(r: &mut Reader, version: ProtocolVersion) -> Result<Connect, DecodeError> {
    let v5 = version.is_v5();
    let flags = r.u8("connect flags")?;
    if flags & RESERVED != 0 {
        return Err(DecodeError::ReservedBits {
            what: "connect flags",
            spec: "MQTT-3.1.2-3",
        });
    }
    let will_qos = (flags >> 3) & 0x03;
    let will_flag = flags & WILL_FLAG != 0;
    if !will_flag && will_qos != 0 {
        let spec = if v5 {
            "MQTT-3.1.2-11"
        } else {
            "v3:MQTT-3.1.2-13"
        };
        return Err(DecodeError::WillFlags { spec });
    }
    if !will_flag && flags & WILL_RETAIN != 0 {
        let spec = if v5 {
            "MQTT-3.1.2-13"
        } else {
            "v3:MQTT-3.1.2-15"
        };
        return Err(DecodeError::WillFlags { spec });
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::WillFlags {
        spec: if v5 {
            "MQTT-3.1.2-12"
        } else {
            "v3:MQTT-3.1.2-14"
        },
    })?;
    if !v5 && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(DecodeError::PasswordWithoutUsername); // [v3:MQTT-3.1.2-22]
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = if v5 {
        ConnectProperties::read(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = if v5 {
            WillProperties::read(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string("will topic")?;
        validate_topic_name(topic.as_str()).map_err(|source| DecodeError::InvalidTopicName {
            what: "will topic",
            source,
        })?;
        Some(Will {
            topic,
            payload: r.binary("will payload")?,
            qos: will_qos,
            retain: flags & WILL_RETAIN != 0,
            properties,
        })
    } else {
        None
    };
    let username = if flags & USERNAME != 0 {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if flags & PASSWORD != 0 {
        Some(r.binary("password")?)
    } else {
        None
    };
    Ok(Connect {
        protocol: version,
        clean_start: flags & CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

// === impl ConnectProperties ===

impl ConnectProperties {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = ConnectProperties::default();
        let mut pr = PropReader::new(r, Context::Connect)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::SESSION_EXPIRY_INTERVAL, Value::Four(v)) => p.session_expiry = Some(v),
                (id::RECEIVE_MAXIMUM, Value::Two(v)) => p.receive_maximum = Some(v),
                (id::MAXIMUM_PACKET_SIZE, Value::Four(v)) => p.maximum_packet_size = Some(v),
                (id::TOPIC_ALIAS_MAXIMUM, Value::Two(v)) => p.topic_alias_maximum = Some(v),
                (id::REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                    p.request_response_information = Some(v == 1)
                }
                (id::REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                    p.request_problem_information = Some(v == 1)
                }
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id::AUTHENTICATION_METHOD, Value::Str(s)) => p.authentication_method = Some(s),
                (id::AUTHENTICATION_DATA, Value::Binary(b)) => p.authentication_data = Some(b),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(p)
    }

    fn writer(&self) -> Result<PropWriter, EncodeError> {
        let mut w = PropWriter::new();
        w.four(id::SESSION_EXPIRY_INTERVAL, self.session_expiry)?;
        w.two(id::RECEIVE_MAXIMUM, self.receive_maximum)?;
        w.four(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        w.two(id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum)?;
        w.bool(
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        )?;
        w.bool(
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        )?;
        w.users(&self.user_properties)?;
        w.str(
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        )?;
        w.binary(id::AUTHENTICATION_DATA, self.authentication_data.as_ref())?;
        Ok(w)
    }
}

// === impl WillProperties ===

impl WillProperties {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = WillProperties::default();
        let mut pr = PropReader::new(r, Context::Will)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::WILL_DELAY_INTERVAL, Value::Four(v)) => p.will_delay_interval = Some(v),
                (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                    p.payload_format_indicator = Some(v)
                }
                (id::MESSAGE_EXPIRY_INTERVAL, Value::Four(v)) => {
                    p.message_expiry_interval = Some(v)
                }
                (id::CONTENT_TYPE, Value::Str(s)) => p.content_type = Some(s),
                (id::RESPONSE_TOPIC, Value::Str(s)) => p.response_topic = Some(s),
                (id::CORRELATION_DATA, Value::Binary(b)) => p.correlation_data = Some(b),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(p)
    }

    fn writer(&self) -> Result<PropWriter, EncodeError> {
        let mut w = PropWriter::new();
        w.four(id::WILL_DELAY_INTERVAL, self.will_delay_interval)?;
        w.byte(id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator)?;
        w.four(id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval)?;
        w.str(id::CONTENT_TYPE, self.content_type.as_ref())?;
        w.str(id::RESPONSE_TOPIC, self.response_topic.as_ref())?;
        w.binary(id::CORRELATION_DATA, self.correlation_data.as_ref())?;
        w.users(&self.user_properties)?;
        Ok(w)
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
