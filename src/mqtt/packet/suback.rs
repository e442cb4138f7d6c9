//! SUBACK (§3.9): one return/reason code per filter of the SUBSCRIBE, in order.
//!
//! What it owns: packet identifier, v5 properties, the non-empty code list, each code checked
//! against the version's list (3.x: 0, 1, 2, 0x80 [v3:MQTT-3.9.3-2]; v5: the SUBACK reason codes).
//! Why it is separate: the proxy merges its own refusals into the broker's SUBACK (catalogue §A.27).
//! What it must not do: pick codes (`reason::suback_code_v3` maps a v5 code for a 3.x client).

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{AckProperties, Context};
use super::super::reason::allowed_in;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// A SUBACK packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE (non-zero).
    pub pkid: u16,
    /// v5 properties.
    pub properties: AckProperties,
    /// Return codes (3.x) or reason codes (v5), one per filter.
    pub codes: Vec<u8>,
}

fn code_ok(code: u8, version: ProtocolVersion) -> bool {
    if version.is_v5() {
        allowed_in(PacketType::SubAck, code)
    } else {
        matches!(code, 0..=2 | 0x80)
    }
}

// === impl SubAck ===

impl SubAck {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet = PacketType::SubAck;
        let pkid = r.u16("packet identifier")?;
        if pkid == 0 {
            return Err(DecodeError::ZeroPacketId { packet });
        }
        let properties = if version.is_v5() {
            AckProperties::read(r, Context::SubAck)?
        } else {
            AckProperties::default()
        };
        let codes = r.rest().to_vec();
        if codes.is_empty() {
            return Err(DecodeError::EmptyPayload {
                packet,
                spec: "MQTT-3.9.3-1",
            });
        }
        if let Some(&code) = codes.iter().find(|&&c| !code_ok(c, version)) {
            return Err(DecodeError::InvalidReasonCode { packet, code });
        }
        Ok(SubAck {
            pkid,
            properties,
            codes,
        })
    }

    /// Encodes for `version`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = PacketType::SubAck;
        if self.pkid == 0 {
            return Err(EncodeError::PacketId { packet });
        }
        if self.codes.is_empty() {
            return Err(EncodeError::EmptyPayload { packet });
        }
        if let Some(&code) = self.codes.iter().find(|&&c| !code_ok(c, version)) {
            return Err(EncodeError::InvalidValue {
                what: "SUBACK code",
                value: u32::from(code),
            });
        }
        let mut head = BytesMut::new();
        head.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.writer()?.finish(&mut head)?;
        } else if !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "SUBACK properties",
                version,
            });
        }
        put_packet(out, (packet as u8) << 4, &head, &self.codes)
    }
}
