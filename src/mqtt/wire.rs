//! Primitive wire types: the bounds-checked [`Reader`] and the matching `put_*` writers.
//!
//! What it owns: reading u8/u16/u32, variable byte integers (minimal only), length-prefixed binary
//! data and strings out of a `Bytes` without copying, and writing them back.
//! Why it is separate: every packet decoder reads through this one cursor, so "no read past the
//! end" and "no slice indexing on peer data" are enforced in one place.
//! What it must not do: know packet grammars.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::header::MAX_REMAINING_LENGTH;
use super::string::MqttStr;
use super::PacketType;

/// A cursor over one packet body (or one property block). Every read checks the length first.
#[derive(Debug)]
pub(crate) struct Reader {
    /// The bytes not read yet.
    buf: Bytes,
}

// === impl Reader ===

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer: at most 4 bytes, minimal [MQTT-1.5.5-1].
    pub(crate) fn vbi(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::MalformedVarInt { what });
                }
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVarInt { what })
    }

    /// The next `n` bytes, zero-copy.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// Two-byte length then data (§1.5.6).
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// Two-byte length then an MQTT UTF-8 string (§1.5.4).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<MqttStr, DecodeError> {
        let raw = self.binary(what)?;
        MqttStr::from_bytes(raw).map_err(|source| DecodeError::InvalidString { what, source })
    }

    /// Everything left (PUBLISH payload), zero-copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_to(self.buf.len())
    }

    /// Fails unless every byte was consumed ("consumed == remaining length").
    pub(crate) fn finish(self, packet: PacketType) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet,
                extra: self.buf.len(),
            })
        }
    }
}

/// Writes a minimal variable byte integer (values above 268 435 455 are the caller's bug and are
/// rejected).
pub(crate) fn put_vbi(out: &mut BytesMut, value: usize) -> Result<(), EncodeError> {
    if value > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { len: value });
    }
    super::header::write_remaining_length(out, value);
    Ok(())
}

/// Writes two-byte length + data.
pub(crate) fn put_binary(
    out: &mut BytesMut,
    data: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::BinaryTooLong {
        what,
        len: data.len(),
    })?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Writes two-byte length + string, re-checking the rules a `From<&str>` value may break.
pub(crate) fn put_str(
    out: &mut BytesMut,
    s: &MqttStr,
    what: &'static str,
) -> Result<(), EncodeError> {
    s.check()
        .map_err(|source| EncodeError::InvalidString { what, source })?;
    put_binary(out, s.as_bytes(), what)
}

/// Writes a whole packet: `byte1`, the remaining length, `head`, then `payload`.
pub(crate) fn put_packet(
    out: &mut BytesMut,
    byte1: u8,
    head: &[u8],
    payload: &[u8],
) -> Result<(), EncodeError> {
    let len = head.len() + payload.len();
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { len });
    }
    out.reserve(1 + super::header::remaining_length_len(len) + len);
    out.put_u8(byte1);
    super::header::write_remaining_length(out, len);
    out.put_slice(head);
    out.put_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vbi_minimal_mqtt_1_5_5_1() {
        let ok = |b: &'static [u8]| Reader::new(Bytes::from_static(b)).vbi("x");
        assert_eq!(ok(&[0x00]), Ok(0));
        assert_eq!(ok(&[0x7f]), Ok(127));
        assert_eq!(ok(&[0x80, 0x01]), Ok(128));
        assert_eq!(ok(&[0xff, 0xff, 0xff, 0x7f]), Ok(268_435_455));
        assert!(matches!(
            ok(&[0x80, 0x00]),
            Err(DecodeError::MalformedVarInt { .. })
        ));
        assert!(matches!(
            ok(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::MalformedVarInt { .. })
        ));
        assert!(matches!(ok(&[0x80]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn binary_overrun_is_truncated() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0x61]));
        assert_eq!(r.binary("t"), Err(DecodeError::Truncated { what: "t" }));
    }
}
