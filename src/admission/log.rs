//! Aggregated refusal logging: one line per source and reason per interval, with a count.
//! Admission refusals and refused TLS/QUIC handshakes (`action = "tls"`) both come here, so a
//! device knocking with a revoked certificate is seen once per interval, not once per attempt.
//!
//! The first refusal of a (source, reason) pair in an interval is logged at once with its rule;
//! later ones are only counted and summed up by [`RefusalLog::flush`] at the end of the
//! interval. The table is bounded: once full, refusals of further sources are counted together.
//! A connection flood therefore costs a few log lines per interval, not one per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::policy::RuleRef;

/// Most (source, reason) pairs remembered per interval.
const MAX_SOURCES: usize = 1024;

#[derive(Debug, Default)]
struct Interval {
    /// Refusals after the first, per (source, reason).
    suppressed: HashMap<(std::net::IpAddr, &'static str), u64>,
    /// Refusals of sources that did not fit in the table.
    overflow: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    current: Mutex<Interval>,
}

// === impl RefusalLog ===

impl RefusalLog {
    /// Records one refusal; logs it if it is the first of its kind this interval. `action`:
    /// what was refused (`connect` at admission, `tls` for a handshake).
    pub(crate) fn note(
        &self,
        peer: SocketAddr,
        source: std::net::IpAddr,
        listener: &str,
        action: &'static str,
        reason: &'static str,
        rule: &RuleRef,
    ) {
        let first = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let full = cur.suppressed.len() >= MAX_SOURCES;
            match cur.suppressed.get_mut(&(source, reason)) {
                Some(n) => {
                    *n += 1;
                    false
                }
                None if full => {
                    cur.overflow += 1;
                    false
                }
                None => {
                    cur.suppressed.insert((source, reason), 0);
                    true
                }
            }
        };
        if first {
            tracing::warn!(
                target: "moat::audit",
                peer = %peer,
                listener,
                action,
                reason,
                rule = %rule,
                "connection refused"
            );
        }
    }

    /// Ends the interval: one summary line per source that was refused more than once.
    pub(crate) fn flush(&self) {
        let done = std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        for ((source, reason), more) in done.suppressed {
            if more > 0 {
                tracing::warn!(
                    target: "moat::audit",
                    source = %source,
                    reason,
                    more,
                    "connections refused (repeated, aggregated)"
                );
            }
        }
        if done.overflow > 0 {
            tracing::warn!(
                target: "moat::audit",
                refused = done.overflow,
                "connections refused from sources not listed (log table full)"
            );
        }
    }

    /// (source, reason) pairs remembered in this interval.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .suppressed
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn the_table_is_bounded_and_flushed() {
        let log = RefusalLog::default();
        let rule = RuleRef::builtin("x");
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        for i in 0..5000u32 {
            let ip = std::net::IpAddr::from(i.to_be_bytes());
            log.note(peer, ip, "l", "connect", "network", &rule);
        }
        assert_eq!(log.len(), MAX_SOURCES);
        log.flush();
        assert_eq!(log.len(), 0);
    }
}
