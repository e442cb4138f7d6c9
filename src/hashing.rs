//! The maps of a session: one hasher keyed at random once per process, like std's
//! `RandomState` (a peer cannot choose colliding keys), but zero-sized; and maps that allocate
//! nothing, not even their 32-byte table header, until their first insert.
//!
//! A session holds ten maps (ACL cache, open QoS flows, inflight ids, subscriptions…), nearly
//! all empty while it is idle. With `RandomState` each carries its own 16-byte key pair: 160
//! bytes of every idle session, a fiftieth of its whole cost (BENCHMARKS.md). Sharing one key
//! pair per process keeps the protection and drops the bytes.

use std::borrow::Borrow;
use std::collections::hash_map::{DefaultHasher, Entry, RandomState};
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

/// A `HashMap` with the process-wide hasher.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ProcessKeyed>;

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

/// A [`HashMap`] boxed on first insert: most sessions never use most of their maps (QoS 2 sets,
/// pending SUBACKs, open exchanges of a QoS they do not use), and an idle session holds them
/// all. Once allocated it stays: a QoS 1 flow empties and refills its map per message.
#[derive(Debug)]
pub(crate) struct LazyMap<K, V>(Option<Box<HashMap<K, V>>>);

impl<K, V> Default for LazyMap<K, V> {
    fn default() -> Self {
        LazyMap(None)
    }
}

impl<K: Eq + Hash, V> LazyMap<K, V> {
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.as_ref()?.get(key)
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.as_ref().is_some_and(|m| m.contains_key(key))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.as_mut()?.remove(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.map().insert(key, value)
    }

    pub(crate) fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        self.map().entry(key)
    }

    fn map(&mut self) -> &mut HashMap<K, V> {
        self.0.get_or_insert_with(Box::default)
    }
}

/// A [`HashSet`] boxed on first insert (see [`LazyMap`]).
#[derive(Debug)]
pub(crate) struct LazySet<K>(LazyMap<K, ()>);

impl<K> Default for LazySet<K> {
    fn default() -> Self {
        LazySet(LazyMap::default())
    }
}

impl<K: Eq + Hash> LazySet<K> {
    pub(crate) fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the key was not there.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// True if the key was there.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.remove(key).is_some()
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

    #[test]
    fn lazy_maps_allocate_on_first_insert_and_behave_as_maps() {
        assert_eq!(
            std::mem::size_of::<LazyMap<u16, u8>>(),
            std::mem::size_of::<usize>()
        );
        let mut m = LazyMap::default();
        assert!(m.0.is_none());
        assert_eq!((m.len(), m.get(&1u16)), (0, None));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.insert(1, 'a'), None);
        *m.entry(2).or_insert('b') = 'c';
        assert_eq!(
            (m.len(), m.get(&2), m.contains_key(&1)),
            (2, Some(&'c'), true)
        );
        assert_eq!(m.remove(&1), Some('a'));
        let mut s = LazySet::default();
        assert!(!s.contains("x") && !s.remove("x"));
        assert!(s.insert(String::from("x")) && !s.insert(String::from("x")));
        assert!(s.contains("x") && s.len() == 1 && s.remove("x") && s.len() == 0);
    }
}
