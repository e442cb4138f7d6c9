//! DISCONNECT (§3.14), both directions.
//!
//! What it owns: in 3.x an empty body; in v5 the reason code (DISCONNECT list) and properties, with
//! the short forms (remaining length 0 → reason 0 without properties; 1 → no properties). The
//! encoder omits both only for reason 0 without properties; otherwise it always writes the
//! Property Length, even 0: §2.2.2-1 asks for it and §3.14.2.2.1 allows leaving it out, and
//! clients read the spec the first way (rumqttc 0.25, paho.golang, rust-mqtt drop a
//! `e0 01 8b` as malformed and never see why they were disconnected).
//! Why it is separate: the proxy sends its own DISCONNECTs with reason codes.
//! What it must not do: compare Session Expiry with the CONNECT's (catalogue §B.34, session's job).

use bytes::{BufMut, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::reason::allowed_in;
use super::super::string::MqttStr;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// A DISCONNECT packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// v5 reason code (0 = normal disconnection); always 0 in 3.x.
    pub reason: u8,
    /// v5 properties.
    pub properties: DisconnectProperties,
}

/// v5 DISCONNECT properties (§3.14.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (0x11), client → server only.
    pub session_expiry: Option<u32>,
    /// Reason String (0x1F).
    pub reason_string: Option<MqttStr>,
    /// Server Reference (0x1C), server → client only.
    pub server_reference: Option<MqttStr>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
}

// === impl Disconnect ===

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    pub fn new(reason: u8) -> Disconnect {
        Disconnect {
            reason,
            ..Disconnect::default()
        }
    }

    pub(crate) fn read(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        let mut d = Disconnect::default();
        if !version.is_v5() || r.is_empty() {
            return Ok(d);
        }
        d.reason = r.u8("reason code")?;
        if !allowed_in(PacketType::Disconnect, d.reason) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::Disconnect,
                code: d.reason,
            }); // [MQTT-3.14.2-1]
        }
        if r.is_empty() {
            return Ok(d);
        }
        let p = &mut d.properties;
        let mut pr = PropReader::new(r, Context::Disconnect)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::SESSION_EXPIRY_INTERVAL, Value::Four(v)) => p.session_expiry = Some(v),
                (id::REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
                (id::SERVER_REFERENCE, Value::Str(s)) => p.server_reference = Some(s),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(d)
    }

    /// Encodes for `version`: empty for a plain v5 disconnect, reason code and Property Length
    /// otherwise.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut head = BytesMut::new();
        if version.is_v5() {
            if !allowed_in(PacketType::Disconnect, self.reason) {
                return Err(EncodeError::InvalidValue {
                    what: "DISCONNECT reason code",
                    value: u32::from(self.reason),
                });
            }
            let p = &self.properties;
            let mut w = PropWriter::new();
            w.four(id::SESSION_EXPIRY_INTERVAL, p.session_expiry)?;
            w.str(id::REASON_STRING, p.reason_string.as_ref())?;
            w.str(id::SERVER_REFERENCE, p.server_reference.as_ref())?;
            w.users(&p.user_properties)?;
            if self.reason != 0 || !w.is_empty() {
                head.put_u8(self.reason);
                w.finish(&mut head)?;
            }
        } else if *self != Disconnect::default() {
            return Err(EncodeError::NotInVersion {
                what: "DISCONNECT reason code or properties",
                version,
            });
        }
        put_packet(out, (PacketType::Disconnect as u8) << 4, &head, &[])
    }
}
