//! `GET /metrics`: moat's counters in OpenMetrics text, through `prometheus-client`.
//!
//! Why it looks like this: the counting itself stays in [`crate::stats::Stats`] (relaxed
//! atomics bumped where events happen, label handles resolved once per listener), so the
//! per-message path never takes a lock or looks a label up. This module only *reads* them at
//! scrape time, through a `prometheus-client` [`Collector`], together with the gauges that are
//! cheaper to read than to keep (process memory and descriptors, active bans).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::stats::Stats;

/// The registry `/metrics` encodes, and what it reads at scrape time.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Written just before each encode: whether the broker answered.
    broker_up: Arc<AtomicBool>,
}

// === impl Metrics ===

impl Metrics {
    /// A registry reading `stats`.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        let broker_up = Arc::new(AtomicBool::new(true));
        let mut registry = Registry::with_prefix("moat");
        registry.register_collector(Box::new(super::shadow::ShadowCollector(stats.clone())));
        registry.register_collector(Box::new(StatsCollector {
            stats,
            broker_up: broker_up.clone(),
        }));
        Metrics {
            registry,
            broker_up,
        }
    }

    /// Every metric as OpenMetrics text.
    pub(crate) fn encode(
        &self,
        _state: &AdminState,
        broker_up: bool,
    ) -> Result<String, std::fmt::Error> {
        self.broker_up.store(broker_up, Ordering::Relaxed);
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        let _ = out.write_str("");
        Ok(out)
    }
}

/// Reads [`Stats`] at scrape time.
#[derive(Debug)]
struct StatsCollector {
    stats: Arc<Stats>,
    broker_up: Arc<AtomicBool>,
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        counter(
            &mut encoder,
            "connections_accepted",
            "TCP connections accepted",
            load(&self.stats.accepted),
        )?;
        let up = ConstGauge::new(i64::from(self.broker_up.load(Ordering::Relaxed)));
        up.encode(encoder.encode_descriptor(
            "broker_up",
            "1 when the broker answers",
            None,
            up.metric_type(),
        )?)?;
        Ok(())
    }
}
