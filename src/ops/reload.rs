//! Policy hot reload: on SIGHUP or when a policy file changes, compile the whole policy set
//! again and swap it in atomically; a set with an error is refused and the old policy stays.
//!
//! What it owns: [`reload`] (load + swap + one log line saying what happened) and
//! [`PolicyWatcher`] (file-change events, debounced). Why it is separate: `cli/run.rs` decides
//! *when* to reload (signals, the watcher); this file decides *how*, so tests drive the same code.
//!
//! The watcher watches *folders* (the policy folders, and the folder of each policy file), not
//! files: editors and Kubernetes ConfigMaps replace files by rename or symlink swap, which a
//! watch on the old inode never sees. Events arrive on notify's own thread and are passed on
//! through a one-slot channel (`try_send`: a burst of events is one pending reload, never a
//! queue); [`PolicyWatcher::changed`] then waits for [`DEBOUNCE`] of quiet, so a save that
//! writes a file in several steps is compiled once, complete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::ops::load::{self, LoadError};
use crate::policy::PolicySummary;
use crate::server::Running;

/// Quiet time after the last file event before the policy is compiled.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Compiles the policy files `config` names and, if they compile, makes them the policy in
/// force; live sessions use it from their next packet on. On error the running policy stays.
/// Either way one log line says what happened and why (`trigger`).
pub fn reload(
    running: &Running,
    config: &Config,
    trigger: &str,
) -> Result<PolicySummary, LoadError> {
    match load::load_policy(config) {
        Ok(policy) => {
            let summary = policy.summary();
            let rules = policy.acl_rules();
            for warning in policy.warnings() {
                tracing::warn!(trigger, "{warning}");
            }
            running.reload_policy(policy);
            tracing::info!(trigger, %summary, rules, "policy reloaded");
            Ok(summary)
        }
        Err(error) => {
            // A broken file must never widen or drop access: the old snapshot stays in force.
            tracing::error!(trigger, %error, "policy reload refused; keeping the running policy");
            Err(error)
        }
    }
}

/// Watches the folders that hold the policy files.
pub struct PolicyWatcher {
    /// Kept alive for as long as events are wanted; dropping it stops notify's thread.
    _watcher: RecommendedWatcher,
    /// One pending "something changed".
    events: mpsc::Receiver<()>,
}

// === impl PolicyWatcher ===

impl PolicyWatcher {
    /// Starts watching every folder `config.policies` names, and the folder of every file it
    /// names.
    pub fn start(config: &Config) -> Result<PolicyWatcher, notify::Error> {
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if relevant(&event) {
                        // Full means a reload is already pending: this event is part of it.
                        let _ = tx.try_send(());
                    }
                }
            })?;
        for dir in folders(&config.policies) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        }
        Ok(PolicyWatcher {
            _watcher: watcher,
            events,
        })
    }

    /// Waits for a change, then for [`DEBOUNCE`] without further changes. `None` when the
    /// watcher has stopped.
    pub async fn changed(&mut self) -> Option<()> {
        self.events.recv().await?;
        loop {
            match tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
                Err(_) => return Some(()),
                Ok(None) => return None,
                Ok(Some(())) => {}
            }
        }
    }
}

/// The folders to watch: each policy folder, and the parent of each policy file.
fn folders(entries: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let dir = if entry.is_dir() {
            entry.clone()
        } else {
            match entry.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Changes to YAML files, and Kubernetes ConfigMap swaps (`..data`); not reads (moat's own
/// reload reads the files) and not editor swap files.
fn relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| is_policy_like(p))
}

fn is_policy_like(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with("..") {
        return true;
    }
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn only_policy_files_and_configmap_swaps_count() {
        for (path, want) in [
            ("policies/a.yaml", true),
            ("policies/a.yml", true),
            ("policies/..data", true),
            ("policies/.a.yaml.swp", false),
            ("policies/a.yaml~", false),
            ("policies/notes.txt", false),
        ] {
            assert_eq!(is_policy_like(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn files_are_watched_through_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "").unwrap();
        let sub = dir.path().join("more");
        std::fs::create_dir(&sub).unwrap();
        let got = folders(&[file.clone(), sub.clone(), file]);
        assert_eq!(got, vec![dir.path().to_path_buf(), sub]);
        assert_eq!(
            folders(&[PathBuf::from("p.yaml")]),
            vec![PathBuf::from(".")]
        );
    }
}
