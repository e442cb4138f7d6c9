//! The shadow policy on the admin listener: `GET /v1/shadow` (what `moat ctl shadow` prints) and
//! `moat_shadow_differences_total` on `/metrics`.
//!
//! Why it is separate: both only read the book the sessions fill (`ops/shadow.rs`); the other
//! routes and collectors need not know it exists. Labels are the action, the enforced verdict
//! and both rules as `file:line`: bounded by the rule counts (and by `ops::shadow::MAX_PAIRS`),
//! never per client.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::AdminState;
use crate::stats::Stats;

/// The shadow route (the caller adds auth and the body cap in front).
pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/v1/shadow", get(shadow))
}

async fn shadow(State(state): State<AdminState>) -> Response {
    let policy = state.policy.load();
    let files = policy
        .shadow()
        .map(|s| s.files().iter().map(|f| f.display().to_string()).collect());
    Json(state.stats.shadow.report(files)).into_response()
}

/// Reads the book at scrape time.
#[derive(Debug)]
pub(crate) struct ShadowCollector(pub(crate) Arc<Stats>);

impl Collector for ShadowCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = self.0.shadow.counters();
        let mut metric = encoder.encode_descriptor(
            "shadow_differences",
            "Decisions where the shadow policy set differs from the enforced one, by action, enforced verdict and both rules (file:line)",
            None,
            MetricType::Counter,
        )?;
        for c in counters {
            let labels = [
                ("action", c.action.as_str()),
                ("enforced", c.enforced),
                ("enforced_rule", &*c.enforced_rule),
                ("shadow_rule", &*c.shadow_rule),
            ];
            ConstCounter::new(c.count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
