//! `bans:` and `auto_ban:` in a policy file: static bans on an address, user name or client id
//! (with an optional end time), and the triggers that ban automatically (compiled into
//! `policy/bans.rs`'s settings).

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::values::{Ctx, Res};
use crate::config::{quoted, Position};
use crate::policy::bans::{AutoBanRule, AutoBanSettings, BanTarget, StaticBan};
use crate::policy::error::{GuardErrorKind, PolicyError, PolicyErrorKind};

/// `bans[]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct RawBan {
    #[schemars(with = "Option<String>")]
    address: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    username: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    client_id: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    until: Option<Spanned<String>>,
    reason: Option<String>,
}

/// `auto_ban:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct RawAutoBan {
    failed_auth: Option<RawAutoBanRule>,
    flapping: Option<RawAutoBanRule>,
}

/// `auto_ban.failed_auth:` / `auto_ban.flapping:`; `count: 0` turns the trigger off.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawAutoBanRule {
    #[schemars(with = "u64")]
    count: Spanned<u64>,
    #[schemars(with = "String")]
    within: Spanned<String>,
    #[schemars(with = "String")]
    ban_for: Spanned<String>,
    /// Which of `source`, `username`, `client_id` to ban (default: all three for flapping's
    /// `client_id` + `source`, `source` only for failed_auth).
    #[schemars(with = "Option<Vec<String>>")]
    ban: Option<Vec<Spanned<String>>>,
}

// === impl Ctx (bans) ===

impl Ctx<'_> {
    pub(super) fn ban(&self, raw: &RawBan) -> Res<StaticBan> {
        let named = [&raw.address, &raw.username, &raw.client_id]
            .iter()
            .filter(|t| t.is_some())
            .count();
        let (target, at) = match (named, &raw.address, &raw.username, &raw.client_id) {
            (1, Some(a), _, _) => (BanTarget::Network(self.net(a, "bans[].address")?), a),
            (1, None, Some(u), _) => (BanTarget::Username(u.value.clone()), u),
            (1, None, None, Some(c)) => (BanTarget::ClientId(c.value.clone()), c),
            (_, a, u, c) => {
                let kind = PolicyErrorKind::Guard(GuardErrorKind::BanTarget);
                let at = [a, u, c, &raw.until]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(Position::of_spanned)
                    .unwrap_or_default();
                return Err(PolicyError {
                    at: self.location(at),
                    kind,
                });
            }
        };
        let until = match &raw.until {
            None => None,
            Some(u) => Some(humantime::parse_rfc3339_weak(u.value.trim()).map_err(|e| {
                self.err_at(
                    u,
                    GuardErrorKind::Invalid {
                        field: "bans[].until",
                        found: quoted(&u.value),
                        reason: format!(
                            "{e}; expected an RFC 3339 time such as 2030-01-31T12:00:00Z"
                        ),
                    },
                )
            })?),
        };
        Ok(StaticBan {
            rule: self.rule_at(at, format!("ban {target}")),
            target,
            until,
            reason: raw.reason.clone(),
        })
    }

    pub(super) fn auto_ban(&self, raw: &RawAutoBan) -> Res<AutoBanSettings> {
        let defaults = AutoBanSettings::default();
        Ok(AutoBanSettings {
            failed_auth: match &raw.failed_auth {
                None => defaults.failed_auth,
                Some(r) => self.auto_ban_rule(r, "auto_ban.failed_auth", &["source"])?,
            },
            flapping: match &raw.flapping {
                None => defaults.flapping,
                Some(r) => self.auto_ban_rule(r, "auto_ban.flapping", &["source", "client_id"])?,
            },
        })
    }

    fn auto_ban_rule(
        &self,
        raw: &RawAutoBanRule,
        section: &'static str,
        default_ban: &[&str],
    ) -> Res<Option<AutoBanRule>> {
        if raw.count.value == 0 {
            return Ok(None);
        }
        let count = self.range(&raw.count, section, 1, 1_000_000, "from 0 (off) to 1000000")?;
        let within = self.duration(&raw.within, section)?;
        let ban_for = self.duration(&raw.ban_for, section)?;
        let mut ban: Vec<String> = default_ban.iter().map(|s| (*s).to_owned()).collect();
        if let Some(list) = &raw.ban {
            ban.clear();
            for item in list {
                match item.value.as_str() {
                    "source" | "username" | "client_id" => ban.push(item.value.clone()),
                    other => {
                        return Err(self.err_at(
                            item,
                            GuardErrorKind::Invalid {
                                field: "auto_ban.*.ban",
                                found: quoted(other),
                                reason: "expected source, username or client_id".into(),
                            },
                        ))
                    }
                }
            }
        }
        let has = |k: &str| ban.iter().any(|b| b == k);
        Ok(Some(AutoBanRule {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            within,
            ban_for,
            ban_source: has("source"),
            ban_username: has("username"),
            ban_client_id: has("client_id"),
            rule: self.rule_at(&raw.count, section),
        }))
    }
}
