//! The `moat` command line: one file per subcommand, this file only dispatches.

mod certs;
mod check;
mod explain;
mod passwd;
mod run;
mod tunnel;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// moat: a TLS-terminating MQTT security proxy.
#[derive(Parser, Debug)]
#[command(name = "moat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve: start the broker segment and every listener.
    Run(run::Args),
    /// Validate the configuration and policies, print a summary.
    Check(check::Args),
    /// Generate a CA, server and client certificates.
    Certs(certs::Args),
    /// Hash a password (argon2id) for a policy file.
    Passwd(passwd::Args),
    /// Show which ACL rule decides a client's publish, subscribe or receive, and why.
    Explain(explain::Args),
    /// Carry local plain-TCP MQTT connections over QUIC to a moat QUIC listener.
    Tunnel(tunnel::Args),
}

/// Parses argv, runs the subcommand, and turns the result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Passwd(args) => passwd::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Tunnel(args) => tunnel::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging once: `RUST_LOG` wins, else info for moat and warnings for rumqttd.
pub(crate) fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rumqttd=warn,rumqttd::router::routing=off,rustls=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
