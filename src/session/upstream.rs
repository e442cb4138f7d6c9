//! The broker connection of one session: opened only after the client is authenticated.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::error::Refusal;
use super::reader::FrameReader;
use crate::broker::BrokerTarget;
use crate::mqtt::{self, Connect, Packet, ProtocolVersion};

/// The broker side of a session after its CONNACK said yes (or no).
pub(crate) struct Upstream {
    /// Frames from the broker.
    pub(crate) reader: FrameReader<BrokerRead>,
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
        let mut reader = FrameReader::new(BrokerRead(rd), max_packet_size);
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

/// The read half of a broker connection, acknowledging what it reads at once.
///
/// Brokers rarely disable Nagle's algorithm (mosquitto's `set_tcp_nodelay` is off by default;
/// rumqttd never sets it), so a broker holds a small delivery back until its previous segment is
/// acknowledged, and a receiver that only reads (QoS 0 deliveries) acknowledges late: Linux
/// delays the ACK. Measured on loopback at 20,000 QoS 0 msg/s through moat → mosquitto, that
/// made the median delivery 16 ms late. Setting `TCP_QUICKACK` after each read (the kernel clears
/// it again by itself) sends the ACK at once, so the broker's Nagle waits one loopback round
/// trip instead; it costs one `setsockopt` per read, not per packet.
pub(crate) struct BrokerRead(OwnedReadHalf);

impl AsyncRead for BrokerRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let _ = socket2::SockRef::from(self.0.as_ref()).set_tcp_quickack(true);
        }
        polled
    }
}
