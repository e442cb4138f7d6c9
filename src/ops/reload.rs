//! Hot reload: on SIGHUP or when a watched file changes, load the policy set or the TLS
//! material again and swap it in atomically; anything with an error is refused and what runs
//! stays.
//!
//! What it owns: [`reload`] (policy: load + swap + one log line saying what happened),
//! [`reload_tls`] (the same for the `tls:` files: server certificate and key, client CA, CRLs),
//! and the watchers ([`PolicyWatcher`], [`TlsWatcher`]: file-change events, debounced). Why it
//! is separate: `cli/run.rs` decides *when* to reload (signals, the watchers); this file decides
//! *how*, so tests drive the same code.
//!
//! The watchers watch *folders* (the policy folders, the folder of each policy file, the folder
//! of each TLS file), not files: editors, certificate tools and Kubernetes ConfigMaps or Secrets
//! replace files by rename or symlink swap, which a watch on the old inode never sees. Events
//! arrive on notify's own thread and are passed on through a one-slot channel (`try_send`: a
//! burst of events is one pending reload, never a queue); `changed` then waits for [`DEBOUNCE`]
//! of quiet, so a save that writes a file in several steps is loaded once, complete. (A
//! certificate and its key written further apart than that are two reloads: the first may find
//! them mismatched, is refused with that reason, and the second puts the pair in force.)

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::ops::load::{self, LoadError};
use crate::policy::{Policy, PolicySummary};
use crate::transport::{MaterialError, TlsState, TlsSummary};

/// Quiet time after the last file event before the files are loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Compiles the policy files `config` names and, if they compile, makes them the policy in
/// force in `policy` (the server's handle: `Running::policy`); live sessions use it from their
/// next packet on. On error the running policy stays. Either way one log line says what
/// happened and why (`trigger`).
///
/// The shadow set (`shadow_policies:`) is reloaded with it but can never hold the enforced set
/// back: when only the shadow set is broken, the enforced set is put in force with the running
/// shadow set, the error is logged with its file:line, and [`LoadError::Shadow`] is returned
/// (see [`enforced_applied`]).
pub fn reload(
    policy: &ArcSwap<Policy>,
    config: &Config,
    trigger: &str,
) -> Result<PolicySummary, LoadError> {
    match load::load_enforced(config) {
        Ok(new) => {
            let (shadow, refused) = match load::load_shadow(config) {
                Ok(shadow) => (shadow, None),
                Err(error) => {
                    tracing::error!(
                        trigger,
                        %error,
                        "shadow policy reload refused; keeping the running shadow set"
                    );
                    (policy.load().shadow().cloned(), Some(error))
                }
            };
            let new = new.with_shadow(shadow);
            let summary = new.summary();
            let rules = new.acl_rules();
            let shadow_rules = new.shadow().map(|s| s.acl_rules());
            for warning in new.warnings() {
                tracing::warn!(trigger, "{warning}");
            }
            policy.store(std::sync::Arc::new(new));
            tracing::info!(trigger, %summary, rules, ?shadow_rules, "policy reloaded");
            match refused {
                None => Ok(summary),
                Some(error) => Err(error),
            }
        }
        Err(error) => {
            // A broken file must never widen or drop access: the old snapshot stays in force.
            tracing::error!(trigger, %error, "policy reload refused; keeping the running policy");
            Err(error)
        }
    }
}

/// Whether a [`reload`] that returned `error` still put a new enforced set in force (only the
/// shadow set was refused), so live sessions must be checked against it.
pub fn enforced_applied(error: &LoadError) -> bool {
    matches!(error, LoadError::Shadow(_))
}

/// Loads the `tls:` files again and, if every one loads, serves the next handshake on every
/// listener with them (`tls`: the server's handle, `Running::tls`); live sessions whose client
/// certificate a new CRL revokes are ended. On error the running material stays. Either way
/// one log line says what happened, and why (`trigger`); an error names the file.
pub fn reload_tls(tls: &TlsState, trigger: &str) -> Result<TlsSummary, MaterialError> {
    match tls.reload() {
        Ok(summary) => {
            tracing::info!(
                trigger,
                %summary,
                revocations_changed = summary.revocations_changed,
                "TLS material reloaded"
            );
            Ok(summary)
        }
        Err(error) => {
            // A broken file must not take a listener down or drop a CRL: all stays as it was.
            tracing::error!(
                trigger,
                %error,
                "TLS reload refused; keeping the running certificates, CA and CRLs"
            );
            Err(error)
        }
    }
}

/// Events from watched folders, filtered, through a one-slot channel.
struct FolderWatch {
    /// Kept alive for as long as events are wanted; dropping it stops notify's thread.
    _watcher: RecommendedWatcher,
    /// One pending "something changed".
    events: mpsc::Receiver<()>,
}

// === impl FolderWatch ===

impl FolderWatch {
    fn start(
        dirs: &[PathBuf],
        relevant: impl Fn(&Path) -> bool + Send + 'static,
    ) -> Result<FolderWatch, notify::Error> {
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Reads are not changes (moat's own reload reads the files).
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                if event.paths.iter().any(|p| relevant(p)) {
                    // Full means a reload is already pending: this event is part of it.
                    let _ = tx.try_send(());
                }
            })?;
        for dir in dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        Ok(FolderWatch {
            _watcher: watcher,
            events,
        })
    }

    async fn changed(&mut self) -> Option<()> {
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

/// Watches the folders that hold the policy files.
pub struct PolicyWatcher(FolderWatch);

// === impl PolicyWatcher ===

impl PolicyWatcher {
    /// Starts watching every folder `config.policies` and `config.shadow_policies` name, and
    /// the folder of every file they name.
    pub fn start(config: &Config) -> Result<PolicyWatcher, notify::Error> {
        let entries = [&config.policies[..], &config.shadow_policies[..]].concat();
        FolderWatch::start(&folders(&entries), is_policy_like).map(PolicyWatcher)
    }

    /// Waits for a change, then for [`DEBOUNCE`] without further changes. `None` when the
    /// watcher has stopped.
    pub async fn changed(&mut self) -> Option<()> {
        self.0.changed().await
    }
}

/// Watches the folders that hold the `tls:` files (certificate, key, client CA, CRLs).
pub struct TlsWatcher(FolderWatch);

// === impl TlsWatcher ===

impl TlsWatcher {
    /// Starts watching the folder of every TLS file `config` names.
    pub fn start(config: &Config) -> Result<TlsWatcher, notify::Error> {
        let files = tls_files(config);
        let names: HashSet<OsString> = files
            .iter()
            .filter_map(|f| f.file_name().map(ToOwned::to_owned))
            .collect();
        let relevant = move |path: &Path| match path.file_name() {
            Some(name) => names.contains(name) || name.to_string_lossy().starts_with(".."),
            None => false,
        };
        FolderWatch::start(&folders(&files), relevant).map(TlsWatcher)
    }

    /// Waits for a change, then for [`DEBOUNCE`] without further changes. `None` when the
    /// watcher has stopped.
    pub async fn changed(&mut self) -> Option<()> {
        self.0.changed().await
    }
}

/// Every file of the `tls:` section.
fn tls_files(config: &Config) -> Vec<PathBuf> {
    let tls = &config.tls;
    [&tls.cert, &tls.key]
        .into_iter()
        .chain(tls.client_ca.as_ref())
        .chain(&tls.crls)
        .cloned()
        .collect()
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

/// Changes to YAML files, and Kubernetes ConfigMap swaps (`..data`); not editor swap files.
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
