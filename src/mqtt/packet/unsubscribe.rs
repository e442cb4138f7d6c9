//! UNSUBSCRIBE (§3.10).
//!
//! What it owns: packet identifier (never 0), v5 properties (User Properties only) and the
//! non-empty list of valid topic filters [MQTT-3.10.3-2].
//! Why it is separate: the session forwards it after checking each filter (a denied filter can
//! never have been subscribed, but the list still has to be well-formed).
//! What it must not do: track subscriptions.

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::string::MqttStr;
use super::super::topic::validate_topic_filter;
use super::super::wire::{put_packet, put_str, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// An UNSUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier (non-zero).
    pub pkid: u16,
    /// v5 User Properties.
    pub user_properties: UserProperties,
    /// Topic filters in wire order (at least one).
    pub filters: Vec<MqttStr>,
}

// === impl Unsubscribe ===

impl Unsubscribe {
    pub(crate) fn read(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet = PacketType::Unsubscribe;
        let pkid = r.u16("packet identifier")?;
        if pkid == 0 {
            return Err(DecodeError::ZeroPacketId { packet }); // [MQTT-2.2.1-3]
        }
        let mut user_properties = UserProperties::new();
        if version.is_v5() {
            let mut pr = PropReader::new(r, Context::Unsubscribe)?;
            while let Some(prop) = pr.next()? {
                match prop {
                    (id::USER_PROPERTY, Value::Pair(k, v)) => user_properties.push((k, v)),
                    (id, _) => return Err(pr.unexpected(id)),
                }
            }
            pr.finish()?;
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string("topic filter")?;
            validate_topic_filter(filter.as_str())
                .map_err(|source| DecodeError::InvalidTopicFilter { source })?;
            filters.push(filter);
        }
        if filters.is_empty() {
            let spec = if version.is_v5() {
                "MQTT-3.10.3-2"
            } else {
                "v3:MQTT-3.10.3-2"
            };
            return Err(DecodeError::EmptyPayload { packet, spec });
        }
        Ok(Unsubscribe {
            pkid,
            user_properties,
            filters,
        })
    }

    /// Encodes for `version`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = PacketType::Unsubscribe;
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
            w.users(&self.user_properties)?;
            w.finish(&mut body)?;
        } else if !self.user_properties.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "UNSUBSCRIBE properties",
                version,
            });
        }
        for filter in &self.filters {
            validate_topic_filter(filter.as_str()).map_err(|source| EncodeError::InvalidTopic {
                what: "topic filter",
                source,
            })?;
            put_str(&mut body, filter, "topic filter")?;
        }
        put_packet(out, ((packet as u8) << 4) | 0b0010, &body, &[])
    }
}
