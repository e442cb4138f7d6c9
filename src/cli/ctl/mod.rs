//! `moat ctl`: runtime control of a running moat through its admin listener — list and kick
//! sessions, list, set and lift bans, reload, drain, and `ready` for health checks.
//!
//! Each subcommand is one HTTP call (`client.rs`) to a `/v1/` route (`admin/control.rs`) or
//! `/readyz`; the answer is printed as a table (`print.rs`) or, with `--json`, as the JSON the
//! listener sent. A refusal (4xx/5xx) prints the listener's error and exits 1; `ready` exits 0
//! only when `/readyz` answers 200.

mod client;
mod print;
mod shadow;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::http::{Method, StatusCode};
use clap::Subcommand;
use serde::de::DeserializeOwned;

use self::client::{Answer, Client, Target};
use crate::control::{
    BanRequest, BanView, DrainAnswer, ReloadReport, SessionPage, SessionView, UnbanRequest,
    Unbanned,
};

/// Arguments of `moat ctl`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The admin listener: http://HOST:PORT, https://HOST:PORT (with --ca) or unix:/PATH.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9100")]
    admin: String,
    /// File holding the bearer token (needed when the admin listener is not on loopback).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the admin listener's certificate (https only).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Print the listener's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline for the whole call (connect, TLS, request, answer).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    command: Ctl,
}

#[derive(Subcommand, Debug)]
enum Ctl {
    /// List live sessions (filters combine; paged).
    Sessions {
        /// Only this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only this client id.
        #[arg(long)]
        client_id: Option<String>,
        /// Only this source address or network (CIDR).
        #[arg(long)]
        source: Option<String>,
        /// Only this listener.
        #[arg(long)]
        listener: Option<String>,
        /// Sessions after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<u64>,
        /// Page size (at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// End a session (MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1: close).
    Kick {
        /// The session id (from `moat ctl sessions`).
        id: u64,
    },
    /// List the bans in force: policy, operator (admin) and automatic.
    Bans,
    /// Ban a source, an identity or a client id for a while; live sessions it covers end.
    Ban {
        /// A source address or network (CIDR).
        #[arg(long, group = "target", required_unless_present_any = ["identity", "client_id"])]
        source: Option<String>,
        /// An identity (user name or certificate identity).
        #[arg(long, group = "target")]
        identity: Option<String>,
        /// A client id.
        #[arg(long, group = "target")]
        client_id: Option<String>,
        /// How long (e.g. 10m, 2h; at most 30 days).
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why (kept with the ban and in the audit line).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift operator and automatic bans (policy bans are named, not lifted: edit the file).
    Unban {
        /// An operator ban's id.
        #[arg(long)]
        id: Option<u64>,
        /// A source address or network: bans on it or inside it.
        #[arg(long)]
        source: Option<String>,
        /// An identity.
        #[arg(long)]
        identity: Option<String>,
        /// A client id.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Reload moat.yaml (what can change live), the policy and the TLS files.
    Reload,
    /// Drain (stop accepting, move clients away over drain.period), then moat exits.
    Drain,
    /// Exit 0 if moat is ready for clients (/readyz answers 200), 1 otherwise.
    Ready,
    /// Where the shadow policy set differs from the enforced one: counts per action and rule
    /// pair, recent examples, since when.
    Shadow,
}

/// Runs `moat ctl`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::parse(&args.admin)?;
    let client = Client::new(
        target,
        args.token_file.as_deref(),
        args.ca.as_deref(),
        args.timeout,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(ctl(&client, args.command, args.json))
}

async fn ctl(client: &Client, command: Ctl, json: bool) -> anyhow::Result<()> {
    match command {
        Ctl::Sessions {
            identity,
            client_id,
            source,
            listener,
            after,
            limit,
        } => {
            let mut query = Query::default();
            query.add("identity", identity.as_deref());
            query.add("client_id", client_id.as_deref());
            query.add("source", source.as_deref());
            query.add("listener", listener.as_deref());
            query.add("after", after.map(|a| a.to_string()).as_deref());
            query.add("limit", limit.map(|l| l.to_string()).as_deref());
            let path = format!("/v1/sessions{}", query.0);
            let answer = client.call(Method::GET, &path, None).await?;
            show::<SessionPage>(answer, json, print::sessions)
        }
        Ctl::Kick { id } => {
            let path = format!("/v1/sessions/{id}/kick");
            let answer = client.call(Method::POST, &path, None).await?;
            show::<SessionView>(answer, json, print::kicked)
        }
        Ctl::Bans => {
            let answer = client.call(Method::GET, "/v1/bans", None).await?;
            show::<BanList>(answer, json, |l| print::bans(&l.bans))
        }
        Ctl::Ban {
            source,
            identity,
            client_id,
            duration,
            reason,
        } => {
            let req = BanRequest {
                source,
                identity,
                client_id,
                duration,
                reason,
            };
            let body = serde_json::to_vec(&req)?;
            let answer = client.call(Method::POST, "/v1/bans", Some(body)).await?;
            show::<BanView>(answer, json, |b| print::bans(std::slice::from_ref(b)))
        }
        Ctl::Unban {
            id,
            source,
            identity,
            client_id,
        } => {
            let req = UnbanRequest {
                id,
                source,
                identity,
                client_id,
            };
            let body = serde_json::to_vec(&req)?;
            let answer = client
                .call(Method::POST, "/v1/bans/lift", Some(body))
                .await?;
            show::<Unbanned>(answer, json, print::unbanned)
        }
        Ctl::Reload => {
            let answer = client.call(Method::POST, "/v1/reload", None).await?;
            let report: ReloadReport = parse(&answer)?;
            show::<ReloadReport>(answer, json, print::reloaded)?;
            match report.ok {
                true => Ok(()),
                false => {
                    bail!("reload refused in part; the running configuration stays where refused")
                }
            }
        }
        Ctl::Drain => {
            let answer = client.call(Method::POST, "/v1/drain", None).await?;
            show::<DrainAnswer>(answer, json, print::draining)
        }
        Ctl::Shadow => {
            let answer = client.call(Method::GET, "/v1/shadow", None).await?;
            show::<crate::ops::shadow::ShadowReport>(answer, json, shadow::print)
        }
        Ctl::Ready => {
            let answer = client.call(Method::GET, "/readyz", None).await?;
            let text = String::from_utf8_lossy(&answer.body).trim().to_owned();
            // Said once: `ready` on stdout, or the listener's reason (`not ready: draining`)
            // with the status as the error on stderr.
            match answer.status {
                StatusCode::OK => {
                    if !json {
                        crate::cli::out::say(format_args!("{text}\n"))?;
                    }
                    Ok(())
                }
                status => bail!("{text} ({status})"),
            }
        }
    }
}

/// `GET /v1/bans`.
#[derive(serde::Deserialize, serde::Serialize)]
struct BanList {
    bans: Vec<BanView>,
}

/// Prints a successful answer as JSON or through `table`; a refusal becomes the error.
fn show<T: DeserializeOwned>(
    answer: Answer,
    json: bool,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let value: T = parse(&answer)?;
    let text = match json {
        true => format!("{}\n", String::from_utf8_lossy(&answer.body)),
        false => table(&value),
    };
    crate::cli::out::say(text)
}

/// The answer's JSON as `T`, or the listener's error.
fn parse<T: DeserializeOwned>(answer: &Answer) -> anyhow::Result<T> {
    if !answer.status.is_success() {
        let error = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned());
        return Err(anyhow!("{} ({})", error, answer.status));
    }
    serde_json::from_slice(&answer.body)
        .context("the admin listener's answer is not what moat ctl expects")
}

/// A query string, its values percent-encoded.
#[derive(Default)]
struct Query(String);

impl Query {
    fn add(&mut self, key: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(key);
        self.0.push('=');
        for b in value.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    self.0.push(char::from(b))
                }
                _ => self.0.push_str(&format!("%{b:02X}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let mut q = Query::default();
        q.add("source", Some("10.0.0.0/8"));
        q.add("identity", None);
        q.add("client_id", Some("a b&c"));
        assert_eq!(q.0, "?source=10.0.0.0%2F8&client_id=a%20b%26c");
    }
}
