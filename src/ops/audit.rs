//! The audit log: one structured line per refusal, with the rule that made it.
//!
//! Lines go to the `moat::audit` tracing target so operators can route them on their own (and
//! an external fail2ban can read them). Every peer-controlled string is logged as [`Escaped`]:
//! a plain value (a JSON log gets a plain string, not Rust debug text) whose control characters
//! are escaped, so a client id with `\n` cannot forge a line of a text log either.

use std::fmt;

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
        // `None` leaves the field out rather than writing a placeholder an identity could be.
        identity = identity.map(|i| tracing::field::display(Escaped(i))),
        action,
        subject = %Escaped(subject),
        reason = %Escaped(reason),
        rule,
        "refused"
    );
}

/// Logs one state-changing admin call (a kick, a ban, a reload, a drain): who asked, what they
/// did to what, and how it ended. Every admin route that changes state calls this once.
pub fn admin_action(caller: &str, action: &str, subject: &str, outcome: &str) {
    tracing::info!(
        target: "moat::audit",
        caller = %Escaped(caller),
        action,
        subject = %Escaped(subject),
        outcome,
        "admin action"
    );
}

/// A string from a peer (client id, user name, topic) as a log value: written as it is, except
/// that control characters are escaped (`\n`, `\u{1b}`), so it cannot end a line or colour a
/// terminal. Quotes and backslashes stay as they are: the JSON formatter escapes those itself,
/// and a text log is read up to the next field.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_string_is_written_plain_with_control_characters_escaped() {
        assert_eq!(Escaped("other/x").to_string(), "other/x");
        assert_eq!(Escaped("a\"b").to_string(), "a\"b");
        assert_eq!(Escaped("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
    }
}
