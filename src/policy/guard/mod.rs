//! The network guard's part of a policy file: `network:`, `bans:`, `auto_ban:` and `limits:`,
//! from YAML to the compiled [`Guard`].
//!
//! Kept apart from `compile.rs` (users, anonymous, ACLs) so each half stays readable; compile.rs
//! only hands these sections over. Pure: text in, values out; rates like `100/s`, sizes like
//! `1MiB`, durations like `5m` and RFC 3339 times are parsed here so every mistake is reported
//! with its file, line and column.
//!
//! One file per question (what the sections compile to lives with the code that decides with it:
//! `policy/network.rs`, `policy/bans.rs`, `policy/limits.rs`):
//! - `merge.rs`    how the sections of several files add up
//! - `network.rs`  `network:`: who may open a connection
//! - `bans.rs`     `bans:` and `auto_ban:`
//! - `limits.rs`   `limits:`: rates, counts and sizes per connection, client, user and group
//! - `values.rs`   one value and its place: durations, sizes, ranges, and the located error

mod bans;
mod limits;
mod merge;
mod network;
mod values;

use super::bans::{AutoBanSettings, StaticBan};
use super::limits::LimitRules;
use super::network::NetworkRules;

pub(super) use bans::{RawAutoBan, RawBan};
pub(super) use limits::RawLimits;
pub(super) use merge::{GuardMerged, RawGuard};
pub(super) use network::RawNetwork;

/// The compiled guard sections of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Guard {
    /// Who may open a connection.
    pub(crate) network: NetworkRules,
    /// Static bans, in file order.
    pub(crate) bans: Vec<StaticBan>,
    /// Automatic bans.
    pub(crate) auto_ban: AutoBanSettings,
    /// Connection and session limits.
    pub(crate) limits: LimitRules,
}

#[cfg(test)]
mod tests;
