//! The broker connection of one session, at the MQTT level: opened only after the client is
//! authenticated, it sends moat's CONNECT and waits for the broker's CONNACK. The socket and its
//! acknowledgement pacing are the broker segment's (`broker/link.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::error::{BrokerFault, Refusal};
use super::reader::FrameReader;
use crate::broker::link::{self, AckPacer, BrokerRead, BrokerWrite};
use crate::broker::BrokerTarget;
use crate::mqtt::{self, Connect, Packet, ProtocolVersion};

/// Keep alive moat uses on its own broker connections, independent of the client's.
pub(crate) const UPSTREAM_KEEPALIVE: u16 = 60;

/// How often moat sends the broker a PINGREQ of its own: half its upstream keep alive.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(UPSTREAM_KEEPALIVE as u64 / 2);

/// The broker side of a session after its CONNACK said yes (or no).
pub(crate) struct Upstream {
    /// Frames from the broker.
    pub(crate) reader: FrameReader<BrokerRead>,
    /// Bytes to the broker.
    pub(crate) writer: BrokerWrite,
    /// The broker's CONNACK, decoded.
    pub(crate) connack: mqtt::ConnAck,
}

/// Connects to the broker for `connect.protocol`, sends `connect`, and waits for the CONNACK.
/// Any failure is "server unavailable" for the client: it did nothing wrong.
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
    let addr = target.addr_for(connect.protocol);
    let work = async {
        let (rd, mut wr) = link::connect(addr, pacer)
            .await
            .map_err(|e| unavailable(format!("connect {addr}: {e}")))?;
        let mut out = BytesMut::new();
        connect
            .encode(&mut out)
            .map_err(|e| unavailable(format!("encode CONNECT: {e}")))?;
        wr.write_all(&out)
            .await
            .map_err(|e| unavailable(format!("write CONNECT: {e}")))?;
        let mut reader = FrameReader::new(rd, max_packet_size);
        let frame = reader
            .next()
            .await
            .map_err(|e| unavailable(format!("read CONNACK: {e}")))?
            .ok_or_else(|| unavailable("broker closed before CONNACK".into()))?;
        let version = match connect.protocol {
            ProtocolVersion::V3_1 => ProtocolVersion::V3_1_1,
            v => v,
        };
        match mqtt::decode(frame, version) {
            Ok(Packet::ConnAck(connack)) => Ok(Upstream {
                reader,
                writer: wr,
                connack,
            }),
            Ok(other) => Err(unavailable(format!(
                "broker answered CONNECT with {:?}",
                other.packet_type()
            ))),
            Err(e) => Err(unavailable(format!("bad CONNACK: {e}"))),
        }
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| unavailable(format!("no CONNACK from {addr} within {deadline:?}")))?
}
