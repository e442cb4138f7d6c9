//! The `moat` command line: one file per subcommand, this file only dispatches.

mod certs;
mod check;
#[cfg(feature = "fuzzing")]
pub(crate) use check::summary as check_summary;
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rumqttd=warn,rumqttd::router::routing=off,rustls=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().finish().with(MuteRouterDrop).try_init()
    } else {
        builder.finish().with(MuteRouterDrop).try_init()
    };
}

/// Drops one rumqttd event: "router-drop", which rumqttd logs at ERROR for the normal end of a
/// link its router closed. That is how every embedded-broker session ending in DISCONNECT ends,
/// since moat lets the broker close first (`session/driver.rs`): an error line per clean
/// disconnect otherwise. moat logs each session's end from its own side.
struct MuteRouterDrop;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MuteRouterDrop {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if event.metadata().target() != "rumqttd::server::broker" {
            return true;
        }
        let mut seen = MessageIs("router-drop", false);
        event.record(&mut seen);
        !seen.1
    }
}

/// Whether an event's message is this text.
struct MessageIs(&'static str, bool);

impl tracing::field::Visit for MessageIs {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}") == self.0 {
            self.1 = true;
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" && value == self.0 {
            self.1 = true;
        }
    }
}
