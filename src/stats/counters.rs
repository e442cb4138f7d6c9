//! Fixed arrays of counters indexed by a small enum or a byte, and a histogram of fixed
//! buckets: the shapes a labelled metric takes when its label set is known in advance, so
//! counting is one relaxed `fetch_add` and no lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `N` counters, one per label value known in advance.
#[derive(Debug)]
pub struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

// === impl Counters ===

impl<const N: usize> Counters<N> {
    /// Adds one to counter `i` (an index past the end is ignored: callers index by enums
    /// whose count is `N`).
    pub fn bump(&self, i: usize) {
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counter `i` now (0 past the end).
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every counter with its index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
    }
}

/// Upper bounds (seconds) of [`Histogram`]'s buckets: from a loopback connect (sub-millisecond)
/// to the longest `timeouts.upstream_connect` worth telling apart.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram on atomics: a count per bucket (not cumulative; the scrape adds them
/// up), the number of observations and their sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One per [`LATENCY_BUCKETS`] bound, and one for what is above the last.
    buckets: Counters<13>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

// === impl Histogram ===

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets.bump(i);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and `(upper bound, count)` per bucket ending with `f64::MAX`
    /// (which prometheus-client writes as `+Inf`). The counts are per bucket, not cumulative:
    /// prometheus-client's `encode_histogram` adds them up itself, as OpenMetrics wants them
    /// written; handing it running totals made every bucket above the first count twice.
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut out = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, bound) in LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .enumerate()
        {
            let n = self.buckets.get(i);
            count += n;
            out.push((bound, n));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_per_bucket_and_end_with_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(9));
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 3);
        assert!((sum - 9.0203).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets[1], (0.001, 0));
        assert_eq!(buckets[5], (0.025, 1));
        assert_eq!(buckets.last().unwrap(), &(f64::MAX, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), count);
    }
}
