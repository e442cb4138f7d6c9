//! Which identity owns each client identifier, so one device cannot take over another's session.
//!
//! What it owns: a map from client id to the identity that last used it, kept while a session
//! with that id is live and, when the broker keeps the session after the connection ends
//! (3.x Clean Session 0, MQTT 5 Session Expiry > 0), after it too. A CONNECT whose client id is
//! owned by another identity is refused with CONNACK 0x85 / 0x02 before any broker connection
//! opens (catalogue §A.21): otherwise the broker would kick the owner and hand its
//! subscriptions and queued messages to the newcomer. The same identity may take over its own
//! session, as the spec requires [MQTT-3.1.4-3].
//! Why it is separate: it is the only state shared *between* sessions, behind one short-held
//! mutex, with a claim guard whose drop releases the id on every path out of a session.
//! What it must not do: grow without bound (at most [`MAX_REMEMBERED`] ids; beyond that, ids
//! of ended persistent sessions are forgotten first), or outlive the broker's own memory of
//! sessions: it lives in the process, like the embedded broker's sessions. With an external
//! broker, sessions outlive a moat restart and their ownership is learnt again from the next
//! CONNECT; a `client_id:` policy rule binds ids without that gap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most client ids remembered at once (an entry is a few dozen bytes).
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// The registry, shared by every session of a server.
#[derive(Debug, Default)]
pub(crate) struct ClientIds {
    owners: Mutex<HashMap<String, Owner>>,
}

#[derive(Debug)]
struct Owner {
    /// The identity that holds the id.
    identity: String,
    /// Live sessions using the id (a takeover briefly makes two).
    live: u32,
    /// The broker keeps the session after the connection ends.
    persistent: bool,
    /// Claims made so far: a session whose claim is older was taken over.
    generation: u64,
}

/// The client id is owned by another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken;

/// Holds a client id for one session; dropping it releases the id.
#[derive(Debug)]
pub(crate) struct Claim {
    registry: Arc<ClientIds>,
    client_id: String,
    /// The owner's generation when this claim was made.
    generation: u64,
}

// === impl ClientIds ===

impl ClientIds {
    /// Claims `client_id` for `identity`. `persistent` says whether the broker keeps the
    /// session after this connection ends; the latest claim decides.
    pub(crate) fn claim(
        self: &Arc<Self>,
        client_id: &str,
        identity: &str,
        persistent: bool,
    ) -> Result<Claim, Taken> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let generation = match owners.get_mut(client_id) {
            Some(owner) if owner.identity != identity => return Err(Taken),
            Some(owner) => {
                owner.live = owner.live.saturating_add(1);
                owner.persistent = persistent;
                owner.generation = owner.generation.wrapping_add(1);
                owner.generation
            }
            None => {
                if owners.len() >= MAX_REMEMBERED {
                    forget_one(&mut owners);
                }
                owners.insert(
                    client_id.to_owned(),
                    Owner {
                        identity: identity.to_owned(),
                        live: 1,
                        persistent,
                        generation: 0,
                    },
                );
                0
            }
        };
        Ok(Claim {
            registry: Arc::clone(self),
            client_id: client_id.to_owned(),
            generation,
        })
    }

    fn release(&self, client_id: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(owner) = owners.get_mut(client_id) {
            owner.live = owner.live.saturating_sub(1);
            if owner.live == 0 && !owner.persistent {
                owners.remove(client_id);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.owners.lock().map(|o| o.len()).unwrap_or(0)
    }
}

/// Makes room: forgets one id without a live session (the map is full of ended persistent
/// sessions). If every id is live the map may exceed the cap by the number of live sessions,
/// which the connection cap bounds.
fn forget_one(owners: &mut HashMap<String, Owner>) {
    let idle = owners
        .iter()
        .find(|(_, o)| o.live == 0)
        .map(|(id, _)| id.clone());
    if let Some(id) = idle {
        owners.remove(&id);
    }
}

// === impl Claim ===

impl Claim {
    /// A later session of the same identity claimed this client id: the broker hands it the
    /// session and drops this one's connection, which the client must hear as a takeover
    /// (MQTT 5 DISCONNECT 0x8E), not as a broker failure.
    pub(crate) fn superseded(&self) -> bool {
        let owners = self
            .registry
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        owners
            .get(&self.client_id)
            .is_some_and(|o| o.generation != self.generation)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.release(&self.client_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn another_identity_cannot_take_a_live_or_kept_session() {
        let ids = Arc::new(ClientIds::default());
        let alice = ids.claim("dev-1", "alice", false).unwrap();
        assert_eq!(ids.claim("dev-1", "bob", false).unwrap_err(), Taken);
        // The same identity may take over its own session; the older claim learns it.
        assert!(!alice.superseded());
        let again = ids.claim("dev-1", "alice", true).unwrap();
        assert!(alice.superseded());
        assert!(!again.superseded());
        drop(alice);
        assert!(!again.superseded(), "the newest claim stays current");
        assert_eq!(ids.claim("dev-1", "bob", false).unwrap_err(), Taken);
        drop(again);
        // The last claim asked the broker to keep the session: still alice's.
        assert_eq!(ids.claim("dev-1", "bob", false).unwrap_err(), Taken);
        // A clean session by alice ends it; then the id is free.
        drop(ids.claim("dev-1", "alice", false).unwrap());
        assert_eq!(ids.len(), 0);
        assert!(ids.claim("dev-1", "bob", false).is_ok());
    }

    #[test]
    fn the_map_is_bounded() {
        let ids = Arc::new(ClientIds::default());
        for i in 0..MAX_REMEMBERED + 10 {
            drop(ids.claim(&format!("c{i}"), "alice", true).unwrap());
        }
        assert_eq!(ids.len(), MAX_REMEMBERED);
    }
}
