//! The broker connection of one session, at the MQTT level: opened only after the client is
//! authenticated, it sends moat's CONNECT and waits for the broker's CONNACK, over the broker
//! addresses in the route's order (`broker/route.rs`), or over the embedded broker's in-memory
//! link when it has one. The socket, TLS and acknowledgement pacing are the broker segment's
//! (`broker/link.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::error::{BrokerFault, Refusal};
use super::reader::FrameReader;
use crate::broker::link::{self, AckPacer, BrokerRead, BrokerWrite};
use crate::broker::route::Endpoint;
use crate::broker::{BrokerTarget, MemoryLink};
use crate::mqtt::{self, Connect, Packet, ProtocolVersion};

/// Keep alive moat uses on its own broker connections, independent of the client's.
const UPSTREAM_KEEPALIVE: u16 = 60;

/// How often moat sends the broker a PINGREQ of its own: half its upstream keep alive.
const PING_EVERY: Duration = Duration::from_secs(UPSTREAM_KEEPALIVE as u64 / 2);

/// The keep alive moat's CONNECT asks `target` for (0: none). A socket to a broker can go
/// silent (a dead host, a NAT that forgot the flow), so moat keeps it alive. The in-memory link
/// cannot: when the embedded broker's link task or router ends, the pipe closes and the session
/// sees it at once; pings there would cost every idle session a wake-up (and the broker a queue)
/// for nothing.
pub(crate) fn keep_alive(target: &BrokerTarget) -> u16 {
    if target.memory.is_some() {
        0
    } else {
        UPSTREAM_KEEPALIVE
    }
}

/// How often moat pings `target`: every [`PING_EVERY`] under a keep alive, never without one.
pub(crate) fn ping_every(target: &BrokerTarget) -> Option<Duration> {
    (keep_alive(target) > 0).then_some(PING_EVERY)
}

/// The broker side of a session after its CONNACK said yes (or no).
pub(crate) struct Upstream {
    /// Frames from the broker.
    pub(crate) reader: FrameReader<BrokerRead>,
    /// Bytes to the broker.
    pub(crate) writer: BrokerWrite,
    /// The broker's CONNACK, decoded.
    pub(crate) connack: mqtt::ConnAck,
}

/// Shortest share of the connect deadline one broker address gets when several are left: a
/// refused connection fails at once, a silent one must not eat the whole deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Connects to the broker for `connect.protocol`, sends `connect`, and waits for the CONNACK,
/// trying the route's addresses in its order (`broker/route.rs`) until one accepts, all within
/// `deadline`. An address that cannot be reached, fails TLS, does not answer, or answers
/// "unavailable" or "busy" is marked failed and the next one is tried; a broker that refuses
/// moat's CONNECT for any other reason (credentials, authorization) ends the attempt, since
/// another node of the same cluster would say the same. Each failed address is logged with
/// what went wrong or what the broker answered.
pub(crate) async fn open(
    target: &BrokerTarget,
    connect: &Connect,
    deadline: Duration,
    max_packet_size: usize,
    pacer: &Arc<AckPacer>,
) -> Result<Upstream, Refusal> {
    let unavailable = |what: String| Refusal::Broker(BrokerFault::Unavailable(what));
    if !target.health.is_up() {
        return Err(unavailable("embedded broker is down".into()));
    }
    if let Some(memory) = &target.memory {
        return in_memory(memory, connect, deadline, max_packet_size).await;
    }
    let started = Instant::now();
    let plan = target.route_for(connect.protocol).plan(started);
    let mut last: Option<Refusal> = None;
    for (n, endpoint) in plan.iter().enumerate() {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let remaining = u32::try_from(plan.len() - n).unwrap_or(u32::MAX).max(1);
        let share = (left / remaining).max(MIN_ATTEMPT).min(left);
        let address = endpoint.addr.to_string();
        let attempt = tokio::time::timeout(
            share,
            attempt(endpoint, target, connect, max_packet_size, pacer),
        )
        .await
        .unwrap_or_else(|_| Err(Attempt::Failed(format!("no CONNACK within {share:?}"))));
        let refusal = match attempt {
            Ok(upstream) => {
                endpoint.succeeded();
                return Ok(upstream);
            }
            Err(failed) => refusal(&address, failed, connect.protocol.is_v5()),
        };
        // Unreachable, or refused with "unavailable" or "busy": the next address may do better.
        let retry = match &refusal {
            Refusal::Broker(fault @ BrokerFault::Refused { .. }) => fault.worth_another_address(),
            _ => true,
        };
        if !retry {
            return Err(refusal);
        }
        endpoint.failed(Instant::now());
        last = Some(refusal);
    }
    Err(last
        .unwrap_or_else(|| unavailable(format!("no broker address answered within {deadline:?}"))))
}

/// Where the in-memory link is named in logs and refusals, in place of an address.
const IN_MEMORY: &str = "embedded (in memory)";

/// The embedded broker over its in-memory link: one attempt, the whole deadline. It fails only
/// when the broker is dying (its router gone, which the supervisor also sees) or refuses.
async fn in_memory(
    memory: &MemoryLink,
    connect: &Connect,
    deadline: Duration,
    max_packet_size: usize,
) -> Result<Upstream, Refusal> {
    let (rd, wr) = memory.open(connect.protocol);
    let attempt = tokio::time::timeout(deadline, handshake(rd, wr, connect, max_packet_size))
        .await
        .unwrap_or_else(|_| Err(Attempt::Failed(format!("no CONNACK within {deadline:?}"))));
    attempt.map_err(|failed| refusal(IN_MEMORY, failed, connect.protocol.is_v5()))
}

/// The refusal for a failed attempt at `address` (an address, or the in-memory link), logged
/// with what the broker answered.
fn refusal(address: &str, failed: Attempt, v5: bool) -> Refusal {
    match failed {
        Attempt::Failed(why) => {
            tracing::warn!(broker = %address, error = %why, "broker address failed");
            Refusal::Broker(BrokerFault::Unavailable(format!("{address}: {why}")))
        }
        Attempt::Refused(code) => {
            let fault = BrokerFault::Refused {
                addr: address.into(),
                code,
                v5,
            };
            tracing::warn!(
                broker = %address,
                code = %format_args!("0x{code:02x}"),
                reason = fault.broker_answer(),
                "broker refused moat's CONNECT"
            );
            Refusal::Broker(fault)
        }
    }
}

/// How one address failed a session.
enum Attempt {
    /// Unreachable, TLS refused, closed, silent or garbled: the next address may do better.
    Failed(String),
    /// The broker answered with a refusing CONNACK: its code.
    Refused(u8),
}

/// One address: connect, CONNECT, CONNACK.
async fn attempt(
    endpoint: &Endpoint,
    target: &BrokerTarget,
    connect: &Connect,
    max_packet_size: usize,
    pacer: &Arc<AckPacer>,
) -> Result<Upstream, Attempt> {
    let (rd, wr, _) = link::connect(endpoint, target.tls.as_ref(), pacer)
        .await
        .map_err(|e| Attempt::Failed(e.to_string()))?;
    handshake(rd, wr, connect, max_packet_size).await
}

/// CONNECT and CONNACK over a fresh broker connection.
async fn handshake(
    rd: BrokerRead,
    mut wr: BrokerWrite,
    connect: &Connect,
    max_packet_size: usize,
) -> Result<Upstream, Attempt> {
    let failed = Attempt::Failed;
    let mut out = BytesMut::new();
    connect
        .encode(&mut out)
        .map_err(|e| failed(format!("encode CONNECT: {e}")))?;
    wr.write_all(&out)
        .await
        .map_err(|e| failed(format!("write CONNECT: {e}")))?;
    wr.flush()
        .await
        .map_err(|e| failed(format!("write CONNECT: {e}")))?;
    let mut reader = FrameReader::new(rd, max_packet_size);
    let frame = reader
        .next()
        .await
        .map_err(|e| failed(format!("read CONNACK: {e}")))?
        .ok_or_else(|| failed("broker closed before CONNACK".into()))?;
    let version = match connect.protocol {
        ProtocolVersion::V3_1 => ProtocolVersion::V3_1_1,
        v => v,
    };
    match mqtt::decode(frame, version) {
        Ok(Packet::ConnAck(connack)) if connack.code == 0 => Ok(Upstream {
            reader,
            writer: wr,
            connack,
        }),
        Ok(Packet::ConnAck(connack)) => Err(Attempt::Refused(connack.code)),
        Ok(other) => Err(failed(format!(
            "broker answered CONNECT with {:?}",
            other.packet_type()
        ))),
        Err(e) => Err(failed(format!("bad CONNACK: {e}"))),
    }
}
