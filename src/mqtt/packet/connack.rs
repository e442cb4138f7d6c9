//! CONNACK (§3.2): the server's answer to CONNECT.
//!
//! What it owns: the acknowledge flags (reserved bits 0, Session Present only with success), the
//! 3.1.1 return code (0..=5) or v5 reason code (CONNACK list), and every CONNACK property.
//! Why it is separate: the proxy both decodes the broker's CONNACK (to rewrite Topic Alias Maximum,
//! Maximum Packet Size …) and encodes its own refusals.
//! What it must not do: choose codes (that is `ConnectError::connack_reason` / the session).
//! MQTT 3.1 has no Session Present bit: encoding for `V3_1` always writes flags 0 (catalogue §B.38).

use bytes::{BufMut, Bytes, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::reason::allowed_in;
use super::super::string::MqttStr;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// A CONNACK packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present (only with code 0).
    pub session_present: bool,
    /// 3.1.1 return code (0..=5) or v5 reason code.
    pub code: u8,
    /// v5 properties.
    pub properties: ConnAckProperties,
}

/// v5 CONNACK properties (§3.2.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// Session Expiry Interval (0x11).
    pub session_expiry: Option<u32>,
    /// Receive Maximum (0x21), never 0.
    pub receive_maximum: Option<u16>,
    /// Maximum QoS (0x24): 0 or 1.
    pub maximum_qos: Option<u8>,
    /// Retain Available (0x25).
    pub retain_available: Option<bool>,
    /// Maximum Packet Size (0x27), never 0.
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier (0x12).
    pub assigned_client_identifier: Option<MqttStr>,
    /// Topic Alias Maximum (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Reason String (0x1F).
    pub reason_string: Option<MqttStr>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
    /// Wildcard Subscription Available (0x28).
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available (0x29).
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available (0x2A).
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive (0x13).
    pub server_keep_alive: Option<u16>,
    /// Response Information (0x1A).
    pub response_information: Option<MqttStr>,
    /// Server Reference (0x1C).
    pub server_reference: Option<MqttStr>,
    /// Authentication Method (0x15).
    pub authentication_method: Option<MqttStr>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
}

// === impl ConnAck ===

impl ConnAck {
    /// A CONNACK with this code, no Session Present, no properties.
    pub fn new(code: u8) -> ConnAck {
        ConnAck {
            code,
            ..ConnAck::default()
        }
    }

    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("connect acknowledge flags")?;
        // MQTT 3.1 has no Session Present flag: the whole byte is reserved (found by the
        // fuzzer: `20 02 01 00` read as "session present" but re-encoded without it).
        let reserved = if version == ProtocolVersion::V3_1 {
            0xff
        } else {
            0xfe
        };
        if flags & reserved != 0 {
            return Err(DecodeError::ReservedBits {
                what: "connect acknowledge flags",
                spec: "MQTT-3.2.2-1",
            });
        }
        let code = r.u8("connect reason code")?;
        let valid = if version.is_v5() {
            allowed_in(PacketType::ConnAck, code) // [MQTT-3.2.2-8]
        } else {
            code <= 5
        };
        if !valid {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code,
            });
        }
        let session_present = flags & 0x01 != 0;
        if session_present && code != 0 {
            return Err(DecodeError::SessionPresentOnFailure); // [MQTT-3.2.2-6]
        }
        let properties = if version.is_v5() {
            ConnAckProperties::read(r)?
        } else {
            ConnAckProperties::default()
        };
        Ok(ConnAck {
            session_present,
            code,
            properties,
        })
    }

    /// Encodes for `version` (3.1: flags always 0).
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let valid = if version.is_v5() {
            allowed_in(PacketType::ConnAck, self.code)
        } else {
            self.code <= 5
        };
        if !valid || (self.session_present && self.code != 0) {
            return Err(EncodeError::InvalidValue {
                what: "CONNACK code",
                value: u32::from(self.code),
            });
        }
        let mut head = BytesMut::new();
        head.put_u8(u8::from(
            self.session_present && version != ProtocolVersion::V3_1,
        ));
        head.put_u8(self.code);
        if version.is_v5() {
            self.properties.writer()?.finish(&mut head)?;
        } else if self.properties != ConnAckProperties::default() {
            return Err(EncodeError::NotInVersion {
                what: "CONNACK properties",
                version,
            });
        }
        put_packet(out, (PacketType::ConnAck as u8) << 4, &head, &[])
    }
}

// === impl ConnAckProperties ===

impl ConnAckProperties {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = ConnAckProperties::default();
        let mut pr = PropReader::new(r, Context::ConnAck)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::SESSION_EXPIRY_INTERVAL, Value::Four(v)) => p.session_expiry = Some(v),
                (id::RECEIVE_MAXIMUM, Value::Two(v)) => p.receive_maximum = Some(v),
                (id::MAXIMUM_QOS, Value::Byte(v)) => p.maximum_qos = Some(v),
                (id::RETAIN_AVAILABLE, Value::Byte(v)) => p.retain_available = Some(v == 1),
                (id::MAXIMUM_PACKET_SIZE, Value::Four(v)) => p.maximum_packet_size = Some(v),
                (id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str(s)) => {
                    p.assigned_client_identifier = Some(s)
                }
                (id::TOPIC_ALIAS_MAXIMUM, Value::Two(v)) => p.topic_alias_maximum = Some(v),
                (id::REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id::WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                    p.wildcard_subscription_available = Some(v == 1)
                }
                (id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => {
                    p.subscription_identifiers_available = Some(v == 1)
                }
                (id::SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                    p.shared_subscription_available = Some(v == 1)
                }
                (id::SERVER_KEEP_ALIVE, Value::Two(v)) => p.server_keep_alive = Some(v),
                (id::RESPONSE_INFORMATION, Value::Str(s)) => p.response_information = Some(s),
                (id::SERVER_REFERENCE, Value::Str(s)) => p.server_reference = Some(s),
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
        w.byte(id::MAXIMUM_QOS, self.maximum_qos)?;
        w.bool(id::RETAIN_AVAILABLE, self.retain_available)?;
        w.four(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        w.str(
            id::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        )?;
        w.two(id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum)?;
        w.str(id::REASON_STRING, self.reason_string.as_ref())?;
        w.users(&self.user_properties)?;
        w.bool(
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        )?;
        w.bool(
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        )?;
        w.bool(
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        )?;
        w.two(id::SERVER_KEEP_ALIVE, self.server_keep_alive)?;
        w.str(id::RESPONSE_INFORMATION, self.response_information.as_ref())?;
        w.str(id::SERVER_REFERENCE, self.server_reference.as_ref())?;
        w.str(
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        )?;
        w.binary(id::AUTHENTICATION_DATA, self.authentication_data.as_ref())?;
        Ok(w)
    }
}

#[cfg(test)]
#[path = "connack_tests.rs"]
mod tests;
