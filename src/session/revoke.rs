//! What a wake of a live session's drain means: shutdown, a stop request (kick, drain), a ban
//! that now covers it, a revoked client certificate, or nothing.
//!
//! The session's broker → client loop waits on the drain, which wakes it for shutdown and when
//! the epoch moves (`shutdown.rs`): a TLS reload that changed the CRLs, an operator's kick or
//! ban, a policy reload, each step of a drain (`session/registry.rs`). Every session then looks
//! at its own stop request and at the bans set by the policy or an operator
//! ([`PolicyRefusal::BannedLive`]: MQTT 5 DISCONNECT 0x98, 3.x close, one audit line naming the
//! ban rule); a session that kept its certificate's issuer and serial (`Peer::cert`: CRLs are
//! configured) checks it against the CRLs in force and ends with
//! [`PolicyRefusal::CertificateRevoked`] when one revokes it. Separate from `driver.rs`, which
//! only moves bytes.

use super::env::Env;
use super::error::{PolicyRefusal, Refusal};
use super::registry::{LiveSession, StopRequest};
use crate::shutdown::Wake;
use crate::transport::Peer;

/// What a wake of the drain means for this session (see the module docs); `Ok` means nothing:
/// the session was checked at the current epoch and waits again.
pub(super) fn on_wake(
    peer: &Peer,
    env: &Env,
    session: &LiveSession,
    wake: Wake,
) -> Result<(), Refusal> {
    let epoch = match wake {
        // After a drain with a peer instance configured, the last sessions are pointed there
        // too (a drain of period 0 reaches them here first).
        Wake::Shutdown => return Err(drained(env)),
        Wake::Epoch(epoch) => epoch,
    };
    // Marked before the lookups: the requests, bans and revocations in force are at least as
    // new as `epoch` (each is stored before the epoch moves), so nothing newer is skipped.
    session
        .checked()
        .store(epoch, std::sync::atomic::Ordering::Release);
    match session.stop_request() {
        Some(StopRequest::Kick) => return Err(Refusal::Kicked),
        Some(StopRequest::Drain) => return Err(drained(env)),
        None => {}
    }
    if let Some(rule) = env.live_ban(&session.facts) {
        return Err(Refusal::Policy(PolicyRefusal::BannedLive(rule)));
    }
    let Some(cert) = peer.cert.as_deref() else {
        return Ok(());
    };
    cert.mark_checked(epoch);
    match env.revoking(cert) {
        Some(crl) => Err(Refusal::Policy(PolicyRefusal::CertificateRevoked {
            crl,
            serial: cert.serial_hex(),
        })),
        None => Ok(()),
    }
}

/// What a drained session is told: use the configured peer instance, or "shutting down".
fn drained(env: &Env) -> Refusal {
    match env.server_reference() {
        Some(to) => Refusal::Moved(to),
        None => Refusal::ShuttingDown,
    }
}
