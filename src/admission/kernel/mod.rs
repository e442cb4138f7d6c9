//! Refusal in the kernel: the denied networks, the allow list and the source bans compiled into
//! a classic BPF socket filter on every TCP listener (`SO_ATTACH_FILTER`, no privilege needed),
//! so the kernel drops a refused source's SYN and the connection never exists: no accept, no
//! file descriptor, no wake-up of moat.
//!
//! The filter is an accelerator; the user-space gate stays the authority. The filter only ever
//! drops a *subset* of what the gate refuses (the property test in `tests.rs` runs the program
//! in an interpreter against [`Gate::admit`]), and whatever it leaves out (deny rules beyond the
//! program's length, bans about to end, limits, caps) the gate refuses after accept as before.
//! To stay a subset while time passes, a ban enters the filter only while more than
//! [`HORIZON`] of it is left, and the program is rebuilt at least every [`CHECK`].
//!
//! What it owns: [`rules_for`] (the rules of one listener at one moment: pure), the program
//! (`program.rs`: pure), and [`KernelFilter::run`], the task that rebuilds the programs and
//! swaps them onto the listeners. A replacement is atomic in the kernel (`SO_ATTACH_FILTER`
//! swaps the program under RCU); replacements are at most one per [`MIN_GAP`], however often
//! bans are set. Accepted sockets inherit the listener's filter; the accept loop detaches it
//! ([`detach`]) so established connections pay nothing per packet.
//!
//! Must not: drop anything the gate would admit; hold the ban table's lock while compiling.

mod program;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use super::Gate;
use crate::policy::{BanTarget, Policy};
pub(crate) use program::{compile, Insn, Program, Rules, MAX_INSNS};

/// A ban enters the filter only while more than this is left of it, so a filter never outlives
/// a ban it holds by more than the slack between checks.
pub(crate) const HORIZON: Duration = Duration::from_secs(3);

/// How often the task rebuilds the rules without being told (bans near their end, lifted bans).
pub(crate) const CHECK: Duration = Duration::from_secs(1);

/// How often the task looks for a new policy (a pointer comparison).
const POLICY_POLL: Duration = Duration::from_millis(100);

/// Fewest time between two rebuilds: a burst of bans is one replacement.
pub(crate) const MIN_GAP: Duration = Duration::from_millis(250);

/// Whom a listener lets through as relays (`Gate::admit_relay`: no network rule, no ban),
/// whatever the policy says: its PROXY-protocol `trusted_proxies`, or its WebSocket front's
/// `ws.trusted_proxies`. The filter accepts them before any rule. (A PROXY listener refuses
/// every other peer in user space; the filter leaves those to it, so a misconfigured balancer
/// still gets its audit line, "not a trusted proxy".)
pub(crate) type Relays = Vec<IpNet>;

/// The rules of `listener`'s filter at `now`: sources `relays` lets through are accepted; then
/// the policy's deny lists, the static address bans and the automatic source bans
/// (`(source key, time left)`) that last past [`HORIZON`], in that order of priority, and the
/// allow list that applies there.
pub(crate) fn rules_for(
    policy: &Policy,
    listener: &str,
    relays: &[IpNet],
    auto_bans: &[(IpAddr, Duration)],
    now: SystemTime,
) -> Rules {
    let exempt = relays.to_vec();
    let (mut deny, allow) = policy.network_lists(listener);
    let until = now + HORIZON;
    deny.extend(policy.static_bans().iter().filter_map(|b| match &b.target {
        BanTarget::Network(net) if b.active_at(until) => Some(*net),
        _ => None,
    }));
    let prefix = policy.connection_limits().ipv6_prefix;
    let mut bans: Vec<&(IpAddr, Duration)> = auto_bans
        .iter()
        .filter(|(_, left)| *left > HORIZON)
        .collect();
    // The longest bans are worth the most instructions.
    bans.sort_by_key(|b| std::cmp::Reverse(b.1));
    deny.extend(
        bans.into_iter()
            .filter_map(|(key, _)| ban_net(*key, prefix)),
    );
    Rules {
        exempt,
        deny,
        allow: Some(allow),
    }
}

/// The network an automatic ban on source key `key` refuses: an IPv4 address, or the IPv6
/// prefix of `v6_prefix` bits that `source_key` turns into `key` (none when `key` has bits past
/// the prefix: after a reload changed the prefix, no address maps to it).
fn ban_net(key: IpAddr, v6_prefix: u8) -> Option<IpNet> {
    match key.to_canonical() {
        IpAddr::V4(v4) => IpNet::new(IpAddr::V4(v4), 32).ok(),
        IpAddr::V6(v6) => {
            let net = IpNet::new(IpAddr::V6(v6), v6_prefix.min(128)).ok()?;
            (net.network() == IpAddr::V6(v6)).then_some(net)
        }
    }
}

/// One listener socket the filter is attached to.
struct Attached {
    /// Listener name (its rules are looked up by it).
    name: Arc<str>,
    /// Whom the listener lets through as relays.
    relays: Relays,
    /// A duplicate of the listening socket's descriptor (the accept loop owns the original).
    socket: socket2::Socket,
    /// The program in force, to skip identical replacements.
    installed: Option<Vec<Insn>>,
    /// The instruction budget; halved when the kernel refuses a program as too large for
    /// `net.core.optmem_max` (ENOMEM).
    budget: usize,
    /// Whether an attach error was already logged at warn.
    warned: bool,
}

/// The task that keeps every TCP listener's filter in step with the policy and the bans.
#[derive(Default)]
pub(crate) struct KernelFilter {
    listeners: Vec<Attached>,
}

// === impl KernelFilter ===

impl KernelFilter {
    /// Adds a listener (by a duplicate of its descriptor) and whom it lets through as relays.
    pub(crate) fn add(
        &mut self,
        name: Arc<str>,
        relays: Relays,
        socket: socket2::SockRef<'_>,
    ) -> std::io::Result<()> {
        self.listeners.push(Attached {
            name,
            relays,
            socket: socket.try_clone()?,
            installed: None,
            budget: MAX_INSNS,
            warned: false,
        });
        Ok(())
    }

    /// Keeps the filters current until `stop` resolves, then detaches them. Spawned by the
    /// server at start (owned by the drain).
    pub(crate) async fn run(
        mut self,
        gate: Arc<Gate>,
        policy: Arc<ArcSwap<Policy>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut seen = policy.load_full();
        loop {
            self.refresh(&seen, &gate);
            let rebuilt = tokio::time::Instant::now();
            // Wait for a reason: a ban, a new policy, or the periodic check.
            loop {
                tokio::select! {
                    _ = &mut stop => {
                        self.detach_all();
                        return;
                    }
                    _ = gate.source_banned() => break,
                    _ = tokio::time::sleep(POLICY_POLL) => {}
                }
                if !Arc::ptr_eq(&policy.load(), &seen) {
                    break;
                }
                if rebuilt.elapsed() >= CHECK {
                    break;
                }
            }
            // Bound the replacement rate (a ban storm is one rebuild per gap).
            let gap = MIN_GAP.saturating_sub(rebuilt.elapsed());
            tokio::select! {
                _ = &mut stop => {
                    self.detach_all();
                    return;
                }
                _ = tokio::time::sleep(gap) => {}
            }
            seen = policy.load_full();
        }
    }

    /// Rebuilds every listener's program and installs those that changed (the server calls it
    /// once at start, so the filters are in force before `Server::start` returns).
    pub(crate) fn refresh(&mut self, policy: &Policy, gate: &Gate) {
        let bans = gate.source_bans();
        let now = SystemTime::now();
        for l in &mut self.listeners {
            let rules = rules_for(policy, &l.name, &l.relays, &bans, now);
            l.install(&rules);
        }
    }

    fn detach_all(&mut self) {
        for l in &mut self.listeners {
            let _ = l.socket.detach_filter();
            l.installed = None;
        }
    }
}

// === impl Attached ===

impl Attached {
    /// Compiles `rules` and swaps the program in if it changed; on a kernel refusal for size,
    /// retries with half the instructions. If no program can be attached, the old one is
    /// detached: a stale filter could drop what the new rules admit.
    fn install(&mut self, rules: &Rules) {
        loop {
            let program = match compile(rules, self.budget) {
                Ok(p) => p,
                Err(error) => return self.give_up(&error),
            };
            if self.installed.as_ref() == Some(&program.insns) {
                return;
            }
            let insns: Vec<socket2::SockFilter> = program
                .insns
                .iter()
                .map(|i| socket2::SockFilter::new(i.code, i.jt, i.jf, i.k))
                .collect();
            match self.socket.attach_filter(&insns) {
                Ok(()) => {
                    log_installed(&self.name, &program);
                    self.installed = Some(program.insns);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory && self.budget > 64 => {
                    self.budget /= 2;
                }
                Err(error) => return self.give_up(&error),
            }
        }
    }

    /// No program for the current rules: none at all (the user-space gate refuses alone).
    fn give_up(&mut self, error: &dyn std::fmt::Display) {
        let detached = self.socket.detach_filter().is_ok();
        self.installed = None;
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(listener = %self.name, %error, detached, "no kernel filter; the user-space gate refuses alone");
        }
    }
}

fn log_installed(listener: &str, p: &Program) {
    if p.deny_left_out > 0 {
        tracing::info!(
            listener,
            instructions = p.insns.len(),
            deny = p.deny_compiled,
            left_to_user_space = p.deny_left_out,
            allow_list = p.allow_compiled,
            "kernel filter updated (program full: the rest is refused after accept)"
        );
    } else {
        tracing::debug!(
            listener,
            instructions = p.insns.len(),
            deny = p.deny_compiled,
            allow_list = p.allow_compiled,
            "kernel filter updated"
        );
    }
}

/// Removes the filter an accepted socket inherited from its listener: the connection was
/// admitted, and a filter on it would run on every packet it receives.
pub(crate) fn detach(stream: &tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(stream).detach_filter();
}
