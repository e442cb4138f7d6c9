//! Graceful drain: one signal that every listener and session watches, and a way to wait until
//! all of them have let go.
//!
//! Every task holds a [`Drain`] clone; the server waits until the last clone is dropped (or the
//! grace period ends). Shapes follow mini-redis's `shutdown.rs`.

use tokio::sync::{mpsc, watch};

/// Held by every listener and session: tells them to stop and proves they are still running.
#[derive(Clone, Debug)]
pub struct Drain {
    /// Flips to `true` once, when shutdown starts.
    signal: watch::Receiver<bool>,
    /// Never sent on: its drop is the signal that this holder is done.
    _alive: mpsc::Sender<()>,
}

/// Owned by the server: starts the drain and waits for it.
#[derive(Debug)]
pub struct DrainController {
    /// Sends the shutdown signal.
    signal: watch::Sender<bool>,
    /// Completes (returns `None`) once every `Drain` is dropped.
    done: mpsc::Receiver<()>,
    /// Cloned into new `Drain`s; dropped when shutdown starts so `done` can complete.
    alive: Option<mpsc::Sender<()>>,
}

// === impl Drain ===

impl Drain {
    /// Resolves when shutdown has started (immediately if it already has).
    pub async fn signalled(&mut self) {
        // An error means the controller is gone, which is a shutdown too.
        let _ = self.signal.wait_for(|stop| *stop).await;
    }

    /// True once shutdown has started.
    pub fn is_signalled(&self) -> bool {
        *self.signal.borrow()
    }
}

// === impl DrainController ===

impl DrainController {
    /// A controller with no holders yet.
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
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
            signal: self.signal.subscribe(),
            _alive: alive,
        }
    }

    /// Signals every holder and waits up to `grace` for all of them to finish.
    /// Returns false when the grace period ran out first.
    pub async fn shutdown(mut self, grace: std::time::Duration) -> bool {
        let _ = self.signal.send(true);
        self.alive = None;
        tokio::time::timeout(grace, self.done.recv()).await.is_ok()
    }
}

impl Default for DrainController {
    fn default() -> Self {
        Self::new()
    }
}
