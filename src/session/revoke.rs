//! A live session whose client certificate a TLS reload revoked ends.
//!
//! The session's broker → client loop waits on the drain, which wakes it for shutdown and when
//! the revocation epoch moves (`shutdown.rs`); this file says what a wake means. Only a
//! session that kept its certificate's issuer and serial (`Peer::cert`: CRLs are configured)
//! ever sees an epoch; it checks the certificate against the CRLs in force and ends with
//! [`PolicyRefusal::CertificateRevoked`] (MQTT 5 DISCONNECT 0x87, 3.x close, one audit line) when
//! one revokes it. Separate from `driver.rs`, which only moves bytes.

use super::env::Env;
use super::error::{PolicyRefusal, Refusal};
use crate::shutdown::Wake;
use crate::transport::Peer;

/// What a wake of the drain means for this session: shutdown, a revoked certificate, or
/// nothing (a certificate still good, checked at the current epoch from now on).
pub(super) fn on_wake(peer: &Peer, env: &Env, wake: Wake) -> Result<(), Refusal> {
    let epoch = match wake {
        Wake::Shutdown => return Err(Refusal::ShuttingDown),
        Wake::Epoch(epoch) => epoch,
    };
    let Some(cert) = peer.cert.as_deref() else {
        return Ok(());
    };
    // Marked before the lookup: the revocations in force are at least as new as `epoch`
    // (a reload stores them before it moves the epoch), so nothing newer is skipped.
    cert.mark_checked(epoch);
    match env.revoking(cert) {
        Some(crl) => Err(Refusal::Policy(PolicyRefusal::CertificateRevoked {
            crl,
            serial: cert.serial_hex(),
        })),
        None => Ok(()),
    }
}
