//! The broker connection of one session: opened only after the client is authenticated.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::error::Refusal;
use super::reader::FrameReader;
use crate::broker::BrokerTarget;
use crate::mqtt::{self, Connect, Packet, ProtocolVersion};

/// The broker side of a session after its CONNACK said yes (or no).
pub(crate) struct Upstream {
    /// Frames from the broker.
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    /// Bytes to the broker.
    pub(crate) writer: OwnedWriteHalf,
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
) -> Result<Upstream, Refusal> {
    let unavailable = |what: String| Refusal::BrokerUnavailable(what);
    if !target.health.is_up() {
        return Err(unavailable("embedded broker is down".into()));
    }
    let addr = target.addr_for(connect.protocol);
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unavailable(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
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

/// Acknowledges at once what was just read from the broker.
///
/// Brokers often leave Nagle's algorithm on (mosquitto does by default): the broker holds its
/// next small write until the last one is acknowledged. Linux delays that acknowledgement when
/// it expects to send it with a reply (its "pingpong" mode, entered when moat sent SUBSCRIBE
/// right after CONNACK), and a connection that only carries deliveries to the client never
/// replies. The two settle into one burst per delayed-ACK timeout: ~20 ms between bursts and a
/// p50 of 10 ms at 40k msgs/s instead of 0.6 ms (BENCHMARKS.md). `TCP_QUICKACK` leaves that
/// mode and sends the pending ACK; Linux does not keep it set, so it is set after every batch
/// read: one system call per read, not per message.
pub(super) fn ack_now(reader: &FrameReader<OwnedReadHalf>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(reader.get_ref().as_ref()).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = reader;
}
