//! Graceful drain: one signal that every listener and session watches, and a way to wait until
//! all of them have let go.
//!
//! Every task holds a [`Drain`] clone; the server waits until the last clone is dropped (or the
//! grace period ends). Shapes follow mini-redis's `shutdown.rs`.
//!
//! The same signal is how moat reaches every live session at once without a registry or a
//! channel per session: a TLS reload that changes what the CRLs revoke moves the *revocation
//! epoch* and wakes the waiters; a session with a client certificate then checks it against the
//! new CRLs (`session/revoke.rs`), everyone else goes back to waiting. A session pays nothing
//! for this beyond the future it already awaits. The TLS material (`transport/material.rs`)
//! holds an [`Epoch`] handle and moves it when a reload changes what is revoked.
//!
//! Why it sits at the top of the crate, below the server: listeners, sessions, the TLS material
//! and background tasks all hold it; none of them may reach up into `server/` for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

/// Held by every listener and session: tells them to stop and proves they are still running.
#[derive(Clone, Debug)]
pub struct Drain {
    /// Set once, when shutdown starts (or the controller is dropped).
    signal: Arc<Signal>,
    /// Never sent on: its drop is the signal that this holder is done.
    _alive: mpsc::Sender<()>,
}

/// Owned by the server: starts the drain and waits for it.
#[derive(Debug)]
pub struct DrainController {
    /// The shutdown signal.
    signal: Arc<Signal>,
    /// Completes (returns `None`) once every `Drain` is dropped.
    done: mpsc::Receiver<()>,
    /// Cloned into new `Drain`s; dropped when shutdown starts so `done` can complete.
    alive: Option<mpsc::Sender<()>>,
}

/// Why [`Drain::signalled_or_epoch`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Shutdown has started.
    Shutdown,
    /// The revocation epoch is now this one (it may have moved since the caller last checked).
    Epoch(u64),
}

// === impl Drain ===

impl Drain {
    /// Resolves when shutdown has started (immediately if it already has). For listeners and
    /// background tasks; a session waits with [`Drain::signalled_or_epoch`].
    pub async fn signalled(&mut self) {
        // Bounded by the wakes: each pass returns, or waits for the next epoch move or shutdown.
        loop {
            if let Wake::Shutdown = self.signalled_or_epoch(None).await {
                return;
            }
        }
    }

    /// Resolves when shutdown has started, or when the revocation epoch may have moved:
    /// immediately when `checked` (the epoch the caller last checked, for a caller that watches
    /// it) differs from the current one, otherwise at the next wake. A wake may be for someone
    /// else (the epoch moved, and the caller's check then finds nothing new): the caller waits
    /// again. One pass and no loop: every session awaits this future for its whole life, so it
    /// is kept to a `Notify` wait and two pointers (120 bytes; the shutdown-only wait it
    /// replaced in sessions was 96). It borrows the `Drain` shared, so a session can keep one
    /// waiting across its turns and make the next while the last is still in its hands.
    pub async fn signalled_or_epoch(&self, checked: Option<&AtomicU64>) -> Wake {
        let notified = self.signal.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a signal in between is not missed.
        notified.as_mut().enable();
        if self.is_signalled() {
            return Wake::Shutdown;
        }
        let epoch = self.epoch();
        if checked.is_some_and(|c| c.load(Ordering::Acquire) != epoch) {
            return Wake::Epoch(epoch);
        }
        notified.await;
        match self.is_signalled() {
            true => Wake::Shutdown,
            false => Wake::Epoch(self.epoch()),
        }
    }

    /// Resolves when the listeners must stop accepting: a drain or shutdown has started. For
    /// accept loops only: sessions and background tasks go on while moat drains.
    pub async fn stop_accepting(&mut self) {
        // Bounded by the wakes: each pass returns, or waits for the next notification.
        loop {
            let notified = self.signal.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.signal.draining() {
                return;
            }
            notified.await;
        }
    }

    /// True once shutdown has started.
    pub fn is_signalled(&self) -> bool {
        self.signal.stop.load(Ordering::Acquire)
    }

    /// The revocation epoch now (starts at 1; 0 means "never checked").
    pub fn epoch(&self) -> u64 {
        self.signal.epoch.load(Ordering::Acquire)
    }
}

/// Reads whether the drain has started, without holding the server open (a [`Drain`] would):
/// for readiness probes and the admin listener, which must keep answering while moat drains.
#[derive(Clone, Debug)]
pub struct DrainState {
    /// The signal shared with every [`Drain`].
    signal: Arc<Signal>,
}

// === impl DrainState ===

impl DrainState {
    /// True once a drain ([`DrainController::mark_draining`]) or shutdown has started:
    /// `/readyz` answers 503 from then on.
    pub fn is_draining(&self) -> bool {
        self.signal.draining()
    }
}

/// The flag every [`Drain`] reads, the revocation epoch, and the notification that wakes those
/// waiting on either.
#[derive(Debug)]
struct Signal {
    stop: AtomicBool,
    /// Set when a drain starts, before (or without) the stop: readiness reads it, listeners
    /// stop accepting, sessions are moved away over the drain period.
    draining: AtomicBool,
    epoch: AtomicU64,
    notify: Notify,
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            epoch: AtomicU64::new(1),
            notify: Notify::new(),
        }
    }
}

impl Signal {
    /// A drain or shutdown has started.
    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire) || self.stop.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Moves the revocation epoch: held by whoever knows that what is revoked changed (the TLS
/// material on reload), without the power to start or await the drain.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// The signal shared with every [`Drain`].
    signal: Arc<Signal>,
}

// === impl Epoch ===

impl Epoch {
    /// Moves the revocation epoch and wakes every waiter: sessions with a client certificate
    /// check it again. Returns the new epoch.
    pub fn advance(&self) -> u64 {
        let epoch = self
            .signal
            .epoch
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        self.signal.notify.notify_waiters();
        epoch
    }
}

// === impl DrainController ===

impl DrainController {
    /// A controller with no holders yet.
    pub fn new() -> Self {
        let signal = Arc::default();
        let (alive, done) = mpsc::channel(1);
        DrainController {
            signal,
            done,
            alive: Some(alive),
        }
    }

    /// A new holder; after shutdown started it is born signalled.
    pub fn drain(&self) -> Drain {
        let alive = match &self.alive {
            Some(a) => a.clone(),
            None => mpsc::channel(1).0,
        };
        Drain {
            signal: self.signal.clone(),
            _alive: alive,
        }
    }

    /// Says "draining" to readiness (`/readyz` 503) without stopping anything yet: the first
    /// step of a drain, so load balancers move new clients away while sessions still run.
    ///
    /// The same as [`Self::start_draining`]: one drain flag, so readiness and the listeners
    /// never disagree.
    pub fn mark_draining(&self) {
        self.start_draining();
    }

    /// A read-only view of the drain flag (see [`DrainState`]).
    pub fn state(&self) -> DrainState {
        DrainState {
            signal: self.signal.clone(),
        }
    }

    /// The handle that moves the revocation epoch (see [`Epoch`]).
    pub fn epoch(&self) -> Epoch {
        Epoch {
            signal: self.signal.clone(),
        }
    }

    /// Moves the revocation epoch and wakes every waiter (see [`Epoch::advance`]).
    pub fn advance_epoch(&self) -> u64 {
        self.epoch().advance()
    }

    /// Starts a drain: listeners stop accepting (they wait in [`Drain::stop_accepting`]) and
    /// readiness turns false; sessions and background tasks go on until [`Self::shutdown`].
    /// Returns false when a drain had already started.
    pub fn start_draining(&self) -> bool {
        let first = !self.signal.draining.swap(true, Ordering::AcqRel);
        self.signal.notify.notify_waiters();
        first
    }

    /// Whether a drain or shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.signal.draining()
    }

    /// Signals every holder and waits up to `grace` for all of them to finish.
    /// Returns false when the grace period ran out first.
    pub async fn shutdown(mut self, grace: std::time::Duration) -> bool {
        self.signal.raise();
        self.alive = None;
        tokio::time::timeout(grace, self.done.recv()).await.is_ok()
    }
}

impl Drop for DrainController {
    /// A server dropped without `shutdown` stops its tasks too.
    fn drop(&mut self) {
        self.signal.raise();
    }
}

impl Default for DrainController {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn draining_is_seen_by_readiness_before_and_without_the_stop() {
        let controller = DrainController::new();
        let state = controller.state();
        let mut holder = controller.drain();
        assert!(!state.is_draining());
        controller.mark_draining();
        assert!(state.is_draining());
        // Nothing stopped: holders are not signalled by the mark.
        let quiet = tokio::time::timeout(Duration::from_millis(20), holder.signalled()).await;
        assert!(quiet.is_err() && !holder.is_signalled());
        drop(holder);
        assert!(controller.shutdown(Duration::from_secs(5)).await);
        assert!(state.is_draining());
    }

    #[tokio::test]
    async fn an_epoch_move_wakes_sessions_that_watch_it_and_not_listeners() {
        let controller = DrainController::new();
        let session = controller.drain();
        let mut listener = controller.drain();
        let first = session.epoch();
        // Never checked (0): answered at once with the current epoch.
        let never = AtomicU64::new(0);
        assert_eq!(
            session.signalled_or_epoch(Some(&never)).await,
            Wake::Epoch(first)
        );
        let waiting = tokio::spawn(async move {
            let checked = AtomicU64::new(first);
            session.signalled_or_epoch(Some(&checked)).await
        });
        tokio::task::yield_now().await;
        let next = controller.advance_epoch();
        assert_eq!(next, first + 1);
        let woke = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(woke.unwrap().unwrap(), Wake::Epoch(next));
        // A listener's wait is for shutdown only.
        let quiet = tokio::time::timeout(Duration::from_millis(50), listener.signalled()).await;
        assert!(quiet.is_err());
        let stopping = tokio::spawn(async move { listener.signalled().await });
        tokio::task::yield_now().await;
        controller.advance_epoch();
        assert!(controller.shutdown(Duration::from_secs(5)).await);
        stopping.await.unwrap();
    }
}
