//! The process's own figures, read from `/proc` at each scrape, under the names every
//! Prometheus exporter gives them. Elsewhere than Linux there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What `/proc` says of this process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: u64,
}

/// The unit of the times in `/proc/<pid>/stat` (`USER_HZ`): 100 on every architecture
/// the daemon is built for, whatever the kernel's own tick.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` after the command name, from `state` (the third
/// field) on; the name may hold spaces and parentheses, so it is skipped up to its last
/// `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// A sample from the text of `/proc/self/stat`, the `btime` line of `/proc/stat` and
/// `/proc/self/status`.
fn parse(stat: &str, proc_stat: &str, status: &str) -> Option<Sample> {
    let fields = stat_fields(stat)?;
    // Fields 14, 15, 22 and 23 of stat(5), counted from the third.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let boot_time = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    let resident_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / TICKS_PER_SECOND,
        resident_bytes: resident_kib * 1024,
        virtual_bytes: field(23)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / TICKS_PER_SECOND,
        ..Sample::default()
    })
}

fn sample() -> Option<Sample> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut sample = parse(
        &read("/proc/self/stat")?,
        &read("/proc/stat")?,
        &read("/proc/self/status")?,
    )?;
    sample.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    sample.max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0;
    Some(sample)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(sample) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                sample.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes",
                sample.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                sample.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                sample.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open (its soft limit)",
                sample.max_fds as f64,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_stat_after_a_command_name_with_spaces() {
        let stat = "4242 (registry svc (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 \
                    250 50 0 0 20 0 6 0 12345 987654321 4000 18446744073709551615";
        let sample = parse(
            stat,
            "cpu 1 2 3\nbtime 1700000000\n",
            "Name:\tx\nVmRSS:\t  16000 kB\n",
        );
        assert_eq!(
            sample,
            Some(Sample {
                cpu_seconds: 3.0,
                resident_bytes: 16_000 * 1024,
                virtual_bytes: 987_654_321,
                start_time_seconds: 1_700_000_123.45,
                ..Sample::default()
            })
        );
        assert_eq!(parse("no command", "btime 1", "VmRSS: 1 kB"), None);
    }
}
