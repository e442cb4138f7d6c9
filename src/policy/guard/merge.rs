//! How the guard sections of several policy files add up into one [`Guard`].
//!
//! `network:` lists and `bans:` add up (every file's entries apply); `limits:` and `auto_ban:`
//! may each be written in one file only, because two files with different numbers would leave it
//! unclear which one holds. Each section's own compile step is in its file; this one only
//! gathers and refuses the second copy.

use serde_saphyr::Spanned;

use super::bans::{RawAutoBan, RawBan};
use super::limits::RawLimits;
use super::network::RawNetwork;
use super::values::{Ctx, Res};
use super::Guard;
use crate::config::{Position, SourceLocation};
use crate::policy::bans::{AutoBanSettings, StaticBan};
use crate::policy::error::{GuardErrorKind, PolicySource};
use crate::policy::limits::LimitRules;
use crate::policy::network::NetworkRules;

/// The guard sections seen so far, with where `limits:` and `auto_ban:` were set.
#[derive(Default)]
pub(in crate::policy) struct GuardMerged {
    network: NetworkRules,
    bans: Vec<StaticBan>,
    limits: Option<(LimitRules, SourceLocation)>,
    auto_ban: Option<(AutoBanSettings, SourceLocation)>,
}

/// One file's guard sections, as compile.rs hands them over.
pub(in crate::policy) struct RawGuard {
    pub(in crate::policy) network: Option<RawNetwork>,
    pub(in crate::policy) bans: Option<Vec<RawBan>>,
    pub(in crate::policy) auto_ban: Option<Spanned<RawAutoBan>>,
    pub(in crate::policy) limits: Option<Spanned<RawLimits>>,
}

// === impl GuardMerged ===

impl GuardMerged {
    pub(in crate::policy) fn add(&mut self, source: &PolicySource, raw: RawGuard) -> Res<()> {
        let cx = Ctx {
            source,
            file: source.path.display().to_string().into(),
        };
        if let Some(network) = raw.network {
            cx.network(&network, &mut self.network)?;
        }
        for ban in raw.bans.unwrap_or_default() {
            self.bans.push(cx.ban(&ban)?);
        }
        if let Some(auto) = raw.auto_ban {
            let here = cx.location(Position::of_spanned(&auto));
            if let Some((_, first)) = &self.auto_ban {
                let first = first.clone();
                return Err(cx.err_at(
                    &auto,
                    GuardErrorKind::DuplicateSection {
                        section: "auto_ban",
                        first,
                    },
                ));
            }
            self.auto_ban = Some((cx.auto_ban(&auto.value)?, here));
        }
        if let Some(limits) = raw.limits {
            let here = cx.location(Position::of_spanned(&limits));
            if let Some((_, first)) = &self.limits {
                let first = first.clone();
                return Err(cx.err_at(
                    &limits,
                    GuardErrorKind::DuplicateSection {
                        section: "limits",
                        first,
                    },
                ));
            }
            let line = Position::of_spanned(&limits).line;
            self.limits = Some((cx.limits(&limits.value, line)?, here));
        }
        Ok(())
    }

    pub(in crate::policy) fn finish(self) -> Guard {
        Guard {
            network: self.network,
            bans: self.bans,
            auto_ban: self.auto_ban.map(|(a, _)| a).unwrap_or_default(),
            limits: self.limits.map(|(l, _)| l).unwrap_or_default(),
        }
    }
}
