//! The queue in front of the verification workers: bounded, and fair per source.
//!
//! Each source (a `policy::source_key`: an IPv4 address or IPv6 prefix, as admission counts)
//! has its own FIFO; workers take from the sources in turn, so a job waits behind at most one
//! job of each other source per round, however many one source queued. As in FQ-CoDel, a
//! source that had nothing queued is served before the sources with a backlog, once: a device
//! logging in during a flood waits for a free worker, not for a round of every flooding source
//! (each source so gets at most one job served ahead of the round, and must drain its queue to
//! be new again). While there is room,
//! any source may queue; when the queue is full, a source holding fewer jobs than the largest
//! holder takes that holder's newest job's place (the displaced job is refused), and a source
//! that already holds the most is refused. So one source holds at most its share of the slots
//! whenever others want them. Pure: no threads, no clock; the pool holds it under a lock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed<T> {
    /// Queued, and nothing else moved.
    Queued,
    /// Queued in the place of this job, the newest of the source that held the most.
    Displaced(T),
    /// Not queued: the queue is full and this source already holds its share. The job is
    /// handed back.
    Refused(T),
}

/// A bounded round-robin queue keyed by source.
#[derive(Debug)]
pub(crate) struct FairQueue<T> {
    /// Most jobs queued at once, across sources.
    capacity: usize,
    /// The jobs of each source that has any, oldest first.
    sources: HashMap<IpAddr, VecDeque<T>>,
    /// Sources that had nothing queued when their job came, served first.
    new: VecDeque<IpAddr>,
    /// Sources with a backlog, served in turn.
    old: VecDeque<IpAddr>,
    /// Jobs queued in all.
    len: usize,
}

// === impl FairQueue ===

impl<T> FairQueue<T> {
    /// An empty queue of at most `capacity` jobs (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            sources: HashMap::new(),
            new: VecDeque::new(),
            old: VecDeque::new(),
            len: 0,
        }
    }

    /// Jobs queued in all.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Jobs `source` has queued.
    pub(crate) fn held_by(&self, source: IpAddr) -> usize {
        self.sources.get(&source).map_or(0, VecDeque::len)
    }

    /// Queues `job` for `source` (see the module docs for who gets a slot when it is full).
    pub(crate) fn push(&mut self, source: IpAddr, job: T) -> Pushed<T> {
        let mut displaced = None;
        if self.len >= self.capacity {
            let held = self.held_by(source);
            let hog = self
                .sources
                .iter()
                .max_by_key(|(_, jobs)| jobs.len())
                .map(|(key, jobs)| (*key, jobs.len()));
            match hog {
                Some((hog, most)) if held + 1 < most => displaced = self.pop_newest(hog),
                _ => return Pushed::Refused(job),
            }
        }
        let jobs = self.sources.entry(source).or_default();
        if jobs.is_empty() {
            self.new.push_back(source);
        }
        jobs.push_back(job);
        self.len += 1;
        match displaced {
            Some(job) => Pushed::Displaced(job),
            None => Pushed::Queued,
        }
    }

    /// The next job: the oldest of a new source, else of the backlogged source whose turn it
    /// is.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let source = self.new.pop_front().or_else(|| self.old.pop_front())?;
        let jobs = self.sources.get_mut(&source)?;
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.sources.remove(&source);
        } else {
            self.old.push_back(source);
        }
        if job.is_some() {
            self.len -= 1;
        }
        job
    }

    /// Takes out the first job of `source` that `is_it` picks (a waiter giving up), if it is
    /// still queued.
    pub(crate) fn remove(&mut self, source: IpAddr, is_it: impl Fn(&T) -> bool) -> Option<T> {
        let jobs = self.sources.get_mut(&source)?;
        let at = jobs.iter().position(is_it)?;
        let job = jobs.remove(at);
        if jobs.is_empty() {
            self.forget(source);
        }
        if job.is_some() {
            self.len -= 1;
        }
        job
    }

    /// Takes every job out (the pool is stopping).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.new.clear();
        self.old.clear();
        self.len = 0;
        self.sources.drain().flat_map(|(_, jobs)| jobs).collect()
    }

    fn pop_newest(&mut self, source: IpAddr) -> Option<T> {
        let jobs = self.sources.get_mut(&source)?;
        let job = jobs.pop_back();
        if jobs.is_empty() {
            self.forget(source);
        }
        if job.is_some() {
            self.len -= 1;
        }
        job
    }

    fn forget(&mut self, source: IpAddr) {
        self.sources.remove(&source);
        self.new.retain(|s| *s != source);
        self.old.retain(|s| *s != source);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn sources_are_served_in_turn_not_in_arrival_order() {
        let mut q = FairQueue::new(16);
        for i in 0..5 {
            assert_eq!(q.push(ip(1), ("flood", i)), Pushed::Queued);
        }
        assert_eq!(q.push(ip(2), ("legit", 0)), Pushed::Queued);
        // The newcomer is second, not sixth.
        assert_eq!(q.pop(), Some(("flood", 0)));
        assert_eq!(q.pop(), Some(("legit", 0)));
        assert_eq!(q.pop(), Some(("flood", 1)));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_source_without_a_backlog_goes_before_a_round_of_the_backlogged() {
        let mut q = FairQueue::new(32);
        for s in 1..=8 {
            for i in 0..3 {
                q.push(ip(s), (s, i));
            }
        }
        // One round: every flooder has been served once and still has a backlog.
        for s in 1..=8 {
            assert_eq!(q.pop(), Some((s, 0)));
        }
        q.push(ip(9), (9, 0));
        assert_eq!(q.pop(), Some((9, 0)), "the newcomer is next, not ninth");
        // Jobs queued while the source still has one wait their turn in the round.
        q.push(ip(9), (9, 1));
        q.push(ip(9), (9, 2));
        assert_eq!(q.pop(), Some((9, 1)), "new again: its queue had drained");
        for s in 1..=8 {
            assert_eq!(q.pop(), Some((s, 1)));
        }
        assert_eq!(q.pop(), Some((9, 2)));
    }

    #[test]
    fn a_full_queue_takes_a_newcomer_in_the_hogs_place() {
        let mut q = FairQueue::new(4);
        for i in 0..4 {
            assert_eq!(q.push(ip(1), i), Pushed::Queued);
        }
        // The hog cannot add more.
        assert_eq!(q.push(ip(1), 99), Pushed::Refused(99));
        // Another source displaces the hog's newest job.
        assert_eq!(q.push(ip(2), 100), Pushed::Displaced(3));
        assert_eq!(q.push(ip(3), 200), Pushed::Displaced(2));
        assert_eq!(
            (q.held_by(ip(1)), q.held_by(ip(2)), q.held_by(ip(3))),
            (2, 1, 1)
        );
        // Now ip(2) holds 1 and the most anyone holds is 2: a second job would only swap
        // places, so it is refused.
        assert_eq!(q.push(ip(2), 101), Pushed::Refused(101));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn no_source_keeps_more_than_its_share_under_contention() {
        // Eight flooding sources and one more, each pushing far more than fits.
        let capacity = 32;
        let mut q = FairQueue::new(capacity);
        for round in 0..100 {
            for s in 1..=9 {
                let _ = q.push(ip(s), round);
            }
        }
        assert_eq!(q.len(), capacity);
        let share = capacity.div_ceil(9);
        for s in 1..=9 {
            assert!(
                q.held_by(ip(s)) <= share,
                "source {s}: {}",
                q.held_by(ip(s))
            );
            assert!(q.held_by(ip(s)) >= capacity / 9, "source {s}");
        }
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_the_queue() {
        let mut q = FairQueue::new(4);
        q.push(ip(1), 1);
        q.push(ip(2), 2);
        assert_eq!(q.remove(ip(1), |j| *j == 1), Some(1));
        assert_eq!(q.remove(ip(1), |j| *j == 1), None);
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
        assert_eq!(q.len(), 0);
        q.push(ip(3), 3);
        assert_eq!(q.drain(), vec![3]);
        assert_eq!(q.pop(), None);
    }
}
