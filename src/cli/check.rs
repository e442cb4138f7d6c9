//! `moat check`: validate moat.yaml and the policy files without starting anything.
//!
//! Loads both through `ops::load` exactly as `moat run` does, prints a short summary (listeners,
//! broker, TLS mode, policy files, users, anonymous access) with warnings for setups that admit
//! nobody or lack TLS files, and fails with the `FILE:LINE:COLUMN: message` of the first error.
//! It then runs the policy's own test cases (`tests:` in policy files) and fails if any decision
//! differs from the expected one, naming the case's place. Opens no sockets and writes no files.

use std::path::PathBuf;

use anyhow::bail;

use crate::config::{BrokerSettings, ClientCerts, Config};
use crate::ops::load;
use crate::policy::Policy;

/// Arguments of `moat check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Path of the configuration file.
    #[arg(short, long, default_value = "moat.yaml")]
    pub config: PathBuf,
}

/// Validates the configuration and policies and prints a summary; an error means a non-zero exit.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = load::load_config(&args.config)?;
    let policy = load::load_policy(&cfg)?;
    let missing = load::missing_tls_files(&cfg);
    print!("{}", report(&args.config, &cfg, &policy, &missing));
    let (cases, failed) = cases(&policy);
    print!("{cases}");
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    if !missing.is_empty() && !cfg.dev_certs {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{}: TLS files not found and dev_certs is off: {}",
            args.config.display(),
            list.join(", ")
        );
    }
    Ok(())
}

/// The summary text, one item per line (separate from printing so tests can read it).
fn report(path: &std::path::Path, cfg: &Config, policy: &Policy, missing: &[PathBuf]) -> String {
    let mut lines = vec![format!("{}: ok", path.display())];
    for listener in &cfg.listeners {
        lines.push(format!(
            "  listener  {} ({}) on {}",
            listener.name,
            listener.kind.as_str(),
            listener.bind
        ));
    }
    lines.push(format!("  broker    {}", broker(&cfg.broker)));
    lines.push(format!("  tls       {}", tls(cfg)));
    let files = policy.files();
    if files.is_empty() {
        lines.push("  policies  (no policy files)".to_owned());
    }
    for file in files {
        lines.push(format!("  policy    {}", file.display()));
    }
    for warning in policy.warnings() {
        lines.push(format!("  warning   {warning}"));
    }
    let summary = policy.summary();
    lines.push(format!("  summary   {summary}"));
    lines.push(format!(
        "  acl       {} rule(s), first match wins, no match = deny",
        policy.acl_rules()
    ));
    let certs_admit = cfg.tls.cert_identity && cfg.tls.client_certs != ClientCerts::None;
    if summary.admits_nobody() {
        lines.push(if certs_admit {
            "warning: no users and anonymous off: only clients with a verified certificate can connect".to_owned()
        } else {
            "warning: the policy admits nobody (no users, anonymous off, no certificate identities)".to_owned()
        });
    }
    for file in missing {
        let note = if cfg.dev_certs {
            "moat run will create a development certificate"
        } else {
            "missing"
        };
        lines.push(format!("warning: {} not found: {note}", file.display()));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Runs the policy test cases: the report, and how many failed.
fn cases(policy: &Policy) -> (String, usize) {
    let outcomes = policy.run_cases();
    if outcomes.is_empty() {
        return (String::new(), 0);
    }
    let mut text = String::new();
    let mut failed = 0;
    for o in outcomes.iter().filter(|o| !o.passed()) {
        failed += 1;
        let expected = match o.case.expect {
            crate::policy::Verdict::Allow => "allow",
            crate::policy::Verdict::Deny => "deny",
        };
        text.push_str(&format!(
            "{}: policy test failed: {} {:?} as {:?}: expected {expected}, got {}\n",
            o.case.at, o.case.action, o.case.topic, o.case.subject.name, o.got
        ));
    }
    text.push_str(&format!(
        "  tests     {} passed, {failed} failed\n",
        outcomes.len() - failed
    ));
    (text, failed)
}

fn broker(broker: &BrokerSettings) -> String {
    match broker {
        BrokerSettings::Embedded {
            bind,
            bind_v5,
            max_connections,
        } => format!(
            "embedded on {bind} (MQTT 3.1.1) and {bind_v5} (MQTT 5), up to {max_connections} connections"
        ),
        BrokerSettings::Upstream { v3, v5 } => {
            format!("upstream {v3} (MQTT 3.1.1) and {v5} (MQTT 5)")
        }
    }
}

fn tls(cfg: &Config) -> String {
    let tls = &cfg.tls;
    let mut text = format!(
        "client certificates {}, TLS {} and up",
        tls.client_certs.as_str(),
        tls.min_version.as_str()
    );
    if tls.client_certs != ClientCerts::None {
        if tls.cert_identity {
            text.push_str(", certificate CN is the identity");
        }
        if tls.username_must_match_cert {
            text.push_str(", username must match CN");
        }
        if !tls.crls.is_empty() {
            text.push_str(&format!(", {} CRL file(s)", tls.crls.len()));
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn report_of_the_default_config_mentions_everything() {
        let cfg = Config::default_for_dir(std::path::Path::new(""));
        let policy = Policy::deny_all();
        let text = report(std::path::Path::new("moat.yaml"), &cfg, &policy, &[]);
        assert!(
            text.contains("listener  mqtts (tls) on 127.0.0.1:8883"),
            "{text}"
        );
        assert!(text.contains("embedded on 127.0.0.1:1883"), "{text}");
        assert!(text.contains("client certificates optional"), "{text}");
        assert!(
            text.contains("only clients with a verified certificate"),
            "{text}"
        );
    }

    #[test]
    fn report_lists_policy_warnings() {
        let sources = [crate::policy::PolicySource {
            path: "p.yaml".into(),
            text: "password_file: passwd\n".into(),
        }];
        // mosquitto_passwd -H sha512: bob / hunter2.
        let passwd = [crate::policy::PolicySource {
            path: "passwd".into(),
            text: "bob:$6$Jc9q7TamKLWtVnrQ$uQ4zY7S6v9GBl3TVWI64Al82H4HXZDlhAXjQ57Tv6YiDq03lFNLopEHrQ7AwuJspqslSZL3+GiekAXhe+iibBQ==\n".into(),
        }];
        let policy = crate::policy::compile_with_files(&sources, &passwd).unwrap();
        let cfg = Config::default_for_dir(std::path::Path::new(""));
        let text = report(std::path::Path::new("moat.yaml"), &cfg, &policy, &[]);
        assert!(
            text.contains("  warning   passwd:1:1: user 'bob' has a $6$"),
            "{text}"
        );
    }

    #[test]
    fn run_fails_with_the_error_location() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.yaml");
        std::fs::write(&path, "listeners:\n  - { name: m, kind: tls, bnd: x }\n").unwrap();
        let err = run(Args {
            config: path.clone(),
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}:2:", path.display())),
            "{text}"
        );
        assert!(text.contains("unknown field 'bnd'"), "{text}");
    }
}
