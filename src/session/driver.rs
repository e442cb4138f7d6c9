//! The one loop of a session after CONNACK: a `select!` over two reads, one timer and the
//! writes, feeding the session machine (`machine/`) and carrying out what it asks.
//!
//! All decisions are the machine's, and so is all protocol time: the driver reads the clock,
//! passes `now` in, and sleeps until the machine's next deadline (keep alive, the PINGREQ moat
//! owes the broker, the end of a throttle). The only deadlines of its own are I/O ones: a write
//! to the client must finish within [`CLIENT_WRITE_TIMEOUT`], and after a DISCONNECT the broker
//! gets [`BROKER_CLOSE_WAIT`] to close.
//!
//! Both directions run in the session's one task, and neither waits on the other: a write in
//! progress to one side is a branch of the same `select!` as the reads, so a slow writer on one
//! side never stops the other side from being read (the classic proxy deadlock). Backpressure
//! is by not reading: the broker is not read while frames wait for the client, the client is
//! not read while frames wait for the broker, while moat's own answers to it pile up (more than
//! [`REPLY_QUEUE`]), or while the machine throttles it. When either side ends, everything ends
//! with it: no task or socket outlives the session.
//!
//! Hot path, per read: every frame of a read goes through the machine, and what it passes is
//! written as the `Bytes` that came in, in one vectored write: one syscall upstream, one TLS
//! record towards the client, no staging copy. The timer is armed only when the next deadline
//! comes earlier; a client packet only moves the machine's keep-alive clock, and a timer that
//! fires early finds nothing due and is armed again (no timer-wheel insert per read).
//!
//! When either side says DISCONNECT, moat lets the broker close first: a broker that reuses
//! connection ids can otherwise take moat's close as a second, late disconnect of whichever
//! client got the id next (rumqttd 0.20 does: see `BENCHMARKS.md`, "Handshake failures"). It
//! also leaves the TIME_WAIT on the broker's side, not on moat's ports towards it.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::env::Env;
use super::error::{BrokerFault, Outcome, PeerFault, Refusal, Side};
use super::machine::{Dest, Event, Machine};
use super::reader::{FrameReader, ReadError};
use super::registry::{Claim, LiveSession};
use crate::broker::link::{BrokerRead, BrokerWrite};
use crate::mqtt::ProtocolVersion;
use crate::ops::audit;
use crate::shutdown::Drain;
use crate::stats::Stats;
use crate::transport::Peer;

/// moat's own answers (PINGRESP, refusals) waiting for the client before the client is read
/// again: a client that does not read cannot make moat queue without limit.
const REPLY_QUEUE: usize = 64;

/// Longest a write to the client may take: a client that stops reading (TCP zero window) is
/// cut off instead of holding its session, its broker connection and its buffers forever.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames handed to one vectored write at most; more are written in further calls.
const MAX_IOV: usize = 64;

/// Longest moat waits, after a DISCONNECT went either way, for the broker to close the
/// connection ([MQTT-3.14.4-2]: a server closes after a DISCONNECT, and sends nothing more).
/// Brokers close at once; the bound only matters for one that never does. Also the bound for
/// the last frames moat writes to the broker when a session ends.
const BROKER_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A timer that is not armed: far beyond any deadline a session has.
const UNARMED: Duration = Duration::from_secs(86_400 * 365);

/// How a session ended without a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client closed (or reset) its connection without DISCONNECT.
    ClientLeft,
    /// A DISCONNECT went to this side: from the client to the broker, or from the broker to
    /// the client.
    Disconnected(Dest),
}

// === impl End ===

impl End {
    /// For the `session closed` line, beside [`Refusal::end_reason`].
    pub(super) fn reason(self) -> &'static str {
        match self {
            End::ClientLeft => "client closed",
            End::Disconnected(Dest::Broker) => "client disconnect",
            End::Disconnected(Dest::Client) => "broker disconnect",
        }
    }
}

/// What the session keeps after the CONNECT phase: the machine and the broker connection (the
/// CONNECT itself, with its properties and credentials, is dropped), so that an idle session
/// stays small.
pub(super) struct Link {
    /// The session's protocol state, limits and clocks.
    pub(super) machine: Machine,
    /// Frames from the broker.
    pub(super) upstream_rd: FrameReader<BrokerRead>,
    /// Bytes to the broker.
    pub(super) upstream_wr: BrokerWrite,
    /// The broker client id, held until the session ends.
    pub(super) claim: Claim,
}

// === impl Link ===

impl Link {
    /// Who the client is and its client id (for audit lines and the end of the session; read
    /// from the machine rather than kept twice in every session).
    pub(super) fn who(&self) -> (String, String) {
        let subject = self.machine.subject();
        (subject.name.clone(), subject.client_id.clone())
    }

    /// The client's protocol version.
    pub(super) fn version(&self) -> ProtocolVersion {
        self.machine.version()
    }
}

/// Runs the session until one side closes. `Ok` says how it ended normally; `Err` carries what
/// the client must be told. Everything is borrowed from the caller, so this future holds only its
/// own working state.
pub(super) async fn pump<R, W>(
    client: &mut FrameReader<R>,
    client_wr: &mut W,
    link: &mut Link,
    peer: &Peer,
    env: &Env,
    drain: Drain,
) -> Result<End, Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let io = Io {
        client,
        client_wr,
        broker: &mut link.upstream_rd,
        broker_wr: &mut link.upstream_wr,
    };
    let end = run(
        io,
        &mut link.machine,
        link.claim.session(),
        peer,
        env,
        &drain,
    )
    .await?;
    if let End::Disconnected(_) = end {
        broker_closes(&mut link.upstream_rd).await;
    }
    Ok(end)
}

/// Both sides' streams.
struct Io<'a, R, W, BR, BW> {
    /// Frames from the client.
    client: &'a mut FrameReader<R>,
    /// Bytes to the client.
    client_wr: &'a mut W,
    /// Frames from the broker.
    broker: &'a mut FrameReader<BR>,
    /// Bytes to the broker.
    broker_wr: &'a mut BW,
}

/// Frames being written to one side (taken from the machine only once the last batch is out).
#[derive(Default)]
struct Outbox {
    /// What is left of the batch; written frames are advanced to empty.
    frames: Vec<Bytes>,
    /// Bytes went out since the last flush.
    unflushed: bool,
}

// === impl Outbox ===

impl Outbox {
    /// A write is in progress.
    fn busy(&self) -> bool {
        !self.frames.is_empty() || self.unflushed
    }

    /// Takes every frame the machine has for `to`, if the last batch is out. True when a new
    /// batch starts.
    fn refill(&mut self, machine: &mut Machine, to: Dest) -> bool {
        if self.busy() {
            return false;
        }
        while let Some(frame) = machine.poll_transmit(to) {
            self.frames.push(frame);
        }
        !self.frames.is_empty()
    }
}

/// The loop; on a refusal the frames judged before it still go to the broker (bounded).
async fn run<R, W, BR, BW>(
    mut io: Io<'_, R, W, BR, BW>,
    machine: &mut Machine,
    session: &LiveSession,
    peer: &Peer,
    env: &Env,
    drain: &Drain,
) -> Result<End, Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    let mut to_broker = Outbox::default();
    let end = turns(&mut io, machine, &mut to_broker, session, peer, env, drain).await;
    if let Err(refusal) = &end {
        if refusal.side() != Side::Broker {
            // What passed before the refusal still goes on ("what passed before the refused
            // packet is still forwarded"); a broker that failed is not written to.
            let _ = tokio::time::timeout(
                BROKER_CLOSE_WAIT,
                write_rest(io.broker_wr, &mut to_broker, machine, Dest::Broker),
            )
            .await;
        }
    }
    end
}

/// Reads, timer and writes until the session ends.
async fn turns<R, W, BR, BW>(
    io: &mut Io<'_, R, W, BR, BW>,
    machine: &mut Machine,
    to_broker: &mut Outbox,
    session: &LiveSession,
    peer: &Peer,
    env: &Env,
    drain: &Drain,
) -> Result<End, Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    let mut to_client = Outbox::default();
    // Set while a batch is being written to the client.
    let mut write_deadline: Option<Instant> = None;
    let mut armed = next_deadline(machine);
    let timer = tokio::time::sleep_until(armed);
    tokio::pin!(timer);
    // One wait for a drain or a revocation epoch for the whole session, made anew only after
    // it fires: a fresh wait per turn locked the `Notify`'s waiter list twice per message.
    let mut woken = std::pin::pin!(drain.signalled_or_epoch(Some(session.checked())));
    loop {
        report(machine, peer, env);
        to_broker.refill(machine, Dest::Broker);
        if to_client.refill(machine, Dest::Client) {
            write_deadline = Some(Instant::now() + CLIENT_WRITE_TIMEOUT);
            let bytes = to_client.frames.iter().map(Bytes::len).sum();
            session.count_out(to_client.frames.len(), bytes);
        }
        if let Some(to) = machine.closing() {
            return finish(io, machine, to, &mut to_client, to_broker).await;
        }
        let now = Instant::now();
        let read_client = !to_broker.busy()
            && machine.pending(Dest::Client) < REPLY_QUEUE
            && machine.client_readable(now.into_std());
        let read_broker = !to_client.busy();
        let writing_client = to_client.busy();
        let writing_broker = to_broker.busy();
        let deadline = match write_deadline {
            Some(w) => w.min(next_deadline(machine)),
            None => next_deadline(machine),
        };
        // Only ever armed earlier: a deadline that moved later is found by an early wake.
        if deadline < armed {
            armed = deadline;
            timer.as_mut().reset(armed);
        }
        tokio::select! {
            wake = &mut woken => {
                super::revoke::on_wake(peer, env, session, wake)?;
                woken.set(drain.signalled_or_epoch(Some(session.checked())));
            }
            r = write(io.client_wr, &mut to_client), if writing_client => {
                r.map_err(PeerFault::Gone)?;
                write_deadline = None;
            }
            r = write(io.broker_wr, to_broker), if writing_broker => r.map_err(BrokerFault::Write)?,
            frame = io.broker.next(), if read_broker => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Err(BrokerFault::Closed.into()),
                    Err(e) => return Err(BrokerFault::Read(e).into()),
                };
                let now = Instant::now().into_std();
                let stats = env.stats();
                let mut counted = Batch::new(&stats.messages_out, &stats.bytes_out, None);
                counted.add(&frame);
                machine.handle_broker(now, frame)?;
                while let Some(frame) = io.broker.buffered().map_err(BrokerFault::Read)? {
                    counted.add(&frame);
                    machine.handle_broker(now, frame)?;
                }
            }
            frame = io.client.next(), if read_client => {
                let Some(frame) = client_frame(frame)? else {
                    // The client left without DISCONNECT: the broker publishes its will.
                    return Ok(End::ClientLeft);
                };
                let now = Instant::now().into_std();
                let stats = env.stats();
                let mut counted = Batch::new(&stats.messages_in, &stats.bytes_in, Some(session));
                counted.add(&frame);
                machine.handle_client(now, frame)?;
                // The rest of the read, for as long as the machine lets the client be read.
                while machine.closing().is_none()
                    && machine.client_readable(now)
                    && machine.pending(Dest::Client) < REPLY_QUEUE
                {
                    let frame = match io.client.buffered() {
                        Ok(Some(frame)) => frame,
                        Err(ReadError::Frame(f)) => return Err(PeerFault::Frame(f).into()),
                        // Nothing more buffered (the other errors need a read).
                        Ok(None) | Err(_) => break,
                    };
                    counted.add(&frame);
                    machine.handle_client(now, frame)?;
                }
            }
            () = &mut timer => {
                armed = Instant::now() + UNARMED;
                let now = Instant::now();
                if write_deadline.is_some_and(|d| now >= d) {
                    return Err(PeerFault::StoppedReading(CLIENT_WRITE_TIMEOUT).into());
                }
                machine.handle_timeout(now.into_std())?;
            }
        }
    }
}

/// The frames of one read, added to the shared counters (and the session's own, for the client
/// side) once when the read's batch ends: on drop, so a frame that ends the session is counted
/// too. One pair of atomic adds per wake-up instead of per frame; the global pair is shared by
/// every session on every core.
struct Batch<'a> {
    messages: &'a AtomicU64,
    bytes: &'a AtomicU64,
    session: Option<&'a LiveSession>,
    frames: u64,
    len: u64,
}

impl<'a> Batch<'a> {
    fn new(
        messages: &'a AtomicU64,
        bytes: &'a AtomicU64,
        session: Option<&'a LiveSession>,
    ) -> Self {
        Batch {
            messages,
            bytes,
            session,
            frames: 0,
            len: 0,
        }
    }

    fn add(&mut self, frame: &Bytes) {
        self.frames += 1;
        self.len += frame.len() as u64;
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.messages.fetch_add(self.frames, Ordering::Relaxed);
        self.bytes.fetch_add(self.len, Ordering::Relaxed);
        if let Some(session) = self.session {
            session.count_in(self.frames, self.len);
        }
    }
}

/// The machine's next deadline as a timer instant; one that has none gets a timer that never
/// fires in practice (tokio's own "far future": 30 years).
fn next_deadline(machine: &Machine) -> Instant {
    machine.poll_timeout().map_or_else(
        || Instant::now() + Duration::from_secs(30 * 365 * 86_400),
        Instant::from_std,
    )
}

/// Logs and counts what the machine reported.
fn report(machine: &mut Machine, peer: &Peer, env: &Env) {
    while let Some(event) = machine.poll_event() {
        match event {
            Event::Refused(a) => {
                env.stats().acl_denials.bump(a.action, &a.rule);
                audit::refused(
                    peer,
                    Some(&machine.subject().name),
                    a.action.as_str(),
                    &a.topic,
                    &a.reason,
                    &a.rule,
                )
            }
            Event::Throttled => Stats::bump(&env.stats().throttled),
            Event::Shadow(note) => {
                let subject = machine.subject();
                let seen = crate::ops::shadow::Seen {
                    peer: peer.addr,
                    identity: Some(&subject.name),
                    client_id: Some(&subject.client_id),
                    subject: &note.topic,
                };
                env.stats().shadow.record(&note.difference, seen);
            }
        }
    }
}

/// After a DISCONNECT: writes what is queued for the side it went to (the DISCONNECT last),
/// bounded in time, and ends.
async fn finish<R, W, BR, BW>(
    io: &mut Io<'_, R, W, BR, BW>,
    machine: &mut Machine,
    to: Dest,
    to_client: &mut Outbox,
    to_broker: &mut Outbox,
) -> Result<End, Refusal>
where
    W: AsyncWrite + Unpin,
    BW: AsyncWrite + Unpin,
{
    match to {
        Dest::Broker => {
            let rest = write_rest(io.broker_wr, to_broker, machine, Dest::Broker);
            tokio::time::timeout(BROKER_CLOSE_WAIT, rest)
                .await
                .map_err(|_| BrokerFault::Misbehaved("broker did not take the DISCONNECT"))?
                .map_err(BrokerFault::Write)?;
        }
        Dest::Client => {
            let rest = write_rest(io.client_wr, to_client, machine, Dest::Client);
            tokio::time::timeout(CLIENT_WRITE_TIMEOUT, rest)
                .await
                .map_err(|_| PeerFault::StoppedReading(CLIENT_WRITE_TIMEOUT))?
                .map_err(PeerFault::Gone)?;
        }
    }
    Ok(End::Disconnected(to))
}

/// Writes the batch in progress and then everything the machine still has for `to`.
async fn write_rest<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Outbox,
    machine: &mut Machine,
    to: Dest,
) -> std::io::Result<()> {
    loop {
        write(w, out).await?;
        if !out.refill(machine, to) {
            return Ok(());
        }
    }
}

/// What a client read means for the session: a frame, `None` when the client is gone (a close,
/// a reset, or a close inside a packet: nobody is left to tell), or a refusal for a bad fixed
/// header.
fn client_frame(r: Result<Option<Bytes>, ReadError>) -> Result<Option<Bytes>, Refusal> {
    match r {
        Ok(frame) => Ok(frame),
        Err(ReadError::Frame(f)) => Err(PeerFault::Frame(f).into()),
        Err(ReadError::Truncated | ReadError::Io(_) | ReadError::Unexpected(_)) => Ok(None),
    }
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
            wait = %humantime::format_duration(BROKER_CLOSE_WAIT),
            "broker kept the connection open after DISCONNECT; closing it"
        );
    }
}

/// Writes the outbox's frames as they are, in as few vectored writes as the writer takes, then
/// flushes. Cancel-safe: progress is kept in `out` as each write completes, so the `select!`
/// may drop this future between polls and a later call goes on where it stopped.
///
/// The slice array lives on the stack of each poll: held across an `.await` it would sit in the
/// session future (1 KiB per direction) for the whole life of every idle session.
async fn write<W: AsyncWrite + Unpin>(w: &mut W, out: &mut Outbox) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        loop {
            let skip = out.frames.iter().take_while(|f| f.is_empty()).count();
            let rest = out.frames.get_mut(skip..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for (slot, frame) in slices.iter_mut().zip(rest.iter()) {
                *slot = IoSlice::new(frame);
                k += 1;
            }
            let batch = slices.get(..k).unwrap_or_default();
            let mut n = ready!(Pin::new(&mut *w).poll_write_vectored(cx, batch))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            out.unflushed = true;
            for frame in rest.iter_mut() {
                let take = n.min(frame.len());
                frame.advance(take);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        // A burst must not pin its peak size for the life of an idle session.
        if out.frames.capacity() > MAX_IOV {
            out.frames = Vec::new();
        } else {
            out.frames.clear();
        }
        if out.unflushed {
            ready!(Pin::new(&mut *w).poll_flush(cx))?;
            out.unflushed = false;
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Writes the last word moat has for a client, if its version has one for this outcome.
pub(super) async fn say_goodbye<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    outcome: Outcome,
) -> std::io::Result<()> {
    say(wr, encode(outcome.packet(version), version)).await
}

/// The bytes of `packet` in `version` (encoded before any await, so that the packet does not
/// sit in the session future).
pub(super) fn encode(
    packet: Option<crate::mqtt::Packet>,
    version: ProtocolVersion,
) -> Option<BytesMut> {
    let packet = packet?;
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).ok()?;
    Some(out)
}

/// Writes the last bytes moat has for a client, if there are any.
pub(super) async fn say<W: AsyncWrite + Unpin>(
    wr: &mut W,
    last: Option<BytesMut>,
) -> std::io::Result<()> {
    let Some(out) = last else {
        return Ok(());
    };
    wr.write_all(&out).await?;
    wr.flush().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
