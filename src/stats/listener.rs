//! One listener's counters: its label values resolved once, at start, so an accept bumps a
//! field of a struct the listener already holds (no label lookup).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::counters::Counters;
use crate::admission::RefusalReason;

/// Counters of one front door.
#[derive(Debug)]
pub struct ListenerStats {
    /// The listener's name (label `listener`).
    pub name: Arc<str>,
    /// Its transport as moat.yaml spells it (label `transport`).
    pub transport: &'static str,
    /// Connections accepted (TCP) or attempted (QUIC), before admission.
    pub accepted: AtomicU64,
    /// Refused at admission, by [`RefusalReason`] (index: `reason as usize`).
    pub refused: Counters<{ RefusalReason::ALL.len() }>,
}

// === impl ListenerStats ===

impl ListenerStats {
    /// Zeroed counters for `name`.
    pub fn new(name: Arc<str>, transport: &'static str) -> Self {
        ListenerStats {
            name,
            transport,
            accepted: AtomicU64::new(0),
            refused: Counters::default(),
        }
    }

    /// Counts one refusal at admission.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused.bump(reason as usize);
    }
}
