//! Graceful drain: one signal that every listener and session watches, and a way to wait until
//! all of them have let go.
//!
//! Every task holds a [`Drain`] clone; the server waits until the last clone is dropped (or the
//! grace period ends). Shapes follow mini-redis's `shutdown.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
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

// === impl Drain ===

impl Drain {
    /// Resolves when shutdown has started (immediately if it already has).
    ///
    /// Every session waits on this for its whole life, so the future is kept small: a flag
    /// and a `Notify` (about 80 bytes) rather than a `watch` receiver's `wait_for` (160).
    pub async fn signalled(&mut self) {
        let notified = self.signal.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a signal in between is not missed.
        notified.as_mut().enable();
        if self.is_signalled() {
            return;
        }
        notified.await;
    }

    /// True once shutdown has started.
    pub fn is_signalled(&self) -> bool {
        self.signal.stop.load(Ordering::Acquire)
    }
}

/// The flag every [`Drain`] reads and the notification that wakes those waiting on it.
#[derive(Debug, Default)]
struct Signal {
    stop: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn raise(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify.notify_waiters();
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
