//! Writing samples with `prometheus-client`'s encoder: one family (descriptor and labelled
//! samples) per call, counters and gauges as constants read from moat's atomics. Separate from
//! `metrics.rs` so that file is only the list of what moat exports.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

pub(super) type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

/// Writes one metric family: a descriptor, then each labelled sample.
pub(super) fn family<'a, const N: usize, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a, N>, V)>,
) -> Result<(), std::fmt::Error>
where
    V: Sample,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    let mut samples = samples.into_iter();
    if N == 0 {
        // No labels: one sample, written as `name 1` (not `name{} 1`).
        if let Some((_, value)) = samples.next() {
            value.write(metric)?;
        }
        return Ok(());
    }
    for (labels, value) in samples {
        value.write(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One sample of a counter or a gauge.
pub(super) trait Sample {
    fn write(self, encoder: MetricEncoder) -> Result<(), std::fmt::Error>;
}

/// A counter's value.
pub(super) struct Count(pub(super) u64);
/// A gauge's value.
pub(super) struct Level(pub(super) i64);

impl Sample for Count {
    fn write(self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        ConstCounter::new(self.0).encode(encoder)
    }
}

impl Sample for Level {
    fn write(self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        ConstGauge::new(self.0).encode(encoder)
    }
}

pub(super) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(super) fn gauge(n: impl TryInto<i64>) -> Level {
    Level(n.try_into().unwrap_or(i64::MAX))
}
