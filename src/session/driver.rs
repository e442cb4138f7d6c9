//! The one loop of a session after CONNACK: client → broker and broker → client, concurrently.
//!
//! The two directions run as two futures inside the session's single task, so a slow writer on
//! one side never stops the other side from being read (the classic proxy deadlock), and when
//! either ends the other is dropped with it: no task or socket outlives the session. Frames that
//! arrive together are written together (one write, one TLS record where possible).

use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::connect::{Admitted, TOPIC_ALIAS_MAXIMUM, UPSTREAM_KEEPALIVE};
use super::error::Refusal;
use super::limits::{Check, SessionLimits};
use super::reader::{FrameReader, ReadError};
use super::state::{State, Step};
use crate::ops::audit;
use crate::server::{Drain, Stats};
use crate::transport::Peer;

/// Local answers (PINGRESP, refusals) queued for the client; bounded so a client that does not
/// read cannot make moat buffer without limit: the client → broker side waits instead.
const REPLY_QUEUE: usize = 64;

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
    mut drain: Drain,
    stats: &Stats,
) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let version = admitted.connect.protocol;
    let state = Mutex::new(State::new(version, alias_maximum(version)));
    let limits = Mutex::new(SessionLimits::new(version, admitted.limits.clone()));
    let identity = admitted.identity.name.clone();
    let mut upstream = admitted.upstream;
    let idle = match admitted.keep_alive {
        0 => None,
        // [MQTT-3.1.2-24] Close after one and a half keep alive periods without a packet.
        ka => Some(Duration::from_millis(u64::from(ka) * 1500)),
    };
    let (replies_tx, mut replies_rx) = mpsc::channel::<Bytes>(REPLY_QUEUE);

    let up = client_to_broker(
        &mut client,
        &mut upstream.writer,
        (&state, &limits),
        &replies_tx,
        idle,
        (peer, stats),
        &identity,
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
                        let step = lock(&state)?.on_broker_packet(frame)?;
                        match step {
                            Step::Forward(b) | Step::Reply(b) => {
                                lock(&limits)?.on_frame_to_client(&b);
                                out.extend_from_slice(&b);
                            }
                            Step::Goodbye(b) => {
                                out.extend_from_slice(&b);
                                write(client_wr, &mut out).await?;
                                return Ok(());
                            }
                            Step::Nothing | Step::Refuse { .. } => {}
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

/// Client → broker: judge every packet, forward what passes, queue local answers.
async fn client_to_broker<R: AsyncRead + Unpin>(
    client: &mut FrameReader<R>,
    upstream: &mut OwnedWriteHalf,
    (state, limits): (&Mutex<State>, &Mutex<SessionLimits>),
    replies: &mpsc::Sender<Bytes>,
    idle: Option<Duration>,
    (peer, stats): (&Peer, &Stats),
    identity: &str,
) -> Result<(), Refusal> {
    let mut out = BytesMut::new();
    let every = Duration::from_secs(u64::from(UPSTREAM_KEEPALIVE) / 2);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let frame = tokio::select! {
            r = read_within(client, idle) => r?,
            _ = ping.tick() => {
                upstream.write_all(PINGREQ).await.map_err(|e| Refusal::Broker(e.to_string()))?;
                continue;
            }
        };
        let Some(frame) = frame else {
            // The client left without DISCONNECT: the broker publishes its will, if any.
            return Ok(());
        };
        let mut next = Some(frame);
        while let Some(frame) = next {
            let now = tokio::time::Instant::now().into_std();
            let check = lock(limits)?.on_client_frame(now, &frame);
            match check {
                Check::Pass => {}
                Check::Wait(wait) => {
                    // Throttle: what is already judged goes on, then nothing is read from the
                    // client for `wait`, so TCP backpressure slows it down to its rate.
                    write(upstream, &mut out)
                        .await
                        .map_err(|e| Refusal::Broker(e.to_string()))?;
                    Stats::bump(&stats.throttled);
                    tokio::time::sleep(wait).await;
                }
                Check::Refuse(refusal) => {
                    // What passed before the refused packet still goes on.
                    let _ = write(upstream, &mut out).await;
                    Stats::bump(&stats.limit_disconnects);
                    let reason = refusal.to_string();
                    audit::refused(peer, Some(identity), "limit", "", &reason, &refusal.rule());
                    return Err(refusal);
                }
            }
            let step = lock(state)?.on_client_packet(frame)?;
            match step {
                Step::Forward(b) => out.extend_from_slice(&b),
                Step::Reply(b) => send_reply(replies, b).await?,
                Step::Refuse {
                    reply,
                    forward,
                    action,
                    topic,
                    rule,
                } => {
                    audit::refused(peer, Some(identity), action, &topic, "not authorized", rule);
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

/// Reads the next client frame, closing the session if the keep alive runs out.
async fn read_within<R: AsyncRead + Unpin>(
    client: &mut FrameReader<R>,
    idle: Option<Duration>,
) -> Result<Option<Bytes>, Refusal> {
    let read = async {
        client.next().await.or_else(|e| match e {
            ReadError::Frame(f) => Err(Refusal::Frame(f)),
            // A reset or a close inside a packet: nobody is left to tell.
            ReadError::Truncated | ReadError::Io(_) => Ok(None),
        })
    };
    match idle {
        Some(limit) => tokio::time::timeout(limit, read)
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
