//! `registry-bench watch`: how fast a registration reaches blocking watchers.
//!
//! `--watchers` tasks each hold a blocking query (`GET /instances?slug=…&index=N&wait=60s`)
//! open, re-issuing it as soon as it answers. The driver registers one instance at a time
//! and, for each, measures from its 201 to the moment every watcher has the answer that
//! includes it: the propagation latency a watching client sees.

use crate::daemon::Daemon;
use crate::table;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const SLUG: &str = "bench-watch";
/// Time for the watchers to park their queries before each change; a benchmark may wait.
const SETTLE: Duration = Duration::from_millis(50);
/// Longest a change may take to reach every watcher before the run fails.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Args, Clone)]
pub struct WatchArgs {
    /// Concurrent blocking watchers of one slug.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    watchers: u64,
    /// Registrations to time, one after another.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    changes: u64,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
    /// An empty PostgreSQL database: run two daemons on it, register on the first and
    /// watch on the second, to time propagation between nodes.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

fn index_of(response: &reqwest::Response) -> Result<u64> {
    response
        .headers()
        .get("x-registry-index")
        .context("no X-Registry-Index header")?
        .to_str()?
        .parse()
        .context("X-Registry-Index is not a number")
}

pub async fn run(args: WatchArgs) -> Result<()> {
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let url = args.database_url.as_deref();
    let mut daemon = Daemon::start_on(&binary, url)?;
    eprintln!(
        "daemon {} (pid {}) at {}",
        binary.display(),
        daemon.pid(),
        daemon.base_url
    );
    // With a shared store the watchers ask a second node; without, the same one.
    let watched = match url {
        Some(_) => Some(Daemon::start_on(&binary, url)?),
        None => None,
    };
    let watched_url = watched.as_ref().map_or(&daemon.base_url, |d| &d.base_url);
    let list_url = format!("{watched_url}/registry-svc/instances?slug={SLUG}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.watchers as usize + 8)
        .timeout(Duration::from_secs(120))
        .build()?;
    let first = http
        .get(&list_url)
        .bearer_auth(&daemon.token)
        .send()
        .await?;
    let mut index = index_of(&first)?;

    // Watchers report (index seen, when) for every answer.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = JoinSet::new();
    for _ in 0..args.watchers {
        let (http, url, token, seen, stop) = (
            http.clone(),
            list_url.clone(),
            daemon.token.clone(),
            seen_tx.clone(),
            stop.clone(),
        );
        watchers.spawn(async move {
            let mut index = index;
            while !stop.load(Ordering::Relaxed) {
                let query = format!("{url}&index={index}&wait=60s");
                let Ok(response) = http.get(&query).bearer_auth(&token).send().await else {
                    continue;
                };
                let Ok(next) = index_of(&response) else {
                    continue;
                };
                if response.bytes().await.is_err() {
                    continue;
                }
                if next > index {
                    index = next;
                    let _ = seen.send((next, Instant::now()));
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let driver = reqwest::Client::builder().no_proxy().build()?;
    let register_url = format!("{}/registry-svc/instance", daemon.base_url);
    let mut latencies = Vec::with_capacity((args.watchers * args.changes) as usize);
    let mut last_of_each = Vec::with_capacity(args.changes as usize);
    for change in 0..args.changes {
        tokio::time::sleep(SETTLE).await;
        let body = format!(
            r#"{{"url":"http://127.0.0.1:1/watch/{change}","slug":"{SLUG}","healthCheck":{{"type":"none"}}}}"#
        );
        let response = driver
            .put(&register_url)
            .bearer_auth(&daemon.token)
            .body(body)
            .send()
            .await?;
        let acknowledged = Instant::now();
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("registration answered {}", response.status());
        }
        let mut woken = 0;
        let mut slowest = Duration::ZERO;
        let mut round_max = index;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while woken < args.watchers {
            let (seen, at) = tokio::time::timeout_at(deadline, seen_rx.recv())
                .await
                .context("a change did not reach every watcher in time")?
                .context("the watchers stopped")?;
            if seen <= index {
                continue; // a late report of an earlier change
            }
            // A watcher may be told before the registering client reads its 201.
            let latency = at.saturating_duration_since(acknowledged);
            latencies.push(latency);
            slowest = slowest.max(latency);
            round_max = round_max.max(seen);
            woken += 1;
        }
        last_of_each.push(slowest);
        index = round_max;
        daemon.check_alive()?;
    }
    stop.store(true, Ordering::Relaxed);
    watchers.abort_all();

    latencies.sort();
    last_of_each.sort();
    let percentile = |sorted: &[Duration], p: f64| {
        let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        format!("{:.2} ms", sorted[at].as_secs_f64() * 1000.0)
    };
    let nodes = match watched {
        Some(_) => "2 on PostgreSQL: register on one, watch the other",
        None => "1 (SQLite)",
    };
    let rows = vec![
        ("nodes", nodes.to_string()),
        ("watchers", args.watchers.to_string()),
        ("changes timed", args.changes.to_string()),
        ("201 → watcher, p50", percentile(&latencies, 0.50)),
        ("201 → watcher, p99", percentile(&latencies, 0.99)),
        ("201 → watcher, max", percentile(&latencies, 1.0)),
        (
            "201 → last watcher of a change, p50",
            percentile(&last_of_each, 0.50),
        ),
        (
            "201 → last watcher of a change, p99",
            percentile(&last_of_each, 0.99),
        ),
    ];
    let shared = match url {
        Some(_) => " --database-url postgres://USER@HOST/AN_EMPTY_DATABASE",
        None => "",
    };
    let command = format!(
        "cargo build --release && target/release/registry-bench watch --watchers {} --changes {}{shared}",
        args.watchers, args.changes
    );
    print!("{}", table::render("registry-bench watch", &rows, &command));
    Ok(())
}
