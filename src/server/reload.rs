//! Reloading moat.yaml as far as a running server can take it, with the policy and the TLS
//! material: what SIGHUP and `moat ctl reload` do (`cli/run.rs` decides when).
//!
//! Why it is here and not in `ops/reload.rs`: it applies settings through the server's own
//! handles (the sessions' settings, the drain period, the registry that makes live sessions
//! look at new bans); `ops/reload.rs` keeps the policy and TLS steps, which take only the
//! handle they swap.

use std::path::Path;

use super::Running;
use crate::admin::Reread;
use crate::config::{self, BrokerSettings, Config};
use crate::control::ReloadReport;
use crate::ops::load;
use crate::ops::logging::{self, LevelApplied};
use crate::ops::reload::{reload, reload_tls};
use crate::stats::ReloadKind;

// === impl Running ===

impl Running {
    /// Reloads everything SIGHUP and `moat ctl reload` reload: moat.yaml at `path` (the settings
    /// `config::diff` calls live are applied, each one that needs a restart is logged at WARN and
    /// reported; a broken file is refused with file:line:column and `config` stays), then the
    /// policy (live sessions look at its bans at once), the TLS material, the admin token file
    /// and the external broker's password and TLS files (a file that cannot be read keeps what
    /// runs). `config` is the
    /// configuration in force; its live fields are updated.
    pub fn reload_all(&self, config: &mut Config, path: &Path, trigger: &str) -> ReloadReport {
        let mut report = ReloadReport {
            ok: true,
            ..ReloadReport::default()
        };
        let loaded = load::load_config(path);
        self.record_reload(ReloadKind::Config, loaded.is_ok());
        match loaded {
            Ok(new) => {
                let diff = config::diff(config, &new);
                for field in &diff.restart {
                    tracing::warn!(
                        trigger,
                        field,
                        "moat.yaml: {field} changed but needs a restart; the running value stays"
                    );
                }
                let mut applied: Vec<String> = diff.live.iter().map(|f| f.to_string()).collect();
                if !diff.live.is_empty() {
                    config.limits.max_keepalive = new.limits.max_keepalive;
                    config.timeouts.connect = new.timeouts.connect;
                    config.timeouts.upstream_connect = new.timeouts.upstream_connect;
                    config.drain = new.drain.clone();
                    self.apply_settings(config);
                }
                if diff.live.contains(&"log.level") {
                    let running = std::mem::replace(&mut config.log.level, new.log.level.clone());
                    if let Some((why, kept)) = apply_log_level(config, trigger) {
                        if kept {
                            config.log.level = running;
                        }
                        applied.retain(|f| f != "log.level");
                        report.ignored.push(why);
                    }
                }
                if !applied.is_empty() {
                    tracing::info!(trigger, ?applied, "moat.yaml reloaded");
                }
                report.applied = applied;
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
        if let Some(token) = self.admin_token() {
            let reread = token.reread();
            self.record_reload(ReloadKind::AdminToken, reread.is_ok());
            report.admin_token = Some(match reread {
                Ok(Reread::Replaced) => {
                    tracing::info!(trigger, "admin token replaced from admin.token_file");
                    "replaced (in force from the next request)".to_owned()
                }
                Ok(Reread::Unchanged) => "unchanged".to_owned(),
                Err(error) => {
                    tracing::error!(trigger, %error, "admin token reload refused; keeping the running token");
                    report.ok = false;
                    format!("refused, running token kept: {error}")
                }
            });
        }
        if let BrokerSettings::Upstream(upstream) = &config.broker {
            let reloaded = self.broker().reload_secrets(upstream);
            self.record_reload(ReloadKind::UpstreamFiles, reloaded.is_ok());
            report.upstream_files = Some(match reloaded {
                Ok(()) => {
                    tracing::info!(trigger, "broker.upstream password and TLS files reloaded");
                    "reloaded (the next broker connection uses them)".to_owned()
                }
                Err(error) => {
                    tracing::error!(trigger, %error, "broker.upstream files reload refused; keeping the running ones");
                    report.ok = false;
                    format!("refused, running ones kept: {error}")
                }
            });
        }
        report
    }
}

/// Puts the reloaded `config.log.level` in force; when it cannot be, logs why and returns it
/// for the report (the level is then not among the settings applied), and whether the running
/// filter stayed because the new one failed (the next reload then tries again).
fn apply_log_level(config: &Config, trigger: &str) -> Option<(String, bool)> {
    let level = config.log.level.as_str();
    let why = match logging::apply(&config.log) {
        LevelApplied::Applied => {
            tracing::info!(trigger, level, "log level changed");
            return None;
        }
        LevelApplied::EnvWins => {
            "log.level changed but RUST_LOG is set and wins; the file's level is ignored".to_owned()
        }
        LevelApplied::NotInstalled => {
            "log.level changed but this process's logging is not moat's own; ignored".to_owned()
        }
        LevelApplied::Failed(error) => {
            let why = format!("log.level could not be applied, running filter kept: {error}");
            tracing::error!(trigger, level, "{why}");
            return Some((why, true));
        }
    };
    tracing::warn!(trigger, level, "{why}");
    Some((why, false))
}
