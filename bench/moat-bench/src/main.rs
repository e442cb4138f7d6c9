//! `moat-bench`: the load generator behind `bench/compare.sh`.
//!
//! It speaks MQTT with moat's own codec over TLS (rustls, ring, a CA file) or plain TCP, so the
//! same client drives mosquitto, HAProxy and moat alike; `--transport wss|quic` reaches moat's
//! WebSocket and QUIC listeners with the same modes. Modes: `load` (publishers →
//! subscribers, msgs/s, lost messages, publish → receive latency), `idle` (K held sessions from
//! many loopback sources, for memory per connection), `handshake` (full TLS handshakes/s, or
//! TLS + CONNECT/CONNACK with `--connect`) and `refused` (connections/s a server refuses).
//! Every mode prints a human-readable summary on stderr and one JSON line on stdout.
//!
//! A command-line tool like `cli/`: `anyhow` is its error type.

mod client;
mod conns;
mod histogram;
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use moat::mqtt::ProtocolVersion;

use client::Transport;
use histogram::Histogram;

/// Load generator for moat and its peers (mosquitto, HAProxy).
#[derive(Parser, Debug)]
#[command(name = "moat-bench")]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8883", global = true)]
    target: SocketAddr,
    /// Front door: MQTT over TLS, over WebSocket (wss), or over a QUIC stream.
    #[arg(long, value_enum, default_value_t = Transport::Tls, global = true)]
    transport: Transport,
    /// CA certificate (PEM): connect with TLS and trust this CA. Without it: plain TCP (`tls`)
    /// or plain `ws` (`wss`); `quic` needs it.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// HTTP path of the WebSocket upgrade (`--transport wss`).
    #[arg(long = "ws-path", default_value = "/mqtt", global = true)]
    ws_path: String,
    /// TLS server name.
    #[arg(long, default_value = "localhost", global = true)]
    sni: String,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long = "mqtt-version", default_value_t = 4, global = true)]
    mqtt_version: u8,
    /// User name for CONNECT.
    #[arg(long, global = true)]
    username: Option<String>,
    /// Password for CONNECT.
    #[arg(long, global = true)]
    password: Option<String>,
    /// Label copied into the JSON line (which front door this run measured).
    #[arg(long, default_value = "", global = true)]
    label: String,
    /// Runtime worker threads of the generator.
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Publishers → subscribers: msgs/s, lost, latency percentiles.
    Load(load::LoadArgs),
    /// Open K MQTT sessions and hold them (prints `ready …` once they are up).
    Idle(conns::IdleArgs),
    /// Full TLS handshakes per second (no resumption); with wss plus the upgrade, with quic a
    /// QUIC handshake plus the stream.
    Handshake(conns::HandshakeArgs),
    /// Connections per second that the server closes without answering (over QUIC: attempts
    /// it drops or refuses).
    Refused(conns::RefusedArgs),
}

/// Nanoseconds since the generator started: the clock inside every payload.
pub(crate) fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    now_ns();
    let version = match cli.mqtt_version {
        4 => ProtocolVersion::V3_1_1,
        5 => ProtocolVersion::V5,
        other => anyhow::bail!("--mqtt-version {other}: use 4 or 5"),
    };
    let credentials = cli
        .username
        .clone()
        .map(|u| (u, cli.password.clone().unwrap_or_default()));
    let target = client::Target::new(client::Options {
        addr: cli.target,
        transport: cli.transport,
        ca: cli.ca.as_deref(),
        sni: &cli.sni,
        ws_path: &cli.ws_path,
        version,
        credentials,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut report = runtime.block_on(async {
        match cli.mode {
            Mode::Load(a) => load::run(target, a).await,
            Mode::Idle(a) => conns::idle(target, a).await,
            Mode::Handshake(a) => conns::handshake(target, a).await,
            Mode::Refused(a) => conns::refused(target, a).await,
        }
    })?;
    report
        .text("label", &cli.label)
        .text("transport", cli.transport.as_str());
    report.print();
    // Held sessions and their tasks end with the process; no need to wait for each.
    runtime.shutdown_background();
    Ok(())
}

/// One run's results: printed as `key value` lines for people and one JSON object for scripts.
pub(crate) struct Report {
    fields: Vec<(String, String, bool)>,
}

// === impl Report ===

impl Report {
    pub(crate) fn new(mode: &str) -> Self {
        let mut r = Report { fields: Vec::new() };
        r.text("mode", mode);
        r
    }

    pub(crate) fn text(&mut self, key: &str, value: &str) -> &mut Self {
        let escaped: String = value
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        self.fields.push((key.into(), escaped, true));
        self
    }

    pub(crate) fn num(&mut self, key: &str, value: f64) -> &mut Self {
        let v = if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{}", value as i64)
        } else {
            format!("{value:.3}")
        };
        self.fields.push((key.into(), v, false));
        self
    }

    /// p50/p99/p999/max of a histogram, in microseconds.
    pub(crate) fn latency(&mut self, prefix: &str, h: &Histogram) -> &mut Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        self.num(&format!("{prefix}_p50_us"), us(h.quantile(0.50)))
            .num(&format!("{prefix}_p99_us"), us(h.quantile(0.99)))
            .num(&format!("{prefix}_p999_us"), us(h.quantile(0.999)))
            .num(&format!("{prefix}_max_us"), us(h.max()))
    }

    fn print(&self) {
        for (k, v, _) in &self.fields {
            eprintln!("{k:>22}  {v}");
        }
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v, quoted)| {
                if *quoted {
                    format!("\"{k}\":\"{v}\"")
                } else {
                    format!("\"{k}\":{v}")
                }
            })
            .collect();
        println!("{{{}}}", body.join(","));
    }
}
