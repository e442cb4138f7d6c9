//! The log filter in force, and its change on reload (`log.level` in moat.yaml).
//!
//! What it owns: the reload handle of the one filter `moat run` installs ([`install`], called
//! by `cli::init_logging`) and [`apply`], which puts a reloaded `log.level` in force. Why it is
//! separate: the subscriber is set up by the command line, once per process, while the reload
//! comes from the server (`server/reload.rs`); the handle between them is process-wide, like
//! the subscriber itself. `RUST_LOG`, when set at start, wins over moat.yaml for the life of
//! the process: a level someone chose on the command line is never changed behind their back.

use std::sync::OnceLock;

use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogSettings;

/// The handle of the filter `moat run` installed, and whether `RUST_LOG` chose it.
struct Installed {
    /// Swaps the filter of the installed subscriber.
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set (and valid) at start: moat.yaml's level is not used.
    from_env: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Remembers the reload handle of the process's subscriber (once; a second call is ignored, as
/// a second subscriber would be).
pub(crate) fn install(handle: reload::Handle<EnvFilter, Registry>, from_env: bool) {
    let _ = INSTALLED.set(Installed { handle, from_env });
}

/// What became of a changed `log.level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelApplied {
    /// In force from the next event on.
    Applied,
    /// Not used: `RUST_LOG` was set at start and wins.
    EnvWins,
    /// Not used: this process's logging was not set up by `moat run` (a library user's, a
    /// test's), so there is no filter of moat's to change.
    NotInstalled,
    /// The filter could not be built or swapped (the loader checked it, so this is a bug).
    Failed(String),
}

/// Puts `settings.level` in force for every event from now on (spans and callsites are
/// re-evaluated by tracing, so a newly enabled debug line shows at once).
pub fn apply(settings: &LogSettings) -> LevelApplied {
    let Some(installed) = INSTALLED.get() else {
        return LevelApplied::NotInstalled;
    };
    if installed.from_env {
        return LevelApplied::EnvWins;
    }
    let filter = match settings.filter() {
        Ok(filter) => filter,
        Err(error) => return LevelApplied::Failed(error),
    };
    match installed.handle.reload(filter) {
        Ok(()) => LevelApplied::Applied,
        Err(error) => LevelApplied::Failed(error.to_string()),
    }
}
