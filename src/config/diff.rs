//! What changed between the moat.yaml in force and a newly loaded one, and which of the
//! changes a running moat can take.
//!
//! What it owns: [`diff`], the one list of which settings apply live and which need a restart.
//! Why it is separate: `moat ctl reload` and SIGHUP must report every change, never drop one
//! silently, and that list is easiest to keep honest as one pure function with a test per
//! field. What it must not do: apply anything (`cli/run.rs` does, through the server's handles).
//!
//! Live: `limits.max_keepalive` (for sessions that connect from now on), `timeouts.connect`
//! and `timeouts.upstream_connect` (likewise), `drain.*`, `log.level` (unless `RUST_LOG` is
//! set, which wins). Files are read again on every reload whatever this list says: the `tls:`
//! files, the admin token file and `broker.upstream`'s password and TLS files (the files, not
//! their paths). Everything else needs a
//! restart: sockets are bound (the admin listener's address and TLS too), the broker started,
//! the descriptor plan made, the watchers set, the log format chosen.

use super::{AdminBind, Config};

/// The changed settings, by whether they apply without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Changed and applied live.
    pub live: Vec<&'static str>,
    /// Changed, but only a restart applies them.
    pub restart: Vec<&'static str>,
}

/// Compares the running configuration with a new one.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    let mut check = |changed: bool, field: &'static str, live: bool| {
        if changed {
            match live {
                true => d.live.push(field),
                false => d.restart.push(field),
            }
        }
    };
    // A setting's name in the report is its path in the file, taken from the field's path.
    macro_rules! setting {
        ($first:ident $(. $rest:ident)*, $live:expr) => {
            check(
                old.$first$(.$rest)* != new.$first$(.$rest)*,
                concat!(stringify!($first) $(, ".", stringify!($rest))*),
                $live,
            )
        };
    }
    // The embedded broker was started with it: a larger one would pass packets it refuses.
    setting!(limits.max_packet_size, false);
    setting!(limits.max_keepalive, true);
    setting!(limits.max_connections, false);
    setting!(timeouts.connect, true);
    setting!(timeouts.upstream_connect, true);
    setting!(timeouts.tls_handshake, false);
    setting!(timeouts.shutdown_grace, false);
    setting!(drain.period, true);
    setting!(drain.server_reference, true);
    setting!(listeners, false);
    setting!(broker, false);
    setting!(tls, false);
    setting!(policies, false);
    // Like `policies:`: the watchers were set on the folders named at start.
    setting!(shadow_policies, false);
    setting!(passwords, false);
    setting!(log.level, true);
    // The subscriber's formatter is built once; only its filter has a reload handle.
    setting!(log.format, false);
    setting!(dev_certs, false);
    match (&old.admin, &new.admin) {
        (Some(o), Some(n)) => {
            let bind = match n.bind {
                AdminBind::Tcp(_) => "admin.listen",
                AdminBind::Unix(_) => "admin.unix",
            };
            check(o.bind != n.bind, bind, false);
            check(o.tls != n.tls, "admin.tls", false);
            // Its contents are read again on reload; another path needs a restart.
            check(o.token_file != n.token_file, "admin.token_file", false);
            check(
                o.max_connections != n.max_connections,
                "admin.max_connections",
                false,
            );
        }
        (o, n) => check(o != n, "admin", false),
    }
    // Whatever a later setting adds: a field not named above is reported, never ignored.
    let mut rest = new.clone();
    rest.limits = old.limits;
    rest.timeouts = old.timeouts;
    rest.drain = old.drain.clone();
    rest.listeners = old.listeners.clone();
    rest.broker = old.broker.clone();
    rest.tls = old.tls.clone();
    rest.policies = old.policies.clone();
    rest.shadow_policies = old.shadow_policies.clone();
    rest.passwords = old.passwords;
    rest.log = old.log.clone();
    rest.dev_certs = old.dev_certs;
    rest.admin = old.admin.clone();
    check(rest != *old, "other settings", false);
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn limits_timeouts_and_drain_are_live_listeners_need_a_restart() {
        let old = Config::default_for_dir(Path::new("."));
        assert_eq!(diff(&old, &old), ConfigDiff::default());
        let mut new = old.clone();
        new.limits.max_keepalive = 30;
        new.timeouts.connect = Duration::from_secs(3);
        new.drain.period = Duration::from_secs(5);
        new.listeners[0].bind.set_port(1);
        new.limits.max_connections = 7;
        let d = diff(&old, &new);
        assert_eq!(
            d.live,
            ["limits.max_keepalive", "timeouts.connect", "drain.period"]
        );
        assert_eq!(d.restart, ["limits.max_connections", "listeners"]);
    }

    #[test]
    fn a_setting_named_above_is_reported_once_not_again_as_other_settings() {
        let old = Config::default_for_dir(Path::new("."));
        let mut new = old.clone();
        new.shadow_policies = vec!["candidate/".into()];
        assert_eq!(diff(&old, &new).restart, ["shadow_policies"]);
    }

    #[test]
    fn the_log_level_is_live_the_format_and_admin_listener_need_a_restart() {
        let old = Config::default_for_dir(Path::new("."));
        let mut new = old.clone();
        new.log.level = "debug".into();
        new.log.format = crate::config::LogFormat::Json;
        let admin = new.admin.as_mut().unwrap();
        admin.token_file = Some("token".into());
        admin.bind = AdminBind::Unix("admin.sock".into());
        let d = diff(&old, &new);
        assert_eq!(d.live, ["log.level"]);
        assert_eq!(d.restart, ["log.format", "admin.unix", "admin.token_file"]);
        new.admin = None;
        assert_eq!(diff(&old, &new).restart, ["log.format", "admin"]);
    }
}
