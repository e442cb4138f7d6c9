//! The drain's schedule: live sessions are told to leave in batches spread over the drain
//! period, not all at once, so that a rolling restart's clients reconnect to the other
//! instances gradually instead of as one storm.
//!
//! What it owns: [`plan`] (pure: which share of the sessions goes at which offset) and [`run`]
//! (the one loop that carries it out on the registry, ending when the period is over or no
//! session is left). Why it is separate: the schedule is testable on numbers alone and the
//! loop on a paused clock. What it must not do: stop listeners or the process (the server does,
//! before and after), or wait beyond the period.

use std::time::Duration;

use crate::session::{Registry, StopRequest};

/// Most batches in one drain: each wakes every remaining session once.
pub const MAX_STEPS: usize = 50;

/// How often the drain looks whether every session has gone, once all were told.
const EMPTY_POLL: Duration = Duration::from_millis(50);

/// One batch: at `at` from the drain's start, tell sessions `from..to` of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Offset from the start of the drain.
    pub at: Duration,
    /// First index in the snapshot.
    pub from: usize,
    /// One past the last index.
    pub to: usize,
}

/// Splits `n` sessions into at most [`MAX_STEPS`] batches at even offsets over `period`,
/// the first at once, the last one batch-length before the end (so that it too has time to
/// leave within the period). Batch sizes differ by at most one.
pub fn plan(n: usize, period: Duration) -> Vec<Step> {
    let steps = n.min(MAX_STEPS);
    if steps == 0 {
        return Vec::new();
    }
    let k = u32::try_from(steps).unwrap_or(1);
    (0..steps)
        .map(|i| Step {
            at: period / k * u32::try_from(i).unwrap_or(0),
            from: i * n / steps,
            to: (i + 1) * n / steps,
        })
        .collect()
}

/// Tells every live session to leave, batch by batch over `period` (see [`plan`]), then waits
/// until none is left or the period is over. Sessions that register after the snapshot are
/// left to the shutdown that follows.
pub(crate) async fn run(registry: &Registry, period: Duration) {
    let start = tokio::time::Instant::now();
    let end = start + period;
    let ids = registry.ids(|_| true);
    let total = ids.len();
    tracing::info!(sessions = total, period = ?period, "drain: moving sessions away");
    for step in plan(total, period) {
        tokio::time::sleep_until(start + step.at).await;
        let batch = ids.get(step.from..step.to).unwrap_or_default();
        let told = registry.stop(batch, StopRequest::Drain);
        tracing::debug!(told, "drain: batch told to leave");
    }
    // Bounded by `end`: at most period / EMPTY_POLL passes.
    while registry.len() > 0 && tokio::time::Instant::now() < end {
        let next = (tokio::time::Instant::now() + EMPTY_POLL).min(end);
        tokio::time::sleep_until(next).await;
    }
    tracing::info!(left = registry.len(), "drain: period over");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn a_plan_covers_every_session_once_spread_over_the_period() {
        for n in [0, 1, 3, 49, 50, 51, 1000, 100_003] {
            let period = Duration::from_secs(30);
            let p = plan(n, period);
            assert_eq!(p.len(), n.min(MAX_STEPS));
            let mut next = 0;
            for s in &p {
                assert_eq!(s.from, next);
                assert!(s.to > s.from, "{n}: empty batch");
                assert!(s.at < period || n == 0);
                next = s.to;
            }
            assert_eq!(next, n);
            if let (Some(a), Some(b)) = (p.first(), p.last()) {
                assert_eq!(a.at, Duration::ZERO);
                if p.len() > 1 {
                    assert!(b.at >= period / 2, "{n}: not spread");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_tells_batches_at_their_offsets_and_ends_when_everyone_left() {
        use crate::config::TransportKind;
        use crate::mqtt::ProtocolVersion;
        use crate::session::Facts;
        use std::sync::Arc;
        let controller = crate::shutdown::DrainController::new();
        let registry = Arc::new(Registry::new(controller.epoch()));
        let facts = Facts {
            identity: "alice".into(),
            client_id: "c".into(),
            addr: ([127, 0, 0, 1], 1).into(),
            listener: Arc::from("mqtts"),
            kind: TransportKind::Tls,
            version: ProtocolVersion::V5,
        };
        let claims: Vec<_> = (0..4)
            .map(|i| registry.claim(format!("alice:c{i}"), facts.clone()))
            .collect();
        let told = |claims: &[crate::session::Claim]| {
            claims
                .iter()
                .filter(|c| c.session().stop_request() == Some(StopRequest::Drain))
                .count()
        };
        let period = Duration::from_secs(4);
        let start = tokio::time::Instant::now();
        let run = tokio::spawn({
            let registry = registry.clone();
            async move { run(&registry, period).await }
        });
        // Batches at 0, 1, 2 and 3 s: one more session told each second.
        for second in 0..4 {
            tokio::time::sleep_until(start + Duration::from_millis(second * 1000 + 500)).await;
            assert_eq!(
                told(&claims),
                usize::try_from(second).unwrap() + 1,
                "at {second}.5 s"
            );
        }
        // Everyone left: the drain ends before the period is over.
        drop(claims);
        tokio::time::timeout(Duration::from_millis(200), run)
            .await
            .unwrap()
            .unwrap();
        assert!(start.elapsed() < period);
    }

    #[test]
    fn a_zero_period_tells_everyone_at_once() {
        let p = plan(10, Duration::ZERO);
        assert!(p.iter().all(|s| s.at == Duration::ZERO));
    }
}
