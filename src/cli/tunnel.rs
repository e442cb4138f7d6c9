//! `moat tunnel`: a local sidecar that carries plain TCP MQTT over QUIC to a moat QUIC listener.
//!
//! Parses the flags, builds the QUIC client configuration (the CA file is the only trust
//! anchor; an optional client certificate), binds, prints where it listens on stdout (scripts
//! and tests read that line), and runs until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::transport::quic_client;
use crate::tunnel::{Tunnel, TunnelOptions};

/// Arguments of `moat tunnel`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local address for MQTT clients (plain TCP), e.g. 127.0.0.1:1883; port 0 picks one.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The moat QUIC listener, HOST:PORT.
    #[arg(long)]
    pub connect: String,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Name to verify the server certificate against (default: the host of --connect).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Client certificate (PEM) to present; needs --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Most tunnelled connections at once; more are closed at accept.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Deadline for reaching the server (resolve, handshake, open the stream).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Close a connection with no bytes in either direction for this long (keep it above the
    /// MQTT clients' keep-alive).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Allow --listen on a non-loopback address. The local side is plaintext MQTT: anyone who
    /// can reach it can speak to the broker with the tunnel's client certificate.
    #[arg(long)]
    pub allow_non_loopback: bool,
}

/// Runs the tunnel until a signal.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging(&crate::config::LogSettings::default());
    if !args.listen.ip().to_canonical().is_loopback() && !args.allow_non_loopback {
        anyhow::bail!(
            "--listen {} is not a loopback address: the local side is plaintext MQTT; pass --allow-non-loopback if that is intended",
            args.listen
        );
    }
    if args.max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    let server_name = match &args.server_name {
        Some(name) => name.clone(),
        None => host_of(&args.connect)
            .with_context(|| format!("--connect {}: expected HOST:PORT", args.connect))?,
    };
    let identity = args.cert.as_deref().zip(args.key.as_deref());
    let client = quic_client::client_config(&args.ca, identity).context("QUIC client")?;
    let opts = TunnelOptions {
        listen: args.listen,
        connect: args.connect.clone(),
        server_name,
        client,
        max_connections: args.max_connections,
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("moat-tunnel")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let tunnel = Tunnel::bind(opts).await?;
        let local = tunnel.local_addr().context("local address")?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "moat tunnel: listening on {local}, forwarding over QUIC to {}",
            args.connect
        )?;
        out.flush()?;
        drop(out);
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        tunnel.run(stop).await;
        Ok(())
    })
}

/// The host part of `HOST:PORT` (`[v6]:port` unbracketed).
fn host_of(target: &str) -> Option<String> {
    let (host, port) = target.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_target() {
        assert_eq!(
            host_of("broker.example:14567").as_deref(),
            Some("broker.example")
        );
        assert_eq!(host_of("[::1]:14567").as_deref(), Some("::1"));
        assert_eq!(host_of("127.0.0.1:1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("nohost"), None);
        assert_eq!(host_of(":14567"), None);
        assert_eq!(host_of("h:port"), None);
    }
}
