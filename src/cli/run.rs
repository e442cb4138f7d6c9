//! `moat run`: load config and policy, make dev certificates if asked to, serve until a signal.
//! SIGHUP (and `moat ctl reload`) reloads moat.yaml as far as it can change live, the policy and
//! the TLS material; a change to a policy file reloads the policy, a change to a `tls:` file the
//! TLS material (`ops::reload`). SIGTERM, SIGINT and `moat ctl drain` drain (listeners stop,
//! clients are moved away over `drain.period`), then moat exits 0.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, TransportKind};
use crate::control::Request;
use crate::ops::load;
use crate::ops::reload::{self, PolicyWatcher, TlsWatcher};
use crate::server::Server;
use crate::stats::ReloadKind;

/// Arguments of `moat run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "moat.yaml")]
    pub config: PathBuf,
}

/// Runs the server until SIGINT or SIGTERM; SIGHUP and file changes reload policy and TLS.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = load::load_config(&args.config)?;
    super::init_logging(&config.log);
    if config.dev_certs {
        make_dev_certs(&config)?;
    }
    let policy = load::load_policy(&config)?;
    if !policy.admits_anyone() {
        tracing::warn!("the policy admits nobody: add users (moat passwd) or anonymous: true");
    }
    log_warnings(&policy);
    if let Some(shadow) = policy.shadow() {
        tracing::info!(
            files = shadow.files().len(),
            rules = shadow.acl_rules(),
            "shadow policy set loaded: judged beside the policy, never enforced (moat ctl shadow)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("moat")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config, policy, &args.config))
}

async fn serve(
    mut config: Config,
    policy: crate::policy::Policy,
    path: &Path,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut running = Server::start(config.clone(), policy).await?;
    let mut requests = running.take_requests();
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut watcher = match PolicyWatcher::start(&config) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy files; reload with SIGHUP");
            None
        }
    };
    let serves_tls = config.listeners.iter().any(|l| l.kind != TransportKind::Ws);
    let mut tls_watcher = match serves_tls.then(|| TlsWatcher::start(&config)) {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot watch the TLS files; reload with SIGHUP");
            None
        }
    };
    tracing::info!(max_connections = running.max_connections(), "moat is up");
    loop {
        let changed = async {
            match watcher.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        let tls_changed = async {
            match tls_watcher.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        let asked = async {
            match requests.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hup.recv() => {
                let _ = running.reload_all(&mut config, path, "SIGHUP");
            }
            request = asked => match request {
                Some(Request::Reload { by, answer }) => {
                    let trigger = format!("moat ctl reload from {by}");
                    let report = running.reload_all(&mut config, path, &trigger);
                    let _ = answer.send(report);
                }
                Some(Request::Drain { by }) => {
                    tracing::info!(by, "drain asked by an operator");
                    break;
                }
                None => requests = None,
            },
            change = changed => match change {
                Some(()) => {
                    let policy = reload::reload(running.policy(), &config, "file change");
                    running.record_reload(ReloadKind::Policy, policy.is_ok());
                    if policy.as_ref().map_or_else(reload::enforced_applied, |_| true) {
                        running.control().recheck_sessions();
                    }
                }
                None => {
                    tracing::warn!("policy file watcher stopped; reload with SIGHUP");
                    watcher = None;
                }
            },
            change = tls_changed => match change {
                Some(()) => {
                    let tls = reload::reload_tls(running.tls(), "file change");
                    running.record_reload(ReloadKind::Tls, tls.is_ok());
                }
                None => {
                    tracing::warn!("TLS file watcher stopped; reload with SIGHUP");
                    tls_watcher = None;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let drain = config.drain.clone();
    tracing::info!(period = ?drain.period, sessions = running.live_sessions(), "draining, then shutting down");
    // A second SIGTERM or SIGINT cuts the drain short.
    let cut = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    if !running
        .drain(drain.period, drain.server_reference.as_deref(), cut)
        .await
    {
        tracing::warn!("some sessions did not close within the grace period");
    }
    tracing::info!("moat stopped");
    Ok(())
}

/// Creates missing development certificates next to the configured server certificate, but
/// only when the configured files are the ones a dev bootstrap would write.
fn make_dev_certs(config: &Config) -> anyhow::Result<()> {
    let tls = &config.tls;
    let dir = tls.cert.parent().unwrap_or(Path::new("."));
    let expected = [dir.join("server.crt"), dir.join("server.key")];
    if tls.cert != expected[0] || tls.key != expected[1] {
        return Ok(());
    }
    let written = crate::certs::ensure_dev_certs(dir)
        .with_context(|| format!("creating dev certificates in {}", dir.display()))?;
    for path in written {
        tracing::info!(path = %path.display(), "wrote development certificate");
    }
    Ok(())
}

/// Logs what the policy accepts but should not keep (weak `$6$` hashes).
fn log_warnings(policy: &crate::policy::Policy) {
    for warning in policy.warnings() {
        tracing::warn!("{warning}");
    }
}
