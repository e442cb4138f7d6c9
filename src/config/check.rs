//! Reading one value of moat.yaml with its place: the validation context ([`Check`]) that
//! names the file in every error, and the readers both halves of the schema share (durations,
//! timeouts, sizes, paths).
//!
//! Why it is separate: `raw.rs` (the whole file) and `listener.rs` (per-listener transports)
//! each add their own checks to [`Check`]; with the type here they depend on it, not on each
//! other. Pure: a path is joined to the config file's folder, never opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::error::{quoted, ConfigError, ConfigErrorKind as Kind, Position};
use super::units::{parse_duration, parse_size};

/// Longest timeout accepted: anything longer is a typo, and a hostile peer would love it.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Validation context: the file to name in errors and the folder relative paths start from.
pub(super) struct Check<'a> {
    /// The file errors name.
    file: &'a Path,
    /// The folder of that file, which relative paths are joined to.
    pub(super) base: &'a Path,
}

// === impl Check ===

impl<'a> Check<'a> {
    /// Checks values of the file at `path`.
    pub(super) fn new(path: &'a Path) -> Self {
        Check {
            file: path,
            base: path.parent().unwrap_or_else(|| Path::new("")),
        }
    }

    pub(super) fn err(&self, position: Position, kind: Kind) -> ConfigError {
        ConfigError::new(self.file, position, kind)
    }

    pub(super) fn err_at<T>(&self, value: &Spanned<T>, kind: Kind) -> ConfigError {
        self.err(Position::of_spanned(value), kind)
    }

    /// A timeout: positive (or zero when `allow_zero`) and at most [`MAX_TIMEOUT`].
    pub(super) fn timeout(
        &self,
        raw: &Option<Spanned<String>>,
        field: &'static str,
        allow_zero: bool,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let duration = self.duration(raw, field)?;
        if (duration.is_zero() && !allow_zero) || duration > MAX_TIMEOUT {
            let expected = if allow_zero {
                "at most 1h"
            } else {
                "more than 0s and at most 1h"
            };
            let found = quoted(&raw.value);
            let kind = Kind::DurationOutOfRange {
                field,
                found,
                expected,
            };
            return Err(self.err_at(raw, kind));
        }
        Ok(Some(duration))
    }

    pub(super) fn duration(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<Duration, ConfigError> {
        parse_duration(&raw.value).map_err(|err| {
            let found = quoted(&raw.value);
            let reason = err.to_string();
            self.err_at(
                raw,
                Kind::InvalidDuration {
                    field,
                    found,
                    reason,
                },
            )
        })
    }

    /// A size (`256KiB`) that must lie in `range`; errors name the field and the range.
    pub(super) fn size_in(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
        range: std::ops::RangeInclusive<u64>,
        expected: &'static str,
    ) -> Result<usize, ConfigError> {
        let size = parse_size(&raw.value).map_err(|err| {
            let found = quoted(&raw.value);
            let reason = err.to_string();
            self.err_at(
                raw,
                Kind::InvalidSize {
                    field,
                    found,
                    reason,
                },
            )
        })?;
        match usize::try_from(size) {
            Ok(bytes) if range.contains(&size) => Ok(bytes),
            _ => {
                let found = format!("{} ({size} bytes)", quoted(&raw.value));
                Err(self.err_at(
                    raw,
                    Kind::OutOfRange {
                        field,
                        found,
                        expected,
                    },
                ))
            }
        }
    }

    /// A path from the file, joined to the config file's folder when relative.
    pub(super) fn path(
        &self,
        raw: &Spanned<String>,
        field: &'static str,
    ) -> Result<PathBuf, ConfigError> {
        if raw.value.trim().is_empty() {
            return Err(self.err_at(raw, Kind::EmptyPath { field }));
        }
        Ok(self.base.join(&raw.value))
    }
}
