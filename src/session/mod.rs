//! One MQTT proxy session per client connection.
//!
//! `connect` runs the CONNECT phase (authenticate, open the upstream), `state` decides what to
//! do with each later packet (pure), `driver` moves bytes both ways, and `error` is the one
//! mapping from a refusal to what the client is told.

mod alias;
mod broker_id;
mod connect;
mod driver;
mod error;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod limits;
mod reader;
mod registry;
mod revoke;
mod state;
mod upstream;

pub(crate) use registry::ClientIds;
pub(crate) use upstream::AckPacer;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::mqtt::{self, ConnectReturnCode, Packet, ProtocolVersion};
use crate::ops::audit;
use crate::server::{Drain, Shared, Stats};
use crate::transport::Peer;
use error::{Outcome, Refusal};
use limits::SessionLimits;
use reader::FrameReader;

/// Serves one client from its first byte after the transport handshake to the close.
///
/// Not `async` itself: the stream is split here, at once, so that it is not also kept in a slot
/// of the session future for the connection's whole life (idle connections are mostly this
/// future, see BENCHMARKS.md).
pub(crate) fn run<S>(
    stream: S,
    peer: Peer,
    shared: Arc<Shared>,
    drain: Drain,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    serve(rd, wr, peer, shared, drain)
}

async fn serve<S>(
    rd: ReadHalf<S>,
    mut wr: WriteHalf<S>,
    peer: Peer,
    shared: Arc<Shared>,
    drain: Drain,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FrameReader::new(rd, shared.config.limits.max_packet_size);
    // Boxed: the CONNECT phase's state is freed once it is over instead of sizing the session
    // future (allocated once, at its largest) for the connection's whole life.
    let Some(mut link) = Box::pin(establish(&mut reader, &mut wr, &peer, &shared)).await else {
        let _ = wr.shutdown().await;
        return;
    };
    Stats::bump_gauge(&shared.stats.active_sessions, 1);
    let end = match driver::pump(&mut reader, &mut wr, &mut link, &peer, &shared, drain).await {
        // The broker drops the old connection when a newer one claims the session: the claim
        // was registered before that connection reached the broker, so this check cannot lose
        // the race.
        Err(Refusal::Broker(_)) if link.claim.superseded() => Err(Refusal::TakenOver),
        end => end,
    };
    Stats::bump_gauge(&shared.stats.active_sessions, -1);
    let (identity, client_id) = link.who();
    // Connect/disconnect flapping is counted per client id (admission may ban it).
    shared
        .gate
        .session_ended(peer.addr.ip(), Some(&identity), &client_id);
    match end {
        Ok(()) => {}
        Err(refusal @ (Refusal::PublishDenied { .. } | Refusal::CertificateRevoked { .. })) => {
            let (action, topic) = refusal.audit_subject();
            let reason = refusal.to_string();
            audit::refused(
                &peer,
                Some(&identity),
                action,
                topic,
                &reason,
                &refusal.rule(),
            );
            let _ = say_goodbye(&mut wr, link.version, refusal.outcome()).await;
        }
        Err(refusal) => {
            tracing::info!(reason = %refusal, "session closed by moat");
            let _ = say_goodbye(&mut wr, link.version, refusal.outcome()).await;
        }
    }
    let _ = wr.shutdown().await;
}

/// The CONNECT phase and the CONNACK; `None` when the session ends here (the client was told
/// why, if its version has a way to say it).
async fn establish<R, W>(
    reader: &mut FrameReader<R>,
    wr: &mut W,
    peer: &Peer,
    shared: &Arc<Shared>,
) -> Option<driver::Link>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let admitted = match connect::admit(reader, peer, shared).await {
        Ok(a) => a,
        Err(refused) => {
            Stats::bump(&shared.stats.connects_refused);
            let (action, topic) = refused.refusal.audit_subject();
            if matches!(refused.refusal, error::Refusal::Banned(_)) {
                Stats::bump(&shared.stats.connects_banned);
            }
            audit::refused(
                peer,
                refused.identity.as_deref(),
                action,
                topic,
                &refused.refusal.to_string(),
                &refused.refusal.rule(),
            );
            if let Some(version) = refused.version {
                let _ = say_goodbye(wr, version, refused.refusal.outcome()).await;
            }
            return None;
        }
    };
    let version = admitted.connect.protocol;
    let connack = connect::client_connack(&admitted, shared);
    let accepted = connack.code == 0;
    let mut out = BytesMut::new();
    if Packet::ConnAck(connack).encode(version, &mut out).is_err()
        || wr.write_all(&out).await.is_err()
        || !accepted
    {
        return None;
    }
    tracing::info!(
        identity = ?admitted.identity.name,
        client_id = ?admitted.connect.client_id.as_str(),
        broker_client_id = ?admitted.claim.broker_id(),
        ?version,
        "session up"
    );
    Some(driver::Link {
        version,
        keep_alive: admitted.keep_alive,
        state: std::sync::Mutex::new(driver::initial_state(&admitted, shared)),
        limits: std::sync::Mutex::new(SessionLimits::new(version, admitted.limits.clone())),
        upstream_rd: admitted.upstream.reader,
        upstream_wr: admitted.upstream.writer,
        claim: admitted.claim,
    })
}

/// Writes the last word moat has for a client, if its version has one for this outcome.
async fn say_goodbye<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    outcome: Outcome,
) -> std::io::Result<()> {
    let packet = match (outcome, version) {
        (Outcome::ConnAck(code), ProtocolVersion::V5) => {
            Packet::ConnAck(mqtt::ConnAck::new(code.code()))
        }
        (Outcome::ConnAck(code), _) => {
            Packet::ConnAck(mqtt::ConnAck::new(ConnectReturnCode::from_v5(code).code()))
        }
        (Outcome::ConnAckRaw(code), _) => Packet::ConnAck(mqtt::ConnAck::new(code)),
        (Outcome::Disconnect(code), ProtocolVersion::V5) => {
            Packet::Disconnect(mqtt::Disconnect::new(code.code()))
        }
        // MQTT 3.x has no DISCONNECT from the server: closing is the answer.
        (Outcome::Disconnect(_), _) | (Outcome::Close, _) => return Ok(()),
    };
    let mut out = BytesMut::new();
    if packet.encode(version, &mut out).is_ok() {
        wr.write_all(&out).await?;
        wr.flush().await?;
    }
    Ok(())
}
