//! Reloading moat.yaml as far as a running server can take it, with the policy and the TLS
//! material: what SIGHUP and `moat ctl reload` do (`cli/run.rs` decides when).
//!
//! Why it is here and not in `ops/reload.rs`: it applies settings through the server's own
//! handles (the sessions' settings, the drain period, the registry that makes live sessions
//! look at new bans); `ops/reload.rs` keeps the policy and TLS steps, which take only the
//! handle they swap.

use std::path::Path;

use super::Running;
use crate::config::{self, Config};
use crate::control::ReloadReport;
use crate::ops::load;
use crate::ops::reload::{reload, reload_tls};
use crate::stats::ReloadKind;

// === impl Running ===

impl Running {
    /// Reloads everything SIGHUP and `moat ctl reload` reload: moat.yaml at `path` (the settings
    /// `config::diff` calls live are applied, each one that needs a restart is logged at WARN and
    /// reported; a broken file is refused with file:line:column and `config` stays), then the
    /// policy (live sessions look at its bans at once) and the TLS material. `config` is the
    /// configuration in force; its live fields are updated.
    pub fn reload_all(&self, config: &mut Config, path: &Path, trigger: &str) -> ReloadReport {
        let mut report = ReloadReport {
            ok: true,
            ..ReloadReport::default()
        };
        match load::load_config(path) {
            Ok(new) => {
                let diff = config::diff(config, &new);
                for field in &diff.restart {
                    tracing::warn!(
                        trigger,
                        field,
                        "moat.yaml: {field} changed but needs a restart; the running value stays"
                    );
                }
                if !diff.live.is_empty() {
                    config.limits.max_keepalive = new.limits.max_keepalive;
                    config.timeouts.connect = new.timeouts.connect;
                    config.timeouts.upstream_connect = new.timeouts.upstream_connect;
                    config.drain = new.drain.clone();
                    self.apply_settings(config);
                    tracing::info!(trigger, applied = ?diff.live, "moat.yaml reloaded");
                }
                report.applied = diff.live.iter().map(|f| f.to_string()).collect();
                report.restart_needed = diff.restart.iter().map(|f| f.to_string()).collect();
            }
            Err(error) => {
                tracing::error!(trigger, %error, "moat.yaml reload refused; keeping the running configuration");
                report.config_error = Some(error.to_string());
                report.ok = false;
            }
        }
        let policy = reload(self.policy(), config, trigger);
        self.record_reload(ReloadKind::Policy, policy.is_ok());
        report.policy = match policy {
            Ok(summary) => {
                self.control().recheck_sessions();
                summary.to_string()
            }
            Err(error) => {
                // Only the shadow set refused: the enforced set changed all the same.
                if crate::ops::reload::enforced_applied(&error) {
                    self.control().recheck_sessions();
                }
                report.ok = false;
                format!("refused: {error}")
            }
        };
        let tls = reload_tls(self.tls(), trigger);
        self.record_reload(ReloadKind::Tls, tls.is_ok());
        report.tls = match tls {
            Ok(summary) => summary.to_string(),
            Err(error) => {
                report.ok = false;
                format!("refused: {error}")
            }
        };
        report
    }
}
