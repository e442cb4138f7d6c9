//! AUTH (§3.15), MQTT 5 only (type 15 is reserved in 3.x and refused by the dispatcher).
//!
//! What it owns: the reason code (0x00, 0x18, 0x19), the properties (an Authentication Method is
//! required whenever a property block is present, v5 §3.15.2.2.2), and the empty short form
//! (remaining length 0 = Success without properties).
//! Why it is separate: enhanced authentication is terminated by the proxy and never forwarded to
//! rumqttd, which has no AUTH packet (catalogue §B.31).
//! What it must not do: run the authentication exchange.

use bytes::{BufMut, Bytes, BytesMut};

use super::super::error::{DecodeError, EncodeError};
use super::super::properties::{id, Context, PropReader, PropWriter, UserProperties, Value};
use super::super::reason::allowed_in;
use super::super::string::MqttStr;
use super::super::wire::{put_packet, Reader};
use super::super::PacketType;
use super::super::ProtocolVersion;

/// An AUTH packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 Success, 0x18 Continue authentication, 0x19 Re-authenticate.
    pub reason: u8,
    /// Properties.
    pub properties: AuthProperties,
}

/// AUTH properties (§3.15.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// Authentication Method (0x15): required when any property is present.
    pub authentication_method: Option<MqttStr>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
    /// Reason String (0x1F).
    pub reason_string: Option<MqttStr>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
}

// === impl Auth ===

impl Auth {
    pub(crate) fn read(r: &mut Reader) -> Result<Auth, DecodeError> {
        let mut a = Auth::default();
        if r.is_empty() {
            return Ok(a);
        }
        a.reason = r.u8("reason code")?;
        if !allowed_in(PacketType::Auth, a.reason) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code: a.reason,
            }); // [MQTT-3.15.2-1]
        }
        let p = &mut a.properties;
        let mut pr = PropReader::new(r, Context::Auth)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::AUTHENTICATION_METHOD, Value::Str(s)) => p.authentication_method = Some(s),
                (id::AUTHENTICATION_DATA, Value::Binary(b)) => p.authentication_data = Some(b),
                (id::REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        if p.authentication_method.is_none() {
            return Err(DecodeError::AuthMethodMissing);
        }
        Ok(a)
    }

    /// Encodes (v5 only).
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                what: "AUTH",
                version,
            });
        }
        if !allowed_in(PacketType::Auth, self.reason) {
            return Err(EncodeError::InvalidValue {
                what: "AUTH reason code",
                value: u32::from(self.reason),
            });
        }
        let mut head = BytesMut::new();
        if *self != Auth::default() {
            let p = &self.properties;
            if p.authentication_method.is_none() {
                return Err(EncodeError::InvalidValue {
                    what: "AUTH without authentication method",
                    value: 0,
                });
            }
            head.put_u8(self.reason);
            let mut w = PropWriter::new();
            w.str(id::AUTHENTICATION_METHOD, p.authentication_method.as_ref())?;
            w.binary(id::AUTHENTICATION_DATA, p.authentication_data.as_ref())?;
            w.str(id::REASON_STRING, p.reason_string.as_ref())?;
            w.users(&p.user_properties)?;
            w.finish(&mut head)?;
        }
        put_packet(out, (PacketType::Auth as u8) << 4, &head, &[])
    }
}
