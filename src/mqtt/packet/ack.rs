//! PUBACK, PUBREC, PUBREL and PUBCOMP (§3.4–§3.7): one shape, four packet types.
//!
//! What it owns: packet identifier (never 0), the v5 reason code (checked against the packet's
//! allowed list) and properties, and the v5 short forms: remaining length 2 means reason 0 without
//! properties, 3 means no properties. The encoder always writes the shortest form.
//! Why it is separate: the four packets differ only in type, PUBREL's flags (0b0010, checked by the
//! dispatcher) and their reason-code lists.
//! What it must not do: track which packet ids are in flight (session/inflight.rs).

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{AckProperties, Context};
use super::super::reason::allowed_in;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// An acknowledgement in the QoS 1/2 flows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Packet Identifier (non-zero).
    pub pkid: u16,
    /// v5 reason code (0 = success); always 0 in 3.x.
    pub reason: u8,
    /// v5 properties.
    pub properties: AckProperties,
}

/// PUBACK (§3.4).
pub type PubAck = Ack;
/// PUBREC (§3.5).
pub type PubRec = Ack;
/// PUBREL (§3.6).
pub type PubRel = Ack;
/// PUBCOMP (§3.7).
pub type PubComp = Ack;

// === impl Ack ===

impl Ack {
    /// An acknowledgement with reason 0 and no properties.
    pub fn new(pkid: u16) -> Ack {
        Ack {
            pkid,
            ..Ack::default()
        }
    }

    pub(crate) fn read(
        packet: PacketType,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Ack, DecodeError> {
        let pkid = r.u16("packet identifier")?;
        if pkid == 0 {
            return Err(DecodeError::ZeroPacketId { packet }); // [MQTT-2.2.1-3]
        }
        let mut ack = Ack::new(pkid);
        if !version.is_v5() || r.is_empty() {
            return Ok(ack);
        }
        ack.reason = r.u8("reason code")?;
        if !allowed_in(packet, ack.reason) {
            return Err(DecodeError::InvalidReasonCode {
                packet,
                code: ack.reason,
            });
        }
        if !r.is_empty() {
            ack.properties = AckProperties::read(r, Context::Ack)?;
        }
        Ok(ack)
    }

    /// Encodes as `packet` (one of PUBACK, PUBREC, PUBREL, PUBCOMP) in the shortest form.
    pub fn encode(
        &self,
        packet: PacketType,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let is_ack = matches!(
            packet,
            PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp
        );
        if !is_ack || self.pkid == 0 {
            return Err(EncodeError::PacketId { packet });
        }
        let mut head = BytesMut::with_capacity(4);
        head.put_u16(self.pkid);
        if version.is_v5() {
            if !allowed_in(packet, self.reason) {
                return Err(EncodeError::InvalidValue {
                    what: "reason code",
                    value: u32::from(self.reason),
                });
            }
            let props = self.properties.writer()?;
            if self.reason != 0 || !props.is_empty() {
                head.put_u8(self.reason);
            }
            if !props.is_empty() {
                props.finish(&mut head)?;
            }
        } else if self.reason != 0 || !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "acknowledgement reason code or properties",
                version,
            });
        }
        let byte1 = ((packet as u8) << 4) | packet.required_flags().unwrap_or(0);
        put_packet(out, byte1, &head, &[])
    }
}

#[cfg(test)]
#[path = "ack_tests.rs"]
mod tests;
