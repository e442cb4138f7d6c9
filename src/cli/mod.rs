//! The `moat` command line: one file per subcommand, this file only dispatches.

mod certs;
mod check;
mod ctl;
#[cfg(feature = "fuzzing")]
pub(crate) use check::summary as check_summary;
mod explain;
mod export;
mod out;
mod passwd;
mod run;
mod schema;
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
    /// Runtime control through the admin listener: sessions, kick, bans, reload, drain, ready.
    Ctl(ctl::Args),
    /// Print what the policy refuses in another tool's language (`moat export nftables`).
    Export(export::Args),
    /// Print the JSON Schema of moat.yaml or of a policy file (for editors and CI).
    Schema(schema::Args),
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
        Command::Ctl(args) => ctl::run(args),
        Command::Export(args) => export::run(args),
        Command::Schema(args) => schema::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output left (`moat check | head`): what it read was complete.
        Err(e) if e.is::<out::Closed>() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat: {}", out::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging once: `RUST_LOG` wins, else moat.yaml's `log.level` (default info, behind
/// `config::LOG_QUIET`: warnings for rumqttd and rustls). The filter sits behind a reload
/// handle (`ops::logging`), so a reload can change `log.level` live. Colours only when stderr
/// is a terminal: a file or a log shipper gets plain text.
pub(crate) fn init_logging(settings: &crate::config::LogSettings) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        // The loader checked the level; the fallback only guards a caller that did not.
        Err(_) => (
            settings
                .filter()
                .unwrap_or_else(|_| EnvFilter::new(crate::config::LOG_QUIET)),
            false,
        ),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let format = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let format = match settings.format {
        crate::config::LogFormat::Json => format.json().boxed(),
        crate::config::LogFormat::Text => format.boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .with(Mute)
        .try_init();
    if installed.is_ok() {
        crate::ops::logging::install(handle, from_env);
    }
    if from_env && settings.level != crate::config::DEFAULT_LOG_LEVEL {
        tracing::info!(
            "RUST_LOG is set: it decides what is logged, moat.yaml's log.level is not used"
        );
    }
}

/// Events of other crates that say nothing an operator can act on, by target and the start of
/// their message:
/// - rumqttd's "router-drop", logged at ERROR for the normal end of a link its router closed.
///   That is how every embedded-broker session ending in DISCONNECT ends, since moat lets the
///   broker close first (`session/driver.rs`); moat logs each session's end from its own side.
/// - rustls' WARN for a ClientHello whose SNI is an IP address: every client that connects by
///   address sends one (RFC 6066 forbids it, clients do it anyway; rustls ignores the name),
///   and moat reads the ClientHello twice (SNI probe and handshake), so it was two lines per
///   connection.
const MUTED: &[(&str, &str)] = &[
    ("rumqttd::server::broker", "router-drop"),
    (
        "rustls::msgs::handshake",
        "Illegal SNI extension: ignoring IP address presented as hostname",
    ),
];

/// Drops the events in [`MUTED`].
struct Mute;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Mute {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let mut seen = Seen::default();
        event.record(&mut seen);
        // Records of crates that log through the `log` crate (rustls) arrive with the target
        // "log" and their own target in the field `log.target`.
        let target = match event.metadata().target() {
            "log" => seen.log_target.as_str(),
            target => target,
        };
        !MUTED
            .iter()
            .any(|(muted, start)| *muted == target && seen.message.starts_with(start))
    }
}

/// The message and `log.target` fields of an event.
#[derive(Default)]
struct Seen {
    message: String,
    log_target: String,
}

impl tracing::field::Visit for Seen {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "log.target" => value.clone_into(&mut self.log_target),
            _ => {}
        }
    }
}
