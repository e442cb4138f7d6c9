//! MQTT 5 properties (§2.2.2): the reader and writer every v5 packet uses.
//!
//! What it owns: the table of the 27 property identifiers (type, which packets may carry them),
//! reading a property block so that its declared length is consumed *exactly*, refusing unknown
//! identifiers and identifiers not allowed in the packet (malformed), duplicated single-value
//! properties and out-of-range values (protocol errors), and capping user properties.
//! Why it is separate: rumqttd's property reader is "last one wins" and does not enforce the block
//! length (catalogue §A.3, §C.45, §C.50, §G.91); one strict reader closes those differentials for
//! every packet at once.
//! What it must not do: interpret values in session terms (alias tables, expiry timers).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::string::MqttStr;
use super::topic::validate_topic_name;
use super::wire::{put_binary, put_str, put_vbi, Reader};

/// At most this many User Properties per property block. Real clients send a handful; 50 000 tiny
/// ones are a CPU/memory attack (catalogue §C.52, CVE-2021-41039). Refused with 0x83.
pub const MAX_USER_PROPERTIES: usize = 64;

/// User Properties in wire order (name, value); duplicates are allowed by the spec.
pub type UserProperties = Vec<(MqttStr, MqttStr)>;

/// Property identifiers (§2.2.2.2).
#[allow(missing_docs)]
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Which property block is being read or written (selects the allow table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Will => "Will properties",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::Ack => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Byte,
    Two,
    Four,
    Vbi,
    Binary,
    Str,
    Pair,
}

/// The allow table: type and the contexts that may carry the identifier (§2.2.2.2).
fn lookup(id: u32) -> Option<(Kind, u16)> {
    use Context as C;
    let b = |cs: &[Context]| cs.iter().fold(0u16, |m, c| m | c.bit());
    let all = b(&[
        C::Connect,
        C::Will,
        C::ConnAck,
        C::Publish,
        C::Ack,
        C::Subscribe,
        C::SubAck,
        C::Unsubscribe,
        C::UnsubAck,
        C::Disconnect,
        C::Auth,
    ]);
    let pubwill = b(&[C::Publish, C::Will]);
    Some(match u8::try_from(id).ok()? {
        id::PAYLOAD_FORMAT_INDICATOR => (Kind::Byte, pubwill),
        id::MESSAGE_EXPIRY_INTERVAL => (Kind::Four, pubwill),
        id::CONTENT_TYPE | id::RESPONSE_TOPIC => (Kind::Str, pubwill),
        id::CORRELATION_DATA => (Kind::Binary, pubwill),
        id::SUBSCRIPTION_IDENTIFIER => (Kind::Vbi, b(&[C::Publish, C::Subscribe])),
        id::SESSION_EXPIRY_INTERVAL => (Kind::Four, b(&[C::Connect, C::ConnAck, C::Disconnect])),
        id::ASSIGNED_CLIENT_IDENTIFIER | id::RESPONSE_INFORMATION => (Kind::Str, b(&[C::ConnAck])),
        id::SERVER_KEEP_ALIVE => (Kind::Two, b(&[C::ConnAck])),
        id::AUTHENTICATION_METHOD => (Kind::Str, b(&[C::Connect, C::ConnAck, C::Auth])),
        id::AUTHENTICATION_DATA => (Kind::Binary, b(&[C::Connect, C::ConnAck, C::Auth])),
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => {
            (Kind::Byte, b(&[C::Connect]))
        }
        id::WILL_DELAY_INTERVAL => (Kind::Four, b(&[C::Will])),
        id::SERVER_REFERENCE => (Kind::Str, b(&[C::ConnAck, C::Disconnect])),
        id::REASON_STRING => (
            Kind::Str,
            all & !b(&[
                C::Connect,
                C::Will,
                C::Publish,
                C::Subscribe,
                C::Unsubscribe,
            ]),
        ),
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM => (Kind::Two, b(&[C::Connect, C::ConnAck])),
        id::TOPIC_ALIAS => (Kind::Two, b(&[C::Publish])),
        id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => (Kind::Byte, b(&[C::ConnAck])),
        id::USER_PROPERTY => (Kind::Pair, all),
        id::MAXIMUM_PACKET_SIZE => (Kind::Four, b(&[C::Connect, C::ConnAck])),
        _ => return None,
    })
}

/// Range rules shared by decoder and encoder: 0/1 flags, non-zero maxima, Subscription
/// Identifier ≥ 1, Topic Alias ≥ 1 [MQTT-3.3.2-8].
fn value_ok(id: u8, v: u32) -> bool {
    match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::REQUEST_PROBLEM_INFORMATION
        | id::REQUEST_RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => v <= 1,
        id::RECEIVE_MAXIMUM
        | id::MAXIMUM_PACKET_SIZE
        | id::SUBSCRIPTION_IDENTIFIER
        | id::TOPIC_ALIAS => v != 0,
        _ => true,
    }
}

/// A decoded property value.
#[derive(Debug)]
pub(crate) enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Vbi(u32),
    Binary(Bytes),
    Str(MqttStr),
    Pair(MqttStr, MqttStr),
}

/// Reads one property block. Use `next` until `None`, then `finish`.
pub(crate) struct PropReader {
    r: Reader,
    ctx: Context,
    seen: u64,
    users: usize,
}

impl PropReader {
    /// Reads the Property Length and takes exactly that many bytes as the block.
    pub(crate) fn new(r: &mut Reader, ctx: Context) -> Result<Self, DecodeError> {
        let len = r.vbi("property length")?;
        let block = r.take(len as usize, "property block")?;
        Ok(PropReader {
            r: Reader::new(block),
            ctx,
            seen: 0,
            users: 0,
        })
    }

    fn seen(&self, id: u8) -> bool {
        self.seen & (1u64 << id) != 0
    }

    /// The next property, validated; `None` when the block is consumed exactly.
    pub(crate) fn next(&mut self) -> Result<Option<(u8, Value)>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        // The identifier is a variable byte integer; `80 01` is non-minimal or id 128: both refused.
        let raw = self.r.vbi("property identifier")?;
        let (kind, mask) = lookup(raw).ok_or(DecodeError::UnknownProperty { id: raw })?;
        let id = u8::try_from(raw).map_err(|_| DecodeError::UnknownProperty { id: raw })?;
        if mask & self.ctx.bit() == 0 {
            return Err(DecodeError::PropertyNotAllowed {
                id,
                context: self.ctx.name(),
            });
        }
        let multi = id == id::USER_PROPERTY
            || (id == id::SUBSCRIPTION_IDENTIFIER && self.ctx == Context::Publish);
        if !multi && self.seen(id) {
            return Err(DecodeError::DuplicateProperty { id });
        }
        self.seen |= 1u64 << id;
        let what = "property value";
        let value = match kind {
            Kind::Byte => Value::Byte(self.r.u8(what)?),
            Kind::Two => Value::Two(self.r.u16(what)?),
            Kind::Four => Value::Four(self.r.u32(what)?),
            Kind::Vbi => Value::Vbi(self.r.vbi(what)?),
            Kind::Binary => Value::Binary(self.r.binary(what)?),
            Kind::Str => Value::Str(self.r.string("property string")?),
            Kind::Pair => {
                self.users += 1;
                if self.users > MAX_USER_PROPERTIES {
                    return Err(DecodeError::TooManyUserProperties {
                        max: MAX_USER_PROPERTIES,
                    });
                }
                let k = self.r.string("user property name")?;
                Value::Pair(k, self.r.string("user property value")?)
            }
        };
        let int = match value {
            Value::Byte(v) => Some(u32::from(v)),
            Value::Two(v) => Some(u32::from(v)),
            Value::Four(v) | Value::Vbi(v) => Some(v),
            _ => None,
        };
        if let Some(v) = int.filter(|&v| !value_ok(id, v)) {
            return Err(if id == id::TOPIC_ALIAS {
                DecodeError::TopicAliasZero // [MQTT-3.3.2-8]
            } else {
                DecodeError::InvalidPropertyValue { id, value: v }
            });
        }
        if let Value::Str(s) = &value {
            if id == id::RESPONSE_TOPIC {
                // [MQTT-3.3.2-14]
                validate_topic_name(s.as_str())
                    .map_err(|source| DecodeError::InvalidResponseTopic { source })?;
            }
        }
        Ok(Some((id, value)))
    }

    /// Cross-property rules, checked after the last property.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.seen(id::AUTHENTICATION_DATA) && !self.seen(id::AUTHENTICATION_METHOD) {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(())
    }

    /// The error for a value that reached a packet's match arm it does not belong to (the allow
    /// table makes this unreachable; it exists so no code path can panic).
    pub(crate) fn unexpected(&self, id: u8) -> DecodeError {
        DecodeError::PropertyNotAllowed {
            id,
            context: self.ctx.name(),
        }
    }
}

/// Builds one property block; `finish` writes Property Length + block.
pub(crate) struct PropWriter {
    buf: BytesMut,
    has_method: bool,
    has_data: bool,
}

impl PropWriter {
    pub(crate) fn new() -> Self {
        PropWriter {
            buf: BytesMut::new(),
            has_method: false,
            has_data: false,
        }
    }

    fn check(&self, id: u8, v: u32) -> Result<(), EncodeError> {
        if value_ok(id, v) {
            Ok(())
        } else {
            Err(EncodeError::InvalidValue {
                what: "property",
                value: v,
            })
        }
    }

    pub(crate) fn byte(&mut self, id: u8, v: Option<u8>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.check(id, u32::from(v))?;
            self.buf.put_u8(id);
            self.buf.put_u8(v);
        }
        Ok(())
    }

    pub(crate) fn bool(&mut self, id: u8, v: Option<bool>) -> Result<(), EncodeError> {
        self.byte(id, v.map(u8::from))
    }

    pub(crate) fn two(&mut self, id: u8, v: Option<u16>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.check(id, u32::from(v))?;
            self.buf.put_u8(id);
            self.buf.put_u16(v);
        }
        Ok(())
    }

    pub(crate) fn four(&mut self, id: u8, v: Option<u32>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.check(id, v)?;
            self.buf.put_u8(id);
            self.buf.put_u32(v);
        }
        Ok(())
    }

    pub(crate) fn vbi(&mut self, id: u8, v: u32) -> Result<(), EncodeError> {
        self.check(id, v)?;
        self.buf.put_u8(id);
        put_vbi(&mut self.buf, v as usize)
    }

    pub(crate) fn str(&mut self, id: u8, v: Option<&MqttStr>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            if id == id::RESPONSE_TOPIC {
                validate_topic_name(v.as_str()).map_err(|source| EncodeError::InvalidTopic {
                    what: "response topic",
                    source,
                })?;
            }
            self.has_method |= id == id::AUTHENTICATION_METHOD;
            self.buf.put_u8(id);
            put_str(&mut self.buf, v, "property string")?;
        }
        Ok(())
    }

    pub(crate) fn binary(&mut self, id: u8, v: Option<&Bytes>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.has_data |= id == id::AUTHENTICATION_DATA;
            self.buf.put_u8(id);
            put_binary(&mut self.buf, v, "property data")?;
        }
        Ok(())
    }

    pub(crate) fn users(&mut self, users: &[(MqttStr, MqttStr)]) -> Result<(), EncodeError> {
        if users.len() > MAX_USER_PROPERTIES {
            return Err(EncodeError::TooManyUserProperties {
                max: MAX_USER_PROPERTIES,
            });
        }
        for (k, v) in users {
            self.buf.put_u8(id::USER_PROPERTY);
            put_str(&mut self.buf, k, "user property name")?;
            put_str(&mut self.buf, v, "user property value")?;
        }
        Ok(())
    }

    /// True when no property was written (lets acks pick their short form).
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn finish(self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if self.has_data && !self.has_method {
            return Err(EncodeError::InvalidValue {
                what: "authentication data without method",
                value: 0,
            });
        }
        put_vbi(out, self.buf.len())?;
        out.put_slice(&self.buf);
        Ok(())
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Reason String (0x1F): human-readable diagnostics.
    pub reason_string: Option<MqttStr>,
    /// User Properties (0x26).
    pub user_properties: UserProperties,
}

// === impl AckProperties ===

impl AckProperties {
    /// True when there is nothing to encode.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn read(r: &mut Reader, ctx: Context) -> Result<Self, DecodeError> {
        let mut p = AckProperties::default();
        let mut pr = PropReader::new(r, ctx)?;
        while let Some(prop) = pr.next()? {
            match prop {
                (id::REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
                (id::USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                (id, _) => return Err(pr.unexpected(id)),
            }
        }
        pr.finish()?;
        Ok(p)
    }

    pub(crate) fn writer(&self) -> Result<PropWriter, EncodeError> {
        let mut w = PropWriter::new();
        w.str(id::REASON_STRING, self.reason_string.as_ref())?;
        w.users(&self.user_properties)?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests;
