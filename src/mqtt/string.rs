//! [`MqttStr`]: an MQTT "UTF-8 Encoded String" held as a zero-copy slice of the packet.
//!
//! What it owns: the string rules of MQTT §1.5.4 — well-formed UTF-8 (no overlongs, no surrogates:
//! `str::from_utf8` rejects both) [MQTT-1.5.4-1], no U+0000 (which `from_utf8` *accepts*, so it is
//! checked explicitly) [MQTT-1.5.4-2], at most 65 535 bytes.
//! Why it is separate: every string field of every packet (client id, username, topics, filters,
//! property strings) goes through this one check (catalogue §A.12).
//! What it must not do: normalise, case-fold, strip a BOM or reject other code points: moat compares
//! identities and topics byte-exactly (catalogue §A.13/§A.14). Escaping for logs is the logger's job.
//!
//! Design: the value is a `Bytes` that was validated once on construction. `as_str` re-runs
//! `from_utf8` (linear, allocation-free) because `#![forbid(unsafe_code)]` rules out
//! `from_utf8_unchecked`; the impossible failure returns `""`.

use std::fmt;

use bytes::Bytes;

/// Why a byte string is not a valid MQTT UTF-8 string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    /// Ill-formed UTF-8: overlong form, surrogate, truncated sequence [MQTT-1.5.4-1].
    #[error("ill-formed UTF-8 after {valid_up_to} bytes [MQTT-1.5.4-1]")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// Contains U+0000 [MQTT-1.5.4-2].
    #[error("contains U+0000 [MQTT-1.5.4-2]")]
    Nul,
    /// Longer than the 65 535 bytes a two-byte length prefix can describe.
    #[error("{len} bytes is longer than 65535")]
    TooLong {
        /// The length in bytes.
        len: usize,
    },
}

// === impl StringError ===

impl StringError {
    /// The normative statement this violates, if any.
    pub fn spec(&self) -> Option<&'static str> {
        match self {
            Self::InvalidUtf8 { .. } => Some("MQTT-1.5.4-1"),
            Self::Nul => Some("MQTT-1.5.4-2"),
            Self::TooLong { .. } => None,
        }
    }
}

/// Checks the MQTT string rules on raw bytes and returns the `&str`.
pub fn validate(bytes: &[u8]) -> Result<&str, StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong { len: bytes.len() });
    }
    let s = std::str::from_utf8(bytes).map_err(|e| StringError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    // `from_utf8` accepts U+0000; MQTT does not [MQTT-1.5.4-2].
    if bytes.contains(&0) {
        return Err(StringError::Nul);
    }
    Ok(s)
}

/// A validated MQTT UTF-8 string, sharing the packet's buffer.
///
/// Built by the decoder (validated) or by [`MqttStr::new`] (validated). `From<&str>` is for
/// building packets in code: a `&str` is already UTF-8, and the encoder re-checks the two rules it
/// cannot guarantee (no U+0000, ≤ 65 535 bytes) before writing.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MqttStr(Bytes);

// === impl MqttStr ===

impl MqttStr {
    /// Validates `bytes` and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttStr, StringError> {
        validate(&bytes)?;
        Ok(MqttStr(bytes))
    }

    /// Validates and copies `s`.
    pub fn new(s: &str) -> Result<MqttStr, StringError> {
        validate(s.as_bytes())?;
        Ok(MqttStr(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// The string. Never fails for a value built by this module; `""` on the impossible failure.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The encoded bytes (without the length prefix).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Re-checks the rules a `From<&str>` value may break (used by the encoder).
    pub fn check(&self) -> Result<(), StringError> {
        validate(&self.0).map(|_| ())
    }
}

impl From<&str> for MqttStr {
    fn from(s: &str) -> Self {
        MqttStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for MqttStr {
    fn from(s: String) -> Self {
        MqttStr(Bytes::from(s))
    }
}

impl AsRef<str> for MqttStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for MqttStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttStr {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_multibyte() {
        assert_eq!(validate(b"a/b"), Ok("a/b"));
        assert_eq!(validate("é/€/𝄞".as_bytes()), Ok("é/€/𝄞"));
        assert_eq!(validate(b""), Ok(""));
    }

    #[test]
    fn nul_mqtt_1_5_4_2() {
        assert_eq!(validate(b"a\0b"), Err(StringError::Nul));
        assert_eq!(MqttStr::from("a\0b").check(), Err(StringError::Nul));
    }

    #[test]
    fn ill_formed_mqtt_1_5_4_1() {
        // Overlong '/', overlong NUL ("modified UTF-8"), surrogate U+D800, truncated.
        for bad in [
            &b"a\xc0\xafb"[..],
            b"a\xc0\x80",
            b"a\xed\xa0\x80",
            b"a\xe2\x82",
        ] {
            assert!(
                matches!(validate(bad), Err(StringError::InvalidUtf8 { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn too_long() {
        let long = vec![b'a'; 65_536];
        assert_eq!(validate(&long), Err(StringError::TooLong { len: 65_536 }));
        assert!(validate(&[b'a'; 65_535]).is_ok());
    }

    #[test]
    fn non_characters_are_kept_byte_exact() {
        // U+FFFF and U+FEFF are allowed by the codec; policy decides (catalogue §A.13/§A.14).
        let s = MqttStr::from_bytes(Bytes::from_static(b"\xef\xbb\xbfa/\xef\xbf\xbf"));
        assert_eq!(s.map(|s| s.len()), Ok(8));
    }
}
