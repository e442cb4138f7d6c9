//! The one loop of a session after CONNACK: client → broker and broker → client, concurrently.
//!
//! The two directions run as two futures inside the session's single task, so a slow writer on
//! one side never stops the other side from being read (the classic proxy deadlock), and when
//! either ends the other is dropped with it: no task or socket outlives the session.
//!
//! Hot path, per read: the frames of one read are judged one by one and the ones that go on are
//! written together, as they are (no copy into a staging buffer): one vectored write, so one
//! syscall upstream and one TLS record towards the client. The keep alive is one timer per
//! session, moved only when it fires, rather than a timer armed and cancelled around every read.
//! The queues between the two directions allocate nothing until used, so an idle session costs
//! little more than its sockets and its TLS state (see BENCHMARKS.md).
//!
//! When either side says DISCONNECT, moat lets the broker close first (bounded by
//! [`BROKER_CLOSE_WAIT`]): a broker that reuses connection ids can otherwise take moat's close
//! as a second, late disconnect of whichever client got the id next (rumqttd 0.20 does: see
//! `BENCHMARKS.md`, "Handshake failures"). It also leaves the TIME_WAIT on the broker's side, not
//! on moat's ports towards it.
//!
//! Each packet is judged against the policy snapshot in force when it is read
//! (`env.policy()`), so a reload applies from the next packet on. Acknowledgements moat
//! owes the broker for deliveries it dropped go to the client → broker side through a queue
//! that never blocks the broker → client side: its length is bounded by the broker's in-flight
//! window, and a broker that overflows it ends the session. The state decides their order
//! against the client's own acknowledgements (the broker may close the connection on one out
//! of order); the driver only keeps it: the queue is emptied into the upstream write before
//! any client packet judged after them.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::env::Env;
use super::error::{BrokerFault, InternalFault, Outcome, PeerFault, Refusal};
use super::limits::{Check, SessionLimits};
use super::reader::{FrameReader, ReadError};
use super::state::{Audit, State, Step};
use super::upstream::UPSTREAM_KEEPALIVE;
use crate::broker::link::{BrokerRead, BrokerWrite};
use crate::mqtt::ProtocolVersion;
use crate::ops::audit;
use crate::shutdown::Drain;
use crate::stats::Stats;
use crate::transport::Peer;

/// Local answers (PINGRESP, refusals) queued for the client; bounded so a client that does not
/// read cannot make moat buffer without limit: the client → broker side waits instead.
const REPLY_QUEUE: usize = 64;

/// Acknowledgements moat owes the broker for dropped deliveries, waiting for the client →
/// broker side. Far above any broker's in-flight window (rumqttd: 100); never awaited on.
const BROKER_ACK_QUEUE: usize = 1024;

/// PINGREQ, sent upstream by moat on its own schedule.
const PINGREQ: &[u8] = &[0xc0, 0x00];

/// Longest a write to the client may take: a client that stops reading (TCP zero window) is
/// cut off instead of holding its session, its broker connection and its buffers forever.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames handed to one vectored write at most; more are written in further calls.
const MAX_IOV: usize = 64;

/// Longest moat waits, after a DISCONNECT went either way, for the broker to close the
/// connection ([MQTT-3.14.4-2]: a server closes after a DISCONNECT, and sends nothing more).
/// Brokers close at once; the bound only matters for one that never does.
const BROKER_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How a session ended without a refusal.
enum End {
    /// The client closed (or reset) its connection without DISCONNECT.
    ClientLeft,
    /// A DISCONNECT went from the client to the broker, or from the broker to the client.
    Disconnected,
}

/// What the session keeps after the CONNECT phase: only what the two directions need (the
/// CONNECT itself, with its properties and credentials, is dropped), so that an idle session
/// stays small.
pub(super) struct Link {
    /// The client's protocol version (the upstream speaks the same, 3.1 as 3.1.1).
    pub(super) version: crate::mqtt::ProtocolVersion,
    /// Keep alive enforced on the client, in seconds (0 = none).
    pub(super) keep_alive: u16,
    /// The per-session protocol state both directions consult.
    pub(super) state: Mutex<State>,
    /// Per-client rates and quotas (`session/limits.rs`).
    pub(super) limits: Mutex<SessionLimits>,
    /// Frames from the broker.
    pub(super) upstream_rd: FrameReader<BrokerRead>,
    /// Bytes to the broker.
    pub(super) upstream_wr: BrokerWrite,
    /// The broker client id, held until the session ends.
    pub(super) claim: super::registry::Claim,
}

// === impl Link ===

impl Link {
    /// Who the client is and its client id (for audit lines and the end of the session; read
    /// from the state rather than kept twice in every session).
    pub(super) fn who(&self) -> (String, String) {
        match self.state.lock() {
            Ok(state) => {
                let subject = state.subject();
                (subject.name.clone(), subject.client_id.clone())
            }
            Err(_) => Default::default(),
        }
    }
}

/// A bounded queue between the two directions of a session. Both run in the session's one
/// task, so a mutex-guarded deque and two `Notify`s do what a channel would, without a
/// channel's up-front block allocation in every session.
struct Queue {
    /// Frames not yet taken; allocated only once something is queued.
    items: Mutex<VecDeque<Bytes>>,
    /// Most frames held.
    bound: usize,
    /// Signalled when a frame is queued.
    ready: Notify,
    /// Signalled when frames were taken (room for a waiting sender).
    room: Notify,
}

// === impl Queue ===

impl Queue {
    fn new(bound: usize) -> Self {
        Queue {
            items: Mutex::new(VecDeque::new()),
            bound,
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    fn items(&self) -> Result<std::sync::MutexGuard<'_, VecDeque<Bytes>>, Refusal> {
        self.items
            .lock()
            .map_err(|_| InternalFault::Poisoned("session queue").into())
    }

    /// Queues a frame if there is room; gives it back otherwise.
    fn try_push(&self, bytes: Bytes) -> Result<Result<(), Bytes>, Refusal> {
        let mut q = self.items()?;
        if q.len() >= self.bound {
            return Ok(Err(bytes));
        }
        q.push_back(bytes);
        drop(q);
        // `notify_one` keeps a permit if the taker is not waiting yet: no lost wake-up.
        self.ready.notify_one();
        Ok(Ok(()))
    }

    /// Queues a frame, waiting while the queue is full.
    async fn push(&self, bytes: Bytes) -> Result<(), Refusal> {
        let mut bytes = bytes;
        loop {
            match self.try_push(bytes)? {
                Ok(()) => return Ok(()),
                Err(back) => bytes = back,
            }
            self.room.notified().await;
        }
    }

    /// Moves every queued frame to `out`; returns how many.
    fn take_into(&self, out: &mut Vec<Bytes>) -> Result<usize, Refusal> {
        let mut q = self.items()?;
        let n = q.len();
        out.extend(q.drain(..));
        drop(q);
        if n > 0 {
            self.room.notify_one();
        }
        Ok(n)
    }
}

/// Runs the session until one side closes. `Ok` means a normal end; `Err` carries what the
/// client must be told. Everything is borrowed from the caller, so this future holds only its
/// own working state.
pub(super) async fn pump<R, W>(
    client: &mut FrameReader<R>,
    client_wr: &mut W,
    link: &mut Link,
    peer: &Peer,
    env: &Env,
    mut drain: Drain,
) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let idle = match link.keep_alive {
        0 => None,
        // [MQTT-3.1.2-24] Close after one and a half keep alive periods without a packet.
        ka => Some(Duration::from_millis(u64::from(ka) * 1500)),
    };
    let replies = Queue::new(REPLY_QUEUE);
    let acks = Queue::new(BROKER_ACK_QUEUE);
    let state = &link.state;
    let limits = &link.limits;
    let ctx = Ctx {
        state,
        limits,
        env,
        peer,
    };

    // Both directions are built inside the `select!`: held in variables first, each would keep
    // a second slot in this future (moved-from values keep theirs), a kilobyte per session.
    let end = tokio::select! {
        r = client_to_broker(client, &mut link.upstream_wr, &ctx, &replies, &acks, idle) => r?,
        r = broker_to_client(&mut link.upstream_rd, client_wr, &ctx, &replies, &acks, &mut drain) => r?,
    };
    if let End::Disconnected = end {
        broker_closes(&mut link.upstream_rd).await;
    }
    Ok(())
}

/// Waits (at most [`BROKER_CLOSE_WAIT`]) for the broker to close the connection after a
/// DISCONNECT, discarding what it still sends (the client has gone).
///
/// moat neither closes nor half-closes its side first: rumqttd 0.20 removes a connection when
/// it reads DISCONNECT, frees its connection id, and hands it to the next CONNECT; if its link
/// then sees moat's close before it sees that removal, it reports a second disconnect for the
/// same id, and the router drops whichever client holds the id by then (a legitimate CONNECT
/// answered "server unavailable", or a fresh session closed). When the broker closes first, its
/// link ends through the removal and reports nothing.
async fn broker_closes<R: AsyncRead + Unpin>(upstream: &mut FrameReader<R>) {
    let drain = async { while let Ok(Some(_)) = upstream.next().await {} };
    if tokio::time::timeout(BROKER_CLOSE_WAIT, drain)
        .await
        .is_err()
    {
        tracing::debug!(
            wait = ?BROKER_CLOSE_WAIT,
            "broker kept the connection open after DISCONNECT; closing it"
        );
    }
}

/// Broker → client: judge every delivery, forward what passes together with the local answers
/// queued by the other direction; acknowledgements owed to the broker go to the other side.
async fn broker_to_client<W: AsyncWrite + Unpin>(
    upstream_rd: &mut FrameReader<BrokerRead>,
    client_wr: &mut W,
    ctx: &Ctx<'_>,
    replies: &Queue,
    acks: &Queue,
    drain: &mut Drain,
) -> Result<End, Refusal> {
    let (state, limits, env) = (ctx.state, ctx.limits, ctx.env);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            biased;
            wake = drain.signalled_or_epoch(ctx.peer.cert.as_deref().map(|c| c.checked())) => {
                super::revoke::on_wake(ctx.peer, env, wake)?;
            }
            _ = replies.ready.notified() => {
                replies.take_into(&mut out)?;
            }
            frame = upstream_rd.next() => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return Err(BrokerFault::Closed.into()),
                    Err(e) => return Err(BrokerFault::Read(e).into()),
                };
                let mut next = Some(frame);
                while let Some(frame) = next {
                    let step = {
                        let policy = env.policy();
                        lock(state)?.on_broker_packet(frame, &policy)?
                    };
                    match step {
                        Step::Forward(b) => out.push(b),
                        Step::Reply(b) => ack_broker(acks, b)?,
                        Step::Goodbye(b) => {
                            out.push(b);
                            write(client_wr, &mut out).await.map_err(PeerFault::Gone)?;
                            return Ok(End::Disconnected);
                        }
                        Step::Refuse { reply, forward, audits } => {
                            ctx.audit(&audits);
                            if let Some(b) = reply {
                                ack_broker(acks, b)?;
                            }
                            if let Some(b) = forward {
                                out.push(b);
                            }
                        }
                        Step::Nothing => {}
                    }
                    next = upstream_rd.buffered().map_err(BrokerFault::Read)?;
                }
            }
        }
        // Whatever else is already queued goes out in the same write.
        replies.take_into(&mut out)?;
        {
            let mut limits = lock(limits)?;
            for frame in &out {
                limits.on_frame_to_client(frame);
            }
        }
        tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write(client_wr, &mut out))
            .await
            .map_err(|_| PeerFault::StoppedReading(CLIENT_WRITE_TIMEOUT))?
            .map_err(PeerFault::Gone)?;
    }
}

/// What both directions share.
struct Ctx<'a> {
    state: &'a Mutex<State>,
    /// Per-client rates and quotas (`session/limits.rs`).
    limits: &'a Mutex<SessionLimits>,
    env: &'a Env,
    peer: &'a Peer,
}

// === impl Ctx ===

impl Ctx<'_> {
    /// One audit line per refused topic or filter.
    fn audit(&self, audits: &[Audit]) {
        let identity = self.identity();
        for a in audits {
            audit::refused(
                self.peer,
                Some(&identity),
                a.action.as_str(),
                &a.topic,
                &a.reason,
                &a.rule,
            );
        }
    }

    /// Who the client is, for an audit line (cloned: refusals are rare, sessions many).
    fn identity(&self) -> String {
        self.state
            .lock()
            .map(|s| s.subject().name.clone())
            .unwrap_or_default()
    }

    fn on_client_packet(&self, frame: Bytes) -> Result<Step, Refusal> {
        let policy = self.env.policy();
        lock(self.state)?.on_client_packet(frame, &policy)
    }
}

/// Queues an acknowledgement for the broker without waiting: the queue is far longer than any
/// broker's in-flight window, so a full queue means the broker is misbehaving.
fn ack_broker(acks: &Queue, bytes: Bytes) -> Result<(), Refusal> {
    acks.try_push(bytes)?
        .map_err(|_| BrokerFault::Misbehaved("broker exceeded its in-flight window").into())
}

/// Client → broker: judge every packet, forward what passes, queue local answers; also writes
/// the acknowledgements moat owes the broker for dropped deliveries.
async fn client_to_broker<R: AsyncRead + Unpin>(
    client: &mut FrameReader<R>,
    upstream: &mut BrokerWrite,
    ctx: &Ctx<'_>,
    replies: &Queue,
    acks: &Queue,
    idle: Option<Duration>,
) -> Result<End, Refusal> {
    let mut out = Vec::new();
    let every = Duration::from_secs(u64::from(UPSTREAM_KEEPALIVE) / 2);
    // One timer for both clocks of this direction, armed at the nearer of the PINGREQ moat owes
    // the broker and 1.5 × keep alive after the last client packet. A client packet only notes
    // the time; the timer moves only when it fires (acknowledgements to the broker do not
    // restart the keep-alive clock). One timer instead of two: an idle session is mostly this
    // future, and a tokio timer is 112 bytes.
    let mut last_packet = Instant::now();
    let mut next_ping = last_packet + every;
    let due = |last_packet: Instant, next_ping: Instant| match idle {
        Some(limit) => next_ping.min(last_packet + limit),
        None => next_ping,
    };
    let timer = tokio::time::sleep_until(due(last_packet, next_ping));
    tokio::pin!(timer);
    loop {
        let frame = tokio::select! {
            r = client.next() => {
                last_packet = Instant::now();
                read_result(r)?
            }
            _ = &mut timer => {
                let now = Instant::now();
                // [MQTT-3.1.2-24] Close after one and a half keep alive periods without a packet.
                if idle.is_some_and(|limit| now.duration_since(last_packet) >= limit) {
                    return Err(Refusal::Peer(PeerFault::KeepAlive));
                }
                if now >= next_ping {
                    upstream.write_all(PINGREQ).await.map_err(BrokerFault::Write)?;
                    next_ping = now + every;
                }
                timer.as_mut().reset(due(last_packet, next_ping));
                continue;
            }
            _ = acks.ready.notified() => {
                acks.take_into(&mut out)?;
                write(upstream, &mut out).await.map_err(BrokerFault::Write)?;
                continue;
            }
        };
        let Some(frame) = frame else {
            // The client left without DISCONNECT: the broker publishes its will, if any.
            return Ok(End::ClientLeft);
        };
        let mut next = Some(frame);
        while let Some(frame) = next {
            let now = tokio::time::Instant::now().into_std();
            let check = lock(ctx.limits)?.on_client_frame(now, &frame);
            match check {
                Check::Pass => {}
                Check::Wait(wait) => {
                    // Throttle: what is already judged goes on, then nothing is read from the
                    // client for `wait`, so TCP backpressure slows it down to its rate.
                    write(upstream, &mut out)
                        .await
                        .map_err(BrokerFault::Write)?;
                    Stats::bump(&ctx.env.stats().throttled);
                    tokio::time::sleep(wait).await;
                }
                Check::Refuse(refusal) => {
                    // What passed before the refused packet still goes on; the session's end
                    // audits and counts the refusal.
                    let _ = write(upstream, &mut out).await;
                    return Err(refusal);
                }
            }
            let step = ctx.on_client_packet(frame)?;
            // Acknowledgements the other side queued for the broker were released by the state
            // before this packet was judged: they go first, so the broker sees the order the
            // state chose (`state/deliveries.rs`).
            acks.take_into(&mut out)?;
            match step {
                Step::Forward(b) => out.push(b),
                Step::Reply(b) => replies.push(b).await?,
                Step::Refuse {
                    reply,
                    forward,
                    audits,
                } => {
                    ctx.audit(&audits);
                    if let Some(b) = forward {
                        out.push(b);
                    }
                    if let Some(b) = reply {
                        replies.push(b).await?;
                    }
                }
                Step::Nothing => {}
                Step::Goodbye(b) => {
                    out.push(b);
                    write(upstream, &mut out)
                        .await
                        .map_err(BrokerFault::Write)?;
                    return Ok(End::Disconnected);
                }
            }
            // Buffered frames are already read: only a bad fixed header can fail here.
            next = match client.buffered() {
                Ok(next) => next,
                Err(ReadError::Frame(f)) => return Err(PeerFault::Frame(f).into()),
                Err(_) => None,
            };
        }
        write(upstream, &mut out)
            .await
            .map_err(BrokerFault::Write)?;
    }
}

/// What a client read means for the session.
fn read_result(r: Result<Option<Bytes>, ReadError>) -> Result<Option<Bytes>, Refusal> {
    r.or_else(|e| match e {
        ReadError::Frame(f) => Err(Refusal::Peer(PeerFault::Frame(f))),
        // A reset or a close inside a packet: nobody is left to tell.
        ReadError::Truncated | ReadError::Io(_) | ReadError::Unexpected(_) => Ok(None),
    })
}

/// Writes `frames` as they are, in as few vectored writes as the writer takes, then flushes.
async fn write<W: AsyncWrite + Unpin>(w: &mut W, frames: &mut Vec<Bytes>) -> std::io::Result<()> {
    match frames.as_mut_slice() {
        [] => return Ok(()),
        [one] => w.write_all(one).await?,
        _ => write_all_vectored(w, frames).await?,
    }
    w.flush().await?;
    frames.clear();
    Ok(())
}

/// `write_all` for a list of frames: a short write advances through them without copying.
///
/// The slice array lives on the stack of each poll: held across an `.await` it would sit in the
/// session future (1 KiB per direction) for the whole life of every idle session.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    frames: &mut [Bytes],
) -> std::io::Result<()> {
    let mut done = 0;
    std::future::poll_fn(|cx| loop {
        let rest = frames.get_mut(done..).unwrap_or_default();
        let skip = rest.iter().take_while(|f| f.is_empty()).count();
        done += skip;
        let rest = rest.get_mut(skip..).unwrap_or_default();
        if rest.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut k = 0;
        for (slot, frame) in slices.iter_mut().zip(rest.iter()) {
            *slot = IoSlice::new(frame);
            k += 1;
        }
        let mut n =
            ready!(Pin::new(&mut *w).poll_write_vectored(cx, slices.get(..k).unwrap_or_default()))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        for frame in rest.iter_mut() {
            let take = n.min(frame.len());
            frame.advance(take);
            n -= take;
            if n == 0 {
                break;
            }
        }
    })
    .await
}

fn lock<T>(state: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, Refusal> {
    state
        .lock()
        .map_err(|_| InternalFault::Poisoned("session state").into())
}

/// Writes the last word moat has for a client, if its version has one for this outcome.
pub(super) async fn say_goodbye<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    outcome: Outcome,
) -> std::io::Result<()> {
    let Some(packet) = outcome.packet(version) else {
        return Ok(());
    };
    let mut out = BytesMut::new();
    if packet.encode(version, &mut out).is_ok() {
        wr.write_all(&out).await?;
        wr.flush().await?;
    }
    Ok(())
}
