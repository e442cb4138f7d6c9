use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{
    scheduler::{PauseReason, Tracker},
    ConnectionEvents,
};
use crate::Filter;

/// State of sessions whose connection has closed, until they resume or expire.
pub struct Graveyard {
    connections: HashMap<String, SavedState>,
    /// When saved sessions expire, soonest first. A session that never expires is not here.
    expiries: BTreeSet<(Instant, String)>,
}

impl Graveyard {
    pub fn new() -> Graveyard {
        Graveyard {
            connections: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    /// Takes what was saved for `id`. A session that has expired by `now` is not returned,
    /// only its metrics.
    pub fn retrieve(&mut self, id: &str, now: Instant) -> Option<SavedState> {
        let mut saved = self.connections.remove(id)?;
        if let Some(at) = saved.expires_at.take() {
            self.expiries.remove(&(at, id.to_owned()));
            if at <= now {
                saved.session_state = None;
            }
        }
        Some(saved)
    }

    /// What is saved for `id`, left in place.
    pub fn peek(&self, id: &str) -> Option<&SavedState> {
        self.connections.get(id)
    }

    /// Saves a session that outlives its connection by `expiry` seconds from `now`
    /// (`u32::MAX`: for ever).
    #[allow(clippy::too_many_arguments)]
    pub fn save_state(
        &mut self,
        mut tracker: Tracker,
        subscriptions: HashSet<String>,
        subscription_ids: HashMap<Filter, usize>,
        metrics: ConnectionEvents,
        unacked_pubrels: VecDeque<u16>,
        expiry: u32,
        now: Instant,
    ) {
        tracker.pause(PauseReason::Busy);
        let id = tracker.id.clone();

        let session_state = SessionState {
            tracker,
            subscriptions,
            subscription_ids,
            unacked_pubrels,
        };

        // Beyond what an Instant can hold (about 136 years for u32::MAX) is never.
        let expires_at = match expiry {
            u32::MAX => None,
            secs => now.checked_add(Duration::from_secs(secs.into())),
        };
        self.insert(
            id,
            SavedState {
                session_state: Some(session_state),
                metrics,
                expires_at,
            },
        );
    }

    fn insert(&mut self, id: String, saved: SavedState) {
        if let Some(old) = self.connections.remove(&id) {
            if let Some(at) = old.expires_at {
                self.expiries.remove(&(at, id.clone()));
            }
        }
        if let Some(at) = saved.expires_at {
            self.expiries.insert((at, id.clone()));
        }
        self.connections.insert(id, saved);
    }

    /// When the next saved session expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Drops every session that has expired by `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while self.expiries.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = self.expiries.pop_first() {
                self.connections.remove(&id);
                expired += 1;
            }
        }
        expired
    }
}

#[derive(Debug)]
pub struct SavedState {
    pub session_state: Option<SessionState>,
    pub metrics: ConnectionEvents,
    /// When the session expires; `None`: never
    expires_at: Option<Instant>,
}

#[derive(Debug)]
pub struct SessionState {
    pub tracker: Tracker,
    pub subscriptions: HashSet<String>,
    /// Subscription identifiers (MQTT 5) by filter
    pub subscription_ids: HashMap<Filter, usize>,
    // used for pubrel in qos2
    pub unacked_pubrels: VecDeque<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(graveyard: &mut Graveyard, id: &str, expiry: u32, now: Instant) {
        graveyard.save_state(
            Tracker::new(id.to_owned()),
            HashSet::new(),
            HashMap::new(),
            ConnectionEvents::default(),
            VecDeque::new(),
            expiry,
            now,
        );
    }

    #[test]
    fn a_session_is_kept_until_it_expires() {
        let now = Instant::now();
        let mut graveyard = Graveyard::new();
        save(&mut graveyard, "short", 1, now);
        save(&mut graveyard, "never", u32::MAX, now);
        assert_eq!(graveyard.next_expiry(), Some(now + Duration::from_secs(1)));
        assert_eq!(graveyard.expire(now), 0);

        let later = now + Duration::from_secs(2);
        assert!(graveyard
            .retrieve("short", later)
            .is_some_and(|s| s.session_state.is_none()));
        assert!(graveyard
            .retrieve("never", later)
            .is_some_and(|s| s.session_state.is_some()));
    }

    #[test]
    fn expired_sessions_are_swept_and_a_new_save_replaces_the_old_expiry() {
        let now = Instant::now();
        let mut graveyard = Graveyard::new();
        save(&mut graveyard, "a", 1, now);
        save(&mut graveyard, "a", 60, now);
        save(&mut graveyard, "b", 2, now);
        assert_eq!(graveyard.expire(now + Duration::from_secs(3)), 1);
        assert!(graveyard.peek("b").is_none());
        assert!(graveyard.peek("a").is_some());
        assert_eq!(graveyard.next_expiry(), Some(now + Duration::from_secs(60)));
    }
}
