//! PUBLISH (§3.3), both directions.
//!
//! What it owns: the DUP/QoS/RETAIN flags (QoS 3, DUP on QoS 0), topic name rules (no wildcards,
//! catalogue §A.10; empty only in v5 with a Topic Alias, §A.2/§C.49), the packet identifier
//! (never 0, §C.48), v5 PUBLISH properties (duplicate Topic Alias refused, §A.3) and the payload,
//! which stays a zero-copy slice of the frame.
//! Why it is separate: it is the hot path and the ACL's main input.
//! What it must not do: resolve Topic Aliases, check that a client did not send a Subscription
//! Identifier (direction-dependent: [MQTT-3.3.4-6] is the session's, `subscription_identifiers` is
//! exposed), or validate a UTF-8 payload (`payload_format_indicator` is exposed).

use bytes::{BufMut, Bytes, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::string::MqttStr;
use super::super::topic::{validate_topic_name, TopicError};
use super::super::wire::{put_packet, put_str, Reader};
use super::super::PacketType;
use super::super::{ProtocolVersion, QoS};

/// A PUBLISH packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag (never set with QoS 0).
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic Name; empty only in v5 when `properties.topic_alias` is set.
    pub topic: MqttStr,
    /// Packet Identifier: `Some` (non-zero) exactly when QoS > 0.
    pub pkid: Option<u16>,
    /// v5 properties (default for 3.x).
    pub properties: PublishProperties,
    /// Application Message, a slice of the frame.
    pub payload: Bytes,
}

/// v5 PUBLISH properties (§3.3.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// Payload Format Indicator (0x01): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (0x23), never 0; at most once.
    pub topic_alias: Option<u16>,
    /// Response Topic (0x08), a valid topic name [MQTT-3.3.2-14].
    pub response_topic: Option<MqttStr>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
    /// Subscription Identifiers (0x0B), server → client only; each ≥ 1.
    pub subscription_identifiers: Vec<u32>,
    /// Content Type (0x03).
    pub content_type: Option<MqttStr>,
}

const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;

// === impl Publish ===

impl Publish {
    pub(crate) fn read(
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS {
            what: "PUBLISH",
            spec: "MQTT-3.3.1-4",
        })?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0); // [MQTT-3.3.1-2]
        }
        let topic = r.string("topic name")?;
        let pkid = if qos == QoS::AtMostOnce {
            None
        } else {
            match r.u16("packet identifier")? {
                0 => {
                    return Err(DecodeError::ZeroPacketId {
                        packet: PacketType::Publish,
                    })
                } // [MQTT-2.2.1-3]
                id => Some(id),
            }
        };
        let properties = if version.is_v5() {
            PublishProperties::read(r)?
        } else {
            PublishProperties::default()
        };
        check_topic(&topic, &properties, version).map_err(|e| match e {
            TopicCheck::NoAlias => DecodeError::EmptyTopicWithoutAlias,
            TopicCheck::Invalid(source) => DecodeError::InvalidTopicName {
                what: "topic name",
                source,
            },
        })?;
        Ok(Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            pkid,
            properties,
            payload: r.rest(),
        })
    }

    /// The fixed-header byte for these flags.
    fn byte1(&self) -> u8 {
        let mut b = ((PacketType::Publish as u8) << 4) | ((self.qos as u8) << 1);
        if self.dup {
            b |= DUP;
        }
        if self.retain {
            b |= RETAIN;
        }
        b
    }

    /// Encodes for `version`; refuses what the decoder would refuse.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let bad_id = || EncodeError::PacketId {
            packet: PacketType::Publish,
        };
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::InvalidValue {
                what: "DUP on QoS 0",
                value: 1,
            });
        }
        if !version.is_v5() && self.properties != PublishProperties::default() {
            return Err(EncodeError::NotInVersion {
                what: "PUBLISH properties",
                version,
            });
        }
        check_topic(&self.topic, &self.properties, version).map_err(|e| {
            EncodeError::InvalidTopic {
                what: "topic name",
                source: match e {
                    TopicCheck::NoAlias => TopicError::Empty,
                    TopicCheck::Invalid(source) => source,
                },
            }
        })?;
        let mut head = BytesMut::new();
        put_str(&mut head, &self.topic, "topic name")?;
        match (self.qos, self.pkid) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(pkid)) if pkid != 0 => head.put_u16(pkid),
            _ => return Err(bad_id()),
        }
        if version.is_v5() {
            self.properties.writer()?.finish(&mut head)?;
        }
        put_packet(out, self.byte1(), &head, &self.payload)
    }
}

enum TopicCheck {
    NoAlias,
    Invalid(TopicError),
}

fn check_topic(
    topic: &MqttStr,
    properties: &PublishProperties,
    version: ProtocolVersion,
) -> Result<(), TopicCheck> {
    if topic.is_empty() && version.is_v5() {
        // v5 §3.3.2.1: empty topic only with a Topic Alias.
        return match properties.topic_alias {
            Some(_) => Ok(()),
            None => Err(TopicCheck::NoAlias),
        };
    }
    // [MQTT-3.3.2-2] [MQTT-4.7.0-1] [MQTT-4.7.3-1]
    validate_topic_name(topic.as_str()).map_err(TopicCheck::Invalid)
}

// === impl PublishProperties ===

impl PublishProperties {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = PublishProperties::default();
        let mut pr = PropReader::new(r, Context::Publish)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                    p.payload_format_indicator = Some(v)
                }
                (id::MESSAGE_EXPIRY_INTERVAL, Value::Four(v)) => {
                    p.message_expiry_interval = Some(v)
                }
                (id::TOPIC_ALIAS, Value::Two(v)) => p.topic_alias = Some(v),
                (id::RESPONSE_TOPIC, Value::Str(s)) => p.response_topic = Some(s),
                (id::CORRELATION_DATA, Value::Binary(b)) => p.correlation_data = Some(b),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id::SUBSCRIPTION_IDENTIFIER, Value::Vbi(v)) => p.subscription_identifiers.push(v),
                (id::CONTENT_TYPE, Value::Str(s)) => p.content_type = Some(s),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(p)
    }

    fn writer(&self) -> Result<PropWriter, EncodeError> {
        let mut w = PropWriter::new();
        w.byte(id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator)?;
        w.four(id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval)?;
        w.two(id::TOPIC_ALIAS, self.topic_alias)?;
        w.str(id::RESPONSE_TOPIC, self.response_topic.as_ref())?;
        w.binary(id::CORRELATION_DATA, self.correlation_data.as_ref())?;
        w.users(&self.user_properties)?;
        for &sid in &self.subscription_identifiers {
            w.vbi(id::SUBSCRIPTION_IDENTIFIER, sid)?;
        }
        w.str(id::CONTENT_TYPE, self.content_type.as_ref())?;
        Ok(w)
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
