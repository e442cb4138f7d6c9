//! Fixtures shared by the codec's unit tests: hex parsing and frame building.
//!
//! What it owns: turning the red-team catalogue's hex strings into `Bytes`, and wrapping a body in a
//! fixed header. Test-only (`#[cfg(test)]`); never part of the codec.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use bytes::{BufMut, Bytes, BytesMut};

use super::header::write_remaining_length;
use super::packet::Packet;
use super::ProtocolVersion;

/// Parses hex with optional spaces: `"10 0e 00 04"`.
pub(crate) fn hex(s: &str) -> Bytes {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    let out: Vec<u8> = digits
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect();
    Bytes::from(out)
}

/// `byte1`, the minimal remaining length of `body`, then `body`.
pub(crate) fn frame(byte1: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(byte1);
    write_remaining_length(&mut out, body.len());
    out.put_slice(body);
    out.freeze()
}

/// Concatenates byte slices.
pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Encodes and returns the bytes (panics on error).
pub(crate) fn enc(p: &Packet, v: ProtocolVersion) -> Bytes {
    p.to_bytes(v).unwrap()
}

/// Asserts `bytes` decodes to `p` and `p` encodes back to exactly `bytes`.
pub(crate) fn round_trip(bytes: &Bytes, v: ProtocolVersion, p: &Packet) {
    assert_eq!(super::packet::decode(bytes.clone(), v).as_ref(), Ok(p));
    assert_eq!(&enc(p, v), bytes);
}
