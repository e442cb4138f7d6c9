//! The hasher of every per-session map: keyed at random once per process, like std's
//! `RandomState` (a peer cannot choose colliding keys), but zero-sized.
//!
//! A session holds ten maps (ACL cache, open QoS flows, inflight ids, subscriptions…), nearly
//! all empty while it is idle. With `RandomState` each carries its own 16-byte key pair: 160
//! bytes of every idle session, a fiftieth of its whole cost (BENCHMARKS.md). Sharing one key
//! pair per process keeps the protection and drops the bytes.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A `HashMap` with the process-wide hasher.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ProcessKeyed>;
/// A `HashSet` with the process-wide hasher.
pub(crate) type HashSet<K> = std::collections::HashSet<K, ProcessKeyed>;

/// Builds SipHash hashers from one random key pair, drawn on first use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessKeyed;

impl BuildHasher for ProcessKeyed {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        KEYS.get_or_init(RandomState::new).build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_zero_sized_and_consistent() {
        assert_eq!(std::mem::size_of::<ProcessKeyed>(), 0);
        assert_eq!(
            std::mem::size_of::<HashMap<u16, u8>>(),
            std::mem::size_of::<usize>() * 4
        );
        let a = ProcessKeyed.hash_one("topic/a");
        assert_eq!(a, ProcessKeyed.hash_one("topic/a"));
        assert_ne!(a, ProcessKeyed.hash_one("topic/b"));
        let mut m = HashMap::default();
        m.insert(7u16, "x");
        assert_eq!(m.get(&7), Some(&"x"));
    }
}
