//! `moat export nftables`: the sources moat's policy refuses by address, as an nftables ruleset
//! for operators who own the host firewall.
//!
//! Loads moat.yaml and the policies as `moat run` does and prints one `inet` table: for each
//! listener with a fixed port, sets of its denied IPv4 and IPv6 networks (the `network:` deny
//! lists and the address bans in force, merged so interval sets hold no overlaps) and, when its
//! allow list does not admit everyone, sets of the allowed networks; and one input chain that
//! drops the denied (or not allowed) sources on that port (TCP, or UDP for QUIC). The output
//! starts by deleting the table, so `nft -f` replaces an older export atomically.
//!
//! Automatic bans are left out (they live in moat's memory, and the output says so); address
//! bans with an expiry are written with their time left as element timeouts. moat refuses
//! every one of these sources itself whether or not the ruleset is loaded. Opens no sockets.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ipnet::IpNet;

use super::out::say;
use crate::config::{Config, TransportKind};
use crate::ops::load;
use crate::policy::{BanTarget, Policy};

/// Longest element timeout written (2³² ms, about 49 days; nft refuses far longer ones). A ban
/// lasting longer leaves the set early and moat refuses its source alone after that; a fresh
/// export puts it back.
const MAX_TIMEOUT_S: u64 = 4_294_967;

/// Arguments of `moat export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to export.
    #[command(subcommand)]
    pub what: What,
}

/// Export formats.
#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// An nftables ruleset (`nft -f`) dropping the denied sources on moat's listener ports.
    Nftables {
        /// Configuration file.
        #[arg(short, long, default_value = "moat.yaml")]
        config: PathBuf,
        /// Name of the nftables table (inet family).
        #[arg(long, default_value = "moat")]
        table: String,
    },
}

/// Prints the ruleset.
pub fn run(args: Args) -> anyhow::Result<()> {
    let What::Nftables { config, table } = args.what;
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("table name '{table}': expected letters, digits and _");
    }
    let cfg =
        load::load_config(&config).with_context(|| format!("loading {}", config.display()))?;
    let policy = load::load_policy(&cfg).context("loading the policies")?;
    say(nftables(&cfg, &policy, &table, SystemTime::now()))
}

/// The denied networks of one listener, by family, and its allow sets when they restrict.
struct ListenerSets {
    name: String,
    proto: &'static str,
    port: u16,
    deny: [Vec<(IpNet, Option<Duration>)>; 2],
    allow: [Option<Vec<IpNet>>; 2],
}

/// The ruleset for `config` and `policy` at `now` (see the module docs).
pub(crate) fn nftables(config: &Config, policy: &Policy, table: &str, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#!/usr/sbin/nft -f\n# moat export nftables: sources moat's policy refuses by address, dropped on its\n\
         # listener ports. Automatic bans are not here (they live in moat's memory); moat\n\
         # refuses every one of these sources itself as well.\n\
         table inet {table}\ndelete table inet {table}\ntable inet {table} {{"
    );
    let sets: Vec<ListenerSets> = config
        .listeners
        .iter()
        .filter_map(|l| {
            let proto = match l.kind {
                TransportKind::Quic => "udp",
                _ => "tcp",
            };
            if l.bind.port() == 0 {
                let _ = writeln!(
                    out,
                    "\t# listener {}: port 0 (chosen at start), left out",
                    l.name
                );
                return None;
            }
            Some(listener_sets(policy, &l.name, proto, l.bind.port(), now))
        })
        .collect();
    let mut rules = String::new();
    for (i, l) in sets.iter().enumerate() {
        let _ = writeln!(out, "\t# listener {} ({} {})", l.name, l.proto, l.port);
        for (fam, (ty, match_)) in [("ipv4_addr", "ip"), ("ipv6_addr", "ip6")]
            .iter()
            .enumerate()
        {
            let v = if fam == 0 { 4 } else { 6 };
            let deny = l.deny.get(fam).map(Vec::as_slice).unwrap_or_default();
            let timeouts = deny.iter().any(|(_, t)| t.is_some());
            let flags = if timeouts {
                "interval, timeout"
            } else {
                "interval"
            };
            let elements: Vec<String> = deny
                .iter()
                .map(|(net, t)| match t {
                    Some(t) => format!("{net} timeout {}s", t.as_secs().clamp(1, MAX_TIMEOUT_S)),
                    None => net.to_string(),
                })
                .collect();
            set(&mut out, &format!("deny_v{v}_{i}"), ty, flags, &elements);
            if !deny.is_empty() {
                let _ = writeln!(
                    rules,
                    "\t\t{} dport {} {match_} saddr @deny_v{v}_{i} drop",
                    l.proto, l.port
                );
            }
            if let Some(Some(allow)) = l.allow.get(fam) {
                let elements: Vec<String> = allow.iter().map(ToString::to_string).collect();
                set(
                    &mut out,
                    &format!("allow_v{v}_{i}"),
                    ty,
                    "interval",
                    &elements,
                );
                let _ = writeln!(
                    rules,
                    "\t\t{} dport {} {match_} saddr != @allow_v{v}_{i} drop",
                    l.proto, l.port
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\tchain input {{\n\t\ttype filter hook input priority filter - 10; policy accept;\n{rules}\t}}\n}}"
    );
    out
}

fn set(out: &mut String, name: &str, ty: &str, flags: &str, elements: &[String]) {
    let _ = writeln!(out, "\tset {name} {{\n\t\ttype {ty}\n\t\tflags {flags}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

fn listener_sets(
    policy: &Policy,
    name: &str,
    proto: &'static str,
    port: u16,
    now: SystemTime,
) -> ListenerSets {
    let (deny, allow) = policy.network_lists(name);
    let mut forever: Vec<IpNet> = deny;
    let mut timed: Vec<(IpNet, Duration)> = Vec::new();
    for ban in policy.static_bans() {
        let BanTarget::Network(net) = &ban.target else {
            continue;
        };
        match ban.until {
            None => forever.push(*net),
            Some(until) => {
                if let Ok(left) = until.duration_since(now) {
                    timed.push((*net, left));
                }
            }
        }
    }
    let forever = IpNet::aggregate(&forever);
    // A timed ban overlapping a network denied for good is left out: inside it, it adds
    // nothing; around it, the set would hold overlapping intervals (moat refuses it anyway).
    timed.retain(|(n, _)| !forever.iter().any(|f| f.contains(n) || n.contains(f)));
    let mut deny: [Vec<(IpNet, Option<Duration>)>; 2] = [Vec::new(), Vec::new()];
    let entries = forever
        .into_iter()
        .map(|n| (n, None))
        .chain(merge_timed(timed).into_iter().map(|(n, t)| (n, Some(t))));
    for (net, t) in entries {
        let fam = usize::from(matches!(net, IpNet::V6(_)));
        if let Some(v) = deny.get_mut(fam) {
            v.push((net, t));
        }
    }
    let allow = IpNet::aggregate(&allow);
    let family = |v6: bool| -> Option<Vec<IpNet>> {
        let nets: Vec<IpNet> = allow
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .copied()
            .collect();
        // A family whose allow list holds /0 admits all of it: no rule needed.
        (!nets.iter().any(|n| n.prefix_len() == 0)).then_some(nets)
    };
    ListenerSets {
        name: name.to_owned(),
        proto,
        port,
        deny,
        allow: [family(false), family(true)],
    }
}

/// Timed bans without overlaps (an interval set refuses them): a network inside another is
/// folded into it with the shorter of the two times, so the set never drops a source past the
/// end of its ban; moat itself refuses the rest.
fn merge_timed(mut timed: Vec<(IpNet, Duration)>) -> Vec<(IpNet, Duration)> {
    timed.sort_by_key(|(n, _)| (n.prefix_len(), *n));
    let mut out: Vec<(IpNet, Duration)> = Vec::new();
    for (net, left) in timed {
        match out.iter_mut().find(|(o, _)| o.contains(&net)) {
            Some((_, t)) => *t = (*t).min(left),
            None => out.push((net, left)),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
