//! Remembered successes: a device that reconnects with the user name and password that were
//! verified a moment ago does not pay another argon2 run.
//!
//! Keys are HMAC-SHA256 of the user name and password under a key drawn at start, so the map
//! holds no password and no key can be computed outside this process. Only successes are
//! stored, each for `ttl` from its verification (a hit does not extend it). Entries belong to
//! the policy snapshot that verified them: the first use under another snapshot (a reload)
//! empties the map, so a changed or removed password is never answered from it. A hit only
//! stands in for the hash comparison; the decision, identity and groups still come from the
//! current policy (`PasswordCheck::decide`). Bounded: at `capacity`, expired entries go first,
//! then the one that would expire soonest. Time comes in as `now`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::policy::Policy;

/// A keyed hash of (user name, password): HMAC-SHA256 under the process's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey([u8; 32]);

/// The success cache (see the module docs).
pub(crate) struct SuccessCache {
    /// The process's HMAC key.
    key: hmac::Key,
    /// How long a success is remembered; zero disables the cache.
    ttl: Duration,
    /// Most entries at once.
    capacity: usize,
    /// The snapshot the entries were verified under (weak: the cache must not keep an old
    /// policy alive, and holding the allocation makes the address comparison sound).
    snapshot: Weak<Policy>,
    /// Key → when the success stops counting.
    entries: HashMap<CacheKey, Instant>,
}

// === impl SuccessCache ===

impl SuccessCache {
    /// An empty cache with a fresh random key; `None` when the OS has no randomness.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Option<Self> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()?;
        Some(Self {
            key,
            ttl,
            capacity: capacity.max(1),
            snapshot: Weak::new(),
            entries: HashMap::new(),
        })
    }

    /// Whether the cache is on at all (`passwords.cache` above zero).
    pub(crate) fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The key for a user name and password (length-prefixed, so no two pairs share one).
    pub(crate) fn key(&self, username: &str, password: &[u8]) -> CacheKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(username.len() as u64).to_be_bytes());
        ctx.update(username.as_bytes());
        ctx.update(password);
        let mut out = [0u8; 32];
        let tag = ctx.sign();
        for (o, t) in out.iter_mut().zip(tag.as_ref()) {
            *o = *t;
        }
        CacheKey(out)
    }

    /// Whether `key` was verified under `policy` less than `ttl` ago.
    pub(crate) fn hit(&mut self, policy: &Arc<Policy>, key: &CacheKey, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        self.follow(policy);
        match self.entries.get(key) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.entries.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remembers a success verified under `policy` at `now`.
    pub(crate) fn insert(&mut self, policy: &Arc<Policy>, key: CacheKey, now: Instant) {
        if !self.enabled() {
            return;
        }
        self.follow(policy);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, until| *until > now);
            if self.entries.len() >= self.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, until)| **until);
                if let Some(soonest) = soonest.map(|(k, _)| *k) {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries.insert(key, now + self.ttl);
    }

    /// Entries held now (tests, and the bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Empties the map when `policy` is not the snapshot its entries were verified under.
    fn follow(&mut self, policy: &Arc<Policy>) {
        if !std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(policy)) {
            self.entries.clear();
            self.snapshot = Arc::downgrade(policy);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn policy() -> Arc<Policy> {
        Arc::new(Policy::deny_all())
    }

    #[test]
    fn a_success_is_a_hit_until_it_expires() {
        let mut cache = SuccessCache::new(TTL, 10).unwrap();
        let p = policy();
        let now = Instant::now();
        let key = cache.key("alice", b"pw");
        assert!(!cache.hit(&p, &key, now));
        cache.insert(&p, key, now);
        assert!(cache.hit(&p, &key, now + TTL - Duration::from_millis(1)));
        // Another password, or the same bytes split differently between name and password,
        // is another key.
        assert!(!cache.hit(&p, &cache.key("alice", b"pW"), now));
        assert!(!cache.hit(&p, &cache.key("alicep", b"w"), now));
        // Expired at `ttl` after the verification, and forgotten.
        assert!(!cache.hit(&p, &key, now + TTL));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_reload_empties_the_cache() {
        let mut cache = SuccessCache::new(TTL, 10).unwrap();
        let (before, after) = (policy(), policy());
        let now = Instant::now();
        let key = cache.key("alice", b"pw");
        cache.insert(&before, key, now);
        assert!(cache.hit(&before, &key, now));
        assert!(!cache.hit(&after, &key, now), "a new snapshot must not hit");
        // Emptied, not just hidden: the old snapshot does not get it back either.
        assert!(!cache.hit(&before, &key, now));
        assert_eq!(cache.len(), 0);
        // The cache follows a snapshot without keeping it alive.
        let weak = Arc::downgrade(&before);
        drop(before);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn zero_ttl_disables_it() {
        let mut cache = SuccessCache::new(Duration::ZERO, 10).unwrap();
        let p = policy();
        let now = Instant::now();
        let key = cache.key("alice", b"pw");
        cache.insert(&p, key, now);
        assert!(!cache.hit(&p, &key, now));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn it_is_bounded_and_drops_the_soonest_to_expire() {
        let mut cache = SuccessCache::new(TTL, 3).unwrap();
        let p = policy();
        let t0 = Instant::now();
        let keys: Vec<CacheKey> = (0..5).map(|i| cache.key(&format!("u{i}"), b"pw")).collect();
        for (i, key) in keys.iter().enumerate() {
            cache.insert(&p, *key, t0 + Duration::from_secs(i as u64));
            assert!(cache.len() <= 3);
        }
        let now = t0 + Duration::from_secs(5);
        let hits: Vec<bool> = keys.iter().map(|k| cache.hit(&p, k, now)).collect();
        assert_eq!(hits, [false, false, true, true, true]);
    }
}
