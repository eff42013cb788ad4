//! What the daemon tells Prometheus: one registry of metric families, served at `/metrics`
//! in the Prometheus text format.
//!
//! Each module adds its own families at start-up through [`Metrics`]: counters and
//! histograms it updates as it works (through handles resolved once, so a request or a
//! check pays an atomic add, not a lookup), and collectors that read what the daemon holds
//! in memory at scrape time (instances by slug and status, watchers, queue depth), so
//! nothing is kept up to date on every write. Names get the `registry_` prefix here; the
//! process's own figures keep the `process_` names every exporter uses.

mod process;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};
use std::sync::Mutex;

pub(crate) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub(crate) use prometheus_client::metrics::counter::Counter;
pub(crate) use prometheus_client::metrics::family::Family;
pub(crate) use prometheus_client::metrics::histogram::Histogram;

/// Every metric family of one daemon.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// The daemon's own families, each named `registry_…`.
    registry: Mutex<Registry>,
    /// The process's, under the names every exporter uses (`process_…`).
    process: Registry,
}

impl Metrics {
    /// The registry of a daemon, with the process's figures and the build already in it.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("registry");
        registry.register(
            "build",
            "The daemon's version; always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry: Mutex::new(registry),
            process,
        }
    }

    /// Adds a family named `registry_<name>` (a counter gets `_total` after it), and
    /// hands back the handle to update it with.
    pub(crate) fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.lock().register(name, help, metric.clone());
        metric
    }

    /// Adds a family of durations, named `registry_<name>_seconds`, and hands back the
    /// handle to update it with.
    pub(crate) fn register_seconds<M: Metric + Clone>(
        &self,
        name: &str,
        help: &str,
        metric: M,
    ) -> M {
        self.lock()
            .register_with_unit(name, help, Unit::Seconds, metric.clone());
        metric
    }

    /// Adds families computed at each scrape.
    pub(crate) fn register_collector(&self, collector: impl Collector) {
        self.lock().register_collector(Box::new(collector));
    }

    /// Every family, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.process)
            .and_then(|()| {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.lock())
            })
            .expect("writing into a String cannot fail");
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registering or encoding cannot leave the registry half changed.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Buckets of a latency histogram, in seconds: from half a millisecond (an answer from
/// memory) to tens of seconds (a blocking query, a check near its timeout).
pub(crate) fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

/// A latency histogram with [`latency_buckets`].
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Writes one gauge family at scrape time: `name` (prefixed as the registry prefixes it)
/// with a value per label set.
pub(crate) fn encode_gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// Writes one counter family at scrape time from counts kept elsewhere: `name` (prefixed,
/// and with `_total` after it) with a value per label set.
pub(crate) fn encode_counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabels, _, u64>(&value, None)?;
    }
    Ok(())
}

/// The label set of a series without labels.
type NoLabels = prometheus_client::encoding::NoLabelSet;

/// Writes one gauge without labels at scrape time.
pub(crate) fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            encode_gauge(&mut encoder, "fixed", "A fixed figure", 7)?;
            encode_gauges(
                &mut encoder,
                "by_kind",
                "Figures by kind",
                [([("kind", "a")], 1), ([("kind", "b\"")], 2)],
            )
        }
    }

    #[test]
    fn families_are_prefixed_typed_and_named_with_their_units() {
        let metrics = Metrics::new();
        let counter = Counter::<u64>::default();
        metrics.register("things", "Things done", counter.clone());
        let histogram = latency_histogram();
        metrics.register_seconds("thing_duration", "How long a thing took", histogram.clone());
        metrics.register_collector(Fixed);
        counter.inc();
        histogram.observe(0.003);
        let text = metrics.encode();
        for line in [
            "# TYPE registry_things_total counter\n",
            "registry_things_total 1\n",
            "# TYPE registry_thing_duration_seconds histogram\n",
            "registry_thing_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "registry_thing_duration_seconds_count 1\n",
            "registry_fixed 7\n",
            "registry_by_kind{kind=\"b\\\"\"} 2\n",
            &format!(
                "registry_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_max_fds ",
                "process_start_time_seconds ",
            ] {
                assert!(text.contains(name), "no {name:?} in\n{text}");
            }
        }
    }
}
