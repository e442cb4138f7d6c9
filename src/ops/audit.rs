//! The audit log: one structured line per refusal, with the rule that made it.
//!
//! Lines go to the `moat::audit` tracing target so operators can route them on their own (and
//! an external fail2ban can read them). Every peer-controlled string is logged with `Debug`
//! formatting, which escapes control characters: a client id with `\n` cannot forge a line.

use crate::transport::Peer;

/// Logs one refusal.
pub fn refused(
    peer: &Peer,
    identity: Option<&str>,
    action: &str,
    subject: &str,
    reason: &str,
    rule: &str,
) {
    tracing::warn!(
        target: "moat::audit",
        peer = %peer.addr,
        listener = %peer.listener,
        identity = ?identity,
        action,
        subject = ?subject,
        reason,
        rule,
        "refused"
    );
}

/// Logs one state-changing admin call (a kick, a ban, a reload, a drain): who asked, what they
/// did to what, and how it ended. Every admin route that changes state calls this once.
pub fn admin_action(caller: &str, action: &str, subject: &str, outcome: &str) {
    tracing::info!(
        target: "moat::audit",
        caller = ?caller,
        action,
        subject = ?subject,
        outcome,
        "admin action"
    );
}
