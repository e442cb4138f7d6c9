//! The live sessions of this moat: who they are (for `moat ctl sessions`), what they moved, how
//! to end one from outside (a kick, a ban, the drain), and which of them use each broker
//! client id, so that a session the broker drops because the same identity connected again is
//! told it was taken over.
//!
//! What it owns: one [`LiveSession`] per session past authentication (its facts, counters, a
//! stop request and the epoch it last checked), a count of live sessions per broker client id
//! (`session/broker_id.rs`: the client's id namespaced by its identity) and a generation that
//! each new claim bumps. When a later session of the same identity claims the id, the broker
//! hands it the session and drops the older connection [MQTT-3.1.4-3]; the older one finds its
//! claim superseded and tells an MQTT 5 client DISCONNECT 0x8E instead of "broker failure".
//!
//! Ending a session from outside costs it nothing while idle: [`Registry::stop`] sets the
//! session's stop request and moves the drain's epoch (`shutdown.rs`), which wakes every
//! session; each one looks at its own request and the bans in force (`session/revoke.rs`) and
//! goes back to waiting. An admin action or a policy reload is rare, so one wake of everyone is
//! cheaper than a channel per idle session.
//!
//! Why it is separate: it is the only state shared *between* sessions, behind two short-held
//! mutexes, with a claim guard whose drop removes the session on every path out of it.
//! What it must not do: decide who may use a client id (ownership needs no memory: two
//! identities never meet in one broker session because their broker ids differ, issue 13), or
//! outlive a session: it holds exactly one entry per live session.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::TransportKind;
use crate::mqtt::ProtocolVersion;
use crate::shutdown::Epoch;

/// The registry, shared by every session of a server.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Live sessions per broker client id.
    ids: Mutex<HashMap<String, Live>>,
    /// Every live session by its id (ordered: pages follow the ids).
    sessions: Mutex<BTreeMap<u64, Arc<LiveSession>>>,
    /// The next session id.
    next: AtomicU64,
    /// Moved to make every session look at its stop request.
    epoch: Epoch,
    /// Where a drained MQTT 5 client is told to go (`drain.server_reference`), set when a
    /// drain starts.
    moved_to: Mutex<Option<Arc<str>>>,
}

#[derive(Debug)]
struct Live {
    /// Live sessions using the id (a takeover briefly makes two).
    sessions: u32,
    /// Claims made so far: a session whose claim is older was taken over.
    generation: u64,
}

/// What a session is, as the admin listing shows it: fixed when it registers.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// Identity name (user, certificate CN, or `anonymous`).
    pub(crate) identity: String,
    /// The client id (the one moat assigned, if the client sent none).
    pub(crate) client_id: String,
    /// Client address.
    pub(crate) addr: SocketAddr,
    /// Listener it came through.
    pub(crate) listener: Arc<str>,
    /// Transport it came through.
    pub(crate) kind: TransportKind,
    /// MQTT version.
    pub(crate) version: ProtocolVersion,
}

/// Why a session was asked to stop from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopRequest {
    /// An operator kicked it (`moat ctl kick`).
    Kick = 1,
    /// The drain moves it to another instance (or just away).
    Drain = 2,
}

/// One live session.
#[derive(Debug)]
pub(crate) struct LiveSession {
    /// Registry id (what `moat ctl kick` names).
    pub(crate) id: u64,
    /// Who and where.
    pub(crate) facts: Facts,
    /// Registered at (wall clock).
    pub(crate) since: SystemTime,
    /// Packets from the client.
    packets_in: AtomicU64,
    /// Bytes from the client.
    bytes_in: AtomicU64,
    /// Packets to the client.
    packets_out: AtomicU64,
    /// Bytes to the client.
    bytes_out: AtomicU64,
    /// A [`StopRequest`], or 0.
    stop: AtomicU8,
    /// The epoch this session last looked at its stop request and the bans at; 0: never.
    checked: AtomicU64,
}

/// Counters of a [`LiveSession`], copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Traffic {
    /// Packets from the client.
    pub(crate) packets_in: u64,
    /// Bytes from the client.
    pub(crate) bytes_in: u64,
    /// Packets to the client.
    pub(crate) packets_out: u64,
    /// Bytes to the client.
    pub(crate) bytes_out: u64,
}

/// Holds a broker client id and a registry entry for one session; dropping it releases both.
#[derive(Debug)]
pub(crate) struct Claim {
    registry: Arc<Registry>,
    broker_id: String,
    /// The id's generation when this claim was made.
    generation: u64,
    /// This session's entry.
    session: Arc<LiveSession>,
}

// === impl Registry ===

impl Registry {
    /// An empty registry; stop requests move `epoch`.
    pub(crate) fn new(epoch: Epoch) -> Registry {
        Registry {
            ids: Mutex::default(),
            sessions: Mutex::default(),
            next: AtomicU64::new(1),
            epoch,
            moved_to: Mutex::default(),
        }
    }

    /// Claims `broker_id` for a new session and registers it; a live session with the same id
    /// is superseded.
    pub(crate) fn claim(self: &Arc<Self>, broker_id: String, facts: Facts) -> Claim {
        let generation = {
            let mut live = self.ids.lock().unwrap_or_else(|p| p.into_inner());
            match live.get_mut(&broker_id) {
                Some(entry) => {
                    entry.sessions = entry.sessions.saturating_add(1);
                    entry.generation = entry.generation.wrapping_add(1);
                    entry.generation
                }
                None => {
                    let first = Live {
                        sessions: 1,
                        generation: 0,
                    };
                    live.insert(broker_id.clone(), first);
                    0
                }
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(LiveSession {
            id,
            facts,
            since: SystemTime::now(),
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stop: AtomicU8::new(0),
            checked: AtomicU64::new(0),
        });
        self.lock_sessions().insert(id, session.clone());
        Claim {
            registry: Arc::clone(self),
            broker_id,
            generation,
            session,
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<LiveSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, broker_id: &str, id: u64) {
        self.lock_sessions().remove(&id);
        let mut live = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = live.get_mut(broker_id) {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.sessions == 0 {
                live.remove(broker_id);
            }
        }
    }

    /// Live sessions now.
    pub(crate) fn len(&self) -> usize {
        self.lock_sessions().len()
    }

    /// Up to `limit` sessions with ids above `after` that `keep` selects, in id order, and
    /// whether more would follow. The lock is held for the walk only (no I/O under it).
    pub(crate) fn page(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&LiveSession) -> bool,
    ) -> (Vec<Arc<LiveSession>>, bool) {
        let sessions = self.lock_sessions();
        let mut out = Vec::new();
        let mut more = false;
        let start = after.saturating_add(1);
        for s in sessions.range(start..).map(|(_, s)| s) {
            if !keep(s) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(s.clone());
        }
        (out, more)
    }

    /// Ids of every live session that `keep` selects.
    pub(crate) fn ids(&self, keep: impl Fn(&LiveSession) -> bool) -> Vec<u64> {
        let sessions = self.lock_sessions();
        sessions
            .values()
            .filter(|s| keep(s))
            .map(|s| s.id)
            .collect()
    }

    /// The live session `id`, if there is one.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<LiveSession>> {
        self.lock_sessions().get(&id).cloned()
    }

    /// Asks the sessions `ids` to stop for `why` and wakes them; returns how many were live.
    /// One epoch move for the whole batch.
    pub(crate) fn stop(&self, ids: &[u64], why: StopRequest) -> usize {
        let mut n = 0;
        {
            let sessions = self.lock_sessions();
            for id in ids {
                if let Some(s) = sessions.get(id) {
                    // An earlier request stays: a kicked session is not turned into a drained one.
                    let _ =
                        s.stop
                            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.recheck();
        }
        n
    }

    /// Sets where drained MQTT 5 clients are told to go (DISCONNECT 0x9C), or none (0x8B).
    pub(crate) fn set_moved_to(&self, to: Option<Arc<str>>) {
        *self.moved_to.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }

    /// Where drained MQTT 5 clients are told to go, if anywhere.
    pub(crate) fn moved_to(&self) -> Option<Arc<str>> {
        self.moved_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wakes every session to look at its stop request and the bans in force again (after a
    /// ban was added or a policy reloaded).
    pub(crate) fn recheck(&self) {
        self.epoch.advance();
    }
}

// === impl LiveSession ===

impl LiveSession {
    /// Counts packets from the client.
    pub(crate) fn count_in(&self, packets: u64, bytes: u64) {
        self.packets_in.fetch_add(packets, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts packets to the client.
    pub(crate) fn count_out(&self, packets: usize, bytes: usize) {
        self.packets_out
            .fetch_add(packets as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub(crate) fn traffic(&self) -> Traffic {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Traffic {
            packets_in: r(&self.packets_in),
            bytes_in: r(&self.bytes_in),
            packets_out: r(&self.packets_out),
            bytes_out: r(&self.bytes_out),
        }
    }

    /// Why this session was asked to stop, if it was.
    pub(crate) fn stop_request(&self) -> Option<StopRequest> {
        match self.stop.load(Ordering::Acquire) {
            1 => Some(StopRequest::Kick),
            2 => Some(StopRequest::Drain),
            _ => None,
        }
    }

    /// The epoch this session last checked at (what the drain's wait compares).
    pub(crate) fn checked(&self) -> &AtomicU64 {
        &self.checked
    }
}

// === impl Claim ===

impl Claim {
    /// The client id the broker knows this session by.
    pub(crate) fn broker_id(&self) -> &str {
        &self.broker_id
    }

    /// This session's registry entry.
    pub(crate) fn session(&self) -> &LiveSession {
        &self.session
    }

    /// A later session of the same identity claimed this client id: the broker hands it the
    /// session and drops this one's connection, which the client must hear as a takeover
    /// (MQTT 5 DISCONNECT 0x8E), not as a broker failure.
    pub(crate) fn superseded(&self) -> bool {
        let live = self.registry.ids.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&self.broker_id)
            .is_some_and(|o| o.generation != self.generation)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.release(&self.broker_id, self.session.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;
    use crate::shutdown::DrainController;

    fn facts(identity: &str) -> Facts {
        Facts {
            identity: identity.into(),
            client_id: "c".into(),
            addr: ([127, 0, 0, 1], 5000).into(),
            listener: Arc::from("mqtts"),
            kind: TransportKind::Tls,
            version: ProtocolVersion::V5,
        }
    }

    fn registry() -> (Arc<Registry>, DrainController) {
        let drain = DrainController::new();
        (Arc::new(Registry::new(drain.epoch())), drain)
    }

    #[test]
    fn a_later_claim_supersedes_the_live_one() {
        let (ids, _d) = registry();
        let first = ids.claim("alice:dev-1".into(), facts("alice"));
        let other = ids.claim("bob:dev-1".into(), facts("bob"));
        assert!(!first.superseded(), "another identity's id is another id");
        let again = ids.claim("alice:dev-1".into(), facts("alice"));
        assert!(first.superseded());
        assert!(!again.superseded());
        drop(first);
        assert!(!again.superseded(), "the newest claim stays current");
        assert!(!other.superseded());
        assert_eq!(again.broker_id(), "alice:dev-1");
    }

    #[test]
    fn ids_and_sessions_are_forgotten_with_their_last_session() {
        let (ids, _d) = registry();
        for i in 0..1_000 {
            drop(ids.claim(format!("alice:c{i}"), facts("alice")));
        }
        assert_eq!(ids.ids.lock().unwrap().len(), 0);
        assert_eq!(ids.len(), 0);
        let a = ids.claim("alice:c".into(), facts("alice"));
        let b = ids.claim("alice:c".into(), facts("alice"));
        drop(a);
        assert_eq!(ids.len(), 1);
        drop(b);
        assert_eq!(ids.len(), 0);
    }

    #[test]
    fn pages_follow_ids_and_filters() {
        let (reg, _d) = registry();
        let claims: Vec<Claim> = (0..5)
            .map(|i| {
                let who = if i % 2 == 0 { "alice" } else { "bob" };
                reg.claim(format!("{who}:{i}"), facts(who))
            })
            .collect();
        let alice = |s: &LiveSession| s.facts.identity == "alice";
        let (page, more) = reg.page(0, 2, alice);
        assert_eq!(page.len(), 2);
        assert!(more);
        let (rest, more) = reg.page(page[1].id, 2, alice);
        assert_eq!(rest.len(), 1);
        assert!(!more);
        assert_eq!(rest[0].id, claims[4].session().id);
    }

    #[test]
    fn a_stop_request_marks_the_session_and_moves_the_epoch() {
        let (reg, drain) = registry();
        let claim = reg.claim("alice:c".into(), facts("alice"));
        let before = drain.drain().epoch();
        let id = claim.session().id;
        assert_eq!(reg.stop(&[id, 999], StopRequest::Kick), 1);
        assert_eq!(claim.session().stop_request(), Some(StopRequest::Kick));
        assert!(drain.drain().epoch() > before);
        // A drain does not overwrite the kick.
        reg.stop(&[id], StopRequest::Drain);
        assert_eq!(claim.session().stop_request(), Some(StopRequest::Kick));
        assert_eq!(reg.stop(&[999], StopRequest::Kick), 0);
    }
}
