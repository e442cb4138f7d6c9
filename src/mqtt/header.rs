//! The MQTT fixed header: packet type, flags and the remaining length.
//!
//! What it owns: deciding, from the first bytes of a stream alone, whether a whole fixed header is
//! buffered, how long the packet is, and whether that length is acceptable — *before* the body is
//! read or any buffer is sized for it (catalogue §C.43, house rule 6).
//! Why it is separate: the session reader calls [`check`] on every read; the packet decoders never
//! see an incomplete frame.
//! What it must not do: validate the flags or the body (the packet decoders do), buffer, or do I/O.

use bytes::{BufMut, BytesMut};

use super::error::FrameError;
use super::PacketType;

/// Largest value a 4-byte variable byte integer can hold (268 435 455).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A parsed fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// The first byte: packet type (high nibble) and flags (low nibble).
    pub byte1: u8,
    /// The Remaining Length: bytes after the fixed header.
    pub remaining_len: usize,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
}

// === impl FixedHeader ===

impl FixedHeader {
    /// The packet type; `None` for the reserved type 0.
    pub fn packet_type(&self) -> Option<PacketType> {
        PacketType::from_byte1(self.byte1)
    }

    /// The flags nibble.
    pub fn flags(&self) -> u8 {
        self.byte1 & 0x0f
    }

    /// Length of the whole packet: fixed header plus remaining length.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Looks at the start of `buf`.
///
/// - `Ok(None)`: more bytes are needed to finish the fixed header (incomplete is not an error);
/// - `Ok(Some(h))`: a fixed header is complete (its body may not be buffered yet);
/// - `Err(FrameError::MalformedLength)`: the remaining length uses 5 bytes or is not minimal
///   (e.g. `c0 80 00`) [MQTT-1.5.5-1];
/// - `Err(FrameError::TooLarge)`: `header_len + remaining_len > max_packet_size`, decided from the
///   header alone so the reader never allocates for an oversized body.
pub fn check(buf: &[u8], max_packet_size: usize) -> Result<Option<FixedHeader>, FrameError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let mut value: usize = 0;
    for (i, &b) in rest.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A multi-byte integer whose last byte is zero could have been shorter [MQTT-1.5.5-1].
            if i > 0 && b == 0 {
                return Err(FrameError::MalformedLength);
            }
            let header = FixedHeader {
                byte1,
                remaining_len: value,
                header_len: i + 2,
            };
            let declared = header.frame_len();
            if declared > max_packet_size {
                return Err(FrameError::TooLarge {
                    declared,
                    max: max_packet_size,
                });
            }
            return Ok(Some(header));
        }
    }
    if rest.len() >= 4 {
        // Four bytes, all with the continuation bit: a fifth would be needed.
        return Err(FrameError::MalformedLength);
    }
    Ok(None)
}

/// Writes `len` as a minimal variable byte integer. Callers must keep
/// `len <= MAX_REMAINING_LENGTH`; larger values are truncated to 4 bytes (the encoders check
/// first and return `EncodeError::PacketTooLarge`).
pub fn write_remaining_length(out: &mut BytesMut, len: usize) {
    let mut x = len & MAX_REMAINING_LENGTH;
    loop {
        // Masked to 7 bits, so the cast cannot truncate.
        let mut byte = (x & 0x7f) as u8;
        x >>= 7;
        if x > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if x == 0 {
            break;
        }
    }
}

/// Number of bytes [`write_remaining_length`] uses for `len`.
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(check(&[], 100), Ok(None));
        assert_eq!(check(&[0x30], 100), Ok(None));
        assert_eq!(check(&[0x30, 0x80], 100), Ok(None));
        assert_eq!(check(&[0x30, 0x80, 0x80, 0x80], 1 << 30), Ok(None));
    }

    #[test]
    fn complete_header() {
        let h = check(&[0x30, 0x05, 0, 3], 100).ok().flatten();
        assert_eq!(
            h,
            Some(FixedHeader {
                byte1: 0x30,
                remaining_len: 5,
                header_len: 2
            })
        );
        assert_eq!(h.map(|h| h.frame_len()), Some(7));
        let h = check(&[0x30, 0xc1, 0x02], 1000).ok().flatten();
        assert_eq!(h.map(|h| (h.remaining_len, h.header_len)), Some((321, 3)));
    }

    #[test]
    fn five_byte_length_mqtt_1_5_5_1() {
        // Catalogue §C.42: `30 80 80 80 80 01`.
        let bytes = [0x30, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(check(&bytes, usize::MAX), Err(FrameError::MalformedLength));
        assert_eq!(
            check(&bytes[..5], usize::MAX),
            Err(FrameError::MalformedLength)
        );
    }

    #[test]
    fn non_minimal_length_mqtt_1_5_5_1() {
        assert_eq!(
            check(&[0xc0, 0x80, 0x00], 100),
            Err(FrameError::MalformedLength)
        );
        assert_eq!(
            check(&[0x30, 0x82, 0x00], 100),
            Err(FrameError::MalformedLength)
        );
        assert_eq!(
            check(&[0x30, 0x80, 0x80, 0x00], 100),
            Err(FrameError::MalformedLength)
        );
    }

    #[test]
    fn too_large_from_header_alone() {
        // Catalogue §C.43: `30 ff ff ff 7f` then nothing.
        assert_eq!(
            check(&[0x30, 0xff, 0xff, 0xff, 0x7f], 1024),
            Err(FrameError::TooLarge {
                declared: 268_435_460,
                max: 1024
            })
        );
        assert_eq!(
            check(&[0x30, 0x7f], 128),
            Err(FrameError::TooLarge {
                declared: 129,
                max: 128
            })
        );
        assert!(check(&[0x30, 0x7e], 128).is_ok());
    }

    #[test]
    fn remaining_length_round_trip() {
        for len in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING_LENGTH,
        ] {
            let mut out = BytesMut::new();
            out.put_u8(0x30);
            write_remaining_length(&mut out, len);
            assert_eq!(out.len(), 1 + remaining_length_len(len));
            let h = check(&out, usize::MAX).ok().flatten();
            assert_eq!(h.map(|h| h.remaining_len), Some(len));
        }
    }
}
