//! What the health checker counts for `/metrics`: checks by type and outcome, how long
//! probes take, and the checks that came due but wait for a free slot.

use crate::metrics::{self, Counter, Family, Histogram, Metrics};
use prometheus_client::metrics::gauge::Gauge;
use registry_types::InstanceStatus;
use std::time::Duration;

/// A check's `type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckType {
    Tcp,
    Http,
    Ttl,
}

impl CheckType {
    fn as_str(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Ttl => "ttl",
        }
    }
}

type Labels = [(&'static str, &'static str); 2];
type TypeLabel = [(&'static str, &'static str); 1];

/// Shared by every run of the checker (it restarts under its supervisor).
pub(crate) struct HealthMetrics {
    checks: Family<Labels, Counter>,
    durations: Family<TypeLabel, Histogram, fn() -> Histogram>,
    overdue: Gauge,
}

impl HealthMetrics {
    pub(crate) fn register(metrics: &Metrics) -> HealthMetrics {
        HealthMetrics {
            checks: metrics.register(
                "health_checks",
                "Checks made, by type (tcp, http, ttl) and the status each one suggests \
                 (outcome)",
                Family::default(),
            ),
            durations: metrics.register_seconds(
                "health_check_duration",
                "Time a probe took, by type (tcp, http)",
                Family::new_with_constructor(metrics::latency_histogram as fn() -> Histogram),
            ),
            overdue: metrics.register(
                "health_checks_overdue",
                "Checks that came due and wait for a free slot (the checks running at once \
                 are bounded)",
                Gauge::default(),
            ),
        }
    }

    /// A check of `kind` that suggested `outcome`, after `took` (none for a TTL, which
    /// dials nothing).
    pub(super) fn checked(&self, kind: CheckType, outcome: InstanceStatus, took: Option<Duration>) {
        self.checks
            .get_or_create(&[("type", kind.as_str()), ("outcome", outcome.as_str())])
            .inc();
        if let Some(took) = took {
            self.durations
                .get_or_create(&[("type", kind.as_str())])
                .observe(took.as_secs_f64());
        }
    }

    /// `waiting` checks are due and wait for a slot.
    pub(super) fn overdue(&self, waiting: usize) {
        self.overdue.set(waiting as i64);
    }
}
