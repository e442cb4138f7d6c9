//! Throughput and latency: N publishers, M subscribers on `bench/+`, QoS 0/1/2.
//!
//! Every payload starts with the publisher id, a sequence number and the send time (ns since the
//! generator started), so a subscriber measures publish → receive latency without a shared clock
//! problem (one process, one monotonic clock). A window of messages in flight (sent but not yet
//! received by every subscriber) keeps the run closed-loop: the generator measures the rate the
//! path sustains, not how much a broker can queue before it drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use moat::mqtt::{self, Ack, Packet, Publish, QoS, Subscribe, SubscribeOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};

use crate::client::{source, Io, Reader, Target};
use crate::histogram::Histogram;
use crate::{now_ns, Report};

/// Bytes of bookkeeping at the start of every payload: publisher id, sequence, send time.
const STAMP: usize = 4 + 8 + 8;

/// What one load run does.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LoadArgs {
    /// Publishers.
    #[arg(long, default_value_t = 1)]
    pubs: usize,
    /// Subscribers (each subscribes to every publisher's topic).
    #[arg(long, default_value_t = 1)]
    subs: usize,
    /// QoS of publications and subscriptions.
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// Payload bytes (at least 20: the stamp).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages to publish in total (over all publishers).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Stop publishing after this many seconds even if `count` is not reached.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Total publish rate in messages/s; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Messages in flight (published, not yet received by all subscribers); 0 = open loop.
    #[arg(long, default_value_t = 1000)]
    window: u32,
    /// PUBLISH packets per write (1 = one TLS record per message, like a device).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// New connections per second while setting up (0 = all at once).
    #[arg(long, default_value_t = 0)]
    ramp: u32,
    /// Seconds to wait for stragglers after the last publish.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Connection set-ups in progress at once (publishers, then subscribers); 1 = one by one.
    #[arg(long = "setup-concurrency", default_value_t = 32)]
    setup_concurrency: usize,
    /// Process whose CPU (utime+stime) to report as `front_cpu_s`, measured from the first
    /// publish to the end of the drain, so connection set-up is not counted.
    #[arg(long = "front-pid")]
    front_pid: Option<u32>,
    /// Like `--front-pid`, reported as `broker_cpu_s` (the broker behind the front door).
    #[arg(long = "broker-pid")]
    broker_pid: Option<u32>,
}

/// Bounds of a run's connection counts: a fleet shape opens thousands, never without limit.
const MAX_CONNS: usize = 20_000;

/// CPU seconds (utime+stime) a process has used so far, from `/proc/PID/stat`; `None` if it
/// cannot be read. Linux reports clock ticks of `USER_HZ`, 100 on every architecture it runs
/// tokio on.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Opens `n` sessions from the source family `family` with client ids `prefix-i`, at most
/// `concurrency` set-ups at once and no faster than `ramp`; the sessions come back in order.
async fn open_all(
    target: &Arc<Target>,
    n: usize,
    family: u8,
    prefix: &str,
    ramp: &mut Ramp,
    concurrency: usize,
) -> anyhow::Result<Vec<crate::client::Session>> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut setups = Vec::with_capacity(n);
    for i in 0..n {
        ramp.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let (target, id) = (target.clone(), format!("{prefix}-{i}"));
        setups.push(tokio::spawn(async move {
            let s = target.session(Some(source(family, i)), &id, 600).await;
            drop(permit);
            s.with_context(|| format!("session {id}"))
        }));
    }
    let mut sessions = Vec::with_capacity(n);
    for t in setups {
        sessions.push(t.await.context("set-up task")??);
    }
    Ok(sessions)
}

/// Counters shared by publishers and subscribers.
struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    first_send: AtomicU64,
    last_receive: AtomicU64,
    /// Permits for messages in flight, `subs` per message.
    window: Option<Semaphore>,
    /// Tells subscribers to stop.
    stop: Notify,
}

pub(crate) async fn run(target: Target, args: LoadArgs) -> anyhow::Result<Report> {
    let qos = QoS::from_u8(args.qos).context("--qos must be 0, 1 or 2")?;
    if args.payload < STAMP {
        bail!("--payload must be at least {STAMP} bytes");
    }
    let subs = args.subs.max(1);
    let pubs = args.pubs.max(1);
    if subs + pubs > MAX_CONNS {
        bail!("--pubs + --subs must stay within {MAX_CONNS} connections");
    }
    let window = (args.window > 0).then(|| Semaphore::new(args.window as usize * subs));
    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        first_send: AtomicU64::new(u64::MAX),
        last_receive: AtomicU64::new(0),
        window,
        stop: Notify::new(),
    });
    let pid = std::process::id();
    let mut ramp = Ramp::new(args.ramp);

    let target = Arc::new(target);
    let mut sub_tasks = Vec::new();
    let subscribers = open_all(
        &target,
        subs,
        11,
        &format!("bench-s-{pid}"),
        &mut ramp,
        args.setup_concurrency,
    )
    .await
    .context("subscribers")?;
    for s in subscribers {
        let s = subscribe(s, qos).await?;
        sub_tasks.push(tokio::spawn(subscriber(s, qos, shared.clone())));
    }
    let per_pub = args.count.div_ceil(pubs as u64);
    let rate = (args.rate > 0).then(|| args.rate as f64 / pubs as f64);
    let sessions = open_all(
        &target,
        pubs,
        12,
        &format!("bench-p-{pid}"),
        &mut ramp,
        args.setup_concurrency,
    )
    .await
    .context("publishers")?;
    let cpu0 = (cpu_seconds(args.front_pid), cpu_seconds(args.broker_pid));
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let pub_start = Instant::now();
    let mut pub_tasks = Vec::new();
    for (i, s) in sessions.into_iter().enumerate() {
        let job = PubJob {
            id: i as u32,
            count: per_pub,
            qos,
            payload: args.payload,
            batch: args.batch.max(1),
            rate,
            deadline,
            subs: subs as u32,
            // Paced publishers start spread over one interval, as a fleet's devices do, not
            // all at the same instant.
            phase: i as f64 / pubs as f64,
        };
        pub_tasks.push(tokio::spawn(publisher(s, job, shared.clone())));
    }
    let mut pub_errors = 0;
    let mut finished = Vec::new();
    for t in pub_tasks {
        match t.await {
            Ok(Ok(held)) => finished.push(held),
            _ => pub_errors += 1,
        }
    }
    let pub_elapsed = pub_start.elapsed();
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * subs as u64;
    wait_for(&shared, expected, Duration::from_secs_f64(args.drain)).await;
    let cpu1 = (cpu_seconds(args.front_pid), cpu_seconds(args.broker_pid));
    drop(finished);
    shared.stop.notify_waiters();
    let mut hist = Histogram::new();
    for t in sub_tasks {
        if let Ok(h) = t.await {
            hist.merge(&h);
        }
    }
    let received = shared.received.load(Ordering::Relaxed);
    let first = shared.first_send.load(Ordering::Relaxed);
    let last = shared.last_receive.load(Ordering::Relaxed);
    let elapsed = Duration::from_nanos(last.saturating_sub(first));
    let mut r = Report::new("load");
    r.num("pubs", pubs as f64)
        .num("subs", subs as f64)
        .num("qos", f64::from(args.qos))
        .num("payload", args.payload as f64)
        .num("target_rate", args.rate as f64)
        .num("sent", sent as f64)
        .num("expected", expected as f64)
        .num("received", received as f64)
        .num("lost", expected.saturating_sub(received) as f64)
        .num("publisher_errors", f64::from(pub_errors))
        .num("elapsed_s", elapsed.as_secs_f64())
        .num("msgs_per_s", per_second(received, elapsed))
        .num("publish_per_s", per_second(sent, pub_elapsed))
        .latency("lat", &hist);
    if let (Some(a), Some(b)) = (cpu0.0, cpu1.0) {
        r.num("front_cpu_s", b - a);
    }
    if let (Some(a), Some(b)) = (cpu0.1, cpu1.1) {
        r.num("broker_cpu_s", b - a);
    }
    Ok(r)
}

fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// Waits until `expected` deliveries or until no progress for `quiet`.
async fn wait_for(shared: &Shared, expected: u64, quiet: Duration) {
    let mut last = shared.received.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while last < expected && since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = shared.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

async fn subscribe(
    mut s: crate::client::Session,
    qos: QoS,
) -> anyhow::Result<crate::client::Session> {
    let sub = Packet::Subscribe(Subscribe {
        pkid: 1,
        properties: Default::default(),
        filters: vec![("bench/+".into(), SubscribeOptions::qos(qos))],
    });
    let mut out = BytesMut::new();
    sub.encode(s.version, &mut out)?;
    s.io.write_all(&out).await?;
    s.io.flush().await?;
    let work = async {
        match s.next().await? {
            Some(Packet::SubAck(ack)) if ack.codes.iter().all(|c| *c < 0x80) => Ok(()),
            other => bail!("expected a granted SUBACK, got {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .context("no SUBACK in time")??;
    Ok(s)
}

/// Receives until told to stop; acknowledges QoS 1/2; returns the latency histogram.
async fn subscriber(s: crate::client::Session, qos: QoS, shared: Arc<Shared>) -> Histogram {
    let version = s.version;
    let (mut rd, mut wr) = s.split();
    let mut hist = Histogram::new();
    let mut batch = Vec::new();
    let mut out = BytesMut::new();
    loop {
        batch.clear();
        let stop = shared.stop.notified();
        tokio::select! {
            r = rd.batch(&mut batch) => match r {
                Ok(true) => {}
                _ => return hist,
            },
            _ = stop => return hist,
        }
        let now = now_ns();
        let mut n = 0u64;
        for p in batch.drain(..) {
            let reply = match p {
                Packet::Publish(p) => {
                    if let Some(sent) = stamp(&p.payload) {
                        hist.record(now.saturating_sub(sent));
                    }
                    n += 1;
                    match (qos, p.qos, p.pkid) {
                        (_, QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(Ack::new(id))),
                        (_, QoS::ExactlyOnce, Some(id)) => Some(Packet::PubRec(Ack::new(id))),
                        _ => None,
                    }
                }
                Packet::PubRel(a) => Some(Packet::PubComp(Ack::new(a.pkid))),
                _ => None,
            };
            if let Some(reply) = reply {
                let _ = reply.encode(version, &mut out);
            }
        }
        if n > 0 {
            shared.received.fetch_add(n, Ordering::Relaxed);
            shared.last_receive.fetch_max(now, Ordering::Relaxed);
            if let Some(w) = &shared.window {
                w.add_permits(n as usize);
            }
        }
        if !out.is_empty() {
            // The flush matters for transports that buffer (a no-op for TCP and QUIC).
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                return hist;
            }
            out.clear();
        }
    }
}

fn stamp(payload: &[u8]) -> Option<u64> {
    let b: [u8; 8] = payload.get(12..20)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// One publisher's share of the run.
struct PubJob {
    id: u32,
    count: u64,
    qos: QoS,
    payload: usize,
    batch: usize,
    /// Messages per second for this publisher, if paced.
    rate: Option<f64>,
    deadline: Instant,
    subs: u32,
    /// Where in its first interval a paced publisher starts, 0..1.
    phase: f64,
}

/// Packet ids in flight at most (QoS 1/2), below the 16-bit id space.
const MAX_INFLIGHT: u64 = 60_000;

/// A publisher's connection after its last message, held until the subscribers are done: a QUIC
/// connection that closes discards what it has not sent yet (a closed TCP socket still
/// delivers), which would count QoS 0 messages as lost.
struct Finished {
    _rd: Reader,
    _wr: tokio::io::WriteHalf<Box<dyn Io>>,
}

async fn publisher(
    s: crate::client::Session,
    job: PubJob,
    shared: Arc<Shared>,
) -> anyhow::Result<Finished> {
    let version = s.version;
    let (mut rd, mut wr) = s.split();
    let topic: mqtt::MqttStr = format!("bench/{}", job.id).into();
    let mut out = BytesMut::new();
    let mut acks = Vec::new();
    let (mut seq, mut done_acks) = (0u64, 0u64);
    let interval = job.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let start = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(job.phase));
    let mut pkid: u16 = 0;
    loop {
        let sending = seq < job.count && Instant::now() < job.deadline;
        if !sending && (job.qos == QoS::AtMostOnce || done_acks >= seq) {
            return Ok(Finished { _rd: rd, _wr: wr });
        }
        let may_send = sending && (job.qos == QoS::AtMostOnce || seq - done_acks < MAX_INFLIGHT);
        let next_at = interval.map(|i| start + i.mul_f64(seq as f64));
        let n = (job.count - seq.min(job.count))
            .min(job.batch as u64)
            .max(1);
        let permit = async {
            if let Some(at) = next_at {
                tokio::time::sleep_until(at.into()).await;
            }
            if let Some(w) = &shared.window {
                // A lost QoS 0 message never returns its permits: after a second, go on.
                if let Ok(Ok(p)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    w.acquire_many(job.subs * n as u32),
                )
                .await
                {
                    p.forget();
                }
            }
        };
        tokio::select! {
            biased;
            r = rd.batch(&mut acks), if job.qos != QoS::AtMostOnce => {
                if !r? {
                    bail!("server closed the publisher");
                }
                for p in acks.drain(..) {
                    match p {
                        Packet::PubAck(_) | Packet::PubComp(_) => done_acks += 1,
                        Packet::PubRec(a) => Packet::PubRel(Ack::new(a.pkid)).encode(version, &mut out)?,
                        _ => {}
                    }
                }
            }
            _ = permit, if may_send => {
                for _ in 0..n {
                    let now = now_ns();
                    shared.first_send.fetch_min(now, Ordering::Relaxed);
                    let id = (job.qos != QoS::AtMostOnce).then(|| {
                        pkid = pkid.checked_add(1).unwrap_or(1);
                        pkid
                    });
                    let p = Publish {
                        dup: false,
                        qos: job.qos,
                        retain: false,
                        topic: topic.clone(),
                        pkid: id,
                        properties: Default::default(),
                        payload: payload(job.id, seq, now, job.payload),
                    };
                    p.encode(version, &mut out)?;
                    seq += 1;
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("publisher stalled"),
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            wr.flush().await?;
            out.clear();
        }
    }
}

fn payload(id: u32, seq: u64, now: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u32(id);
    b.put_u64(seq);
    b.put_u64(now);
    b.resize(size, b'x');
    b.freeze()
}

/// Spaces connection set-ups to a rate.
pub(crate) struct Ramp {
    every: Option<Duration>,
    next: Instant,
}

// === impl Ramp ===

impl Ramp {
    pub(crate) fn new(per_second: u32) -> Self {
        Ramp {
            every: (per_second > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(per_second))),
            next: Instant::now(),
        }
    }

    pub(crate) async fn tick(&mut self) {
        if let Some(every) = self.every {
            tokio::time::sleep_until(self.next.into()).await;
            self.next += every;
        }
    }
}
