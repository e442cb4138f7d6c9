//! Concurrent connection caps: per source, per listener and in total.
//!
//! One small table under one lock: a source's entry exists only while it has live
//! connections, so the table is never larger than the total cap. [`Admitted`] is the slot a
//! connection holds; dropping it (when the connection task ends, however it ends) gives the
//! slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapFull {
    /// Connections from this source.
    Source,
    /// Connections on this listener.
    Listener,
    /// Connections in total.
    Total,
}

/// The maxima to apply to one new connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Maxima {
    pub(crate) total: usize,
    pub(crate) listener: Option<u32>,
    pub(crate) source: Option<u32>,
}

/// Live connection counts.
#[derive(Debug, Default)]
pub(crate) struct Caps {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    listeners: HashMap<Arc<str>, u32>,
    sources: HashMap<IpAddr, u32>,
}

/// A connection's place in the caps; released when dropped.
#[derive(Debug)]
#[must_use = "the connection's slot is released when this is dropped"]
pub struct Admitted {
    caps: Arc<Caps>,
    /// `None` for a relay slot: a trusted balancer's connection whose client is not known yet
    /// counts in the total and on its listener, never against the balancer as a source.
    source: Option<IpAddr>,
    listener: Arc<str>,
}

// === impl Caps ===

impl Caps {
    /// Takes a slot for a connection from `source` on `listener`, or says which cap is full.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        source: IpAddr,
        listener: &str,
        max: Maxima,
    ) -> Result<Admitted, CapFull> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= max.total {
            return Err(CapFull::Total);
        }
        let on_listener = c.listeners.get(listener).copied().unwrap_or(0);
        if max.listener.is_some_and(|m| on_listener >= m) {
            return Err(CapFull::Listener);
        }
        let from_source = c.sources.get(&source).copied().unwrap_or(0);
        if max.source.is_some_and(|m| from_source >= m) {
            return Err(CapFull::Source);
        }
        *c.sources.entry(source).or_insert(0) += 1;
        Ok(self.take(&mut c, Some(source), listener))
    }

    /// Takes a slot for a connection from a trusted balancer whose client is not known yet:
    /// the total and listener caps apply, no source cap.
    pub(crate) fn acquire_relay(
        self: &Arc<Self>,
        listener: &str,
        max: Maxima,
    ) -> Result<Admitted, CapFull> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= max.total {
            return Err(CapFull::Total);
        }
        let on_listener = c.listeners.get(listener).copied().unwrap_or(0);
        if max.listener.is_some_and(|m| on_listener >= m) {
            return Err(CapFull::Listener);
        }
        Ok(self.take(&mut c, None, listener))
    }

    /// Counts a slot the caller has checked room for (the source, if any, already counted).
    fn take(self: &Arc<Self>, c: &mut Counts, source: Option<IpAddr>, listener: &str) -> Admitted {
        c.total += 1;
        let name: Arc<str> = match c.listeners.get_key_value(listener) {
            Some((k, _)) => k.clone(),
            None => Arc::from(listener),
        };
        *c.listeners.entry(name.clone()).or_insert(0) += 1;
        Admitted {
            caps: self.clone(),
            source,
            listener: name,
        }
    }

    /// Connections currently held.
    pub(crate) fn total(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Live connections per listener.
    pub(crate) fn by_listener(&self) -> Vec<(Arc<str>, u32)> {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.listeners.iter().map(|(l, n)| (l.clone(), *n)).collect()
    }

    /// Sources with at least one live connection (tests check the table shrinks).
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sources
            .len()
    }

    fn release(&self, source: Option<IpAddr>, listener: &str) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.listeners.get_mut(listener) {
            *n = n.saturating_sub(1);
        }
        let Some(source) = source else { return };
        if let Some(n) = c.sources.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.sources.remove(&source);
            }
        }
    }
}

// === impl Admitted ===

impl Admitted {
    /// The source key the connection counts against (`None`: a relay slot, see
    /// [`crate::admission::Gate::admit_relay`]).
    pub fn source(&self) -> Option<IpAddr> {
        self.source
    }

    /// Whether this is a relay slot that admission on the client's address must replace.
    pub fn is_relay(&self) -> bool {
        self.source.is_none()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.caps.release(self.source, &self.listener);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_count_and_release() {
        let caps = Arc::new(Caps::default());
        let max = Maxima {
            total: 3,
            listener: Some(2),
            source: Some(1),
        };
        let a = caps.acquire(ip("10.0.0.1"), "l", max).unwrap();
        assert_eq!(
            caps.acquire(ip("10.0.0.1"), "l", max).unwrap_err(),
            CapFull::Source
        );
        let b = caps.acquire(ip("10.0.0.2"), "l", max).unwrap();
        assert_eq!(
            caps.acquire(ip("10.0.0.3"), "l", max).unwrap_err(),
            CapFull::Listener
        );
        let c = caps.acquire(ip("10.0.0.3"), "other", max).unwrap();
        assert_eq!(
            caps.acquire(ip("10.0.0.4"), "third", max).unwrap_err(),
            CapFull::Total
        );
        assert_eq!((caps.total(), caps.sources()), (3, 3));
        drop((a, b, c));
        assert_eq!((caps.total(), caps.sources()), (0, 0));
        let _again = caps.acquire(ip("10.0.0.1"), "l", max).unwrap();
    }

    #[test]
    fn relay_slots_count_in_total_and_listener_not_per_source() {
        let caps = Arc::new(Caps::default());
        let max = Maxima {
            total: 3,
            listener: Some(2),
            source: Some(1),
        };
        let a = caps.acquire_relay("l", max).unwrap();
        let b = caps.acquire_relay("l", max).unwrap();
        assert!(a.is_relay());
        assert_eq!(caps.acquire_relay("l", max).unwrap_err(), CapFull::Listener);
        let c = caps.acquire(ip("10.0.0.1"), "other", max).unwrap();
        assert_eq!(caps.acquire_relay("x", max).unwrap_err(), CapFull::Total);
        assert_eq!((caps.total(), caps.sources()), (3, 1));
        drop((a, b, c));
        assert_eq!((caps.total(), caps.sources()), (0, 0));
    }
}
