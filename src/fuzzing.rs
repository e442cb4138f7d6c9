//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature, off by default, hidden
//! from the docs).
//!
//! Thin doors into crate-internal code, so that the internals stay `pub(crate)`: the session's
//! per-packet path (limits, then the pure state, both ways; `session/fuzzing.rs`) and the text
//! `moat check` prints. Nothing here decides anything. What the fuzzer can reach through the
//! public API (the codec, `config::parse`, `policy::compile_with_files`, the WebSocket upgrade
//! and `WsBytes`) it uses directly.

use std::path::Path;

use crate::config::Config;
use crate::policy::Policy;

pub use crate::session::fuzzing::{Effects, End, Session, Setup};

/// What `moat check` prints for `cfg` (read from `path`) and `policy`, without touching files:
/// the summary, warnings, descriptor budget (under fixed limits) and the policy's test cases.
pub fn check_summary(path: &Path, cfg: &Config, policy: &Policy) -> String {
    crate::cli::check_summary(path, cfg, policy)
}
