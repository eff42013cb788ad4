//! Load generation for `registry-bench compare`: wrk runs, the bare axum server that
//! gives the limit of a fixed body, and bulk registration.
//!
//! Needs `wrk` on PATH (Debian: `apt-get install wrk`). Everything stays on 127.0.0.1.

use anyhow::{bail, Context, Result};
use registry_client::types::{HealthCheck, HealthCheckType, RegisterInstanceRequest};
use registry_client::RegistryClient;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Requests in flight at once while loading data.
pub(crate) const LOAD_CONCURRENCY: u64 = 64;

/// How every wrk run drives its target: keep-alive connections, threads and length.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u64,
}

/// What one wrk run reported.
pub(crate) struct Wrk {
    pub per_second: f64,
    /// Answers other than 2xx or 3xx.
    pub failed: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

impl Wrk {
    /// Several runs as one: the mean rate, every failure.
    pub(crate) fn mean(runs: &[Wrk]) -> Wrk {
        Wrk {
            per_second: runs.iter().map(|r| r.per_second).sum::<f64>() / runs.len() as f64,
            failed: runs.iter().map(|r| r.failed).sum(),
            socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
        }
    }

    /// Runs side by side as one: the summed rate, every failure.
    pub(crate) fn sum(runs: &[Wrk]) -> Wrk {
        Wrk {
            per_second: runs.iter().map(|r| r.per_second).sum(),
            failed: runs.iter().map(|r| r.failed).sum(),
            socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
        }
    }

    /// `12,345 req/s`, with the failures when there were any.
    pub(crate) fn figure(&self) -> String {
        let mut text = format!("{} req/s", thousands(self.per_second));
        if self.failed > 0 || self.socket_errors > 0 {
            text += &format!(
                " ({} failed, {} socket errors)",
                self.failed, self.socket_errors
            );
        }
        text
    }
}

/// Fails unless wrk can be run.
pub(crate) fn require_wrk() -> Result<()> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => bail!("wrk is not on PATH (Debian: apt-get install wrk)"),
    }
}

/// Runs wrk against `url` (blocking; call it from `block_in_place`). `script` is a Lua
/// script for wrk's `-s`; `env` is passed to wrk, for the script to read.
pub(crate) fn wrk(
    load: Load,
    url: &str,
    header: Option<&str>,
    script: Option<&Path>,
    env: &[(&str, &str)],
) -> Result<Wrk> {
    let mut command = Command::new("wrk");
    command
        .args(["-t", &load.threads.to_string()])
        .args(["-c", &load.connections.to_string()])
        .args(["-d", &format!("{}s", load.seconds)])
        .args(["--timeout", "5s"])
        .envs(env.iter().copied());
    if let Some(header) = header {
        command.args(["-H", header]);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .context("running wrk (Debian: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line_after = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label).map(str::trim))
    };
    let per_second = line_after("Requests/sec:")
        .and_then(|rest| rest.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "unexpected wrk output: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let failed = line_after("Non-2xx or 3xx responses:")
        .and_then(|rest| rest.parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 12"
    let socket_errors = line_after("Socket errors:")
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Wrk {
        per_second,
        failed,
        socket_errors,
    })
}

/// One wrk run of [`wrk_side_by_side`]: its load and target, as [`wrk`] takes them.
pub(crate) struct WrkRun<'a> {
    pub load: Load,
    pub url: &'a str,
    pub header: Option<&'a str>,
    pub script: Option<&'a Path>,
    pub env: &'a [(&'a str, &'a str)],
}

/// Starts every run at once, each its own wrk, and returns their figures in order
/// (blocking; call it from `block_in_place`).
pub(crate) fn wrk_side_by_side(runs: &[WrkRun<'_>]) -> Result<Vec<Wrk>> {
    std::thread::scope(|scope| {
        let started: Vec<_> = runs
            .iter()
            .map(|run| scope.spawn(|| wrk(run.load, run.url, run.header, run.script, run.env)))
            .collect();
        started
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a wrk thread panicked"))?
            })
            .collect()
    })
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The URL of the `n`-th bulk instance: unique for every `n` below 1,000,000, and
/// always on 127.0.0.0/8 (127.1.0.1 … 127.16.249.250).
pub(crate) fn bulk_url(n: u64) -> String {
    format!(
        "http://127.{}.{}.{}:8080",
        1 + n / 62_500,
        n / 250 % 250,
        n % 250 + 1
    )
}

/// The slug of the `n`-th bulk instance: 10 instances per slug `bench-N`.
pub(crate) fn bulk_slug(n: u64) -> String {
    format!("bench-{}", n / 10)
}

/// The `n`-th bulk instance: at [`bulk_url`], of [`bulk_slug`], not health-checked.
pub(crate) fn bulk_request(n: u64) -> RegisterInstanceRequest {
    RegisterInstanceRequest {
        url: bulk_url(n),
        slug: bulk_slug(n),
        health_check: Some(HealthCheck {
            check_type: Some(HealthCheckType::None),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Registers `count` instances ([`bulk_request`]), [`LOAD_CONCURRENCY`] at a time,
/// printing progress.
pub(crate) async fn register_bulk(client: &RegistryClient, count: u64) -> Result<()> {
    register_many(client, count, None, bulk_request).await
}

/// Registers `request(0)` to `request(count - 1)`, [`LOAD_CONCURRENCY`] at a time,
/// printing progress; fails once `limit` (if any) has passed.
pub(crate) async fn register_many(
    client: &RegistryClient,
    count: u64,
    limit: Option<Duration>,
    request: impl Fn(u64) -> RegisterInstanceRequest + Send + Sync + 'static,
) -> Result<()> {
    let request = Arc::new(request);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..LOAD_CONCURRENCY.min(count) {
        let (client, next, done, request) =
            (client.clone(), next.clone(), done.clone(), request.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let request = request(n);
                client
                    .register_instance(&request)
                    .await
                    .with_context(|| format!("registering {}", request.url))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(result) => result.context("a registration task failed")??,
            },
            _ = progress.tick() => {
                eprintln!("  registered {}/{count}", done.load(Ordering::Relaxed));
                if let Some(limit) = limit.filter(|limit| started.elapsed() > *limit) {
                    bail!("registering took longer than {}s", limit.as_secs());
                }
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "  registered {count} in {took:.1}s ({:.0}/s)",
        count as f64 / took
    );
    Ok(())
}

/// A server answering every request with `body`, on 127.0.0.1; returns its URL. It runs
/// until the runtime ends.
pub(crate) async fn bare_axum(body: Vec<u8>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let body = axum::body::Bytes::from(body);
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// The wrk script of the registration load, as `registry-bench register-script` prints it.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct RegisterScript {
    /// Second octet of the first wrk thread's addresses (thread `t` uses `127.<first+t>.x.y`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub(crate) first: u8,
    /// Slugs the instances are spread over (`wrk-0` … `wrk-<slugs-1>`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) slugs: u32,
    /// Registrations per wrk thread before it registers its last one again (an update).
    #[arg(long, default_value_t = 1_000_000_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub(crate) cap: u64,
}

impl RegisterScript {
    /// The script: a new instance per request, `PUT /registry-svc/instance`, with the
    /// admin token from `BENCH_TOKEN`. Every URL is new until the cap (thread number and
    /// request count in it), so each request registers rather than updates; all are on
    /// 127.x addresses.
    pub(crate) fn lua(self) -> String {
        let RegisterScript { first, slugs, cap } = self;
        format!(
            r#"
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
local n = 0
function init(args)
  wrk.method = "PUT"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = math.min(n + 1, {cap})
  local body = string.format('{{"url":"http://127.%d.%d.%d:%d","slug":"wrk-%d","healthCheck":{{"type":"none"}}}}',
    {first} + id, math.floor(n / 60000) % 250, 1 + math.floor(n / 250) % 250, 1 + n % 60000, n % {slugs})
  return wrk.format(nil, "/registry-svc/instance", nil, body)
end
"#
        )
    }
}

/// The registration load of `compare`: the defaults.
pub(crate) const REGISTER: RegisterScript = RegisterScript {
    first: 100,
    slugs: 1000,
    cap: 1_000_000_000,
};
