//! `moat explain`: which rule decides what a given client may do with a topic, and why.
//!
//! Loads moat.yaml and the policy files exactly as `moat run` does and asks the compiled policy
//! the same question a session would (same code path: `Policy::explain`), printing the verdict
//! and the rule (`file:line`) that reached it. Opens no sockets.

use super::out::say;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::ops::load;
use crate::policy::{AclDecision, Action, Subject};

/// Arguments of `moat explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "moat.yaml")]
    pub config: PathBuf,
    /// User name (a password identity); without it, --cert-cn is the identity, else anonymous.
    #[arg(long)]
    pub user: Option<String>,
    /// MQTT client identifier (default: the identity name).
    #[arg(long)]
    pub client_id: Option<String>,
    /// CN of a verified client certificate.
    #[arg(long)]
    pub cert_cn: Option<String>,
    /// Source IP address of the client.
    #[arg(long, default_value = "0.0.0.0")]
    pub source: IpAddr,
    /// Listener name (default: the first listener in the configuration).
    #[arg(long)]
    pub listener: Option<String>,
    /// QoS of the publish.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// The publish has the RETAIN flag.
    #[arg(long)]
    pub retain: bool,
    /// publish, subscribe or receive.
    pub action: String,
    /// Topic name (publish, receive) or filter (subscribe).
    pub topic: String,
}

/// Prints the decision; the exit status is 0 whichever way it goes.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(action) = Action::parse(&args.action) else {
        bail!(
            "unknown action '{}': expected publish, subscribe or receive",
            args.action
        );
    };
    let valid = match action {
        Action::Subscribe => crate::mqtt::topic::validate_topic_filter(&args.topic),
        _ => crate::mqtt::topic::validate_topic_name(&args.topic),
    };
    valid.with_context(|| format!("'{}' cannot be used to {action}", args.topic))?;
    let cfg = load::load_config(&args.config)?;
    let policy = load::load_policy(&cfg)?;
    let listener = args
        .listener
        .clone()
        .or_else(|| cfg.listeners.first().map(|l| l.name.clone()));
    let subject = Subject::describe(
        args.user.as_deref(),
        args.client_id.as_deref(),
        args.cert_cn.as_deref(),
        listener.as_deref(),
        args.source,
    );
    let decision = policy.explain(&subject, action, &args.topic, args.qos, args.retain);
    let mut text = report(&subject, action, &args.topic, &decision);
    if action != Action::Publish {
        // Which subscribe semantics decides subscriptions (and, under withhold, deliveries).
        text.push_str(&format!("  overlap  {}\n", policy.subscribe_overlap()));
    }
    say(text)?;
    Ok(())
}

/// The printed answer (separate from printing so tests can read it).
fn report(subject: &Subject, action: Action, topic: &str, decision: &AclDecision) -> String {
    let verdict = if decision.is_allowed() {
        "allow"
    } else {
        "deny"
    };
    let source = match subject.source {
        crate::policy::IdentitySource::Password => "user",
        crate::policy::IdentitySource::Certificate => "certificate",
        crate::policy::IdentitySource::Anonymous => "anonymous",
    };
    let mut text = format!("{verdict} {action} {topic:?}\n");
    text.push_str(&format!("  rule     {}\n", decision.rule()));
    text.push_str(&format!("  reason   {}\n", decision.reason));
    if action == Action::Subscribe && decision.is_allowed() && decision.max_qos < 2 {
        text.push_str(&format!(
            "  qos      granted at most {}\n",
            decision.max_qos
        ));
    }
    let cert = match &subject.cert_cn {
        Some(cn) => format!("certificate CN {cn:?}"),
        None => "no certificate".to_owned(),
    };
    text.push_str(&format!(
        "  subject  {:?} ({source}), client id {:?}, {cert}, listener {}, source {}\n",
        subject.name, subject.client_id, subject.listener, subject.addr
    ));
    text
}
