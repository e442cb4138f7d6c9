//! UNSUBACK (§3.11).
//!
//! What it owns: packet identifier; in v5 the properties and the non-empty reason-code list (one
//! per filter, UNSUBACK codes only); in 3.x the packet is exactly the identifier.
//! Why it is separate: like SUBACK, the proxy may answer or merge it.
//! What it must not do: pick codes.

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{AckProperties, Context};
use super::super::reason::allowed_in;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// An UNSUBACK packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE (non-zero).
    pub pkid: u16,
    /// v5 properties.
    pub properties: AckProperties,
    /// v5 reason codes, one per filter; empty in 3.x.
    pub codes: Vec<u8>,
}

// === impl UnsubAck ===

impl UnsubAck {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let packet = PacketType::UnsubAck;
        let pkid = r.u16("packet identifier")?;
        if pkid == 0 {
            return Err(DecodeError::ZeroPacketId { packet });
        }
        let mut ack = UnsubAck {
            pkid,
            ..UnsubAck::default()
        };
        if !version.is_v5() {
            return Ok(ack);
        }
        ack.properties = AckProperties::read(r, Context::UnsubAck)?;
        ack.codes = r.rest().to_vec();
        if ack.codes.is_empty() {
            return Err(DecodeError::EmptyPayload {
                packet,
                spec: "MQTT-3.11.3-1",
            });
        }
        if let Some(&code) = ack.codes.iter().find(|&&c| !allowed_in(packet, c)) {
            return Err(DecodeError::InvalidReasonCode { packet, code });
        }
        Ok(ack)
    }

    /// Encodes for `version`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = PacketType::UnsubAck;
        if self.pkid == 0 {
            return Err(EncodeError::PacketId { packet });
        }
        let mut head = BytesMut::new();
        head.put_u16(self.pkid);
        if version.is_v5() {
            if self.codes.is_empty() {
                return Err(EncodeError::EmptyPayload { packet });
            }
            if let Some(&code) = self.codes.iter().find(|&&c| !allowed_in(packet, c)) {
                return Err(EncodeError::InvalidValue {
                    what: "UNSUBACK code",
                    value: u32::from(code),
                });
            }
            self.properties.writer()?.finish(&mut head)?;
            head.put_slice(&self.codes);
        } else if !self.codes.is_empty() || !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "UNSUBACK reason codes or properties",
                version,
            });
        }
        put_packet(out, (packet as u8) << 4, &head, &[])
    }
}
