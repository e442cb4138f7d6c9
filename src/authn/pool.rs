//! The verification workers: a fixed number of OS threads, each owning argon2 memory that it
//! allocated once, fed from one [`FairQueue`] under a lock.
//!
//! Why threads of our own and not tokio's blocking pool: a blocking-pool thread is picked per
//! call and can number in the hundreds, and each argon2 call allocated its own memory, which
//! glibc then kept per thread (issue 13: 2 GB after a 6 s flood). Here the memory of every
//! verification that can ever run at once exists from the start: workers × the policy's
//! largest hash. A waiter that reaches its deadline while its job is still queued takes the job
//! out and is refused; one whose job a worker already runs waits for the answer.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::queue::{FairQueue, Pushed};
use super::Busy;
use crate::policy::{AuthnDecision, HashMemory, PasswordCheck};

/// How long a waiter waits for a verification a worker has started: compile-time limits keep
/// one verification to a few seconds, so this only ends a wait on workers that are gone.
const STARTED_BACKSTOP: Duration = Duration::from_secs(30);

/// What a waiter is told.
type Reply = Result<AuthnDecision, Busy>;

/// One queued verification.
struct Job {
    /// Finds the job again when its waiter gives up.
    id: u64,
    /// The hash and the decision either way.
    check: PasswordCheck,
    /// The presented password.
    password: Bytes,
    /// A worker that takes the job later than this refuses it instead of verifying.
    deadline: Instant,
    /// Where the answer goes (closed when the waiter is gone: the job is skipped).
    reply: oneshot::Sender<Reply>,
}

/// The queue and the stop flag, under one lock.
struct State {
    /// Jobs no worker has taken yet.
    queue: FairQueue<Job>,
    /// Set when the pool is dropped: workers finish their job and end.
    closed: bool,
    /// The id of the next job (also: how many were ever queued).
    next_id: u64,
}

/// What the pool handle and its workers share.
struct Inner {
    /// The queue and the stop flag.
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool stops.
    ready: Condvar,
    /// Verifications run (`stats::Stats::password_verifications`).
    runs: Arc<AtomicU64>,
}

/// The handle sessions queue verifications through; dropping it stops the workers.
pub(crate) struct Pool {
    /// Shared with every worker thread.
    inner: Arc<Inner>,
}

// === impl Pool ===

impl Pool {
    /// Starts `workers` threads, each allocating memory for hashes of up to `blocks` KiB, in
    /// front of a queue of `capacity` jobs.
    pub(crate) fn start(
        workers: usize,
        blocks: usize,
        capacity: usize,
        runs: Arc<AtomicU64>,
    ) -> std::io::Result<Pool> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: FairQueue::new(capacity),
                closed: false,
                next_id: 0,
            }),
            ready: Condvar::new(),
            runs,
        });
        let pool = Pool {
            inner: inner.clone(),
        };
        for i in 0..workers.max(1) {
            let inner = inner.clone();
            // Allocated (and written) here, so the whole pool's memory exists once `start`
            // returns: it is part of what an idle moat holds, not something a flood adds.
            let memory = HashMemory::with_blocks(blocks);
            // Owned by the pool: each thread ends when the pool is dropped (closed flag and a
            // broadcast on `ready`), after the verification it may be running.
            std::thread::Builder::new()
                .name(format!("moat-verify-{i}"))
                .spawn(move || work(&inner, memory))?;
        }
        // On an error above, `pool` is dropped here and stops the threads already started.
        Ok(pool)
    }

    /// Verifies `password` for `source`: queued fairly, refused when the queue has no slot
    /// for the source, or when no worker took the job within `wait`.
    pub(crate) async fn verify(
        &self,
        source: IpAddr,
        check: PasswordCheck,
        password: Bytes,
        wait: Duration,
    ) -> Reply {
        let (reply, mut answer) = oneshot::channel();
        let id = {
            let mut state = self.inner.lock();
            if state.closed {
                return Err(Busy::Stopped);
            }
            let id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            let job = Job {
                id,
                check,
                password,
                deadline: Instant::now() + wait,
                reply,
            };
            match state.queue.push(source, job) {
                Pushed::Queued => {}
                Pushed::Displaced(other) => {
                    let _ = other.reply.send(Err(Busy::Displaced));
                }
                Pushed::Refused(_) => return Err(Busy::QueueFull),
            }
            id
        };
        self.inner.ready.notify_one();
        if let Ok(answer) = tokio::time::timeout(wait, &mut answer).await {
            return answer.unwrap_or(Err(Busy::Stopped));
        }
        let still_queued = self
            .inner
            .lock()
            .queue
            .remove(source, |job| job.id == id)
            .is_some();
        if still_queued {
            return Err(Busy::Waited);
        }
        match tokio::time::timeout(STARTED_BACKSTOP, answer).await {
            Ok(answer) => answer.unwrap_or(Err(Busy::Stopped)),
            Err(_) => Err(Busy::Stopped),
        }
    }
}

#[cfg(test)]
impl Pool {
    /// Jobs ever queued, and jobs queued now.
    pub(crate) fn queued(&self) -> (u64, usize) {
        let state = self.inner.lock();
        (state.next_id, state.queue.len())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.inner.lock();
            state.closed = true;
            state.queue.drain()
        };
        // Their waiters see the channel close: Busy::Stopped.
        drop(waiting);
        self.inner.ready.notify_all();
    }
}

// === impl Inner ===

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the queue is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job, blocking until there is one; `None` once the pool is closed.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(job) = state.queue.pop() {
                return Some(job);
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One worker: takes jobs until the pool closes, verifying each in `memory`.
fn work(inner: &Inner, mut memory: HashMemory) {
    while let Some(job) = inner.next() {
        if job.reply.is_closed() {
            continue;
        }
        if Instant::now() >= job.deadline {
            let _ = job.reply.send(Err(Busy::Waited));
            continue;
        }
        let matched = job.check.verify(&job.password, &mut memory);
        inner.runs.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(Ok(job.check.decide(matched)));
    }
}
