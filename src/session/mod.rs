//! One MQTT proxy session per client connection.
//!
//! `connect` runs the CONNECT phase (authenticate, open the upstream), `state` decides what to
//! do with each later packet (pure), `driver` moves bytes both ways, and `error` is the one
//! mapping from a refusal to what the client is told.

mod alias;
mod connect;
mod driver;
mod error;
mod limits;
mod reader;
mod registry;
mod state;
mod upstream;

pub(crate) use registry::ClientIds;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::mqtt::{self, ConnectReturnCode, Packet, ProtocolVersion};
use crate::ops::audit;
use crate::server::{Drain, Shared, Stats};
use crate::transport::Peer;
use error::{Outcome, Refusal};
use reader::FrameReader;

/// Serves one client from its first byte after the transport handshake to the close.
pub(crate) async fn run<S>(stream: S, peer: Peer, shared: Arc<Shared>, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd, shared.config.limits.max_packet_size);
    let admitted = match connect::admit(&mut reader, &peer, &shared).await {
        Ok(a) => a,
        Err(refused) => {
            Stats::bump(&shared.stats.connects_refused);
            let (action, topic) = refused.refusal.audit_subject();
            if matches!(refused.refusal, error::Refusal::Banned(_)) {
                Stats::bump(&shared.stats.connects_banned);
            }
            audit::refused(
                &peer,
                refused.identity.as_deref(),
                action,
                topic,
                &refused.refusal.to_string(),
                &refused.refusal.rule(),
            );
            if let Some(version) = refused.version {
                let _ = say_goodbye(&mut wr, version, refused.refusal.outcome()).await;
            }
            let _ = wr.shutdown().await;
            return;
        }
    };
    let version = admitted.connect.protocol;
    let connack = connect::client_connack(&admitted, &shared);
    let accepted = connack.code == 0;
    let mut out = BytesMut::new();
    if Packet::ConnAck(connack).encode(version, &mut out).is_err()
        || wr.write_all(&out).await.is_err()
        || !accepted
    {
        let _ = wr.shutdown().await;
        return;
    }
    tracing::info!(identity = ?admitted.identity.name, client_id = ?admitted.connect.client_id.as_str(), ?version, "session up");
    Stats::bump_gauge(&shared.stats.active_sessions, 1);
    let identity = admitted.identity.name.clone();
    let client_id = admitted.connect.client_id.as_str().to_owned();
    let username = identity.clone();
    let end = driver::pump(reader, &mut wr, admitted, &peer, &shared, drain).await;
    Stats::bump_gauge(&shared.stats.active_sessions, -1);
    // Connect/disconnect flapping is counted per client id (admission may ban it).
    shared
        .gate
        .session_ended(peer.addr.ip(), Some(&username), &client_id);
    match end {
        Ok(()) => {}
        Err(refusal @ Refusal::PublishDenied { .. }) => {
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
            let _ = say_goodbye(&mut wr, version, refusal.outcome()).await;
        }
        Err(refusal) => {
            tracing::info!(reason = %refusal, "session closed by moat");
            let _ = say_goodbye(&mut wr, version, refusal.outcome()).await;
        }
    }
    let _ = wr.shutdown().await;
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
