//! Password verification as a bounded service of the server: a fixed pool of verifier threads
//! with memory allocated once, a bounded queue fair per source in front of it, and a cache of
//! recent successes.
//!
//! ```text
//!  CONNECT ─► Policy::begin_authentication ─► Decided ─────────────────────────────► decision
//!             (pure, cheap)                 └► Verify(check) ─► success cache hit? ─► check.decide(true)
//!                                                               │ miss
//!                                                               ▼
//!                                              FairQueue (per source, bounded) ─► full / waited
//!                                                               │                 too long:
//!                                                               ▼                 Busy → CONNACK
//!                                              worker thread: check.verify(pw,    0x03 / 0x88
//!                                              own HashMemory) ─► decision (a success is cached)
//! ```
//!
//! Why a module of its own: it owns OS threads, a lock and the clock, so it cannot live in the
//! pure `policy/`; it serves every session of the process, so it is not per-session code
//! either; and it is not admission (`admission/` decides on bare addresses before TLS). The
//! session calls it from `session/connect.rs`; the refusal it returns ([`Busy`]) reaches the
//! wire through `session/error.rs` like any other, and never counts as a failed login.

mod cache;
mod pool;
mod queue;

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::PasswordSettings;
use crate::policy::{AuthnDecision, PasswordCheck, Policy};
use cache::SuccessCache;
use pool::Pool;

/// Most verifier threads, whatever the core count: each holds memory for the policy's largest
/// hash (19 MiB for argon2's defaults), so this bounds that memory on large machines.
const MAX_WORKERS: usize = 8;

/// Queue slots per worker. With argon2's default cost (a few tens of ms per verification) a
/// full queue drains within about a second, inside the default `passwords.queue_wait`.
const QUEUE_PER_WORKER: usize = 32;

/// Why a password could not be verified in time. The client gets CONNACK 0x03 (3.1.1) /
/// 0x88 Server unavailable (5.0); it is not a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Busy {
    /// The queue is full and the client's source already holds its share of it.
    #[error("password verification queue full (this source holds its share)")]
    QueueFull,
    /// A client from a source with fewer queued verifications took this one's place.
    #[error("password verification queue full (place given to another source)")]
    Displaced,
    /// No verifier took the job within `passwords.queue_wait`.
    #[error("no password verifier free within passwords.queue_wait")]
    Waited,
    /// The verifiers are stopping (shutdown).
    #[error("password verification stopped")]
    Stopped,
}

/// A decision, and whether the success cache answered it.
#[derive(Debug)]
pub(crate) struct Checked {
    /// What the policy decided.
    pub(crate) decision: AuthnDecision,
    /// The password was not hashed: a recent success with the same user name and password.
    pub(crate) cached: bool,
}

/// How many verifiers [`Passwords::start`] starts here: one per core, at most [`MAX_WORKERS`].
pub(crate) fn verifiers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_WORKERS)
}

/// The service (see the module docs); one per server, in the sessions' `session::Env`.
pub(crate) struct Passwords {
    /// Verifier threads and their queue.
    pool: Pool,
    /// Recent successes.
    cache: Mutex<SuccessCache>,
    /// Longest a CONNECT waits for a verifier.
    queue_wait: Duration,
}

// === impl Passwords ===

impl Passwords {
    /// Starts one verifier per core (at most [`MAX_WORKERS`]), each with memory for hashes of
    /// up to `blocks` KiB (`Policy::password_memory_blocks`); `runs` counts verifications.
    pub(crate) fn start(
        settings: &PasswordSettings,
        blocks: usize,
        runs: Arc<AtomicU64>,
    ) -> std::io::Result<Passwords> {
        let workers = verifiers();
        let cache = SuccessCache::new(settings.cache, settings.cache_entries)
            .ok_or_else(|| std::io::Error::other("no randomness for the success cache key"))?;
        let capacity = workers * QUEUE_PER_WORKER;
        let pool = Pool::start(workers, blocks, capacity, runs)?;
        tracing::info!(
            workers,
            memory_mib = workers * blocks / 1024,
            queue = capacity,
            queue_wait = %humantime::format_duration(settings.queue_wait),
            cache = %humantime::format_duration(settings.cache),
            "password verification"
        );
        Ok(Passwords {
            pool,
            cache: Mutex::new(cache),
            queue_wait: settings.queue_wait,
        })
    }

    /// Decides `check` for a client from `source` (a `policy::source_key`): from the success
    /// cache when `username` and `password` were verified under `policy` a moment ago,
    /// otherwise by one verification on the pool.
    pub(crate) async fn check(
        &self,
        policy: &Arc<Policy>,
        source: IpAddr,
        username: Option<&str>,
        password: Bytes,
        check: PasswordCheck,
    ) -> Result<Checked, Busy> {
        let key = {
            let mut cache = self.cache();
            match username {
                Some(username) if cache.enabled() => {
                    let key = cache.key(username, &password);
                    if cache.hit(policy, &key, Instant::now()) {
                        return Ok(Checked {
                            decision: check.decide(true),
                            cached: true,
                        });
                    }
                    Some(key)
                }
                _ => None,
            }
        };
        let decision = self
            .pool
            .verify(source, check, password, self.queue_wait)
            .await?;
        if let (Some(key), true) = (key, decision.is_allowed()) {
            self.cache().insert(policy, key, Instant::now());
        }
        Ok(Checked {
            decision,
            cached: false,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SuccessCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
