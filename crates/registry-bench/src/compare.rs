//! `registry-bench compare`: every headline figure of the daemon in one run, beside the
//! bare-axum limit and etcd on the same data, printed as one table.
//!
//! In order:
//!
//! 1. memory: a fresh daemon, `--instances` registered (no health checks, 10 per slug,
//!    127.x URLs), 2 s to settle, then its `VmRSS`;
//! 2. start-up: that daemon is killed (SIGKILL) and a new one started on the same data
//!    dir; the figure runs from the spawn to the sending of the first full instance list
//!    (asked for only once `/readyz` has answered 200) that holds every instance;
//! 3. bare axum: a tiny axum server in this process answering every request with the
//!    discovery answer's exact bytes: the limit of the HTTP stack on this machine;
//! 4. discovery read: `GET /registry-svc/instances?slug=bench-7` (10 of the instances);
//! 5. registration: a new, durable instance per request (`PUT /registry-svc/instance`);
//! 6. etcd, when on PATH (else skipped, and said so): one member on 127.0.0.1 loaded with
//!    the same instances (key `/registry/instances/<slug>/<id>`, value the instance's JSON
//!    as the registry answered it), its RSS, a prefix range read of `bench-7`'s 10 keys
//!    and a put of a new key per request, through the v3 JSON gateway;
//! 7. propagation (unless `--skip-watch`): `registry-bench watch`'s workload on a fresh
//!    daemon (see `watch.rs` for exactly what it measures);
//! 8. SSE propagation (unless `--skip-sse`): `registry-bench watch --sse`, the same
//!    changes followed by as many Server-Sent Events subscribers
//!    (`GET /registry-svc/events?kind=instance`) on another fresh daemon. Its own row:
//!    the issue's 10 ms target is for blocking watchers, and the row above keeps it.
//!
//! Between steps 2 and 3, with the instances loaded, it times [`SCRAPES`] scrapes of
//! `GET /metrics` one after another (a daemon without the endpoint is said to have none).
//!
//! Steps 3-6 run under wrk with `--threads` threads and `--connections` keep-alive
//! connections for `--seconds` each. Steps 3 and 4 take turns `--rounds` times, and the
//! read ratio is the median of the rounds' ratios: on a shared machine the speed drifts
//! between runs (bare axum's own figure moves from one run to the next), and runs side by
//! side see the same drift.

use crate::daemon::{Daemon, TempDir};
use crate::etcd::{self, Etcd};
use crate::http::{self, thousands, Load, Wrk};
use crate::watch::{self, WatchFigures};
use crate::{procfs, table};
use anyhow::{bail, Context, Result};
use clap::Args;
use registry_client::RegistryClient;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest the restarted daemon may take to serve every instance.
const STARTUP_LIMIT: Duration = Duration::from_secs(120);
/// Time given to a loaded process before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Scrapes of `/metrics` timed with the instances loaded.
const SCRAPES: usize = 20;
const SCRAPE_TARGET: Duration = Duration::from_millis(50);

/// The targets, printed beside the figures.
const READ_TARGET_PERCENT: f64 = 70.0;
const REGISTER_TARGET: f64 = 40_000.0;
const RSS_TARGET_BYTES: f64 = 64_000_000.0;
const STARTUP_TARGET: Duration = Duration::from_secs(2);
const PROPAGATION_TARGET: Duration = Duration::from_millis(10);
/// Not the issue's (that one is for blocking watchers): the same bar, for the feed.
const SSE_PROPAGATION_TARGET: Duration = Duration::from_millis(10);

#[derive(Args, Clone)]
pub(crate) struct CompareArgs {
    /// Instances loaded into the registry (and etcd): the data of the memory, start-up
    /// and discovery read figures (10 per slug).
    #[arg(long, alias = "memory-instances", default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    instances: u64,
    /// Length of each wrk run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Times the bare-axum and discovery-read runs take turns.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// wrk connections (keep-alive).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Blocking watchers of the propagation workload.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    watchers: u64,
    /// Registrations the propagation workload times.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    changes: u64,
    /// Leave out the propagation workload (blocking watchers).
    #[arg(long)]
    skip_watch: bool,
    /// Leave out the SSE propagation workload (event-stream subscribers).
    #[arg(long)]
    skip_sse: bool,
    /// Leave out etcd even when it is on PATH.
    #[arg(long)]
    skip_etcd: bool,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

impl CompareArgs {
    fn command(&self) -> String {
        let mut command = format!(
            "cargo build --release -p registry-bench -p registry-svc && \
             target/release/registry-bench compare --instances {} --seconds {} --rounds {} \
             --connections {} --threads {}",
            self.instances, self.seconds, self.rounds, self.connections, self.threads
        );
        if self.skip_watch {
            command += " --skip-watch";
        }
        if self.skip_sse {
            command += " --skip-sse";
        }
        if !(self.skip_watch && self.skip_sse) {
            command += &format!(" --watchers {} --changes {}", self.watchers, self.changes);
        }
        if self.skip_etcd {
            command += " --skip-etcd";
        }
        if let Some(path) = &self.daemon {
            command += &format!(" --daemon {}", path.display());
        }
        command
    }

    fn load(&self) -> Load {
        Load {
            threads: self.threads,
            connections: self.connections,
            seconds: self.seconds,
        }
    }
}

/// What the registry did.
struct Registry {
    empty_rss_kib: u64,
    loaded_rss_kib: u64,
    readyz: Duration,
    startup: Duration,
    startup_list: Duration,
    list_bytes: usize,
    /// Bare axum and the discovery read, over all rounds.
    bare: Wrk,
    read: Wrk,
    /// Discovery read as a percentage of bare axum, one per round.
    read_percents: Vec<f64>,
    read_bytes: usize,
    register: Wrk,
    end_rss_kib: u64,
    end_instances: usize,
    /// `/metrics` with the instances loaded; `None` when the daemon serves none.
    scrape: Option<Scrape>,
}

/// Times of [`SCRAPES`] scrapes of `/metrics`, sorted, and the size of the last answer.
struct Scrape {
    times: Vec<Duration>,
    bytes: usize,
}

/// Scrapes `/metrics` [`SCRAPES`] times, one after another, timing each whole answer.
async fn scrape(http: &reqwest::Client, base_url: &str) -> Result<Option<Scrape>> {
    let url = format!("{base_url}/metrics");
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let sent = Instant::now();
        let response = http.get(&url).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.error_for_status()?.bytes().await?;
        times.push(sent.elapsed());
        if !body.starts_with(b"#") || !body.windows(19).any(|w| w == b"registry_instances{") {
            bail!(
                "/metrics has no registry_instances: {}",
                String::from_utf8_lossy(&body)
            );
        }
        bytes = body.len();
    }
    times.sort();
    Ok(Some(Scrape { times, bytes }))
}

/// What etcd did.
struct EtcdFigures {
    version: String,
    load: Duration,
    rss_kib: u64,
    read: Wrk,
    read_bytes: usize,
    put: Wrk,
}

pub(crate) async fn run(args: CompareArgs) -> Result<()> {
    http::require_wrk()?;
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let etcd_binary = if args.skip_etcd {
        Err("skipped (--skip-etcd)".to_string())
    } else {
        etcd::on_path()
            .ok_or_else(|| "not on PATH, skipped (Debian: apt-get install etcd-server)".to_string())
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;

    let (registry, instances) = registry(&args, &binary, &http).await?;
    let etcd = match &etcd_binary {
        Ok(path) => Some(etcd(&args, path, &http, instances).await?),
        Err(why) => {
            eprintln!("etcd: {why}");
            None
        }
    };
    let watch = if args.skip_watch {
        None
    } else {
        Some(
            watch::measure(
                &binary,
                watch::Mode::Blocking,
                args.watchers,
                args.changes,
                None,
            )
            .await?,
        )
    };
    let sse = if args.skip_sse {
        None
    } else {
        Some(watch::measure(&binary, watch::Mode::Sse, args.watchers, args.changes, None).await?)
    };
    print!(
        "{}",
        report(
            &args,
            &registry,
            etcd_binary.as_ref().err(),
            etcd.as_ref(),
            watch.as_ref(),
            sse.as_ref()
        )
    );
    Ok(())
}

/// Steps 1-5 on one daemon; also returns the instances as `(etcd key, JSON)`.
async fn registry(
    args: &CompareArgs,
    binary: &std::path::Path,
    http: &reqwest::Client,
) -> Result<(Registry, Vec<(String, Vec<u8>)>)> {
    let load = args.load();
    let mut daemon = Daemon::start(binary)?;
    eprintln!(
        "registry: daemon (pid {}) at {}",
        daemon.pid(),
        daemon.base_url
    );
    tokio::time::sleep(SETTLE).await;
    let empty_rss_kib = procfs::rss_kib(daemon.pid())?;
    let client = RegistryClient::new(daemon.base_url.clone(), Some(daemon.token.clone()))
        .with_http_client(http.clone());
    eprintln!("registry: registering {} instances ...", args.instances);
    http::register_bulk(&client, args.instances).await?;
    tokio::time::sleep(SETTLE).await;
    daemon.check_alive()?;
    let loaded_rss_kib = procfs::rss_kib(daemon.pid())?;

    eprintln!("registry: killing the daemon and starting a new one on its data ...");
    let spawned_at = daemon.restart()?;
    let deadline = spawned_at + STARTUP_LIMIT;
    let readyz_url = format!("{}/readyz", daemon.base_url);
    let readyz = loop {
        match http.get(&readyz_url).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                break spawned_at.elapsed();
            }
            _ if Instant::now() > deadline => bail!("/readyz not 200 within {STARTUP_LIMIT:?}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let list_url = format!("{}/registry-svc/instances", daemon.base_url);
    let (startup, startup_list, body) = loop {
        let sent = Instant::now();
        let body = fetch(http, &list_url, &daemon.token).await?;
        if split_objects(&body).len() as u64 == args.instances {
            break (sent - spawned_at, sent.elapsed(), body);
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted daemon did not list all {} instances within {STARTUP_LIMIT:?}",
                args.instances
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let instances = split_objects(&body)
        .into_iter()
        .map(|object| Ok((etcd_key(object)?, object.to_vec())))
        .collect::<Result<Vec<_>>>()?;
    let list_bytes = body.len();
    drop(body);

    let read_url = format!("{}/registry-svc/instances?slug=bench-7", daemon.base_url);
    let answer = fetch(http, &read_url, &daemon.token).await?;
    if split_objects(&answer).len() != 10 {
        bail!(
            "bench-7 does not hold 10 instances: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    eprintln!("registry: {SCRAPES} scrapes of /metrics ...");
    let scraped = scrape(http, &daemon.base_url).await?;
    let bare_url = http::bare_axum(answer.to_vec()).await?;
    eprintln!(
        "registry: wrk, {} s each: bare axum and discovery read taking turns for {} rounds, registration ...",
        load.seconds, args.rounds
    );
    let auth = format!("Authorization: Bearer {}", daemon.token);
    let (mut bares, mut reads) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        bares.push(tokio::task::block_in_place(|| {
            http::wrk(load, &bare_url, None, None, &[])
        })?);
        reads.push(tokio::task::block_in_place(|| {
            http::wrk(load, &read_url, Some(&auth), None, &[])
        })?);
    }
    let read_percents = reads
        .iter()
        .zip(&bares)
        .map(|(read, bare)| 100.0 * read.per_second / bare.per_second)
        .collect();
    let (bare, read) = (Wrk::mean(&bares), Wrk::mean(&reads));
    let scripts = TempDir::new()?;
    let script = scripts.path().join("register.lua");
    std::fs::write(&script, http::REGISTER.lua())?;
    let register = tokio::task::block_in_place(|| {
        http::wrk(
            load,
            &daemon.base_url,
            None,
            Some(&script),
            &[("BENCH_TOKEN", &daemon.token)],
        )
    })?;
    daemon.check_alive()?;
    let end_rss_kib = procfs::rss_kib(daemon.pid())?;
    let end_body = fetch(http, &list_url, &daemon.token).await?;
    let end_instances = split_objects(&end_body).len();
    Ok((
        Registry {
            empty_rss_kib,
            loaded_rss_kib,
            readyz,
            startup,
            startup_list,
            list_bytes,
            bare,
            read,
            read_percents,
            read_bytes: answer.len(),
            register,
            end_rss_kib,
            end_instances,
            scrape: scraped,
        },
        instances,
    ))
}

/// Step 6.
async fn etcd(
    args: &CompareArgs,
    binary: &std::path::Path,
    http: &reqwest::Client,
    instances: Vec<(String, Vec<u8>)>,
) -> Result<EtcdFigures> {
    let load = args.load();
    let mut etcd = Etcd::start(binary, http).await?;
    eprintln!(
        "etcd: pid {} at {}, loading {} keys ...",
        etcd.pid(),
        etcd.url,
        instances.len()
    );
    let value = instances
        .first()
        .map(|(_, value)| value.clone())
        .context("no instances")?;
    let started = Instant::now();
    etcd.load(http, instances).await?;
    let load_took = started.elapsed();
    let count = etcd.count(http, etcd::PREFIX).await?;
    if count != args.instances {
        bail!(
            "etcd holds {count} keys under {}, not {}",
            etcd::PREFIX,
            args.instances
        );
    }
    tokio::time::sleep(SETTLE).await;
    etcd.check_alive()?;
    let rss_kib = procfs::rss_kib(etcd.pid())?;

    let (key, range_end) = etcd::prefix_range(&format!("{}bench-7/", etcd::PREFIX));
    let range_body = format!(r#"{{"key":"{key}","range_end":"{range_end}"}}"#);
    let answer = http
        .post(format!("{}/v3/kv/range", etcd.url))
        .body(range_body)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let kvs = answer.matches("\"key\":").count();
    if kvs != 10 {
        bail!("etcd's range of bench-7 holds {kvs} keys, not 10: {answer}");
    }
    let scripts = TempDir::new()?;
    let range_script = scripts.path().join("range.lua");
    std::fs::write(
        &range_script,
        etcd::RANGE_SCRIPT
            .replace("{{KEY}}", &key)
            .replace("{{END}}", &range_end),
    )?;
    let put_script = scripts.path().join("put.lua");
    std::fs::write(
        &put_script,
        etcd::PUT_SCRIPT.replace("{{VALUE}}", &etcd::base64(&value)),
    )?;
    eprintln!("etcd: wrk, {} s each: range read, put ...", load.seconds);
    let range_url = format!("{}/v3/kv/range", etcd.url);
    let read = tokio::task::block_in_place(|| {
        http::wrk(load, &range_url, None, Some(&range_script), &[])
    })?;
    let put =
        tokio::task::block_in_place(|| http::wrk(load, &etcd.url, None, Some(&put_script), &[]))?;
    etcd.check_alive()?;
    // The script's keys are base64-encoded in Lua: make sure they landed where meant.
    let put_keys = etcd.count(http, &format!("{}wrk-", etcd::PREFIX)).await?;
    if put_keys == 0 {
        bail!("etcd's put run left no keys under {}wrk-", etcd::PREFIX);
    }
    Ok(EtcdFigures {
        version: etcd.version(http).await,
        load: load_took,
        rss_kib,
        read,
        read_bytes: answer.len(),
        put,
    })
}

/// The items of the one array of objects in a list answer (`{"instances":[{…},{…}]}`),
/// each as the exact bytes the registry sent.
pub(crate) fn split_objects(body: &[u8]) -> Vec<&[u8]> {
    let mut items = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0usize, false, false, 0);
    for (i, &byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                // Depth 1 is the answer, 2 its array, 3 an item.
                if depth == 3 && byte == b'{' {
                    start = i;
                }
            }
            b'}' | b']' => {
                if depth == 3 && byte == b'}' {
                    items.push(&body[start..=i]);
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    items
}

/// The first `"name":"value"` string field of an instance's JSON. `id` and `slug` come
/// before any nested object in the registry's instances.
fn string_field<'a>(object: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(object).ok()?;
    let marker = format!("\"{name}\":\"");
    let from = text.find(&marker)? + marker.len();
    let len = text[from..].find('"')?;
    Some(&text[from..from + len])
}

/// `/registry/instances/<slug>/<id>` of an instance's JSON.
fn etcd_key(object: &[u8]) -> Result<String> {
    let field = |name| {
        string_field(object, name)
            .with_context(|| format!("no {name} in {}", String::from_utf8_lossy(object)))
    };
    Ok(format!(
        "{}{}/{}",
        etcd::PREFIX,
        field("slug")?,
        field("id")?
    ))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn times(ours: f64, theirs: f64) -> String {
    format!("{:.2}x etcd", ours / theirs)
}

fn report(
    args: &CompareArgs,
    registry: &Registry,
    etcd_skipped: Option<&String>,
    etcd: Option<&EtcdFigures>,
    watch: Option<&WatchFigures>,
    sse: Option<&WatchFigures>,
) -> String {
    let n = thousands(args.instances as f64);
    let none = || "-".to_string();
    let read_percent = median(&registry.read_percents);
    let rounds = registry
        .read_percents
        .iter()
        .map(|p| format!("{p:.0}"))
        .collect::<Vec<_>>()
        .join("/");
    let loaded_bytes = registry.loaded_rss_kib as f64 * 1024.0;
    let per_instance = (registry
        .loaded_rss_kib
        .saturating_sub(registry.empty_rss_kib)) as f64
        * 1024.0
        / args.instances as f64;
    let mut rows = vec![
        vec![
            format!("discovery read, 10 of {n} instances"),
            registry.read.figure(),
            etcd.map_or_else(none, |e| e.read.figure()),
            registry.bare.figure(),
            format!(
                "{read_percent:.0}% of bare axum (median; rounds {rounds}%){}",
                etcd.map_or(String::new(), |e| format!(
                    ", {}",
                    times(registry.read.per_second, e.read.per_second)
                ))
            ),
            format!(
                ">= {READ_TARGET_PERCENT:.0}% of bare axum: {}",
                verdict(read_percent >= READ_TARGET_PERCENT)
            ),
        ],
        vec![
            "registration, durable".to_string(),
            registry.register.figure(),
            etcd.map_or_else(none, |e| e.put.figure()),
            none(),
            etcd.map_or_else(none, |e| {
                times(registry.register.per_second, e.put.per_second)
            }),
            format!(
                ">= {} req/s: {}",
                thousands(REGISTER_TARGET),
                verdict(
                    registry.register.per_second >= REGISTER_TARGET
                        && registry.register.failed == 0
                )
            ),
        ],
        vec![
            format!("RSS with {n} instances"),
            format!(
                "{} ({per_instance:.0} B/instance)",
                mib(registry.loaded_rss_kib)
            ),
            etcd.map_or_else(none, |e| mib(e.rss_kib)),
            none(),
            etcd.map_or_else(none, |e| {
                times(registry.loaded_rss_kib as f64, e.rss_kib as f64)
            }),
            format!(
                "<= 64 MB (61.0 MiB): {}",
                verdict(loaded_bytes <= RSS_TARGET_BYTES)
            ),
        ],
        vec![
            format!("start-up with {n} instances"),
            format!("{:.2} s", registry.startup.as_secs_f64()),
            none(),
            none(),
            none(),
            format!("<= 2 s: {}", verdict(registry.startup <= STARTUP_TARGET)),
        ],
    ];
    if let Some(scrape) = &registry.scrape {
        let p50 = scrape.times[scrape.times.len() / 2];
        rows.push(vec![
            format!("scrape of /metrics with {n} instances, p50"),
            watch::ms(p50),
            none(),
            none(),
            none(),
            format!("< 50 ms: {}", verdict(p50 < SCRAPE_TARGET)),
        ]);
    }
    let propagation = [
        ("watcher", "watchers", watch, PROPAGATION_TARGET),
        ("SSE subscriber", "subscribers", sse, SSE_PROPAGATION_TARGET),
    ];
    for (who, plural, figures, target) in propagation {
        if let Some(w) = figures {
            rows.push(vec![
                format!(
                    "propagation 201 -> {who} p99, {} {plural}",
                    thousands(w.watchers as f64)
                ),
                watch::ms(w.p99),
                none(),
                none(),
                none(),
                format!("<= 10 ms: {}", verdict(w.p99 <= target)),
            ]);
        }
    }
    let mut notes = vec![
        (
            "load",
            format!(
                "wrk -t{} -c{} (keep-alive), {} s a run, bare axum and discovery read \
                 taking turns for {} rounds (their figures: the mean); {} CPUs; all on \
                 127.0.0.1",
                args.threads,
                args.connections,
                args.seconds,
                args.rounds,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
        ),
        (
            "discovery answer",
            format!(
                "registry {} B (bare axum sends the same bytes){}",
                registry.read_bytes,
                etcd.map_or(String::new(), |e| format!(
                    ", etcd {} B (base64 values)",
                    e.read_bytes
                ))
            ),
        ),
        (
            "registry RSS",
            format!(
                "{} empty, {} with {n} (B/instance: the difference over {n}), {} after \
                 the runs with {} instances",
                mib(registry.empty_rss_kib),
                mib(registry.loaded_rss_kib),
                mib(registry.end_rss_kib),
                thousands(registry.end_instances as f64)
            ),
        ),
        (
            "start-up",
            format!(
                "SIGKILL, then a new daemon on the same data: /readyz 200 after {:.2} s; \
                 the full list ({:.1} MB) asked for then held all {n}, and took {:.2} s",
                registry.readyz.as_secs_f64(),
                registry.list_bytes as f64 / 1e6,
                registry.startup_list.as_secs_f64()
            ),
        ),
    ];
    notes.push((
        "scrape",
        match &registry.scrape {
            Some(scrape) => format!(
                "{SCRAPES} GET /metrics one after another, each to its last byte ({} B): \
                 min {}, p50 {}, max {}",
                scrape.bytes,
                watch::ms(scrape.times[0]),
                watch::ms(scrape.times[scrape.times.len() / 2]),
                watch::ms(scrape.times[scrape.times.len() - 1])
            ),
            None => "the daemon serves no /metrics".to_string(),
        },
    ));
    match (etcd, etcd_skipped) {
        (Some(e), _) => notes.push((
            "etcd",
            format!(
                "{} ({n} keys /registry/instances/<slug>/<id> loaded in {:.1} s, 64 puts in \
                 flight); read: POST /v3/kv/range of bench-7/, registration: POST /v3/kv/put \
                 of a new key, both through the v3 JSON gateway (etcd's only HTTP/1.1 API; \
                 its gRPC clients skip that translation)",
                e.version,
                e.load.as_secs_f64()
            ),
        )),
        (None, Some(why)) => notes.push(("etcd", why.clone())),
        (None, None) => {}
    }
    match watch {
        Some(w) => notes.push((
            "propagation",
            format!(
                "{} changes, watched slug of 10-11 instances ({} B answers): {}",
                w.changes,
                w.answer_bytes,
                propagation_figures(w, "watcher", "answers")
            ),
        )),
        None => notes.push(("propagation", "skipped (--skip-watch)".to_string())),
    }
    match sse {
        Some(w) => notes.push((
            "SSE propagation",
            format!(
                "the same changes, each subscriber one GET /registry-svc/events?kind=instance \
                 stream ({} B events, searched, not parsed): {}",
                w.answer_bytes,
                propagation_figures(w, "subscriber", "events")
            ),
        )),
        None => notes.push(("SSE propagation", "skipped (--skip-sse)".to_string())),
    }
    table::Grid {
        title: "registry-bench compare",
        header: &[
            "workload",
            "registry-svc",
            "etcd",
            "bare axum",
            "ratio",
            "target",
        ],
        rows: &rows,
        notes: &notes,
        command: &args.command(),
    }
    .aligned()
}

/// The body of a successful `GET url` as `token`.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<axum::body::Bytes> {
    Ok(http
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?)
}

/// The details of a propagation run, for its note under the table.
fn propagation_figures(w: &WatchFigures, who: &str, waves: &str) -> String {
    format!(
        "p50 {}, max {}; last {who} of a change: p50 {}, p99 {}; CPU per change (2 waves of \
         {waves}): daemon {}, bench {}; {} TCP retransmits, {} reconnects",
        watch::ms(w.p50),
        watch::ms(w.max),
        watch::ms(w.last_p50),
        watch::ms(w.last_p99),
        watch::ms(w.daemon_cpu_per_change),
        watch::ms(w.bench_cpu_per_change),
        w.retransmits,
        w.reconnects
    )
}

/// The middle value (the mean of the two middle ones for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_items_of_a_list_answer() {
        let body = br#"{"instances":[{"id":"a","slug":"s","tags":["x}"],"metadata":{"k":"{"}},{"id":"b\"","slug":"t"}]}"#;
        let items = split_objects(body);
        assert_eq!(items.len(), 2);
        assert_eq!(etcd_key(items[0]).unwrap(), "/registry/instances/s/a");
        assert!(items[1].starts_with(br#"{"id":"b\"""#));
    }

    #[test]
    fn the_median_is_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[72.0, 65.0, 90.0]), 72.0);
        assert_eq!(median(&[70.0, 60.0, 80.0, 75.0]), 72.5);
        assert_eq!(median(&[64.0]), 64.0);
    }
}
