//! The one loop of a session after CONNACK: client → broker and broker → client, concurrently.
//!
//! The two directions run as two futures inside the session's single task, so a slow writer on
//! one side never stops the other side from being read (the classic proxy deadlock), and when
//! either ends the other is dropped with it: no task or socket outlives the session. Frames that
//! arrive together are written together (one write, one TLS record where possible).
//!
//! Each packet is judged against the policy snapshot in force when it is read
//! (`shared.policy.load()`), so a reload applies from the next packet on. Acknowledgements moat
//! owes the broker for deliveries it dropped go to the client → broker side through a queue
//! that never blocks the broker → client side: its length is bounded by the broker's in-flight
//! window, and a broker that overflows it ends the session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::connect::{Admitted, TOPIC_ALIAS_MAXIMUM, UPSTREAM_KEEPALIVE};
use super::error::Refusal;
use super::limits::{Check, SessionLimits};
use super::reader::{FrameReader, ReadError};
use super::state::{Audit, State, Step};
use crate::ops::audit;
use crate::server::{Drain, Shared, Stats};
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

/// Runs the session until one side closes. `Ok` means a normal end; `Err` carries what the
/// client must be told.
pub(super) async fn pump<R, W>(
    mut client: FrameReader<R>,
    client_wr: &mut W,
    admitted: Admitted,
    peer: &Peer,
    shared: &Arc<Shared>,
    mut drain: Drain,
) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let version = admitted.connect.protocol;
    let terms = super::connect::session_terms(&admitted);
    let state =
        Mutex::new(State::new(version, alias_maximum(version), admitted.subject).with_terms(terms));
    let limits = Mutex::new(SessionLimits::new(version, admitted.limits.clone()));
    let identity = admitted.identity.name.clone();
    let mut upstream = admitted.upstream;
    let idle = match admitted.keep_alive {
        0 => None,
        // [MQTT-3.1.2-24] Close after one and a half keep alive periods without a packet.
        ka => Some(Duration::from_millis(u64::from(ka) * 1500)),
    };
    let (replies_tx, mut replies_rx) = mpsc::channel::<Bytes>(REPLY_QUEUE);
    let (acks_tx, acks_rx) = mpsc::channel::<Bytes>(BROKER_ACK_QUEUE);
    let ctx = Ctx {
        state: &state,
        limits: &limits,
        shared,
        peer,
        identity: &identity,
    };

    let up = client_to_broker(
        &mut client,
        &mut upstream.writer,
        &ctx,
        &replies_tx,
        acks_rx,
        idle,
    );
    let down = async {
        let mut out = BytesMut::new();
        loop {
            tokio::select! {
                biased;
                _ = drain.signalled() => return Err(Refusal::ShuttingDown),
                reply = replies_rx.recv() => match reply {
                    Some(bytes) => {
                        lock(&limits)?.on_frame_to_client(&bytes);
                        out.extend_from_slice(&bytes);
                    }
                    None => return Ok(()),
                },
                frame = upstream.reader.next() => {
                    let frame = match frame {
                        Ok(Some(f)) => f,
                        Ok(None) => return Err(Refusal::Broker("broker closed the connection".into())),
                        Err(e) => return Err(Refusal::Broker(e.to_string())),
                    };
                    let mut next = Some(frame);
                    while let Some(frame) = next {
                        let step = {
                            let policy = shared.policy.load();
                            lock(&state)?.on_broker_packet(frame, &policy)?
                        };
                        match step {
                            Step::Forward(b) => {
                                lock(&limits)?.on_frame_to_client(&b);
                                out.extend_from_slice(&b);
                            }
                            Step::Reply(b) => ack_broker(&acks_tx, b)?,
                            Step::Goodbye(b) => {
                                out.extend_from_slice(&b);
                                write(client_wr, &mut out).await?;
                                return Ok(());
                            }
                            Step::Refuse { reply, forward, audits } => {
                                ctx.audit(&audits);
                                if let Some(b) = reply {
                                    ack_broker(&acks_tx, b)?;
                                }
                                if let Some(b) = forward {
                                    out.extend_from_slice(&b);
                                }
                            }
                            Step::Nothing => {}
                        }
                        next = upstream
                            .reader
                            .buffered()
                            .map_err(|e| Refusal::Broker(e.to_string()))?;
                    }
                }
            }
            // Whatever else is already queued goes out in the same write.
            while let Ok(bytes) = replies_rx.try_recv() {
                lock(&limits)?.on_frame_to_client(&bytes);
                out.extend_from_slice(&bytes);
            }
            tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write(client_wr, &mut out))
                .await
                .map_err(|_| Refusal::WriteTimeout(CLIENT_WRITE_TIMEOUT))??;
        }
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// What both directions share.
struct Ctx<'a> {
    state: &'a Mutex<State>,
    /// Per-client rates and quotas (`session/limits.rs`).
    limits: &'a Mutex<SessionLimits>,
    shared: &'a Arc<Shared>,
    peer: &'a Peer,
    identity: &'a str,
}

// === impl Ctx ===

impl Ctx<'_> {
    /// One audit line per refused topic or filter.
    fn audit(&self, audits: &[Audit]) {
        for a in audits {
            audit::refused(
                self.peer,
                Some(self.identity),
                a.action.as_str(),
                &a.topic,
                &a.reason,
                &a.rule,
            );
        }
    }

    fn on_client_packet(&self, frame: Bytes) -> Result<Step, Refusal> {
        let policy = self.shared.policy.load();
        lock(self.state)?.on_client_packet(frame, &policy)
    }
}

/// Queues an acknowledgement for the broker without waiting: the queue is far longer than any
/// broker's in-flight window, so a full queue means the broker is misbehaving.
fn ack_broker(acks: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), Refusal> {
    acks.try_send(bytes)
        .map_err(|_| Refusal::Broker("broker exceeded its in-flight window".into()))
}

/// Client → broker: judge every packet, forward what passes, queue local answers; also writes
/// the acknowledgements moat owes the broker for dropped deliveries.
async fn client_to_broker<R: AsyncRead + Unpin>(
    client: &mut FrameReader<R>,
    upstream: &mut OwnedWriteHalf,
    ctx: &Ctx<'_>,
    replies: &mpsc::Sender<Bytes>,
    mut acks: mpsc::Receiver<Bytes>,
    idle: Option<Duration>,
) -> Result<(), Refusal> {
    let mut out = BytesMut::new();
    let every = Duration::from_secs(u64::from(UPSTREAM_KEEPALIVE) / 2);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // The keep-alive clock runs on client packets only: acknowledgements to the broker do not
    // restart it.
    let idle_deadline = |idle: Option<Duration>| idle.map(|d| tokio::time::Instant::now() + d);
    let mut deadline = idle_deadline(idle);
    loop {
        let frame = tokio::select! {
            r = read_until(client, deadline) => r?,
            _ = ping.tick() => {
                upstream.write_all(PINGREQ).await.map_err(|e| Refusal::Broker(e.to_string()))?;
                continue;
            }
            Some(ack) = acks.recv() => {
                out.extend_from_slice(&ack);
                while let Ok(more) = acks.try_recv() {
                    out.extend_from_slice(&more);
                }
                write(upstream, &mut out)
                    .await
                    .map_err(|e| Refusal::Broker(e.to_string()))?;
                continue;
            }
        };
        deadline = idle_deadline(idle);
        let Some(frame) = frame else {
            // The client left without DISCONNECT: the broker publishes its will, if any.
            return Ok(());
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
                        .map_err(|e| Refusal::Broker(e.to_string()))?;
                    Stats::bump(&ctx.shared.stats.throttled);
                    tokio::time::sleep(wait).await;
                }
                Check::Refuse(refusal) => {
                    // What passed before the refused packet still goes on.
                    let _ = write(upstream, &mut out).await;
                    Stats::bump(&ctx.shared.stats.limit_disconnects);
                    let reason = refusal.to_string();
                    audit::refused(
                        ctx.peer,
                        Some(ctx.identity),
                        "limit",
                        "",
                        &reason,
                        &refusal.rule(),
                    );
                    return Err(refusal);
                }
            }
            let step = ctx.on_client_packet(frame)?;
            match step {
                Step::Forward(b) => out.extend_from_slice(&b),
                Step::Reply(b) => send_reply(replies, b).await?,
                Step::Refuse {
                    reply,
                    forward,
                    audits,
                } => {
                    ctx.audit(&audits);
                    if let Some(b) = forward {
                        out.extend_from_slice(&b);
                    }
                    if let Some(b) = reply {
                        send_reply(replies, b).await?;
                    }
                }
                Step::Nothing => {}
                Step::Goodbye(b) => {
                    out.extend_from_slice(&b);
                    write(upstream, &mut out)
                        .await
                        .map_err(|_| Refusal::Broker("write DISCONNECT".into()))?;
                    return Ok(());
                }
            }
            next = client.buffered().map_err(|e| match e {
                ReadError::Frame(f) => Refusal::Frame(f),
                other => Refusal::Broker(other.to_string()),
            })?;
        }
        write(upstream, &mut out)
            .await
            .map_err(|e| Refusal::Broker(e.to_string()))?;
    }
}

/// Reads the next client frame, closing the session if the keep alive runs out at `deadline`.
async fn read_until<R: AsyncRead + Unpin>(
    client: &mut FrameReader<R>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Option<Bytes>, Refusal> {
    let read = async {
        client.next().await.or_else(|e| match e {
            ReadError::Frame(f) => Err(Refusal::Frame(f)),
            // A reset or a close inside a packet: nobody is left to tell.
            ReadError::Truncated | ReadError::Io(_) | ReadError::Unexpected(_) => Ok(None),
        })
    };
    match deadline {
        Some(at) => tokio::time::timeout_at(at, read)
            .await
            .map_err(|_| Refusal::KeepAlive)?,
        None => read.await,
    }
}

async fn send_reply(replies: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), Refusal> {
    replies
        .send(bytes)
        .await
        .map_err(|_| Refusal::Broker("session ending".into()))
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, out: &mut BytesMut) -> Result<(), Refusal> {
    if out.is_empty() {
        return Ok(());
    }
    let io = |e: std::io::Error| Refusal::Broker(e.to_string());
    w.write_all(out).await.map_err(io)?;
    w.flush().await.map_err(io)?;
    out.clear();
    Ok(())
}

fn lock<T>(state: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, Refusal> {
    state
        .lock()
        .map_err(|_| Refusal::Broker("session state poisoned".into()))
}

fn alias_maximum(version: crate::mqtt::ProtocolVersion) -> u16 {
    match version {
        crate::mqtt::ProtocolVersion::V5 => TOPIC_ALIAS_MAXIMUM,
        _ => 0,
    }
}
