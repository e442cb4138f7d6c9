//! A fixed-size log-linear latency histogram (about 3 % precision, nanoseconds up to hours).
//!
//! Why not a `Vec` of samples: a long run would grow it without bound. 32 sub-buckets per power
//! of two keep every percentile within ~3 % of the true value in a few kilobytes per task.

/// Sub-buckets per power of two.
const SUB: u64 = 32;
/// Values below this are counted exactly.
const LINEAR: u64 = 2 * SUB;
/// Enough buckets for 2^48 ns (about 78 hours).
const BUCKETS: usize = (LINEAR + (48 - 6) * SUB) as usize;

/// Counts of latencies in nanoseconds.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

// === impl Histogram ===

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Records one value in nanoseconds.
    pub(crate) fn record(&mut self, ns: u64) {
        let i = bucket(ns).min(BUCKETS - 1);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds another histogram's counts.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of values recorded.
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in nanoseconds (lower bound of its bucket); 0 if empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank of the wanted sample, 1-based; float → int is saturating in Rust.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        // The last sample is known exactly; a bucket's lower bound would understate the tail.
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// Largest value recorded.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let k = u64::from(63 - v.leading_zeros()); // ≥ 6
    let sub = (v >> (k - 5)) & (SUB - 1);
    (LINEAR + (k - 6) * SUB + sub) as usize
}

fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = (i - LINEAR) / SUB + 6;
    let sub = (i - LINEAR) % SUB;
    (SUB + sub) << (k - 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_precision() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.04, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(h.quantile(1.0), h.max());
    }

    #[test]
    fn bucket_and_value_agree() {
        for v in [0u64, 1, 63, 64, 65, 1000, 123_456_789, 1 << 40] {
            let b = value(bucket(v));
            assert!(b <= v && (v - b) as f64 <= v as f64 / 30.0, "{v} -> {b}");
        }
    }
}
