//! Connection-level modes: K idle sessions (memory per connection), full TLS handshakes per
//! second, and refused connections per second from a denied source.
//!
//! Every mode opens its connections over the target's transport (TLS, WSS or QUIC). A refusal
//! is a TCP-level event for TLS and WSS (the same socket is refused before any TLS byte); over
//! QUIC a denied source's attempt is dropped without a reply, so it counts as `ignored` once
//! `--quic-wait` passes without an answer, and a close before the handshake counts as refused.
//!
//! `idle` and `handshake` report the set-ups that did not end in a session by kind: `refused`
//! counts CONNACKs with a non-zero code (the server's answer), `failed` every failure including
//! those, and `errors` the commonest error texts, so that no failure goes uncounted or unexplained.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use moat::mqtt::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::client::{source, tcp_connect, ConnAckRefused, Probe, Target};
use crate::histogram::Histogram;
use crate::load::Ramp;
use crate::Report;

/// `idle`: open K MQTT sessions and hold them.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct IdleArgs {
    /// Sessions to open.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Set-ups in progress at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// New connections per second (0 = as fast as `concurrency` allows).
    #[arg(long, default_value_t = 0)]
    ramp: u32,
    /// Seconds to hold the sessions after the last one is up (after `--quiet` and
    /// `--ping-window`).
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Keep alive (seconds) in every CONNECT.
    #[arg(long = "keep-alive", default_value_t = 600)]
    keep_alive: u16,
    /// Seconds right after `ready` in which no session sends anything; the CPU of
    /// `--front-pid`/`--broker-pid` over them is `quiet_front_cpu_s`/`quiet_broker_cpu_s`.
    #[arg(long, default_value_t = 0.0)]
    quiet: f64,
    /// Then every session sends a PINGREQ this often (seconds) for `--ping-window` seconds,
    /// the sessions' phases spread evenly over one period, as a fleet's devices are; 0 = never.
    #[arg(long = "ping-every", default_value_t = 0.0)]
    ping_every: f64,
    /// Seconds of pinging; the CPU over them is `ping_front_cpu_s`/`ping_broker_cpu_s`.
    #[arg(long = "ping-window", default_value_t = 0.0)]
    ping_window: f64,
    /// Process whose CPU (utime+stime) the quiet and ping windows report as `front`.
    #[arg(long = "front-pid")]
    front_pid: Option<u32>,
    /// Like `--front-pid`, reported as `broker` (the broker behind the front door).
    #[arg(long = "broker-pid")]
    broker_pid: Option<u32>,
}

/// When the held sessions ping: from the first instant until the second.
type PingPlan = Option<(tokio::time::Instant, tokio::time::Instant)>;

/// Counters of the held sessions.
#[derive(Default)]
struct Held {
    alive: AtomicU64,
    dropped: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
}

/// Where a held session is in the ping plan.
enum Pinging {
    Waiting,
    Next {
        at: tokio::time::Instant,
        end: tokio::time::Instant,
    },
    Done,
}

/// Holds one session until the server closes it (or the process ends), counting PINGRESPs,
/// and sends PINGREQs every `every` once the plan says so, starting `phase` (0..1) of a
/// period into it.
async fn hold(
    mut s: crate::client::Session,
    phase: f64,
    every: Duration,
    mut plan: tokio::sync::watch::Receiver<PingPlan>,
    held: Arc<Held>,
) {
    let mut state = Pinging::Waiting;
    loop {
        let next_at = match state {
            Pinging::Next { at, .. } => at,
            _ => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            // Reads into a buffer and frames what is complete: nothing is lost when another
            // branch wins.
            p = s.next() => match p {
                Ok(Some(Packet::PingResp)) => {
                    held.pongs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            Ok(()) = plan.changed(), if matches!(state, Pinging::Waiting) && !every.is_zero() => {
                if let Some((start, end)) = *plan.borrow_and_update() {
                    state = Pinging::Next { at: start + every.mul_f64(phase), end };
                }
            }
            () = tokio::time::sleep_until(next_at), if matches!(state, Pinging::Next { .. }) => {
                let Pinging::Next { at, end } = state else { continue };
                if at >= end {
                    state = Pinging::Done;
                    continue;
                }
                if s.io.write_all(&[0xC0, 0x00]).await.is_err() || s.io.flush().await.is_err() {
                    break;
                }
                held.pings.fetch_add(1, Ordering::Relaxed);
                state = Pinging::Next { at: at + every, end };
            }
        }
    }
    held.alive.fetch_sub(1, Ordering::Relaxed);
    held.dropped.fetch_add(1, Ordering::Relaxed);
}

/// `handshake`: full TLS handshakes (optionally + CONNECT/CONNACK) per second.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct HandshakeArgs {
    /// Handshake loops running at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Also send CONNECT and wait for CONNACK on each connection.
    #[arg(long)]
    connect: bool,
}

/// `refused`: connections per second that the server closes without a byte.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RefusedArgs {
    /// Connect loops running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Second octet of the denied source range: connections come from 127.<N>.0.0/16.
    #[arg(long, default_value_t = 66)]
    source_net: u8,
    /// MQTT sessions to open (from 127.0.0.1) and hold first, e.g. to fill a connection cap.
    #[arg(long, default_value_t = 0)]
    hold: usize,
    /// QUIC only: seconds without an answer after which an attempt counts as ignored.
    #[arg(long = "quic-wait", default_value_t = 1.0)]
    quic_wait: f64,
}

/// Attempts that did not end in a session, by what went wrong, so that a run says why: the
/// server's refusals (a CONNACK with a non-zero code) apart from connections that broke
/// (reset, timeout, TLS error).
#[derive(Default)]
struct Errors {
    /// Count by error text (the whole chain, `{:#}`).
    by_text: std::collections::BTreeMap<String, u64>,
    /// Of those, CONNACK refusals.
    refused: u64,
}

// === impl Errors ===

impl Errors {
    fn note(&mut self, e: &anyhow::Error) {
        if e.downcast_ref::<ConnAckRefused>().is_some() {
            self.refused += 1;
        }
        *self.by_text.entry(format!("{e:#}")).or_default() += 1;
    }

    fn merge(&mut self, other: Errors) {
        self.refused += other.refused;
        for (k, n) in other.by_text {
            *self.by_text.entry(k).or_default() += n;
        }
    }

    fn total(&self) -> u64 {
        self.by_text.values().sum()
    }

    /// `failed` (every attempt that did not end in a session), `refused` (CONNACK refusals
    /// among them) and `errors` (the five commonest, `N× text; …`).
    fn report(&self, r: &mut Report) {
        let mut common: Vec<_> = self.by_text.iter().collect();
        common.sort_by(|a, b| b.1.cmp(a.1));
        let summary: Vec<String> = common
            .iter()
            .take(5)
            .map(|(text, n)| format!("{n}× {text}"))
            .collect();
        r.num("failed", self.total() as f64)
            .num("refused", self.refused as f64)
            .text("errors", &summary.join("; "));
    }
}

/// How one connection attempt from a denied source ended.
enum Attempt {
    /// Closed or reset without an answer.
    Refused,
    /// No answer at all before the deadline (QUIC: the server dropped the attempt).
    Ignored,
    /// The server answered or kept the connection: not refused.
    Answered,
    /// A local failure (ports, sockets): neither.
    Error,
}

/// Attempts by outcome.
#[derive(Default)]
struct Tally {
    refused: u64,
    ignored: u64,
    answered: u64,
    errors: u64,
}

// === impl Tally ===

impl Tally {
    fn count(&mut self, a: Attempt) {
        let n = match a {
            Attempt::Refused => &mut self.refused,
            Attempt::Ignored => &mut self.ignored,
            Attempt::Answered => &mut self.answered,
            Attempt::Error => &mut self.errors,
        };
        *n += 1;
    }
}

pub(crate) async fn idle(target: Target, args: IdleArgs) -> anyhow::Result<Report> {
    let target = Arc::new(target);
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let held = Arc::new(Held::default());
    let (plan_tx, plan_rx) = tokio::sync::watch::channel::<PingPlan>(None);
    let every = Duration::try_from_secs_f64(args.ping_every).unwrap_or_default();
    let mut ramp = Ramp::new(args.ramp);
    let pid = std::process::id();
    let start = Instant::now();
    let mut setups = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        ramp.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let (target, held, plan) = (target.clone(), held.clone(), plan_rx.clone());
        let phase = i as f64 / args.conns as f64;
        let keep_alive = args.keep_alive;
        setups.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let s = target
                .session(
                    Some(source(21, i)),
                    &format!("bench-i-{pid}-{i}"),
                    keep_alive,
                )
                .await;
            drop(permit);
            let took = t0.elapsed();
            let s = s?;
            held.alive.fetch_add(1, Ordering::Relaxed);
            // Owned by this task until the process ends: reads until the server closes.
            tokio::spawn(hold(s, phase, every, plan, held));
            anyhow::Ok(took)
        }));
    }
    let mut hist = Histogram::new();
    let mut errors = Errors::default();
    for t in setups {
        match t.await {
            Ok(Ok(took)) => hist.record(took.as_nanos() as u64),
            Ok(Err(e)) => errors.note(&e),
            Err(e) => errors.note(&anyhow::Error::new(e)),
        }
    }
    let setup = start.elapsed();
    let up = held.alive.load(Ordering::Relaxed);
    let cpu = || {
        (
            crate::load::cpu_seconds(args.front_pid),
            crate::load::cpu_seconds(args.broker_pid),
        )
    };
    // The line the comparison scripts wait for before they read the server's memory.
    println!("ready {up} sessions up, {} failed", errors.total());
    let c0 = cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.quiet.max(0.0))).await;
    let (c1, quiet_s) = (cpu(), t0.elapsed().as_secs_f64());
    let pinging = !every.is_zero() && args.ping_window > 0.0;
    let (mut c2, mut ping_s) = (c1, 0.0);
    if pinging {
        let begin = tokio::time::Instant::now();
        let window = Duration::from_secs_f64(args.ping_window);
        plan_tx.send_replace(Some((begin, begin + window)));
        tokio::time::sleep_until(begin + window).await;
        (c2, ping_s) = (cpu(), begin.elapsed().as_secs_f64());
        println!("pinged");
    }
    let pings = held.pings.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let mut r = Report::new("idle");
    r.num("conns", args.conns as f64).num("up", up as f64);
    errors.report(&mut r);
    r.num("still_up", held.alive.load(Ordering::Relaxed) as f64)
        .num(
            "dropped_while_held",
            held.dropped.load(Ordering::Relaxed) as f64,
        )
        .num("keep_alive", f64::from(args.keep_alive))
        .num("quiet_s", quiet_s)
        .num("ping_s", ping_s)
        .num("pings", pings as f64)
        .num("pongs", held.pongs.load(Ordering::Relaxed) as f64)
        .num("setup_per_s", hist.len() as f64 / setup.as_secs_f64())
        .latency("setup", &hist);
    for (name, a, b, shown) in [
        ("quiet_front_cpu_s", c0.0, c1.0, true),
        ("quiet_broker_cpu_s", c0.1, c1.1, true),
        ("ping_front_cpu_s", c1.0, c2.0, pinging),
        ("ping_broker_cpu_s", c1.1, c2.1, pinging),
    ] {
        if let (Some(a), Some(b), true) = (a, b, shown) {
            r.num(name, b - a);
        }
    }
    Ok(r)
}

pub(crate) async fn handshake(target: Target, args: HandshakeArgs) -> anyhow::Result<Report> {
    let target = Arc::new(target);
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut loops = Vec::new();
    for l in 0..args.concurrency.max(1) {
        let (target, counter) = (target.clone(), counter.clone());
        let mqtt = args.connect;
        loops.push(tokio::spawn(async move {
            let mut hist = Histogram::new();
            let mut errors = Errors::default();
            let pid = std::process::id();
            while Instant::now() < end {
                // Rotating sources: the client closes first, so its TIME_WAITs spread out.
                let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let src = Some(source(31, n / 4));
                let t0 = Instant::now();
                if mqtt {
                    match target
                        .session(src, &format!("bench-h-{pid}-{l}-{n}"), 60)
                        .await
                    {
                        Ok(mut s) => {
                            hist.record(t0.elapsed().as_nanos() as u64);
                            let _ = s.io.write_all(&[0xe0, 0x00]).await;
                            let _ = s.io.shutdown().await;
                        }
                        Err(e) => errors.note(&e),
                    }
                } else {
                    match target.open(src).await {
                        Ok(mut io) => {
                            hist.record(t0.elapsed().as_nanos() as u64);
                            // close_notify, then wait for the server's close: proves it
                            // finished the handshake and noticed the end.
                            let _ = io.shutdown().await;
                            let mut sink = [0u8; 256];
                            let wait = async { while let Ok(1..) = io.read(&mut sink).await {} };
                            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
                        }
                        Err(e) => errors.note(&e),
                    }
                }
            }
            (hist, errors)
        }));
    }
    let mut hist = Histogram::new();
    let mut errors = Errors::default();
    for l in loops {
        let (h, e) = l.await.context("handshake loop")?;
        hist.merge(&h);
        errors.merge(e);
    }
    let elapsed = start.elapsed();
    let mut r = Report::new(if args.connect { "connect" } else { "handshake" });
    r.num("concurrency", args.concurrency as f64)
        .num("ok", hist.len() as f64);
    errors.report(&mut r);
    r.num("per_s", hist.len() as f64 / elapsed.as_secs_f64())
        .latency("lat", &hist);
    Ok(r)
}

pub(crate) async fn refused(target: Target, args: RefusedArgs) -> anyhow::Result<Report> {
    let mut held = Vec::new();
    for i in 0..args.hold {
        let id = format!("bench-r-{}-{i}", std::process::id());
        held.push(
            target
                .session(None, &id, 600)
                .await
                .context("holding session")?,
        );
    }
    let target = Arc::new(target);
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let wait = Duration::from_secs_f64(args.quic_wait);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (target, counter) = (target.clone(), counter.clone());
        let net = args.source_net;
        loops.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut hist = Histogram::new();
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let src = Some(source(net, n));
                let t0 = Instant::now();
                let outcome = if target.is_quic() {
                    match target.quic_probe(src, wait).await {
                        Ok(Probe::Refused) => Attempt::Refused,
                        Ok(Probe::Ignored) => Attempt::Ignored,
                        Ok(Probe::Answered) => Attempt::Answered,
                        Err(_) => Attempt::Error,
                    }
                } else {
                    tcp_attempt(target.addr, src).await
                };
                if matches!(outcome, Attempt::Refused) {
                    hist.record(t0.elapsed().as_nanos() as u64);
                }
                tally.count(outcome);
            }
            (tally, hist)
        }));
    }
    let mut tally = Tally::default();
    let mut hist = Histogram::new();
    for l in loops {
        let (t, h) = l.await.context("refusal loop")?;
        tally.refused += t.refused;
        tally.ignored += t.ignored;
        tally.answered += t.answered;
        tally.errors += t.errors;
        hist.merge(&h);
    }
    let Tally {
        refused,
        ignored,
        answered,
        errors,
    } = tally;
    let elapsed = start.elapsed();
    drop(held);
    let mut r = Report::new("refused");
    r.num("refused", refused as f64)
        .num("ignored", ignored as f64)
        .num("not_refused", answered as f64)
        .num("errors", errors as f64)
        .num("per_s", (refused + ignored) as f64 / elapsed.as_secs_f64())
        .latency("lat", &hist);
    Ok(r)
}

/// TCP connect from `src`, then one read: a reset or a close without a byte is a refusal.
async fn tcp_attempt(addr: std::net::SocketAddr, src: Option<std::net::IpAddr>) -> Attempt {
    let mut tcp = match tcp_connect(addr, src).await {
        Ok(t) => t,
        // Refused before the handshake completed (RST on SYN) counts as refused.
        Err(e) if is_refusal(&e) => return Attempt::Refused,
        Err(_) => return Attempt::Error,
    };
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Attempt::Refused,
        // The server said something or kept the connection: not refused.
        Ok(Ok(_)) | Err(_) => Attempt::Answered,
    }
}

fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        )
    })
}
