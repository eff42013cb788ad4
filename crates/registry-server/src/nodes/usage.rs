//! Resource usage of this node (CPU, memory, and the disk holding the data directory) for the
//! node heartbeat, measured with `sysinfo`.
//!
//! CPU usage is a rate, so it can only be measured between two refreshes: [`UsageSampler`] keeps
//! one `sysinfo::System` alive across heartbeats and each [`UsageSampler::sample`] reports the
//! usage since the previous one.

use std::path::{Path, PathBuf};

use registry_types::{ResourceUsage, Usage};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, System};

/// Measures this machine's resource usage between consecutive calls to [`sample`](Self::sample).
///
/// CPU is reported in millicores: `total` is the number of logical CPUs × 1000 and `used` is the
/// busy share of that, so `used / total` is a fraction exactly as it is for memory and disk (and
/// callers can add up or compare nodes without knowing their core counts). Memory and disk are
/// in bytes.
///
/// Sampling reads `/proc` and calls `statvfs`; it is quick but blocking.
pub(crate) struct UsageSampler {
    system: System,
    disks: Disks,
}

impl UsageSampler {
    /// Creates a sampler and takes the initial CPU measurement that the first
    /// [`sample`](Self::sample) is compared with.
    pub(crate) fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage());
        Self { system, disks }
    }

    /// Samples usage now. CPU usage is averaged over the time since the previous sample (or since
    /// [`new`](Self::new)); it is most meaningful when samples are at least
    /// [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] apart. The disk is the one whose mount point is
    /// the longest prefix of `data_dir` (canonicalized), else the one mounted at `/`, else zeros.
    pub(crate) fn sample(&mut self, data_dir: &Path) -> ResourceUsage {
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());

        ResourceUsage {
            cpu: self.cpu(),
            memory: self.memory(),
            disk: self.disk(data_dir),
        }
    }

    fn cpu(&self) -> Usage {
        let cores = match self.system.cpus().len() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let total = (cores as u64).saturating_mul(1000);
        let percent = clamp_percent(f64::from(self.system.global_cpu_usage()));
        let used = ((percent / 100.0) * total as f64).round() as u64;
        Usage {
            used: used.min(total),
            total,
            percent,
        }
    }

    fn memory(&self) -> Usage {
        let total = self.system.total_memory();
        let used = self.system.used_memory().min(total);
        Usage {
            used,
            total,
            percent: percent(used, total),
        }
    }

    fn disk(&self, data_dir: &Path) -> Usage {
        let dir = absolute(data_dir);
        let by_prefix = self
            .disks
            .list()
            .iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().components().count());
        let disk = by_prefix.or_else(|| {
            self.disks
                .list()
                .iter()
                .find(|d| d.mount_point() == Path::new("/"))
        });
        let Some(disk) = disk else {
            return Usage::default();
        };
        let total = disk.total_space();
        let used = total.saturating_sub(disk.available_space());
        Usage {
            used,
            total,
            percent: percent(used, total),
        }
    }
}

impl Default for UsageSampler {
    fn default() -> Self {
        Self::new()
    }
}

/// `data_dir` with symlinks resolved when it exists, else made absolute, else as given.
fn absolute(data_dir: &Path) -> PathBuf {
    std::fs::canonicalize(data_dir)
        .or_else(|_| std::path::absolute(data_dir))
        .unwrap_or_else(|_| data_dir.to_path_buf())
}

/// `used / total` as a percentage in `0..=100`; 0 when `total` is 0.
fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    clamp_percent(used as f64 / total as f64 * 100.0)
}

/// Forces a percentage into `0..=100`, mapping NaN to 0.
fn clamp_percent(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_percent(value: f64) {
        assert!(
            value.is_finite() && (0.0..=100.0).contains(&value),
            "{value}"
        );
    }

    #[test]
    fn samples_plausible_usage() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut sampler = UsageSampler::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        for _ in 0..2 {
            let usage = sampler.sample(dir.path());

            let cores = System::new_with_specifics(
                sysinfo::RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()),
            )
            .cpus()
            .len() as u64;
            assert!(cores > 0);
            assert_eq!(usage.cpu.total, cores * 1000);
            assert!(usage.cpu.used <= usage.cpu.total);
            assert_percent(usage.cpu.percent);

            assert!(usage.memory.total > 0);
            assert!(usage.memory.used <= usage.memory.total);
            assert_percent(usage.memory.percent);

            assert!(usage.disk.total > 0, "{:?}", usage.disk);
            assert!(usage.disk.used <= usage.disk.total);
            assert_percent(usage.disk.percent);
        }
    }

    #[test]
    fn missing_data_dir_still_samples() {
        let mut sampler = UsageSampler::default();
        let usage = sampler.sample(Path::new("/definitely/not/a/real/registry/data-dir"));
        assert!(usage.memory.total > 0);
        assert_percent(usage.disk.percent);
        let usage = sampler.sample(Path::new("relative/data"));
        assert_percent(usage.disk.percent);
    }

    #[test]
    fn percentages_are_guarded() {
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(50, 200), 25.0);
        assert_eq!(percent(300, 200), 100.0);
        assert_eq!(percent(u64::MAX, u64::MAX), 100.0);
        assert_eq!(clamp_percent(f64::NAN), 0.0);
        assert_eq!(clamp_percent(f64::INFINITY), 100.0);
        assert_eq!(clamp_percent(-3.0), 0.0);
        assert_eq!(clamp_percent(42.5), 42.5);
    }
}
