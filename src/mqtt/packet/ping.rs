//! PINGREQ and PINGRESP (§3.12, §3.13): a fixed header and nothing else.
//!
//! What it owns: their two-byte encodings. The dispatcher checks flags 0 and remaining length 0
//! (`c0 80 00` is refused by the header's minimal-length rule, `c1 00` by the flags rule).
//! Why it is separate: one file per packet kind (house rule 2).
//! What it must not do: keep-alive timing (the session driver owns the clock).

/// PINGREQ on the wire.
pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
/// PINGRESP on the wire.
pub const PINGRESP: [u8; 2] = [0xd0, 0x00];
