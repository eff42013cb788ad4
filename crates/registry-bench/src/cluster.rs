//! `registry-bench cluster`: the figures of three daemons on one PostgreSQL database,
//! side by side in one run, printed as one Markdown table.
//!
//! Each workload gets a cluster of its own: a new database in the PostgreSQL server of
//! `--database-url` (made through that URL's database, dropped once the workload is
//! done, however it ends), and three `registry-svc serve` daemons on it, nodes A, B and
//! C, on 127.0.0.1. In order:
//!
//! 1. registration (unless `--skip-writes`): for writers on 1, then 2, then 3 nodes, a
//!    fresh cluster and one wrk per writer node, all at once for `--seconds`, the
//!    `--connections` and `--threads` split between them (the same client concurrency in
//!    all three runs). Each wrk registers new instances at addresses of its own
//!    (`register-script`'s load, second octets `100 + thread` shifted by node), so no two
//!    writers ever touch the same instance. Every node's `/metrics` is read before and
//!    after: the re-plans (`registry_writer_replans_total`, a batch planned again because
//!    another node committed first) per 1,000 commits (`registry_writer_batch_size_count`,
//!    every store transaction tried, re-plans included), "n/a" from a daemon without
//!    that counter; the failed commits (`registry_writer_commits_failed_total`: a batch
//!    beaten 16 times in a row is refused, 503); and the commands sent to the store per
//!    registration answered (`…_batch_size_sum` over the `PUT /registry-svc/instance`
//!    answers), 1 without re-plans, which shows them without the counter too;
//! 2. memory (unless `--skip-memory` and `--skip-reads`): a fresh cluster; each node's
//!    `VmRSS` idle, then with `--instances` registered on node A (`compare`'s bulk
//!    instances: 10 per slug, 127.x URLs, no health check, 64 at a time), read once every
//!    node has applied them all (a last registration is listed by each) and 2 s more;
//! 3. discovery read (unless `--skip-reads`): on that loaded cluster, `--rounds` times,
//!    bare axum answering the same bytes (one wrk, this machine's HTTP limit in one
//!    process), then `GET /registry-svc/instances?slug=bench-7` (10 instances) with wrk on
//!    1, 2 and 3 nodes at once, the connections split as in 1; each figure is the median
//!    of the rounds (the machine's speed drifts; see `compare`);
//! 4. propagation (unless `--skip-propagation`): blocking watchers, then event-stream
//!    subscribers, 1 and then `--watchers` of each, a fresh cluster each time: `watch`'s
//!    workload (`watch.rs` says what is timed), registering on node A and following on
//!    node B, while `--rate` other registrations a second, paced, flow into node A;
//! 5. health traffic (unless `--skip-health`): a fresh cluster with `--checked` instances
//!    registered on node A, each TCP-checked every 10 s (at a listener of the bench's),
//!    shared between the three nodes. Once all are Healthy everywhere and one interval
//!    has passed, for `--health-seconds`: the checks made, the health notes written (and
//!    the store transactions that wrote them) and applied by the other nodes, from every
//!    node's `/metrics`; the instance events an event-stream subscriber on node B
//!    receives (a steady cluster should send none); and, for 20 instances polled on
//!    every node every 250 ms, how long after a new `lastHeartbeat` first shows on one
//!    node (the one that checks it) each other node shows it.
//!
//! Everything runs on this machine: the daemons, PostgreSQL, wrk and the bench share its
//! cores, so the spread figures tell what spreading costs on one machine (conflicts,
//! every node applying every change), not what three machines would serve. The load
//! average before and after and how busy the machine was are printed under the table.

use crate::daemon::{Daemon, TempDir};
use crate::http::{self, thousands, Load, RegisterScript, Wrk, WrkRun};
use crate::watch::{self, Mode, WatchFigures};
use crate::{follower, procfs, sse, table};
use anyhow::{bail, Context, Result};
use clap::Args;
use registry_client::types::{
    HealthCheck, HealthCheckType, InstanceFilter, InstanceStatus, RegisterInstanceRequest,
};
use registry_client::RegistryClient;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Nodes of every cluster.
const NODES: usize = 3;
const NODE_NAMES: [&str; NODES] = ["A", "B", "C"];
/// The server the databases are made in, when neither the flag nor the variable names one.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Time given to a daemon before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Longest every node may take to apply the loaded instances.
const APPLY_LIMIT: Duration = Duration::from_secs(120);
/// The registration each node must list before the loaded cluster counts as loaded.
const LAST_SLUG: &str = "bench-loaded";
const LAST_URL: &str = "http://127.250.250.250:8080";
/// The slug of the discovery read: 10 of the loaded instances.
const READ_SLUG: &str = "bench-7";
/// The labels of a registration in `registry_http_requests_total`.
const REGISTRATION: &[(&str, &str)] = &[("route", "/registry-svc/instance"), ("method", "PUT")];
/// Registrations of the paced flow in flight at once; a tick finding this many waiting
/// is counted as missed rather than queued.
const FLOW_IN_FLIGHT: usize = 64;

#[derive(Args, Clone)]
pub(crate) struct ClusterArgs {
    /// A PostgreSQL database to connect to in order to create (and drop) one database per
    /// workload; the user needs CREATEDB.
    #[arg(long, value_name = "URL", env = "REGISTRY_TEST_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Instances registered in the cluster for the memory and discovery read figures (10
    /// per slug).
    #[arg(long, default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(80..=1_000_000))]
    instances: u64,
    /// Length of each wrk run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Times bare axum and the discovery reads on 1, 2 and 3 nodes take turns; each
    /// figure is the median of the rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// wrk connections (keep-alive) in all, split between the nodes driven.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(3..=10_000))]
    connections: u32,
    /// wrk threads in all, split between the nodes driven (at least one each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    threads: u32,
    /// Registrations a second flowing into node A while propagation is timed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rate: u64,
    /// Blocking watchers (and event-stream subscribers) of the larger propagation runs;
    /// the smaller ones have 1.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    watchers: u64,
    /// Registrations timed in each propagation run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    changes: u64,
    /// Leave out the registration runs.
    #[arg(long)]
    skip_writes: bool,
    /// Leave out the discovery read runs.
    #[arg(long)]
    skip_reads: bool,
    /// Leave out the memory figure (it is taken anyway when the reads load the cluster).
    #[arg(long)]
    skip_memory: bool,
    /// Leave out the propagation runs.
    #[arg(long)]
    skip_propagation: bool,
    /// Instances checked in the health traffic run (every 10 s, by TCP).
    #[arg(long, default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(20..=200_000))]
    checked: u64,
    /// Length of the health traffic window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    health_seconds: u64,
    /// Leave out the health traffic run.
    #[arg(long)]
    skip_health: bool,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

impl ClusterArgs {
    fn command(&self) -> String {
        let mut command = format!(
            "cargo build --release -p registry-bench -p registry-svc && \
             target/release/registry-bench cluster --database-url {} --instances {} \
             --seconds {} --rounds {} --connections {} --threads {} --rate {} --watchers {} \
             --changes {} --checked {} --health-seconds {}",
            redacted(&self.database_url),
            self.instances,
            self.seconds,
            self.rounds,
            self.connections,
            self.threads,
            self.rate,
            self.watchers,
            self.changes,
            self.checked,
            self.health_seconds
        );
        let skips = [
            (self.skip_writes, " --skip-writes"),
            (self.skip_reads, " --skip-reads"),
            (self.skip_memory, " --skip-memory"),
            (self.skip_propagation, " --skip-propagation"),
            (self.skip_health, " --skip-health"),
        ];
        for (skipped, flag) in skips {
            if skipped {
                command += flag;
            }
        }
        if let Some(path) = &self.daemon {
            command += &format!(" --daemon {}", path.display());
        }
        command
    }

    /// The load on `part` of `parts` nodes driven at once: its share of the connections
    /// (the first ones take the remainder) and of the threads (at least one).
    fn load_share(&self, parts: usize, part: usize) -> Load {
        let parts = parts as u32;
        let extra = u32::from((part as u32) < self.connections % parts);
        Load {
            threads: (self.threads / parts).max(1),
            connections: self.connections / parts + extra,
            seconds: self.seconds,
        }
    }
}

pub(crate) async fn run(args: ClusterArgs) -> Result<()> {
    if args.connections < args.threads {
        bail!("--connections must be at least --threads (wrk needs a connection per thread)");
    }
    http::require_wrk()?;
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let postgres = server_version(&args.database_url).await?;
    let machine = Machine::start()?;

    let mut writes = Vec::new();
    if !args.skip_writes {
        for writers in 1..=NODES {
            writes.push(registration(&args, &binary, &http, writers).await?);
        }
    }
    let loaded = if args.skip_reads && args.skip_memory {
        None
    } else {
        Some(loaded(&args, &binary, &http).await?)
    };
    let mut propagation = Vec::new();
    if !args.skip_propagation {
        for mode in [Mode::Blocking, Mode::Sse] {
            for watchers in [1, args.watchers] {
                propagation.push(propagate(&args, &binary, &http, mode, watchers).await?);
            }
        }
    }
    let health = if args.skip_health {
        None
    } else {
        Some(health_traffic(&args, &binary, &http).await?)
    };
    let machine = machine.end()?;
    print!(
        "{}",
        report(
            &args,
            &postgres,
            &machine,
            &writes,
            loaded.as_ref(),
            &propagation,
            health.as_ref()
        )
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Databases and clusters
// ---------------------------------------------------------------------------------------

/// `url` with its database replaced by `name` (its query, if any, kept).
fn with_database(url: &str, name: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("--database-url {} is not a URL", redacted(url)))?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

/// `url` with its password, if any, shown as `***`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((user_info, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// PostgreSQL's version, as the server of `url` says it.
async fn server_version(url: &str) -> Result<String> {
    let mut connection = PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redacted(url)))?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut connection)
        .await?;
    let _ = connection.close().await;
    Ok(version)
}

/// A database made for one workload, dropped (with any connection left to it) when this
/// is dropped.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin_url: &str) -> Result<Database> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "registry_bench_{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(admin_url, &name)?;
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {}", redacted(admin_url)))?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = admin.close().await;
        Ok(Database {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    async fn drop_now(admin_url: &str, name: &str) -> Result<()> {
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // The bench's runtime cannot wait on itself here: a thread runs the drop on one of
        // its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a runtime")?
                .block_on(Database::drop_now(&admin_url, &name))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "could not drop database {} ({e:#}); drop it by hand",
                self.name
            ),
            Err(_) => eprintln!("could not drop database {}; drop it by hand", self.name),
        }
    }
}

/// Three daemons on a database of their own. The daemons are killed before the database
/// is dropped (fields drop in order).
struct Cluster {
    nodes: Vec<Daemon>,
    _database: Database,
}

impl Cluster {
    async fn start(binary: &Path, admin_url: &str, workload: &str) -> Result<Cluster> {
        let database = Database::create(admin_url).await?;
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            nodes.push(Daemon::start_on(binary, Some(&database.url))?);
        }
        let urls: Vec<String> = nodes
            .iter()
            .zip(NODE_NAMES)
            .map(|(node, name)| format!("{name} {} (pid {})", node.base_url, node.pid()))
            .collect();
        eprintln!(
            "cluster: {workload}: database {}, nodes {}",
            database.name,
            urls.join(", ")
        );
        Ok(Cluster {
            nodes,
            _database: database,
        })
    }

    fn check_alive(&mut self) -> Result<()> {
        for (node, name) in self.nodes.iter_mut().zip(NODE_NAMES) {
            node.check_alive().with_context(|| format!("node {name}"))?;
        }
        Ok(())
    }

    /// A client of node `index` with the shared admin token.
    fn client(&self, index: usize, http: &reqwest::Client) -> RegistryClient {
        let node = &self.nodes[index];
        RegistryClient::new(node.base_url.clone(), Some(node.token.clone()))
            .with_http_client(http.clone())
    }

    fn rss_kib(&self) -> Result<Vec<u64>> {
        self.nodes
            .iter()
            .map(|node| procfs::rss_kib(node.pid()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// 1. Registration
// ---------------------------------------------------------------------------------------

/// The writer's counters of one node's `/metrics`.
#[derive(Clone, Copy)]
struct WriterCounts {
    /// `None` when the daemon has no such counter.
    replans: Option<f64>,
    /// Store transactions tried, the commands in them, and those that failed (after
    /// too many re-plans in a row, among others: their writes were answered 503).
    commits: f64,
    commands: f64,
    failed: f64,
    /// Registrations answered, whatever the status.
    registrations: f64,
}

impl WriterCounts {
    async fn read(http: &reqwest::Client, node: &Daemon) -> Result<WriterCounts> {
        let text = scrape(http, node).await?;
        let count = |name| {
            metric_sum(&text, name)
                .with_context(|| format!("{}/metrics has no {name}", node.base_url))
        };
        Ok(WriterCounts {
            replans: metric_sum(&text, "registry_writer_replans_total"),
            commits: count("registry_writer_batch_size_count")?,
            commands: count("registry_writer_batch_size_sum")?,
            failed: count("registry_writer_commits_failed_total")?,
            registrations: metric_sum_where(&text, "registry_http_requests_total", REGISTRATION)
                .unwrap_or(0.0),
        })
    }

    /// What every node counted between `before` and `after`.
    fn growth(before: &[WriterCounts], after: &[WriterCounts]) -> WriterCounts {
        let mut total = WriterCounts {
            replans: Some(0.0),
            commits: 0.0,
            commands: 0.0,
            failed: 0.0,
            registrations: 0.0,
        };
        for (b, a) in before.iter().zip(after) {
            total.replans = match (total.replans, b.replans, a.replans) {
                (Some(sum), Some(b), Some(a)) => Some(sum + a - b),
                _ => None,
            };
            total.commits += a.commits - b.commits;
            total.commands += a.commands - b.commands;
            total.failed += a.failed - b.failed;
            total.registrations += a.registrations - b.registrations;
        }
        total
    }
}

/// The `/metrics` answer of `node`.
async fn scrape(http: &reqwest::Client, node: &Daemon) -> Result<String> {
    Ok(http
        .get(format!("{}/metrics", node.base_url))
        .send()
        .await?
        .error_for_status()
        .context("GET /metrics")?
        .text()
        .await?)
}

/// The sum of every sample of `name`, whatever its labels, in a Prometheus text answer;
/// `None` when there is none.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    metric_sum_where(text, name, &[])
}

/// As [`metric_sum`], of the samples that carry every one of `labels` (`name="value"`).
fn metric_sum_where(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: labels or the value come next.
        let value = match rest.strip_prefix('{') {
            Some(labelled) => labelled.rsplit_once('}').filter(|(set, _)| {
                labels
                    .iter()
                    .all(|(label, value)| set.contains(&format!("{label}=\"{value}\"")))
            }),
            None if rest.starts_with(' ') && labels.is_empty() => Some(("", rest)),
            None => None,
        }
        .map(|(_, value)| value);
        if let Some(value) = value
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// What registration with writers on some nodes did.
struct Registration {
    writers: usize,
    wrk: Wrk,
    counts: WriterCounts,
}

impl Registration {
    fn replans_per_thousand(&self) -> String {
        match self.counts.replans {
            Some(replans) => format!("{:.1}", 1000.0 * replans / self.counts.commits.max(1.0)),
            None => "n/a".to_string(),
        }
    }

    fn per_commit(&self) -> String {
        format!("{:.1}", self.counts.commands / self.counts.commits.max(1.0))
    }

    /// Commands sent to the store per registration answered: 1 when nothing is planned
    /// again, more for every re-plan (a re-planned batch is sent again whole).
    fn sent_per_registration(&self) -> String {
        format!(
            "{:.2}",
            self.counts.commands / self.counts.registrations.max(1.0)
        )
    }
}

async fn registration(
    args: &ClusterArgs,
    binary: &Path,
    http: &reqwest::Client,
    writers: usize,
) -> Result<Registration> {
    let mut cluster = Cluster::start(
        binary,
        &args.database_url,
        &format!("registration, writers on {writers} node(s)"),
    )
    .await?;
    let scripts = TempDir::new()?;
    let mut paths = Vec::with_capacity(writers);
    for node in 0..writers {
        // Each node's wrk threads take second octets of their own.
        let load = args.load_share(writers, node);
        let script = RegisterScript {
            first: http::REGISTER.first + (node as u32 * load.threads) as u8,
            ..http::REGISTER
        };
        let path = scripts.path().join(format!("register-{node}.lua"));
        std::fs::write(&path, script.lua())?;
        paths.push(path);
    }
    let token = cluster.nodes[0].token.clone();
    let env = [("BENCH_TOKEN", token.as_str())];
    let runs: Vec<WrkRun<'_>> = (0..writers)
        .map(|node| WrkRun {
            load: args.load_share(writers, node),
            url: &cluster.nodes[node].base_url,
            header: None,
            script: Some(&paths[node]),
            env: &env,
        })
        .collect();
    let before = node_counts(http, &cluster).await?;
    eprintln!(
        "cluster: registration, writers on {writers} node(s), {} s ...",
        args.seconds
    );
    let results = tokio::task::block_in_place(|| http::wrk_side_by_side(&runs))?;
    drop(runs);
    cluster.check_alive()?;
    let after = node_counts(http, &cluster).await?;
    Ok(Registration {
        writers,
        wrk: Wrk::sum(&results),
        counts: WriterCounts::growth(&before, &after),
    })
}

async fn node_counts(http: &reqwest::Client, cluster: &Cluster) -> Result<Vec<WriterCounts>> {
    let mut counts = Vec::with_capacity(NODES);
    for node in &cluster.nodes {
        counts.push(WriterCounts::read(http, node).await?);
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------
// 2, 3. Memory and discovery read, on a loaded cluster
// ---------------------------------------------------------------------------------------

struct Loaded {
    idle_rss_kib: Vec<u64>,
    loaded_rss_kib: Vec<u64>,
    /// From the first registration to the last node listing the last one.
    load_took: Duration,
    /// Per round, the bare axum run and the reads on 1, 2 and 3 nodes; none with
    /// `--skip-reads`.
    rounds: Vec<ReadRound>,
    read_bytes: usize,
}

struct ReadRound {
    bare: Wrk,
    /// Spread on 1, 2 and 3 nodes.
    reads: Vec<Wrk>,
}

impl Loaded {
    /// The median over the rounds of `figure` of each spread.
    fn median_of_spreads(&self, figure: impl Fn(&ReadRound, &Wrk) -> f64) -> Vec<f64> {
        (0..NODES)
            .map(|spread| {
                let values: Vec<f64> = self
                    .rounds
                    .iter()
                    .map(|round| figure(round, &round.reads[spread]))
                    .collect();
                crate::compare::median(&values)
            })
            .collect()
    }
}

async fn loaded(args: &ClusterArgs, binary: &Path, http: &reqwest::Client) -> Result<Loaded> {
    let mut cluster = Cluster::start(
        binary,
        &args.database_url,
        &format!("{} instances", thousands(args.instances as f64)),
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let idle_rss_kib = cluster.rss_kib()?;
    let started = Instant::now();
    eprintln!(
        "cluster: registering {} instances on node A ...",
        args.instances
    );
    let client = cluster.client(0, http);
    http::register_bulk(&client, args.instances).await?;
    let last = RegisterInstanceRequest {
        url: LAST_URL.to_string(),
        slug: LAST_SLUG.to_string(),
        ..http::bulk_request(0)
    };
    client.register_instance(&last).await?;
    // Revisions apply in order: a node listing the last registration holds all before it.
    let filter = InstanceFilter {
        slug: Some(LAST_SLUG.to_string()),
        ..Default::default()
    };
    for (index, name) in NODE_NAMES.iter().enumerate() {
        let node = cluster.client(index, http);
        while node.list_instances(&filter).await?.is_empty() {
            if started.elapsed() > APPLY_LIMIT + Duration::from_millis(20) * args.instances as u32 {
                bail!("node {name} had not applied the instances in time");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let load_took = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    cluster.check_alive()?;
    let loaded_rss_kib = cluster.rss_kib()?;
    if args.skip_reads {
        return Ok(Loaded {
            idle_rss_kib,
            loaded_rss_kib,
            load_took,
            rounds: Vec::new(),
            read_bytes: 0,
        });
    }

    let path = format!("/registry-svc/instances?slug={READ_SLUG}");
    let token = cluster.nodes[0].token.clone();
    let mut answer = None;
    for (node, name) in cluster.nodes.iter().zip(NODE_NAMES) {
        let body = crate::compare::fetch(http, &format!("{}{path}", node.base_url), &token).await?;
        if crate::compare::split_objects(&body).len() != 10 {
            bail!(
                "{READ_SLUG} does not hold 10 instances on node {name}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        answer = Some(body);
    }
    let answer = answer.context("no nodes")?;
    let bare_url = http::bare_axum(answer.to_vec()).await?;
    let full = args.load_share(1, 0);
    eprintln!(
        "cluster: wrk, {} s each: bare axum, then discovery reads on 1, 2 and 3 nodes, \
         {} rounds ...",
        args.seconds, args.rounds
    );
    let auth = format!("Authorization: Bearer {token}");
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("{}{path}", node.base_url))
        .collect();
    let mut rounds = Vec::with_capacity(args.rounds as usize);
    for _ in 0..args.rounds {
        let bare = tokio::task::block_in_place(|| http::wrk(full, &bare_url, None, None, &[]))?;
        let mut reads = Vec::with_capacity(NODES);
        for spread in 1..=NODES {
            let runs: Vec<WrkRun<'_>> = (0..spread)
                .map(|node| WrkRun {
                    load: args.load_share(spread, node),
                    url: &urls[node],
                    header: Some(&auth),
                    script: None,
                    env: &[],
                })
                .collect();
            let results = tokio::task::block_in_place(|| http::wrk_side_by_side(&runs))?;
            reads.push(Wrk::sum(&results));
            cluster.check_alive()?;
        }
        rounds.push(ReadRound { bare, reads });
    }
    Ok(Loaded {
        idle_rss_kib,
        loaded_rss_kib,
        load_took,
        rounds,
        read_bytes: answer.len(),
    })
}

// ---------------------------------------------------------------------------------------
// 4. Propagation between nodes, with registrations flowing
// ---------------------------------------------------------------------------------------

/// What the paced flow did.
struct Flowed {
    registered: u64,
    /// Ticks that found [`FLOW_IN_FLIGHT`] registrations still waiting.
    missed: u64,
    took: Duration,
}

impl Flowed {
    fn rate(&self) -> f64 {
        self.registered as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Registrations paced at `rate` a second on one node, in the background, each of a new
/// bulk instance ([`http::bulk_request`]), until stopped.
struct Flow {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<Flowed>>,
}

impl Flow {
    fn start(client: RegistryClient, rate: u64) -> Flow {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut in_flight = JoinSet::new();
            let (mut n, mut registered, mut missed) = (0, 0, 0);
            let started = Instant::now();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if in_flight.len() >= FLOW_IN_FLIGHT {
                            missed += 1;
                            continue;
                        }
                        let (client, request) = (client.clone(), http::bulk_request(n));
                        n += 1;
                        in_flight.spawn(async move {
                            client.register_instance(&request).await.map(|_| ())
                        });
                    }
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                        done?.context("a paced registration failed")?;
                        registered += 1;
                    }
                }
            }
            while let Some(done) = in_flight.join_next().await {
                done?.context("a paced registration failed")?;
                registered += 1;
            }
            Ok(Flowed {
                registered,
                missed,
                took: started.elapsed(),
            })
        });
        Flow { stop, task }
    }

    async fn stop(self) -> Result<Flowed> {
        let _ = self.stop.send(());
        self.task.await.context("the paced flow panicked")?
    }
}

struct Propagation {
    mode: Mode,
    figures: WatchFigures,
    flowed: Flowed,
}

async fn propagate(
    args: &ClusterArgs,
    binary: &Path,
    http: &reqwest::Client,
    mode: Mode,
    watchers: u64,
) -> Result<Propagation> {
    let followers = match mode {
        Mode::Blocking => "blocking watcher(s)",
        Mode::Sse => "event-stream subscriber(s)",
    };
    let mut cluster = Cluster::start(
        binary,
        &args.database_url,
        &format!("propagation A -> B, {watchers} {followers}"),
    )
    .await?;
    let flow = Flow::start(cluster.client(0, http), args.rate);
    let (writer, others) = cluster.nodes.split_at_mut(1);
    let measured = watch::measure_on(
        &mut writer[0],
        Some(&others[0]),
        mode,
        watchers,
        args.changes,
    )
    .await;
    // Stopped either way, so that its error, if any, is not lost behind the other.
    let flowed = flow.stop().await;
    let figures = measured?;
    let flowed = flowed?;
    cluster.check_alive()?;
    Ok(Propagation {
        mode,
        figures,
        flowed,
    })
}

// ---------------------------------------------------------------------------------------
// The machine, and the report
// ---------------------------------------------------------------------------------------

/// How loaded the machine was over the run.
struct Machine {
    load_before: String,
    busy_before: (u64, u64),
    load_after: String,
    busy: f64,
}

impl Machine {
    fn start() -> Result<Machine> {
        Ok(Machine {
            load_before: procfs::load_average()?,
            busy_before: procfs::machine_ticks()?,
            load_after: String::new(),
            busy: 0.0,
        })
    }

    fn end(self) -> Result<Machine> {
        let (busy, total) = procfs::machine_ticks()?;
        let (busy0, total0) = self.busy_before;
        Ok(Machine {
            load_after: procfs::load_average()?,
            busy: (busy - busy0) as f64 / (total - total0).max(1) as f64,
            ..self
        })
    }
}

// ---------------------------------------------------------------------------------------
// 5. Health traffic between nodes
// ---------------------------------------------------------------------------------------

/// Slug of the checked instances.
const CHECKED_SLUG: &str = "bench-checked";
/// Their check interval.
const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Instances followed for the heartbeat delay, and how often they are polled.
const LAG_SAMPLE: usize = 20;
const LAG_POLL: Duration = Duration::from_millis(250);

/// What a steady cluster's health checks cost between its nodes, over the window.
struct HealthTraffic {
    window: Duration,
    checks: f64,
    notes_written: f64,
    notes_writes: f64,
    notes_applied: f64,
    /// Instance events an event-stream subscriber on node B received.
    events: u64,
    /// How long after a new `lastHeartbeat` showed on one node each other node showed it
    /// (to within [`LAG_POLL`]).
    lags: Vec<Duration>,
}

/// The health counters of every node, summed: checks, notes written, transactions that
/// wrote them, notes applied from others.
async fn health_counts(http: &reqwest::Client, cluster: &Cluster) -> Result<[f64; 4]> {
    let mut sums = [0.0; 4];
    for node in &cluster.nodes {
        let text = scrape(http, node).await?;
        let names = [
            "registry_health_checks_total",
            "registry_health_notes_written_total",
            "registry_health_notes_writes_total",
            "registry_health_notes_applied_total",
        ];
        for (sum, name) in sums.iter_mut().zip(names) {
            *sum += metric_sum(&text, name)
                .with_context(|| format!("{}/metrics has no {name}", node.base_url))?;
        }
    }
    Ok(sums)
}

/// Shown on `node` only.
fn seen_on(node: usize) -> [bool; NODES] {
    let mut shown = [false; NODES];
    shown[node] = true;
    shown
}

async fn health_traffic(
    args: &ClusterArgs,
    binary: &Path,
    http: &reqwest::Client,
) -> Result<HealthTraffic> {
    // The checks' target: accepts and drops every connection.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = target.local_addr()?.port();
    let accepting = tokio::spawn(async move {
        loop {
            if let Ok((connection, _)) = target.accept().await {
                drop(connection);
            }
        }
    });
    let mut cluster = Cluster::start(
        binary,
        &args.database_url,
        &format!("{} checked instances", thousands(args.checked as f64)),
    )
    .await?;
    eprintln!(
        "cluster: registering {} checked instances on node A ...",
        args.checked
    );
    let interval = format!("{}s", CHECK_INTERVAL.as_secs());
    http::register_many(&cluster.client(0, http), args.checked, None, move |n| {
        RegisterInstanceRequest {
            url: format!("http://127.0.0.1:{port}/checked-{n}"),
            slug: CHECKED_SLUG.to_string(),
            health_check: Some(HealthCheck {
                check_type: Some(HealthCheckType::Tcp),
                interval: Some(interval.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    })
    .await?;
    let healthy = InstanceFilter {
        slug: Some(CHECKED_SLUG.to_string()),
        status: Some(InstanceStatus::Healthy),
        ..Default::default()
    };
    let started = Instant::now();
    let mut ids = Vec::new();
    for (index, name) in NODE_NAMES.iter().enumerate() {
        let node = cluster.client(index, http);
        loop {
            let listed = node.list_instances(&healthy).await?;
            if listed.len() as u64 >= args.checked {
                ids = listed.into_iter().map(|i| i.id).collect();
                break;
            }
            if started.elapsed() > APPLY_LIMIT {
                bail!("node {name} did not list every checked instance Healthy in time");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // One interval more, so every instance has been checked by its one node since.
    tokio::time::sleep(CHECK_INTERVAL).await;
    cluster.check_alive()?;

    let node_b = &cluster.nodes[1];
    let address = node_b.base_url.trim_start_matches("http://").to_string();
    let mut events = sse::EventStream::open(&address, &node_b.token, None).await?;
    let window = Duration::from_secs(args.health_seconds);
    eprintln!("cluster: health traffic for {} s ...", window.as_secs());
    let before = health_counts(http, &cluster).await?;
    let clients: Vec<RegistryClient> = (0..NODES).map(|i| cluster.client(i, http)).collect();
    let mut lags = Vec::new();
    let mut received = 0;
    let mut sample = tokio::time::interval(LAG_POLL);
    let end = tokio::time::Instant::now() + window;
    let followed: Vec<String> = ids
        .iter()
        .step_by((ids.len() / LAG_SAMPLE).max(1))
        .take(LAG_SAMPLE)
        .cloned()
        .collect();
    // Per instance followed: its newest heartbeat seen, when it was first seen, and on
    // which nodes since.
    let mut newest: Vec<Option<(_, Instant, [bool; NODES])>> = vec![None; followed.len()];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            read = events.read() => {
                read?;
                while let Some(event) = events.next_event() {
                    let block = &events.decoded[event];
                    received += u64::from(block.starts_with(b"event:") || follower::find(block, b"\ndata:").is_some() || block.starts_with(b"data:"));
                }
                events.compact();
            }
            _ = sample.tick() => {
                for (id, newest) in followed.iter().zip(&mut newest) {
                    let filter = InstanceFilter {
                        id: Some(id.clone()),
                        ..Default::default()
                    };
                    for (node, client) in clients.iter().enumerate() {
                        let seen = client.list_instances(&filter).await?;
                        let Some(beat) = seen.first().and_then(|i| i.last_heartbeat) else {
                            continue;
                        };
                        match newest {
                            Some((latest, since, shown)) if beat >= *latest => {
                                if beat > *latest {
                                    *newest = Some((beat, Instant::now(), seen_on(node)));
                                } else if !shown[node] {
                                    shown[node] = true;
                                    lags.push(since.elapsed());
                                }
                            }
                            Some(_) => {}
                            None => *newest = Some((beat, Instant::now(), [true; NODES])),
                        }
                    }
                }
            }
        }
    }
    let after = health_counts(http, &cluster).await?;
    cluster.check_alive()?;
    accepting.abort();
    let grown: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    lags.sort();
    Ok(HealthTraffic {
        window,
        checks: grown[0],
        notes_written: grown[1],
        notes_writes: grown[2],
        notes_applied: grown[3],
        events: received,
        lags,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// `a / b / c`, one value per node or spread.
fn per_node<T>(values: &[T], show: impl Fn(&T) -> String) -> String {
    values.iter().map(show).collect::<Vec<_>>().join(" / ")
}

fn report(
    args: &ClusterArgs,
    postgres: &str,
    machine: &Machine,
    writes: &[Registration],
    loaded: Option<&Loaded>,
    propagation: &[Propagation],
    health: Option<&HealthTraffic>,
) -> String {
    let n = thousands(args.instances as f64);
    let skipped = |flag: &str| format!("skipped ({flag})");
    let mut rows = Vec::new();
    if writes.is_empty() {
        rows.push(vec![
            "registrations/s, writers on 1 / 2 / 3 nodes".to_string(),
            skipped("--skip-writes"),
            String::new(),
        ]);
    } else {
        let failures: Vec<String> = writes
            .iter()
            .filter(|w| w.wrk.failed > 0 || w.wrk.socket_errors > 0)
            .map(|w| format!("{} nodes: {}", w.writers, w.wrk.figure()))
            .collect();
        rows.push(vec![
            format!(
                "registrations/s, writers on 1 / 2 / 3 nodes ({} connections in all)",
                args.connections
            ),
            per_node(writes, |w| thousands(w.wrk.per_second)),
            format!(
                "registrations per commit {}{}",
                per_node(writes, Registration::per_commit),
                if failures.is_empty() {
                    "; none failed".to_string()
                } else {
                    format!("; failures: {}", failures.join(", "))
                }
            ),
        ]);
        rows.push(vec![
            "re-plans per 1,000 commits, writers on 1 / 2 / 3 nodes".to_string(),
            per_node(writes, Registration::replans_per_thousand),
            format!(
                "commits {}, of which failed {}; writes sent to PostgreSQL per registration \
                 answered {}",
                per_node(writes, |w| thousands(w.counts.commits)),
                per_node(writes, |w| thousands(w.counts.failed)),
                per_node(writes, Registration::sent_per_registration)
            ),
        ]);
    }
    match loaded {
        Some(l) if !l.rounds.is_empty() => {
            let reads = l.median_of_spreads(|_, read| read.per_second);
            let ratios = l.median_of_spreads(|round, read| read.per_second / round.bare.per_second);
            let bares: Vec<f64> = l.rounds.iter().map(|r| r.bare.per_second).collect();
            let failures: Vec<String> = l
                .rounds
                .iter()
                .flat_map(|round| &round.reads)
                .filter(|r| r.failed > 0 || r.socket_errors > 0)
                .map(Wrk::figure)
                .collect();
            rows.push(vec![
                format!("discovery reads/s, 10 of {n} instances, on 1 / 2 / 3 nodes"),
                per_node(&reads, |r| thousands(*r)),
                format!(
                    "medians of {} rounds; of bare axum (one server, the same {} B) at \
                     {} req/s: {}{}",
                    l.rounds.len(),
                    l.read_bytes,
                    thousands(crate::compare::median(&bares)),
                    per_node(&ratios, |r| format!("{:.0}%", 100.0 * r)),
                    if failures.is_empty() {
                        String::new()
                    } else {
                        format!("; failures: {}", failures.join(", "))
                    }
                ),
            ]);
        }
        _ => rows.push(vec![
            "discovery reads/s on 1 / 2 / 3 nodes".to_string(),
            skipped("--skip-reads"),
            String::new(),
        ]),
    }
    if propagation.is_empty() {
        rows.push(vec![
            "201 on node A → watcher / subscriber on node B".to_string(),
            skipped("--skip-propagation"),
            String::new(),
        ]);
    }
    for p in propagation {
        let w = &p.figures;
        let who = match (p.mode, w.watchers) {
            (Mode::Blocking, 1) => "1 blocking watcher".to_string(),
            (Mode::Blocking, k) => format!("{} blocking watchers", thousands(k as f64)),
            (Mode::Sse, 1) => "1 event-stream subscriber".to_string(),
            (Mode::Sse, k) => format!("{} event-stream subscribers", thousands(k as f64)),
        };
        rows.push(vec![
            format!(
                "201 on node A → {who} on node B, {} registrations/s flowing",
                args.rate
            ),
            format!("p50 {}, p99 {}", watch::ms(w.p50), watch::ms(w.p99)),
            format!(
                "max {}; {} changes; flow {:.1}/s{}; {} reconnects",
                watch::ms(w.max),
                w.changes,
                p.flowed.rate(),
                if p.flowed.missed > 0 {
                    format!(" ({} ticks missed)", p.flowed.missed)
                } else {
                    String::new()
                },
                w.reconnects
            ),
        ]);
    }
    match loaded {
        Some(l) => {
            let grown = l.loaded_rss_kib[0].saturating_sub(l.idle_rss_kib[0]) as f64 * 1024.0;
            rows.push(vec![
                format!("RSS per node (A / B / C), {n} instances in the cluster"),
                format!("{} MiB", per_node(&l.loaded_rss_kib, |k| mib(*k))),
                format!(
                    "idle {} MiB; node A {:.0} B/instance; registered on A and applied \
                     everywhere in {:.1} s",
                    per_node(&l.idle_rss_kib, |k| mib(*k)),
                    grown / args.instances as f64,
                    l.load_took.as_secs_f64()
                ),
            ]);
        }
        None => rows.push(vec![
            "RSS per node".to_string(),
            skipped("--skip-memory --skip-reads"),
            String::new(),
        ]),
    }
    match health {
        Some(h) => {
            let seconds = h.window.as_secs_f64();
            let lag = |q: f64| {
                let at = ((h.lags.len() as f64 - 1.0) * q).round() as usize;
                h.lags.get(at).map_or("n/a".to_string(), |d| watch::ms(*d))
            };
            rows.push(vec![
                format!(
                    "steady health checks, {} instances every {} s, shared by 3 nodes: \
                     health notes written / s",
                    thousands(args.checked as f64),
                    CHECK_INTERVAL.as_secs()
                ),
                format!(
                    "{} notes/s in {:.1} transactions/s",
                    thousands(h.notes_written / seconds),
                    h.notes_writes / seconds
                ),
                format!(
                    "{} checks/s ({:.2} notes per check); {} notes/s applied by the other \
                     nodes; {} instance events on node B's event stream in {} s",
                    thousands(h.checks / seconds),
                    h.notes_written / h.checks.max(1.0),
                    thousands(h.notes_applied / seconds),
                    h.events,
                    h.window.as_secs()
                ),
            ]);
            rows.push(vec![
                "a new lastHeartbeat on the checking node → on another node".to_string(),
                format!("p50 {}, p99 {}", lag(0.5), lag(0.99)),
                format!(
                    "{} heartbeats seen arriving ({} instances followed on all 3 nodes, \
                     polled every {} ms)",
                    h.lags.len(),
                    LAG_SAMPLE,
                    LAG_POLL.as_millis()
                ),
            ]);
        }
        None => rows.push(vec![
            "steady health checks".to_string(),
            skipped("--skip-health"),
            String::new(),
        ]),
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let notes = [
        (
            "cluster",
            format!(
                "3 registry-svc daemons on one PostgreSQL {postgres}, a fresh database per \
                 workload; all on 127.0.0.1"
            ),
        ),
        (
            "load",
            format!(
                "wrk -t{} -c{} (keep-alive) in all, split between the nodes driven, {} s a run",
                args.threads, args.connections, args.seconds
            ),
        ),
        (
            "machine",
            format!(
                "{cpus} CPUs, shared by the daemons, PostgreSQL, wrk and the bench; load \
                 average {} before, {} after; {:.0}% busy over the run",
                machine.load_before,
                machine.load_after,
                100.0 * machine.busy
            ),
        ),
    ];
    table::Grid {
        title: "registry-bench cluster",
        header: &["workload", "figure", "detail"],
        rows: &rows,
        notes: &notes,
        command: &args.command(),
    }
    .markdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_takes_another_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@127.0.0.1/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@127.0.0.1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://127.0.0.1", "x").unwrap(),
            "postgres://127.0.0.1/x"
        );
        assert!(with_database("127.0.0.1/db", "x").is_err());
    }

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(
            redacted("postgres://u:secret@127.0.0.1/db"),
            "postgres://u:***@127.0.0.1/db"
        );
        assert_eq!(
            redacted("postgres://u@127.0.0.1/db"),
            "postgres://u@127.0.0.1/db"
        );
    }

    #[test]
    fn metrics_are_summed_over_their_labels_and_absent_ones_are_none() {
        let text = "# HELP registry_writer_replans_total x\n\
                    # TYPE registry_writer_replans_total counter\n\
                    registry_writer_replans_total{reason=\"a\"} 3\n\
                    registry_writer_replans_total{reason=\"b\"} 4\n\
                    registry_writer_replans_totally 100\n\
                    registry_writer_batch_size_count 10\n\
                    registry_writer_batch_size_sum 250.5\n";
        assert_eq!(metric_sum(text, "registry_writer_replans_total"), Some(7.0));
        assert_eq!(
            metric_sum(text, "registry_writer_batch_size_count"),
            Some(10.0)
        );
        assert_eq!(
            metric_sum(text, "registry_writer_batch_size_sum"),
            Some(250.5)
        );
        assert_eq!(metric_sum(text, "registry_writer_queue_depth"), None);
        let requests = "registry_http_requests_total{route=\"/registry-svc/instance\",method=\"PUT\",status=\"201\"} 5\n\
                        registry_http_requests_total{route=\"/registry-svc/instance\",method=\"PUT\",status=\"503\"} 2\n\
                        registry_http_requests_total{route=\"/registry-svc/instance/{id}\",method=\"PUT\",status=\"200\"} 9\n\
                        registry_http_requests_total{route=\"/registry-svc/instance\",method=\"GET\",status=\"200\"} 7\n";
        assert_eq!(
            metric_sum_where(requests, "registry_http_requests_total", REGISTRATION),
            Some(7.0)
        );
        assert_eq!(
            metric_sum_where(text, "registry_writer_batch_size_count", REGISTRATION),
            None
        );
    }

    #[test]
    fn connections_and_threads_are_split_between_the_nodes() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ClusterArgs,
        }
        let cli = Cli::parse_from(["x", "--connections", "64", "--threads", "2"]);
        let shares: Vec<(u32, u32)> = (0..3)
            .map(|part| {
                let load = cli.args.load_share(3, part);
                (load.threads, load.connections)
            })
            .collect();
        assert_eq!(shares, [(1, 22), (1, 21), (1, 21)]);
        let one = cli.args.load_share(1, 0);
        assert_eq!((one.threads, one.connections), (2, 64));
    }
}
