//! The per-session decision cache.
//!
//! What it owns: remembered ACL answers of one session, keyed by action and topic (or filter),
//! tied to the policy snapshot that produced them. Why it exists: devices publish to the same few
//! topics over and over; a hash lookup on the whole topic is cheaper than a trie walk. Why it is
//! safe: every lookup first compares the snapshot pointer with the one the entries came from,
//! and a reload (a new snapshot) empties the cache, so a revoked right is never served from it.
//! The cache holds an `Arc` to its snapshot, so a freed snapshot's address can never be reused
//! by a new one while entries point at it. Bounded: at most [`MAX_ENTRIES`] topics of at most
//! [`MAX_TOPIC_BYTES`] each; when full it starts over (no eviction bookkeeping on the hot path).
//! A map that filled up [`FRUITLESS_FILLS`] times in a row without one hit stops remembering for
//! the next [`REST`] lookups: a session that sees more topics than the cache holds (the
//! subscriber of a fleet's fan-in gets one topic per device) would otherwise pay an insertion
//! and a clear on every delivery for entries that are gone before they are asked for
//! (BENCHMARKS.md, "the floor": about 1,000 instructions per message).
//!
//! It also remembers, for the session's whole life, that a filter was granted under
//! `subscribe_overlap: withhold`: the broker keeps that subscription whatever the policy becomes,
//! so deliveries stay checked against the subscribe rules even after a reload to `strict`.

use crate::hashing::HashMap;
use std::sync::Arc;

use super::{AclDecision, Action, PublishFacts, Subject};
use crate::policy::Policy;

/// Entries kept per action.
pub const MAX_ENTRIES: usize = 64;
/// Longer topics are judged every time (they are rare and would make the cache large).
pub const MAX_TOPIC_BYTES: usize = 256;
/// Fills in a row without a hit after which a map rests.
pub const FRUITLESS_FILLS: u8 = 2;
/// Lookups a resting map answers from the rules without remembering.
pub const REST: u32 = 4096;

/// How one action's map has fared since it last started over.
#[derive(Clone, Copy, Debug, Default)]
struct Fare {
    /// Hits since the map last started over.
    hits: u32,
    /// Fills in a row that had no hit.
    fruitless: u8,
    /// Lookups left before remembering resumes.
    resting: u32,
}

/// What is remembered for one topic.
#[derive(Clone, Debug)]
enum Entry {
    /// Publish and receive: the first matching rule (conditions are applied per message).
    Match(Option<u32>),
    /// Subscribe: the whole decision (it depends on nothing but the filter).
    Decision(AclDecision),
}

/// Remembered decisions of one session.
#[derive(Debug, Default)]
pub struct AclCache {
    /// The snapshot the entries were computed against.
    policy: Option<Arc<Policy>>,
    /// One map per action, keyed by topic or filter.
    entries: [HashMap<Box<str>, Entry>; 3],
    /// Per action, whether remembering pays.
    fares: [Fare; 3],
    /// The subject's groups in that snapshot (looked up once per snapshot, not per decision).
    groups: Vec<String>,
    /// Lookups answered from the cache (for tests and benchmarks).
    hits: u64,
    /// Deliveries checked against the subscribe rules, by topic: `Some` = withheld, and why.
    withheld: HashMap<Box<str>, Option<AclDecision>>,
    /// A filter was granted to this session although it matches topics it may not subscribe to.
    withholding: bool,
}

// === impl AclCache ===

impl AclCache {
    /// Judges a publish against `policy` (the snapshot in force for this packet).
    pub fn publish(
        &mut self,
        policy: &Arc<Policy>,
        subject: &Subject,
        publish: &PublishFacts<'_>,
    ) -> AclDecision {
        let id = self.matched(policy, subject, Action::Publish, publish.topic);
        policy.acl.conclude(id, Some(publish))
    }

    /// Judges a delivery to this session: the `receive` rules, and under
    /// `subscribe_overlap: withhold` whether the client could have subscribed to the topic.
    pub fn receive(&mut self, policy: &Arc<Policy>, subject: &Subject, topic: &str) -> AclDecision {
        let id = self.matched(policy, subject, Action::Receive, topic);
        let d = policy.acl.conclude(id, None);
        if !d.is_allowed() || !(self.withholding || policy.acl.withholds()) {
            return d;
        }
        if let Some(known) = self.withheld.get(topic) {
            self.hits += 1;
            return known.clone().unwrap_or(d);
        }
        let withheld = policy.acl.withheld(subject, &self.groups, topic);
        if topic.len() <= MAX_TOPIC_BYTES {
            if self.withheld.len() >= MAX_ENTRIES {
                self.withheld.clear();
            }
            self.withheld.insert(topic.into(), withheld.clone());
        }
        withheld.unwrap_or(d)
    }

    /// Judges a subscription filter.
    pub fn subscribe(
        &mut self,
        policy: &Arc<Policy>,
        subject: &Subject,
        filter: &str,
    ) -> AclDecision {
        self.sync(policy, subject);
        if let Some(Entry::Decision(d)) = self.map(Action::Subscribe).and_then(|m| m.get(filter)) {
            let d = d.clone();
            self.hit(Action::Subscribe);
            return d;
        }
        let d = policy.authorize_subscribe(subject, filter);
        self.remember(Action::Subscribe, filter, Entry::Decision(d.clone()));
        self.note_grant(&d);
        d
    }

    /// Whether this session was granted a filter under `subscribe_overlap: withhold`.
    pub fn withholding(&self) -> bool {
        self.withholding
    }

    fn note_grant(&mut self, d: &AclDecision) {
        if d.reason == super::AclReason::PartlyDenied {
            self.withholding = true;
        }
    }

    /// Lookups answered without consulting the rules.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    fn matched(
        &mut self,
        policy: &Arc<Policy>,
        subject: &Subject,
        action: Action,
        topic: &str,
    ) -> Option<u32> {
        self.sync(policy, subject);
        if let Some(Entry::Match(id)) = self.map(action).and_then(|m| m.get(topic)) {
            let id = *id;
            self.hit(action);
            return id;
        }
        let id = policy.acl.first_match(action, subject, &self.groups, topic);
        self.remember(action, topic, Entry::Match(id));
        id
    }

    /// Empties the cache when the policy in force is not the one the entries came from.
    fn sync(&mut self, policy: &Arc<Policy>, subject: &Subject) {
        if !self.policy.as_ref().is_some_and(|p| Arc::ptr_eq(p, policy)) {
            for map in &mut self.entries {
                map.clear();
            }
            self.fares = Default::default();
            self.withheld.clear();
            self.groups = policy.groups_for(subject).to_vec();
            self.policy = Some(policy.clone());
        }
    }

    fn map(&self, action: Action) -> Option<&HashMap<Box<str>, Entry>> {
        self.entries.get(action as usize)
    }

    fn hit(&mut self, action: Action) {
        self.hits += 1;
        if let Some(fare) = self.fares.get_mut(action as usize) {
            fare.hits = fare.hits.saturating_add(1);
        }
    }

    fn remember(&mut self, action: Action, topic: &str, entry: Entry) {
        if topic.len() > MAX_TOPIC_BYTES {
            return;
        }
        let (Some(map), Some(fare)) = (
            self.entries.get_mut(action as usize),
            self.fares.get_mut(action as usize),
        ) else {
            return;
        };
        if fare.resting > 0 {
            fare.resting -= 1;
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
            fare.fruitless = if fare.hits == 0 {
                fare.fruitless.saturating_add(1)
            } else {
                0
            };
            fare.hits = 0;
            if fare.fruitless >= FRUITLESS_FILLS {
                // Resting starts empty, and so does remembering when the rest is over.
                fare.fruitless = 0;
                fare.resting = REST;
                return;
            }
        }
        map.insert(topic.into(), entry);
    }
}
