//! SUBSCRIBE (§3.8).
//!
//! What it owns: packet identifier (never 0), v5 properties (one Subscription Identifier ≥ 1), the
//! filter list (non-empty; every filter valid, including `$share/` syntax, catalogue §A.5/§A.11) and
//! the subscription options byte, read with the grammar of the negotiated version: `0x04` is No
//! Local in v5 but a reserved bit in 3.1.1 (§B.39).
//! Why it is separate: the ACL checks each filter; a filter the codec read differently from the
//! broker is a bypass.
//! What it must not do: authorise filters or unwrap shares for the ACL (`topic::split_shared`).

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::string::MqttStr;
use super::super::topic::{split_shared, validate_topic_filter, TopicError};
use super::super::wire::{put_packet, put_str, Reader};
use super::super::PacketType;
use super::super::{ProtocolVersion, QoS};

/// A SUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier (non-zero).
    pub pkid: u16,
    /// v5 properties.
    pub properties: SubscribeProperties,
    /// Topic filters and their options, in wire order (at least one).
    pub filters: Vec<(MqttStr, SubscribeOptions)>,
}

/// v5 SUBSCRIBE properties (§3.8.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// Subscription Identifier (0x0B), 1..=268 435 455, at most once.
    pub subscription_identifier: Option<u32>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
}

/// Subscription options (§3.8.3.1). In 3.x only `qos` exists; the rest must stay default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// v5 No Local (never on a shared subscription [MQTT-3.8.3-4]).
    pub no_local: bool,
    /// v5 Retain As Published.
    pub retain_as_published: bool,
    /// v5 Retain Handling.
    pub retain_handling: RetainHandling,
}

/// v5 Retain Handling (value 3 is a protocol error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription is new.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

// === impl SubscribeOptions ===

impl SubscribeOptions {
    /// Options with this QoS and v5 defaults.
    pub fn qos(qos: QoS) -> Self {
        SubscribeOptions {
            qos,
            ..Self::default()
        }
    }

    fn read(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let v5 = version.is_v5();
        let (reserved, spec) = if v5 {
            (0xc0, "MQTT-3.8.3-5")
        } else {
            (0xfc, "v3:MQTT-3.8.3-4")
        };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved {
                options: byte,
                spec,
            });
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidQoS {
            what: "subscription options",
            spec,
        })?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::RetainHandling3),
        };
        Ok(SubscribeOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn byte(&self, version: ProtocolVersion) -> Result<u8, EncodeError> {
        let v5_bits = u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4;
        if !version.is_v5() && v5_bits != 0 {
            return Err(EncodeError::NotInVersion {
                what: "v5 subscription options",
                version,
            });
        }
        Ok(self.qos as u8 | v5_bits)
    }
}

// === impl Subscribe ===

impl Subscribe {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
        let request = SubscribeRequest::read(r, version)?;
        let mut filters = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            // [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.8.2-1] [MQTT-4.8.2-2]
            let entry = entry.map_err(|(_, source)| DecodeError::InvalidTopicFilter { source })?;
            filters.push(entry);
        }
        Ok(Subscribe {
            pkid: request.pkid,
            properties: request.properties,
            filters,
        })
    }

    /// Encodes for `version`; refuses what the decoder would refuse.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = PacketType::Subscribe;
        if self.pkid == 0 {
            return Err(EncodeError::PacketId { packet });
        }
        if self.filters.is_empty() {
            return Err(EncodeError::EmptyPayload { packet });
        }
        let mut body = BytesMut::new();
        body.put_u16(self.pkid);
        if version.is_v5() {
            let mut w = PropWriter::new();
            if let Some(sid) = self.properties.subscription_identifier {
                w.vbi(id::SUBSCRIPTION_IDENTIFIER, sid)?;
            }
            w.users(&self.properties.user_properties)?;
            w.finish(&mut body)?;
        } else if self.properties != SubscribeProperties::default() {
            return Err(EncodeError::NotInVersion {
                what: "SUBSCRIBE properties",
                version,
            });
        }
        for (filter, options) in &self.filters {
            validate_topic_filter(filter.as_str()).map_err(|source| EncodeError::InvalidTopic {
                what: "topic filter",
                source,
            })?;
            if options.no_local && is_shared(filter) {
                return Err(EncodeError::InvalidValue {
                    what: "No Local on a shared subscription",
                    value: 1,
                });
            }
            put_str(&mut body, filter, "topic filter")?;
            body.put_u8(options.byte(version)?);
        }
        put_packet(out, ((packet as u8) << 4) | 0b0010, &body, &[])
    }
}

/// A SUBSCRIBE read filter by filter: every string rule, option bit, property and the packet
/// identifier are checked exactly as in [`Subscribe`], but a filter whose *wildcard syntax* is
/// invalid (`a/#/b`, `$share//a`, an empty filter) is reported in place instead of failing the
/// whole packet, so an MQTT 5 session can answer it with SUBACK 0x8F and forward the rest
/// (catalogue §A.5, §A.11). The filter boundaries come from the length prefixes alone, so this
/// reading is the same one [`Subscribe`] makes: nothing here is ambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Packet Identifier (non-zero).
    pub pkid: u16,
    /// v5 properties.
    pub properties: SubscribeProperties,
    /// Every filter in wire order (at least one): `Ok` when valid, `Err` with the rule it breaks.
    pub entries: Vec<Result<(MqttStr, SubscribeOptions), (MqttStr, TopicError)>>,
}

// === impl SubscribeRequest ===

impl SubscribeRequest {
    pub(crate) fn read(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<SubscribeRequest, DecodeError> {
        let pkid = r.u16("packet identifier")?;
        if pkid == 0 {
            return Err(DecodeError::ZeroPacketId {
                packet: PacketType::Subscribe,
            }); // [MQTT-2.2.1-3]
        }
        let properties = if version.is_v5() {
            SubscribeProperties::read(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut entries = Vec::new();
        while !r.is_empty() {
            let filter = r.string("topic filter")?;
            let options = SubscribeOptions::read(r.u8("subscription options")?, version)?;
            // [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.8.2-1] [MQTT-4.8.2-2]
            if let Err(source) = validate_topic_filter(filter.as_str()) {
                entries.push(Err((filter, source)));
                continue;
            }
            if options.no_local && is_shared(&filter) {
                return Err(DecodeError::NoLocalOnShared); // [MQTT-3.8.3-4]
            }
            entries.push(Ok((filter, options)));
        }
        if entries.is_empty() {
            let spec = if version.is_v5() {
                "MQTT-3.8.3-2"
            } else {
                "v3:MQTT-3.8.3-3"
            };
            return Err(DecodeError::EmptyPayload {
                packet: PacketType::Subscribe,
                spec,
            });
        }
        Ok(SubscribeRequest {
            pkid,
            properties,
            entries,
        })
    }
}

fn is_shared(filter: &MqttStr) -> bool {
    matches!(split_shared(filter.as_str()), Ok(Some(_)))
}

// === impl SubscribeProperties ===

impl SubscribeProperties {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = SubscribeProperties::default();
        let mut pr = PropReader::new(r, Context::Subscribe)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::SUBSCRIPTION_IDENTIFIER, Value::Vbi(v)) => p.subscription_identifier = Some(v),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(p)
    }
}

#[cfg(test)]
#[path = "subscribe_tests.rs"]
mod tests;
