//! One MQTT proxy session per client connection, read top-down:
//!
//! [`run`] → `connect::establish` (the CONNECT phase: authenticate, open the upstream, CONNACK;
//! returns the session's `driver::Link`) → `driver::pump` (both directions until one ends) →
//! the end (audit, the last word to the client). `state` decides what to do with each packet
//! after CONNACK (pure), `error` is the one mapping from a refusal to what the client is told,
//! and `env` is all a session reads from the rest of moat (built by the server).

mod broker_id;
mod connect;
mod driver;
mod env;
mod error;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod machine;
mod reader;
mod registry;
mod revoke;
mod upstream;

pub(crate) use env::{Env, EnvParts};
#[cfg(test)]
pub(crate) use registry::{Claim, Facts};
pub(crate) use registry::{LiveSession, Registry, StopRequest};

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::ops::audit::{self, Escaped};
use crate::shutdown::Drain;
use crate::stats::Stats;
use crate::transport::Peer;
use error::{PolicyRefusal, Refusal};
use reader::FrameReader;

/// Serves one client from its first byte after the transport handshake to the close.
///
/// Not `async` itself: the stream is split here, at once, so that it is not also kept in a slot
/// of the session future for the connection's whole life (idle connections are mostly this
/// future, see BENCHMARKS.md).
pub(crate) fn run<S>(
    stream: S,
    peer: Peer,
    env: Arc<Env>,
    drain: Drain,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    serve(rd, wr, peer, env, drain)
}

async fn serve<S>(rd: ReadHalf<S>, mut wr: WriteHalf<S>, peer: Peer, env: Arc<Env>, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FrameReader::new(rd, env.settings().max_packet_size);
    // Boxed: the CONNECT phase's state is freed once it is over instead of sizing the session
    // future (allocated once, at its largest) for the connection's whole life.
    let establish = connect::establish(&mut reader, &mut wr, &peer, &env);
    let Some(mut link) = Box::pin(establish).await else {
        let _ = wr.shutdown().await;
        return;
    };
    Stats::bump_gauge(&env.stats().active_sessions, 1);
    let started = tokio::time::Instant::now();
    let end = match driver::pump(&mut reader, &mut wr, &mut link, &peer, &env, drain).await {
        // The broker drops the old connection when a newer one claims the session: the claim
        // was registered before that connection reached the broker, so this check cannot lose
        // the race.
        Err(Refusal::Broker(_)) if link.claim.superseded() => Err(Refusal::TakenOver),
        end => end,
    };
    Stats::bump_gauge(&env.stats().active_sessions, -1);
    let (identity, client_id) = link.who();
    // Connect/disconnect flapping is counted per client id (admission may ban it).
    env.session_ended(peer.addr.ip(), Some(&identity), &client_id);
    closed(&link, &identity, &client_id, started.elapsed(), &end);
    if let Err(refusal) = end {
        if let Refusal::Policy(_) = refusal {
            // The policy ended the session (a `disconnect: true` rule, a limit, a revoked
            // certificate): one audit line with the rule, as every policy refusal has.
            if let Refusal::Policy(PolicyRefusal::Limit(..)) = refusal {
                Stats::bump(&env.stats().limit_disconnects);
            }
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
        }
        let last = driver::encode(refusal.goodbye(link.version()), link.version());
        let _ = driver::say(&mut wr, last).await;
    }
    let _ = wr.shutdown().await;
}

/// The one line that ends every session that was up: who, how long, what it carried each way,
/// and why it ended (a refusal also has its audit line, with the rule).
fn closed(
    link: &driver::Link,
    identity: &str,
    client_id: &str,
    lasted: std::time::Duration,
    end: &Result<driver::End, Refusal>,
) {
    let tally = link.machine.tally();
    let (reason, detail) = match end {
        Ok(end) => (end.reason(), None),
        Err(refusal) => (refusal.end_reason(), Some(refusal.to_string())),
    };
    tracing::info!(
        identity = %Escaped(identity),
        client_id = %Escaped(client_id),
        reason,
        detail = detail.as_deref().map(|d| tracing::field::display(Escaped(d))),
        duration_ms = u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
        messages_in = tally.messages_in,
        messages_out = tally.messages_out,
        bytes_in = tally.bytes_in,
        bytes_out = tally.bytes_out,
        "session closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of a value's type, from a function that would build it (never called).
    fn size_of_output<A, T>(_build: fn(A) -> T) -> usize {
        std::mem::size_of::<T>()
    }

    #[test]
    fn an_idle_session_is_a_small_future() {
        // Every idle session is this future (its CONNECT phase is boxed and gone): printed for
        // the record (`cargo test session_future -- --nocapture`), bounded so it cannot grow
        // unseen. The stream type does not matter: the session holds its split halves.
        let size = size_of_output(
            |(s, p, e, d): (tokio::io::DuplexStream, Peer, Arc<Env>, Drain)| run(s, p, e, d),
        );
        println!("session future: {size} bytes");
        // 2872 bytes before the session machine (two direction futures, two locked states, two
        // Notify queues), 2288 after.
        assert!(size <= 2560, "{size}");
    }
}
