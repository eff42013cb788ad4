//! `registry-bench http`: the daemon's two hot paths under wrk, beside the limit of a bare
//! axum server answering a fixed body of the same size in the same run.
//!
//! 1. bare axum: a fixed body as large as the discovery answer, from a tiny server here;
//! 2. discovery read: `GET /registry-svc/instances?slug=…` for one slug of 10 instances,
//!    with `--instances` registered (health checks off, to time the read path alone);
//! 3. registration: a new durable instance per request (`PUT /registry-svc/instance`).
//!
//! Needs `wrk` on PATH (Debian: `apt-get install wrk`). Everything stays on 127.0.0.1.

use crate::daemon::Daemon;
use crate::table;
use anyhow::{bail, Context, Result};
use clap::Args;
use registry_client::types::{HealthCheck, HealthCheckType, RegisterInstanceRequest};
use registry_client::RegistryClient;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;

#[derive(Args, Clone)]
pub struct HttpArgs {
    /// Instances registered before the read workload (10 per slug).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    instances: u64,
    /// Length of each wrk run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// wrk connections (keep-alive).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

/// What one wrk run reported.
struct Wrk {
    per_second: f64,
    failed: u64,
}

fn wrk(args: &HttpArgs, url: &str, extra: &[&str], token: Option<&str>) -> Result<Wrk> {
    let mut command = Command::new("wrk");
    if let Some(token) = token {
        command.env("BENCH_TOKEN", token);
    }
    let output = command
        .args([
            "-t",
            &args.threads.to_string(),
            "-c",
            &args.connections.to_string(),
        ])
        .args(["-d", &format!("{}s", args.seconds)])
        .args(extra)
        .arg(url)
        .output()
        .context("running wrk (Debian: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
    };
    let per_second =
        number("Requests/sec:").with_context(|| format!("unexpected wrk output: {text}"))?;
    let failed = number("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    Ok(Wrk { per_second, failed })
}

/// Registers `count` instances, 10 per slug `bench-N`, 64 at a time.
async fn register_many(client: &RegistryClient, count: u64) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..64 {
        let (client, next) = (client.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let request = RegisterInstanceRequest {
                    url: format!("http://127.0.{}.{}:8080", n / 250 % 250, n % 250 + 1),
                    slug: format!("bench-{}", n / 10),
                    health_check: Some(HealthCheck {
                        check_type: Some(HealthCheckType::None),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                client.register_instance(&request).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// A server answering every request with `body`, on 127.0.0.1; returns its URL.
async fn bare_axum(body: Vec<u8>) -> Result<String> {
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

const REGISTER_SCRIPT: &str = r#"
local n = 0
local id = 0
function setup(thread) thread:set("id", id); id = id + 1 end
function init(args) wrk.method = "PUT"; wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") end
function request()
  n = n + 1
  local body = string.format('{"url":"http://127.%d.%d.%d:%d","slug":"wrk-%d","healthCheck":{"type":"none"}}',
    100 + id, math.floor(n / 60000) % 250, 1 + math.floor(n / 250) % 250, 1 + n % 60000, n % 1000)
  return wrk.format(nil, "/registry-svc/instance", nil, body)
end
"#;

pub async fn run(args: HttpArgs) -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not on PATH (Debian: apt-get install wrk)");
    }
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let mut daemon = Daemon::start(&binary)?;
    let client = RegistryClient::new(daemon.base_url.clone(), Some(daemon.token.clone()));
    eprintln!("registering {} instances ...", args.instances);
    register_many(&client, args.instances).await?;

    let read_url = format!("{}/registry-svc/instances?slug=bench-7", daemon.base_url);
    let auth = format!("Authorization: Bearer {}", daemon.token);
    let answer = reqwest::Client::new()
        .get(&read_url)
        .bearer_auth(&daemon.token)
        .send()
        .await?
        .bytes()
        .await?;
    let bare = bare_axum(answer.to_vec()).await?;

    eprintln!(
        "wrk: bare axum, discovery read, registration ({} s each) ...",
        args.seconds
    );
    let limit = tokio::task::block_in_place(|| wrk(&args, &bare, &[], None))?;
    let read = tokio::task::block_in_place(|| wrk(&args, &read_url, &["-H", &auth], None))?;
    let script = std::env::temp_dir().join(format!(
        "registry-bench-register-{}.lua",
        std::process::id()
    ));
    std::fs::write(&script, REGISTER_SCRIPT)?;
    let script_arg = script.to_str().expect("a temp path is UTF-8");
    let register = tokio::task::block_in_place(|| {
        wrk(
            &args,
            &daemon.base_url,
            &["-s", script_arg],
            Some(&daemon.token),
        )
    });
    let _ = std::fs::remove_file(&script);
    let register = register?;
    daemon.check_alive()?;
    let total = client.list_instances(&Default::default()).await?.len();
    let rss = crate::procfs::rss_kib(daemon.pid())? as f64 / 1024.0;

    let rows = [
        (
            "bare axum, fixed body",
            format!("{:.0} req/s ({} B body)", limit.per_second, answer.len()),
        ),
        (
            "discovery read, 10 of 10,000 instances",
            format!(
                "{:.0} req/s = {:.0}% of bare axum ({} failed)",
                read.per_second,
                100.0 * read.per_second / limit.per_second,
                read.failed
            ),
        ),
        (
            "registration, durable",
            format!(
                "{:.0} req/s ({} failed)",
                register.per_second, register.failed
            ),
        ),
        (
            "daemon RSS at the end",
            format!("{rss:.1} MiB with {total} instances"),
        ),
    ];
    let command = format!(
        "cargo build --release && target/release/registry-bench http --instances {} --seconds {} --connections {} --threads {}",
        args.instances, args.seconds, args.connections, args.threads
    );
    print!("{}", table::render("registry-bench http", &rows, &command));
    Ok(())
}
