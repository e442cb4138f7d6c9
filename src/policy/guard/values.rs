//! One value of a guard section and its place: durations, sizes and ranges, read with the file,
//! line and column an error must name, and the rule reference a decision will carry.
//!
//! Shared by the section files (`network.rs`, `bans.rs`, `limits.rs`), which add their own
//! methods to [`Ctx`]; nothing here knows which section it reads.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::config::units::{parse_duration, parse_size};
use crate::config::{quoted, Position, SourceLocation};
use crate::policy::decision::RuleRef;
use crate::policy::error::{GuardErrorKind, PolicyError, PolicyErrorKind, PolicySource};

/// Compiles values of one file, naming the file in rules and errors.
pub(super) struct Ctx<'a> {
    pub(super) source: &'a PolicySource,
    pub(super) file: Arc<str>,
}

pub(super) type Res<T> = Result<T, PolicyError>;

// === impl Ctx ===

impl Ctx<'_> {
    pub(super) fn location(&self, position: Position) -> SourceLocation {
        SourceLocation::new(&self.source.path, position)
    }

    pub(super) fn err_at<T>(&self, value: &Spanned<T>, kind: GuardErrorKind) -> PolicyError {
        PolicyError {
            at: self.location(Position::of_spanned(value)),
            kind: PolicyErrorKind::Guard(kind),
        }
    }

    pub(super) fn rule_at<T>(&self, value: &Spanned<T>, label: impl Into<Arc<str>>) -> RuleRef {
        RuleRef::at(self.file.clone(), Position::of_spanned(value).line, label)
    }

    pub(super) fn duration(&self, raw: &Spanned<String>, field: &'static str) -> Res<Duration> {
        let d = parse_duration(&raw.value).map_err(|e| {
            self.err_at(
                raw,
                GuardErrorKind::Invalid {
                    field,
                    found: quoted(&raw.value),
                    reason: e.to_string(),
                },
            )
        })?;
        if d.is_zero() || d > Duration::from_secs(366 * 86_400) {
            let kind = GuardErrorKind::OutOfRange {
                field,
                found: quoted(&raw.value),
                expected: "more than 0s and at most 366 days",
            };
            return Err(self.err_at(raw, kind));
        }
        Ok(d)
    }

    pub(super) fn size(&self, raw: &Spanned<String>, field: &'static str) -> Res<u64> {
        match parse_size(&raw.value) {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err(self.err_at(
                raw,
                GuardErrorKind::OutOfRange {
                    field,
                    found: quoted(&raw.value),
                    expected: "more than 0 bytes",
                },
            )),
            Err(e) => Err(self.err_at(
                raw,
                GuardErrorKind::Invalid {
                    field,
                    found: quoted(&raw.value),
                    reason: e.to_string(),
                },
            )),
        }
    }

    pub(super) fn range(
        &self,
        raw: &Spanned<u64>,
        field: &'static str,
        min: u64,
        max: u64,
        expected: &'static str,
    ) -> Res<u64> {
        if (min..=max).contains(&raw.value) {
            Ok(raw.value)
        } else {
            Err(self.err_at(
                raw,
                GuardErrorKind::OutOfRange {
                    field,
                    found: raw.value.to_string(),
                    expected,
                },
            ))
        }
    }
}
