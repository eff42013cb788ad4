//! What Linux's `/proc` tells about a process and the machine.

use anyhow::{bail, Context, Result};
use std::fs;

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat`: from
/// `getconf CLK_TCK`, else the usual 100.
pub(crate) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// CPU time process `pid` has used so far, user plus system, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("{path} has no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so utime (field 14) and stime (field 15) are 11 and 12.
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {} is not a number", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmRSS:")
}

/// The number after `label` in `/proc/<pid>/status`.
fn status_field(pid: u32, label: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("{path} has no {label} line"))
}

/// Open file descriptors of process `pid`: the entries of `/proc/<pid>/fd`.
pub(crate) fn open_descriptors(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/fd");
    let entries = fs::read_dir(&path).with_context(|| format!("reading {path}"))?;
    Ok(entries.count() as u64)
}

/// Threads of process `pid` (`Threads` of `/proc/<pid>/status`).
pub(crate) fn threads(pid: u32) -> Result<u64> {
    status_field(pid, "Threads:")
}

/// Busy and total clock ticks of all CPUs together, from the `cpu` line of `/proc/stat`.
pub(crate) fn machine_ticks() -> Result<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no 'cpu' line")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// The soft limit on open files of this process (children inherit it).
pub(crate) fn open_files_limit() -> Result<u64> {
    let text = fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("/proc/self/limits has no 'Max open files' line")?;
    match line.split_whitespace().nth(3) {
        Some("unlimited") => Ok(u64::MAX),
        Some(soft) => soft.parse().context("parsing the open files limit"),
        None => bail!("cannot read the open files limit from {line:?}"),
    }
}

/// TCP segments this machine has retransmitted since boot (`RetransSegs` of
/// `/proc/net/snmp`); on loopback, each one is a packet dropped and resent after at
/// least 200 ms.
pub(crate) fn tcp_retransmits() -> Result<u64> {
    let text = fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("/proc/net/snmp has no Tcp lines");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .context("/proc/net/snmp has no RetransSegs")
}

/// The load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them.
pub(crate) fn load_average() -> Result<String> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.len() < 3 {
        bail!("/proc/loadavg is {text:?}");
    }
    Ok(fields.join(" "))
}
