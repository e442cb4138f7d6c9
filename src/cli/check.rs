//! `moat check`: validate moat.yaml and the policy files without starting anything.
//!
//! Loads both through `ops::load` exactly as `moat run` does, prints a short summary (listeners,
//! broker, TLS mode, policy files, users, anonymous access) with warnings for setups that admit
//! nobody or lack TLS files, and fails with the `FILE:LINE:COLUMN: message` of the first error.
//! It then runs the policy's own test cases (`tests:` in policy files) and fails if any decision
//! differs from the expected one, naming the case's place. Last it loads the TLS files as
//! `moat run` would (a CRL file without a CRL, a key that does not fit its certificate: an error
//! naming the file) and lists each CRL, warning about expired ones. Opens no sockets and writes
//! no files.

use super::out::say;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::config::{BrokerSettings, ClientCerts, Config, CrlExpired, TransportKind};
use crate::ops::{fds, load, sizing};
use crate::policy::Policy;
use crate::transport::tls::{CrlLine, Material, Profile};

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
    say(report(&args.config, &cfg, &policy, &missing))?;
    let limits = fds::limits().ok();
    for line in descriptors(&cfg, limits) {
        say(format_args!("{line}\n"))?;
    }
    say(format_args!("{}\n", memory(&cfg, &policy, limits)))?;
    let (cases, failed) = cases(&policy);
    say(cases)?;
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    // The candidate set's own `tests:` say what it is meant to decide: run them too.
    if let Some(shadow) = policy.shadow() {
        let (cases, failed) = self::cases(shadow);
        say(cases)?;
        if failed > 0 {
            bail!("{failed} shadow policy test(s) failed");
        }
    }
    if !missing.is_empty() && !cfg.dev_certs {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{}: TLS files not found and dev_certs is off: {}",
            args.config.display(),
            list.join(", ")
        );
    }
    if missing.is_empty() {
        for line in tls_material(&cfg)? {
            say(format_args!("{line}\n"))?;
        }
    }
    if let Some(admin) = &cfg.admin {
        crate::admin::load_files(admin)?;
    }
    Ok(())
}

/// Loads the `tls:` files as `moat run` does (every listener's configuration is built) and
/// describes the CRLs. An error names the file: a CRL file without a CRL in it, a key that
/// does not belong to the certificate, … Nothing to load when no listener uses TLS.
fn tls_material(cfg: &Config) -> anyhow::Result<Vec<String>> {
    let tls_listeners: Vec<_> = cfg
        .listeners
        .iter()
        .filter(|l| l.kind != TransportKind::Ws)
        .collect();
    if tls_listeners.is_empty() {
        return Ok(Vec::new());
    }
    let material = Material::load(&cfg.tls)?;
    for l in tls_listeners {
        material
            .server_config(&l.tls(&cfg.tls), Profile::Mqtt)
            .with_context(|| format!("listener {}", l.name))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok(crl_lines(&material.crl_report(now), material.crl_expired()))
}

/// One line per CRL, and a warning for each one past its nextUpdate.
fn crl_lines(crls: &[CrlLine], policy: CrlExpired) -> Vec<String> {
    let mut lines = Vec::new();
    for crl in crls {
        lines.push(format!(
            "  crl       {}: {} revoked by {}, next update {}",
            crl.path.display(),
            crl.revoked,
            crl.issuer,
            crl.next_update
        ));
    }
    for crl in crls.iter().filter(|c| c.expired) {
        let effect = match policy {
            CrlExpired::Warn => "still used (tls.crl_expired: warn)",
            CrlExpired::Refuse => {
                "client certificates of this issuer are refused (tls.crl_expired: refuse)"
            }
        };
        lines.push(format!(
            "warning: {}: CRL past its nextUpdate ({}); {effect}",
            crl.path.display(),
            crl.next_update
        ));
    }
    lines
}

/// The admin listener in one phrase.
fn admin(admin: Option<&crate::config::AdminSettings>) -> String {
    use crate::config::AdminBind;
    let Some(admin) = admin else {
        return "off".to_owned();
    };
    let token = match admin.token_file {
        Some(_) => ", bearer token",
        None => "",
    };
    match (&admin.bind, &admin.tls) {
        (AdminBind::Tcp(addr), None) => format!("http on {addr}{token}"),
        (AdminBind::Tcp(addr), Some(_)) => format!("https on {addr}{token}"),
        (AdminBind::Unix(path), _) => format!("unix socket {}{token}", path.display()),
    }
}

/// The summary text, one item per line (separate from printing so tests can read it).
fn report(path: &std::path::Path, cfg: &Config, policy: &Policy, missing: &[PathBuf]) -> String {
    let mut lines = vec![format!("{}: ok", path.display())];
    for listener in &cfg.listeners {
        // Behind a balancer the operator must see at a glance whose header is believed.
        let proxy = listener.proxy.as_ref().map_or(String::new(), |p| {
            let trusted: Vec<String> = p.trusted.iter().map(ToString::to_string).collect();
            format!(
                ", PROXY protocol {} from {}",
                p.version.as_str(),
                trusted.join(", ")
            )
        });
        lines.push(format!(
            "  listener  {} ({}) on {}{proxy}",
            listener.name,
            listener.kind.as_str(),
            listener.bind
        ));
    }
    lines.push(format!("  admin     {}", admin(cfg.admin.as_ref())));
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
    lines.push(format!("  overlap   {}", policy.subscribe_overlap()));
    if let Some(shadow) = policy.shadow() {
        for file in shadow.files() {
            lines.push(format!("  shadow    {}", file.display()));
        }
        lines.push(format!(
            "  shadow    {} rule(s), {}; judged beside the policy on live traffic, never enforced",
            shadow.acl_rules(),
            shadow.summary()
        ));
    }
    lines.extend(guard_lines(cfg, policy));
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

/// The file descriptor budget under this shell's limits (`limits`: soft, hard), judged as
/// `moat run` would after raising the soft limit to the hard one. Warnings only: the service
/// may run under other limits (systemd's LimitNOFILE=) than the shell that checks its config.
fn descriptors(cfg: &Config, limits: Option<(u64, u64)>) -> Vec<String> {
    let demand = fds::Demand::of(cfg);
    let Some((soft, hard)) = limits else {
        return vec!["warning: cannot read the file descriptor limit".to_owned()];
    };
    let limit = if soft == hard {
        format!("limit {hard}")
    } else {
        format!("limit {hard} (soft {soft} here; moat run raises it to the hard limit)")
    };
    let mut lines = vec![format!(
        "  fds       {} connections × {} + {} reserved = {} descriptors, {limit}",
        demand.max_connections,
        demand.per_connection,
        fds::RESERVE,
        demand.needed()
    )];
    match fds::plan(demand, hard) {
        Ok(plan) => lines.extend(plan.warning().map(|w| format!("warning: {w}"))),
        Err(e) => lines.push(format!(
            "warning: under these limits moat run would refuse to start: {e}"
        )),
    }
    lines
}

/// The memory `moat run` will need idle and at its connection cap (`ops::sizing`), with the cap
/// it would admit under these descriptor limits.
fn memory(cfg: &Config, policy: &Policy, limits: Option<(u64, u64)>) -> String {
    let demand = fds::Demand::of(cfg);
    let cap = limits
        .and_then(|(_, hard)| fds::plan(demand, hard).ok())
        .map_or(demand.max_connections, |plan| plan.max_connections);
    let blocks = policy.password_memory_blocks() as u64;
    let estimate = sizing::Estimate::of(cfg, cap, crate::authn::verifiers(), blocks);
    format!("  memory    {estimate}")
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

/// Network rules, static bans, automatic bans and limits (the network guard).
fn guard_lines(cfg: &Config, policy: &Policy) -> Vec<String> {
    let mut lines = Vec::new();
    let network = policy.network_summary();
    lines.push(format!("  network   {network}"));
    let now = std::time::SystemTime::now();
    for ban in policy.static_bans() {
        let state = if ban.active_at(now) { "" } else { " (expired)" };
        lines.push(format!("  ban       {ban}{state}"));
    }
    let auto = policy.auto_ban();
    let trigger = |name: &str, rule: &Option<crate::policy::AutoBanRule>| match rule {
        None => format!("  auto-ban  {name}: off"),
        Some(r) => {
            let mut what = Vec::new();
            for (on, label) in [
                (r.ban_source, "source"),
                (r.ban_username, "username"),
                (r.ban_client_id, "client id"),
            ] {
                if on {
                    what.push(label);
                }
            }
            format!(
                "  auto-ban  {name}: {} within {} bans {} for {}",
                r.count,
                humantime::format_duration(r.within),
                what.join(" + "),
                humantime::format_duration(r.ban_for)
            )
        }
    };
    lines.push(trigger("failed_auth", &auto.failed_auth));
    lines.push(trigger("flapping", &auto.flapping));
    let c = policy.connection_limits();
    let rate = |b: Option<crate::policy::Bucket>| match b {
        Some(b) => format!("{} (burst {})", b.rate, b.burst),
        None => "off".to_owned(),
    };
    let cap = |n: Option<u32>| n.map_or("none".to_owned(), |n| n.to_string());
    lines.push(format!(
        "  conns     per source {}, global {}, max per source {}, max total {}, IPv6 by /{}",
        rate(c.per_source),
        rate(c.global),
        cap(c.max_per_source),
        c.max_total.map_or(cfg.limits.max_connections, |t| {
            usize::try_from(t).map_or(cfg.limits.max_connections, |t| {
                t.min(cfg.limits.max_connections)
            })
        }),
        c.ipv6_prefix
    ));
    let client = policy.default_client_limits();
    lines.push(format!(
        "  client    publish {} / bytes {} ({:?}), subscribe {}, max {} subscriptions, {} inflight",
        rate(client.publish),
        rate(client.publish_bytes),
        client.publish_on_exceed,
        rate(client.subscribe),
        client.max_subscriptions,
        client.max_inflight
    ));
    for listener in &cfg.listeners {
        if !policy.admits_addresses_on(&listener.name) {
            lines.push(format!(
                "warning: listener {} admits no address: its network allow list is empty (add e.g. network: {{ allow: [\"0.0.0.0/0\", \"::/0\"] }})",
                listener.name
            ));
        }
    }
    lines
}

fn broker(broker: &BrokerSettings) -> String {
    match broker {
        BrokerSettings::Embedded {
            bind,
            bind_v5,
            max_connections,
            link,
        } => {
            let sized = match max_connections {
                None => "sized to the connection cap".to_owned(),
                Some(n) => format!("sized for at least {n} connections"),
            };
            let reached = match link {
                crate::config::EmbeddedLink::Memory => {
                    "sessions reach it in-process, without a socket"
                }
                crate::config::EmbeddedLink::Loopback => "sessions reach it over loopback",
            };
            format!("embedded on {bind} (MQTT 3.1.1) and {bind_v5} (MQTT 5), {sized}, {reached}")
        }
        BrokerSettings::Upstream(up) => {
            let list = |addrs: &[crate::config::UpstreamAddr]| {
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = if up.v3 == up.v5 {
                format!("upstream {}", list(&up.v3))
            } else {
                format!(
                    "upstream {} (MQTT 3.1.1) and {} (MQTT 5)",
                    list(&up.v3),
                    list(&up.v5)
                )
            };
            if up.v3.len() > 1 || up.v5.len() > 1 {
                let strategy = match up.strategy {
                    crate::config::UpstreamStrategy::Failover => "failover",
                    crate::config::UpstreamStrategy::RoundRobin => "round robin",
                };
                text.push_str(&format!(", {strategy}"));
            }
            text.push_str(match &up.tls {
                Some(_) => ", TLS",
                None => ", plain TCP",
            });
            text.push_str(match &up.credentials {
                crate::config::UpstreamCredentials::Identity => ", identity as user name",
                crate::config::UpstreamCredentials::IdentityWithPassword { .. } => {
                    ", identity as user name with a password file"
                }
                crate::config::UpstreamCredentials::Fixed { .. } => ", fixed credentials",
            });
            text
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
            text.push_str(&format!(
                ", {} CRL file(s), expired CRL: {}",
                tls.crls.len(),
                tls.crl_expired.as_str()
            ));
        }
    }
    text
}

/// Everything `moat check` prints for a configuration and policy already parsed, under fixed
/// descriptor limits and with no TLS file missing: the check without files or the shell, for the
/// fuzz targets (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
pub(crate) fn summary(path: &std::path::Path, cfg: &Config, policy: &Policy) -> String {
    let mut text = report(path, cfg, policy, &[]);
    for line in descriptors(cfg, Some((1024, 1 << 20))) {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&cases(policy).0);
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
        let mut cfg = cfg;
        cfg.listeners[0].proxy = Some(crate::config::ProxySettings {
            version: crate::config::ProxyProtocol::V2,
            trusted: vec!["10.0.0.0/24".parse().unwrap()],
        });
        let text = report(std::path::Path::new("moat.yaml"), &cfg, &policy, &[]);
        assert!(
            text.contains("mqtts (tls) on 127.0.0.1:8883, PROXY protocol v2 from 10.0.0.0/24"),
            "{text}"
        );
        assert!(text.contains("client certificates optional"), "{text}");
        assert!(
            text.contains("only clients with a verified certificate"),
            "{text}"
        );
        assert!(text.contains("listener mqtts admits no address"), "{text}");
    }

    #[test]
    fn report_lists_static_bans_and_limits() {
        let cfg = Config::default_for_dir(std::path::Path::new(""));
        let policy = crate::policy::compile(&[crate::policy::PolicySource {
            path: "p.yaml".into(),
            text: "network: { allow: [127.0.0.1] }\nbans:\n  - { client_id: evil, reason: stolen }\n  - { address: 10.0.0.0/8, until: \"2001-01-01T00:00:00Z\" }\n".into(),
        }])
        .unwrap();
        let text = report(std::path::Path::new("moat.yaml"), &cfg, &policy, &[]);
        assert!(text.contains("network   1 allow, 0 deny"), "{text}");
        assert!(text.contains("ban       client id \"evil\" (no expiry): stolen [p.yaml:3 ban client id \"evil\"]"), "{text}");
        assert!(
            text.contains("address 10.0.0.0/8 until 2001-01-01T00:00:00Z [p.yaml:4"),
            "{text}"
        );
        assert!(text.contains("(expired)"), "{text}");
        assert!(
            text.contains("auto-ban  failed_auth: 10 within 1m bans source for 5m"),
            "{text}"
        );
        assert!(
            text.contains("conns     per source 20/s (burst 100)"),
            "{text}"
        );
        assert!(!text.contains("admits no address"), "{text}");
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
    fn descriptors_report_the_budget_and_what_run_would_do() {
        let mut cfg = Config::default_for_dir(std::path::Path::new(""));
        let text = descriptors(&cfg, Some((1024, 524_288))).join("\n");
        assert_eq!(
            text,
            "  fds       10000 connections × 1 + 64 reserved = 10064 descriptors, limit 524288 \
             (soft 1024 here; moat run raises it to the hard limit)"
        );
        // The default cap is lowered at a low hard limit; a cap moat.yaml set refuses start.
        let text = descriptors(&cfg, Some((1024, 1024))).join("\n");
        assert!(text.contains("limit 1024\nwarning: "), "{text}");
        assert!(text.contains("enough for 960 connections"), "{text}");
        cfg.limits.max_connections_explicit = true;
        let text = descriptors(&cfg, Some((1024, 1024))).join("\n");
        assert!(text.contains("would refuse to start"), "{text}");
        assert!(text.contains("ulimit -n 10064"), "{text}");
        // Over loopback the broker's end of each session's connection is in moat's process too.
        if let BrokerSettings::Embedded { link, .. } = &mut cfg.broker {
            *link = crate::config::EmbeddedLink::Loopback;
        }
        let text = descriptors(&cfg, Some((1024, 524_288))).join("\n");
        assert!(
            text.contains("10000 connections × 3 + 64 reserved = 30064"),
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
