//! Human-readable durations (`10s`, `500ms`, `1.5s`, `2m`) and sizes (`256KiB`, `1MiB`, `4096`).
//!
//! Separate from the schema so the accepted spellings are decided, documented and tested in one
//! place: durations go through `humantime` (a unit is required: a bare `10` is refused because
//! seconds-or-milliseconds is exactly the ambiguity that causes outages; fractions such as
//! `1.5s` are accepted), sizes through `bytesize` (a bare number is bytes; `KiB`/`MiB` are binary,
//! `KB`/`MB` decimal). Pure functions on strings; no ranges here, the schema owns those.

use std::time::Duration;

/// Why a duration or size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Nothing but whitespace.
    #[error("the value is empty")]
    Empty,
    /// A number without a unit, e.g. `10`.
    #[error("a unit is required")]
    MissingUnit,
    /// Anything else `humantime` refused.
    #[error("{0}")]
    Duration(String),
    /// Anything `bytesize` refused.
    #[error("{0}")]
    Size(String),
    /// A size with a fraction of a byte left over, e.g. `1.3B`.
    #[error("not a whole number of bytes")]
    FractionalBytes,
}

/// Parses a duration such as `10s`, `500ms`, `1.5s`, `2m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(UnitError::MissingUnit);
    }
    humantime::parse_duration(text).map_err(|err| UnitError::Duration(err.to_string()))
}

/// Parses a size in bytes such as `256KiB`, `1MiB`, `16MB` or `4096`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    // bytesize accepts fractions ("1.5MiB") and rounds them; refuse leftovers below one byte
    // so "1.3B" does not quietly become one byte.
    if has_fractional_bytes(text) {
        return Err(UnitError::FractionalBytes);
    }
    let size: bytesize::ByteSize = text.parse().map_err(|err: String| {
        // bytesize quotes the whole input back; keep only its reason.
        let reason = err.rsplit(", ").next().unwrap_or(&err).to_owned();
        UnitError::Size(reason)
    })?;
    Ok(size.as_u64())
}

/// Whether a size written with a plain `B` unit (or none) has a fractional part.
fn has_fractional_bytes(text: &str) -> bool {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let unit = unit.trim();
    let plain_bytes = unit.is_empty() || unit.eq_ignore_ascii_case("b");
    plain_bytes && number.contains('.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 3600s "), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn fractional_durations_are_accepted() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn durations_without_unit_or_garbage_are_refused() {
        assert_eq!(parse_duration("10"), Err(UnitError::MissingUnit));
        assert_eq!(parse_duration("1.5"), Err(UnitError::MissingUnit));
        assert_eq!(parse_duration(""), Err(UnitError::Empty));
        assert!(matches!(
            parse_duration("soon"),
            Err(UnitError::Duration(_))
        ));
        assert!(matches!(parse_duration("-1s"), Err(UnitError::Duration(_))));
        assert!(matches!(
            parse_duration("10 parsecs"),
            Err(UnitError::Duration(_))
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("1.5MiB"), Ok(1024 * 1024 * 3 / 2));
        assert_eq!(parse_size("16MB"), Ok(16_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("128 B"), Ok(128));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(parse_size(" "), Err(UnitError::Empty));
        assert!(matches!(parse_size("garbage"), Err(UnitError::Size(_))));
        assert!(matches!(parse_size("-1KiB"), Err(UnitError::Size(_))));
        assert!(matches!(parse_size("12 furlongs"), Err(UnitError::Size(_))));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(UnitError::Size(_))
        ));
        assert_eq!(parse_size("1.3B"), Err(UnitError::FractionalBytes));
        assert_eq!(parse_size("1.5"), Err(UnitError::FractionalBytes));
    }
}
