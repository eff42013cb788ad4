//! `registry-bench`: benchmarks of the Registry Svc daemon. A tool to run by hand, not a
//! test: it prints numbers (and the targets beside them) and fails only when a run breaks.
//!
//! Six benchmarks: `compare` (every headline figure in one run, beside bare axum and
//! etcd), `cluster` (the same kinds of figures for three daemons on one PostgreSQL),
//! `health` (the daemon's own health checking), `watch` (propagation of a change to
//! blocking watchers), `pick` (choosing an instance in the client) and `soak` (leaks over
//! a long run of mixed traffic). Each prints one table and the exact command that
//! reproduces it.
//!
//! `registry-bench compare` starts the daemon itself, registers `--instances` (100,000)
//! instances and reads its RSS, kills it and times a new daemon on the same data to
//! serving them all, then drives a discovery read and registrations with wrk (`-t2 -c64`
//! keep-alive, `--seconds` each) beside a bare axum server answering the same bytes; when
//! `etcd` is on PATH (Debian: `etcd-server`) it loads the same instances into a
//! throwaway etcd and drives it the same way; last, it times propagation from a
//! registration's 201 to 1,000 blocking watchers (`--skip-watch` leaves it out), then to
//! 1,000 subscribers of the Server-Sent Events stream (`--skip-sse`). Needs `wrk` on PATH
//! (Debian: `wrk`).
//!
//! ```text
//! cargo build --release -p registry-bench -p registry-svc && target/release/registry-bench compare --seconds 10
//! ```
//!
//! `registry-bench cluster` starts three daemons on a fresh PostgreSQL database per
//! workload (made through `--database-url`, default `REGISTRY_TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped after it) and measures, side by
//! side: registrations per second and re-plans with writers on 1, 2 and 3 nodes;
//! discovery reads per second on 1, 2 and 3 nodes; each node's memory with `--instances`
//! in the cluster; and propagation from a 201 on one node to 1 and `--watchers` blocking
//! watchers and event-stream subscribers on another while `--rate` registrations a
//! second flow (see `cluster.rs`). Needs wrk and a PostgreSQL user that may create
//! databases.
//!
//! ```text
//! cargo build --release -p registry-bench -p registry-svc && target/release/registry-bench cluster
//! ```
//!
//! `registry-bench health` measures what the daemon's own health checking costs. It
//! starts `registry-svc serve` on 127.0.0.1 in a throwaway data dir, opens `--listeners`
//! TCP listeners that accept and drop connections, registers `--instances` instances
//! spread over them (TCP check every `--interval`), waits until all are Healthy, and then
//! watches the daemon for `--duration`: its CPU time (from `/proc/<pid>/stat`), how many
//! checks reached the listeners, and its resident memory at the end.
//!
//! ```text
//! cargo build --release && target/release/registry-bench health --instances 10000 --interval 10s --duration 60s
//! ```
//!
//! `registry-bench watch --watchers 1000 --changes 100` runs `compare`'s propagation
//! workload alone, and `registry-bench watch --sse` its SSE one (see `watch.rs` for what
//! they measure); `registry-bench pick` times the client's balancers.
//!
//! `registry-bench soak --minutes 30` runs mixed traffic (registrations, removals,
//! flapping health-check targets, blocking watchers and event-stream subscribers coming
//! and going) against one daemon and samples its RSS, open descriptors and threads over
//! time, ending with a verdict per figure: flat or growing (see `soak.rs`).
//!
//! Linux only (it reads `/proc`). Everything stays on 127.0.0.1 on ports the system
//! picks, every wait has a deadline, and the daemons, etcd and their data dirs are
//! removed however the run ends.

mod cluster;
mod compare;
mod daemon;
mod etcd;
#[cfg(test)]
mod fake_server;
mod follower;
mod http;
mod pick;
mod procfs;
mod soak;
mod sse;
mod table;
mod watch;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use daemon::Daemon;
use registry_client::types::{
    HealthCheck, HealthCheckType, InstanceFilter, InstanceStatus, RegisterInstanceRequest,
};
use registry_client::RegistryClient;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Limit on any one API request of the bench.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often progress is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Most checks the daemon runs at once (its `MAX_IN_FLIGHT`), for the open-files budget.
const DAEMON_MAX_IN_FLIGHT: u64 = 512;

#[derive(Parser)]
#[command(version, about = "Benchmarks of the Registry Svc daemon")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Cost of the daemon checking many instances: CPU, checks per second, memory.
    Health(HealthArgs),
    /// Propagation of a registration to many blocking watchers (`--sse`: event-stream
    /// subscribers): latency percentiles.
    Watch(watch::WatchArgs),
    /// Cost of choosing an instance in the client (`Discovery::pick`), per balancer.
    Pick(pick::PickArgs),
    /// Every headline figure in one run (read, registration, memory, start-up,
    /// propagation), beside a bare axum server and etcd on the same data.
    #[command(alias = "http")]
    Compare(compare::CompareArgs),
    /// Three daemons on one PostgreSQL: registration and reads spread on 1, 2 and 3
    /// nodes, re-plans, memory per node, propagation between nodes under a paced flow.
    Cluster(cluster::ClusterArgs),
    /// A long run of registrations, removals, flapping targets, watchers and subscribers
    /// coming and going, sampling the daemon's memory, descriptors and threads for leaks.
    Soak(soak::SoakArgs),
    /// Prints the wrk script of the registration load (for scripts/hot-paths-ab.sh).
    RegisterScript(http::RegisterScript),
}

#[derive(Args, Clone)]
struct HealthArgs {
    /// Instances to register.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    instances: u64,
    /// Health-check interval of every instance (`500ms`, `10s`, ...).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// Length of the measurement window.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// TCP listeners the instances are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    listeners: u64,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

/// A duration in whole milliseconds, at least 1 ms, written as the registry writes them.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = registry_types::parse_duration("duration", text).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(Duration::from_millis(d.as_millis() as u64))
}

/// `10s`, `1500ms`: short, exact for whole milliseconds, and accepted back by both tools.
fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::select! {
        result = async {
            match cli.command {
                Bench::Health(args) => health(args).await,
                Bench::Watch(args) => watch::run(args).await,
                Bench::Pick(args) => pick::run(args).await,
                Bench::Compare(args) => compare::run(args).await,
                Bench::Cluster(args) => cluster::run(args).await,
                Bench::Soak(args) => soak::run(args).await,
                Bench::RegisterScript(script) => {
                    print!("{}", script.lua());
                    Ok(())
                }
            }
        } => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminated() => Err(anyhow::anyhow!("terminated")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM, so that `kill` too ends the run through the cleanup of every
/// daemon and etcd (their `Drop`); never, when the handler cannot be installed.
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn health(args: HealthArgs) -> Result<()> {
    check_open_files(args.listeners)?;
    let mut daemon = Daemon::start_located(args.daemon.as_deref())?;
    let client = daemon.client(REQUEST_TIMEOUT)?;

    let accepts = Arc::new(AtomicU64::new(0));
    let (ports, _listeners) = start_listeners(args.listeners, accepts.clone()).await?;
    register_all(&client, &ports, &args).await?;
    daemon.check_alive()?;
    wait_until_healthy(&client, &args).await?;
    let report = measure(&mut daemon, &client, &accepts, &args).await?;
    print!("{}", report.table(&args));
    Ok(())
}

/// Fails early when the open-files limit (which the daemon inherits) is too low.
fn check_open_files(listeners: u64) -> Result<()> {
    let limit = procfs::open_files_limit()?;
    // Listeners, registrations, one accepted socket per daemon check in flight, slack.
    let needed = listeners + http::LOAD_CONCURRENCY + DAEMON_MAX_IN_FLIGHT + 256;
    if limit < needed {
        bail!("the open files limit is {limit}, below the {needed} needed; raise it (ulimit -n {needed})");
    }
    Ok(())
}

/// Binds `count` listeners on 127.0.0.1 that accept and drop every connection, counting
/// them in `accepts`. The tasks end when the returned set is dropped.
async fn start_listeners(count: u64, accepts: Arc<AtomicU64>) -> Result<(Vec<u16>, JoinSet<()>)> {
    let mut ports = Vec::new();
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (listener, port) = loopback_listener().await?;
        ports.push(port);
        let accepts = accepts.clone();
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        accepts.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                    // The daemon resets each check's connection; one reset before the
                    // accept still was a check.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        accepts.fetch_add(1, Ordering::Relaxed);
                    }
                    // Out of file descriptors or the like: back off, the daemon retries.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    Ok((ports, tasks))
}

/// A listener on 127.0.0.1, on a port the system picks, and that port.
async fn loopback_listener() -> Result<(TcpListener, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a listener on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// Registers the instances, spread over the listeners, each checked over TCP.
async fn register_all(client: &RegistryClient, ports: &[u16], args: &HealthArgs) -> Result<()> {
    let total = args.instances;
    let (ports, interval) = (ports.to_vec(), format_duration(args.interval));
    // Generous: 60 s plus 20 ms an instance (10,000 instances: 260 s).
    let limit = Duration::from_secs(60) + Duration::from_millis(20) * total as u32;
    http::register_many(client, total, Some(limit), move |n| {
        let port = ports[(n % ports.len() as u64) as usize];
        RegisterInstanceRequest {
            url: format!("http://127.0.0.1:{port}/i/{n}"),
            slug: format!("bench-{}", n % 100),
            health_check: Some(HealthCheck {
                check_type: Some(HealthCheckType::Tcp),
                interval: Some(interval.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    })
    .await
}

/// Polls the Healthy count until it reaches every instance, for at most 2 intervals + 30 s.
async fn wait_until_healthy(client: &RegistryClient, args: &HealthArgs) -> Result<()> {
    let limit = args.interval * 2 + Duration::from_secs(30);
    let started = Instant::now();
    let healthy = InstanceFilter {
        status: Some(InstanceStatus::Healthy),
        ..Default::default()
    };
    loop {
        let count = client.list_instances(&healthy).await?.len() as u64;
        eprintln!(
            "healthy {count}/{} after {:.0}s",
            args.instances,
            started.elapsed().as_secs_f64()
        );
        if count >= args.instances {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "only {count} of {} instances Healthy after {}s; {}",
                args.instances,
                limit.as_secs(),
                status_summary(client).await
            );
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Instances by status, and what one that is not Healthy last saw.
async fn status_summary(client: &RegistryClient) -> String {
    let all = match client.list_instances(&InstanceFilter::default()).await {
        Ok(all) => all,
        Err(e) => return format!("listing them failed: {e}"),
    };
    let mut counts = BTreeMap::new();
    for instance in &all {
        *counts.entry(instance.status.to_string()).or_insert(0u64) += 1;
    }
    let example = all
        .iter()
        .find(|i| i.status != InstanceStatus::Healthy)
        .map(|i| format!("; e.g. {} is {}: {:?}", i.url, i.status, i.details))
        .unwrap_or_default();
    format!("by status: {counts:?}{example}")
}

/// What one measurement window saw.
struct Report {
    window: Duration,
    ticks_per_second: u64,
    daemon_ticks: u64,
    bench_ticks: u64,
    machine_busy: f64,
    cores: usize,
    checks: u64,
    rss_kib: u64,
    healthy_at_end: u64,
}

async fn measure(
    daemon: &mut Daemon,
    client: &RegistryClient,
    accepts: &AtomicU64,
    args: &HealthArgs,
) -> Result<Report> {
    let (pid, me) = (daemon.pid(), std::process::id());
    let ticks_per_second = procfs::ticks_per_second();
    eprintln!("measuring for {}s ...", args.duration.as_secs_f64().round());
    let started = Instant::now();
    let (daemon0, bench0, machine0) = (
        procfs::cpu_ticks(pid)?,
        procfs::cpu_ticks(me)?,
        procfs::machine_ticks()?,
    );
    let accepts0 = accepts.load(Ordering::Relaxed);
    let end = tokio::time::Instant::now() + args.duration;
    let progress_every = Duration::from_secs(10);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep_until(end.min(tokio::time::Instant::now() + progress_every)).await;
        daemon.check_alive()?;
        eprintln!(
            "  {:.0}s: {} checks",
            started.elapsed().as_secs_f64(),
            accepts.load(Ordering::Relaxed) - accepts0
        );
    }
    let checks = accepts.load(Ordering::Relaxed) - accepts0;
    let (daemon1, bench1, machine1) = (
        procfs::cpu_ticks(pid)?,
        procfs::cpu_ticks(me)?,
        procfs::machine_ticks()?,
    );
    let window = started.elapsed();
    let rss_kib = procfs::rss_kib(pid)?;
    let (busy, total) = (machine1.0 - machine0.0, machine1.1 - machine0.1);
    // After the window, so the listing does not count against the daemon.
    let healthy = InstanceFilter {
        status: Some(InstanceStatus::Healthy),
        ..Default::default()
    };
    let healthy_at_end = client.list_instances(&healthy).await?.len() as u64;
    Ok(Report {
        window,
        ticks_per_second,
        daemon_ticks: daemon1 - daemon0,
        bench_ticks: bench1 - bench0,
        machine_busy: busy as f64 / total.max(1) as f64,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        checks,
        rss_kib,
        healthy_at_end,
    })
}

impl Report {
    fn table(&self, args: &HealthArgs) -> String {
        let secs = self.window.as_secs_f64();
        let cpu = |ticks: u64| ticks as f64 / self.ticks_per_second as f64;
        let expected_rate = args.instances as f64 / args.interval.as_secs_f64();
        let rate = self.checks as f64 / secs;
        let rows = [
            ("instances", args.instances.to_string()),
            ("listeners", args.listeners.to_string()),
            ("check interval", format_duration(args.interval)),
            ("window", format!("{secs:.1} s")),
            ("daemon CPU", format!("{:.2} s", cpu(self.daemon_ticks))),
            (
                "daemon CPU, % of one core",
                format!("{:.1} %", 100.0 * cpu(self.daemon_ticks) / secs),
            ),
            ("checks performed", self.checks.to_string()),
            (
                "checks/s",
                format!("{rate:.1} (expected {expected_rate:.1})"),
            ),
            ("on-time ratio", format!("{:.3}", rate / expected_rate)),
            (
                "daemon RSS at end",
                format!("{:.1} MiB", self.rss_kib as f64 / 1024.0),
            ),
            (
                "Healthy after window",
                format!("{}/{}", self.healthy_at_end, args.instances),
            ),
            (
                "bench's own CPU, % of one core",
                format!("{:.1} %", 100.0 * cpu(self.bench_ticks) / secs),
            ),
            (
                "whole machine busy",
                format!("{:.1} % of {} cores", 100.0 * self.machine_busy, self.cores),
            ),
        ];
        let daemon = match &args.daemon {
            Some(path) => format!(" --daemon {}", path.display()),
            None => String::new(),
        };
        let command = format!(
            "cargo build --release && target/release/registry-bench health \
             --instances {} --interval {} --duration {} --listeners {}{daemon}",
            args.instances,
            format_duration(args.interval),
            format_duration(args.duration),
            args.listeners,
        );
        table::render("registry-bench health", &rows, &command)
    }
}
