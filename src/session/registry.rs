//! Which live sessions of this moat use each broker client id, so that a session the broker
//! drops because the same identity connected again is told it was taken over.
//!
//! What it owns: a count of live sessions per broker client id (`session/broker_id.rs`: the
//! client's id namespaced by its identity) and a generation that each new claim bumps. When a
//! later session of the same identity claims the id, the broker hands it the session and drops
//! the older connection [MQTT-3.1.4-3]; the older one finds its claim superseded and tells an
//! MQTT 5 client DISCONNECT 0x8E instead of "broker failure".
//! Why it is separate: it is the only state shared *between* sessions, behind one short-held
//! mutex, with a claim guard whose drop releases the id on every path out of a session.
//! What it must not do: decide who may use a client id. Ownership needs no memory: two
//! identities never meet in one broker session because their broker ids differ, across
//! restarts and across moat instances. (It once refused a client id another identity held,
//! which a restart forgot: issue 13.) Nor may it outlive a session: an id is forgotten when
//! its last live session ends, so it holds at most one entry per live connection. A takeover
//! through another moat instance is not seen here; the older session then ends as a broker
//! close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The registry, shared by every session of a server.
#[derive(Debug, Default)]
pub(crate) struct ClientIds {
    live: Mutex<HashMap<String, Live>>,
}

#[derive(Debug)]
struct Live {
    /// Live sessions using the id (a takeover briefly makes two).
    sessions: u32,
    /// Claims made so far: a session whose claim is older was taken over.
    generation: u64,
}

/// Holds a broker client id for one session; dropping it releases the id.
#[derive(Debug)]
pub(crate) struct Claim {
    registry: Arc<ClientIds>,
    broker_id: String,
    /// The id's generation when this claim was made.
    generation: u64,
}

// === impl ClientIds ===

impl ClientIds {
    /// Claims `broker_id` for a new session; a live session with the same id is superseded.
    pub(crate) fn claim(self: &Arc<Self>, broker_id: String) -> Claim {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let generation = match live.get_mut(&broker_id) {
            Some(entry) => {
                entry.sessions = entry.sessions.saturating_add(1);
                entry.generation = entry.generation.wrapping_add(1);
                entry.generation
            }
            None => {
                live.insert(
                    broker_id.clone(),
                    Live {
                        sessions: 1,
                        generation: 0,
                    },
                );
                0
            }
        };
        Claim {
            registry: Arc::clone(self),
            broker_id,
            generation,
        }
    }

    fn release(&self, broker_id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = live.get_mut(broker_id) {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.sessions == 0 {
                live.remove(broker_id);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.live.lock().map(|o| o.len()).unwrap_or(0)
    }
}

// === impl Claim ===

impl Claim {
    /// The client id the broker knows this session by.
    pub(crate) fn broker_id(&self) -> &str {
        &self.broker_id
    }

    /// A later session of the same identity claimed this client id: the broker hands it the
    /// session and drops this one's connection, which the client must hear as a takeover
    /// (MQTT 5 DISCONNECT 0x8E), not as a broker failure.
    pub(crate) fn superseded(&self) -> bool {
        let live = self.registry.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&self.broker_id)
            .is_some_and(|o| o.generation != self.generation)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.release(&self.broker_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_later_claim_supersedes_the_live_one() {
        let ids = Arc::new(ClientIds::default());
        let first = ids.claim("alice:dev-1".into());
        let other = ids.claim("bob:dev-1".into());
        assert!(!first.superseded(), "another identity's id is another id");
        let again = ids.claim("alice:dev-1".into());
        assert!(first.superseded());
        assert!(!again.superseded());
        drop(first);
        assert!(!again.superseded(), "the newest claim stays current");
        assert!(!other.superseded());
        assert_eq!(again.broker_id(), "alice:dev-1");
    }

    #[test]
    fn ids_are_forgotten_with_their_last_session() {
        let ids = Arc::new(ClientIds::default());
        for i in 0..1_000 {
            drop(ids.claim(format!("alice:c{i}")));
        }
        assert_eq!(ids.len(), 0);
        let a = ids.claim("alice:c".into());
        let b = ids.claim("alice:c".into());
        drop(a);
        assert_eq!(ids.len(), 1);
        drop(b);
        assert_eq!(ids.len(), 0);
    }
}
