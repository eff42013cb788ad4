//! `registry-bench watch`: how fast a registration reaches blocking watchers, or, with
//! `--sse`, subscribers of the Server-Sent Events stream.
//!
//! What is measured: for each timed change, from the moment the registering client has
//! read its `201 Created` to the moment each watcher has received, in full, the first
//! answer of its blocking query (`GET /instances?slug=…&index=N&wait=60s`) that contains
//! the new instance. A watcher told before the registering client reads its 201 counts
//! as 0. Every watcher is woken by the change it is timed on and sees it in its answer.
//!
//! The workload is the one a service's clients see: `--watchers` connections each hold a
//! blocking query on one slug of 10 instances, re-issuing it as soon as it answers. Each
//! change registers an 11th instance (timed) and, once every watcher has seen it,
//! deregisters the oldest (not timed; it wakes every watcher too, and the next change
//! waits until all have seen it go), so the answers stay at 10-11 instances however many
//! changes are timed. The watchers connect gradually and all have had a
//! first answer before anything is timed (all at once, the daemon's accept queue
//! overflows and the retried SYNs land, a second later, in the timed changes).
//!
//! With `--sse` (and `compare`'s "SSE subscriber" row), the same daemon, slug and
//! changes, but each of the `--watchers` connections is a subscriber holding one event
//! stream, `GET /registry-svc/events?kind=instance` (no `since`: from the revision it
//! connects at), and never sends another request. What is measured: from the moment the
//! registering client has read its `201 Created` to the moment each subscriber has read
//! the whole `change` event (`op` `put`) of the new instance: a read of the socket
//! returned the event's end, its blank line (one small chunk of the chunked body). Told before the 201 is read: 0. The deregistration after each change is not
//! timed, and the next change waits until every subscriber has read its `delete` event.
//! The subscribers connect as gradually as the watchers; each counts as connected once
//! its stream has answered 200 (the daemon subscribes it to the live changes before
//! answering), and then, not timed, the 10th standing instance is registered as a
//! warm-up and every subscriber must have read its event before anything is timed. The
//! event stream is not parsed: the bytes are de-chunked, cut at blank lines and searched
//! (`sse.rs`). The stream sends nothing on connecting and, when idle, a `:` comment every
//! 15 s; neither is waited for.
//!
//! The watchers are kept cheap, so that the bench, which shares the machine with the
//! daemon, measures the daemon rather than itself: they run on a single-threaded runtime
//! of their own, each is one keep-alive HTTP/1.1 connection written and read by hand,
//! and an answer is not parsed, only searched for the tag of the instance the driver is
//! waiting for (every instance of the slug carries its own). The table shows the CPU
//! time each side spent per change, and the TCP retransmissions meanwhile (each one is a
//! loopback packet dropped and sent again 200 ms or more later). With `--sse` the bench's
//! share is not small: reading every subscriber's socket costs it (mostly in the kernel's
//! loopback receive path) of the order of what writing them costs the daemon, and both
//! share the machine's cores, so the last subscribers' figures include the bench's own
//! turn.

use crate::daemon::Daemon;
use crate::follower::{find, tag, Expect, Follower, Seen, NO_CHANGE};
use crate::table;
use anyhow::{bail, Context, Result};
use clap::Args;
use registry_client::types::{HealthCheck, HealthCheckType, RegisterInstanceRequest};
use registry_client::RegistryClient;
use registry_types::constants::INDEX_HEADER;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const SLUG: &str = "bench-watch";
/// Instances the watched slug holds between changes.
const STANDING: usize = 10;
/// Time for the watchers to park their queries again after a wave of answers.
const SETTLE: Duration = Duration::from_millis(20);
/// Longest a change may take to reach every watcher before the run fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// How the watchers follow the slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Blocking queries, `GET /registry-svc/instances?slug=…&index=N&wait=60s`.
    Blocking,
    /// Server-Sent Events streams, `GET /registry-svc/events?kind=instance`.
    Sse,
}

#[derive(Args, Clone)]
pub(crate) struct WatchArgs {
    /// Concurrent blocking watchers of one slug (with `--sse`: event-stream subscribers).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub watchers: u64,
    /// Follow the changes on the Server-Sent Events stream
    /// (`GET /registry-svc/events?kind=instance`, one stream per subscriber) instead of
    /// blocking queries.
    #[arg(long)]
    pub sse: bool,
    /// Registrations to time, one after another.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub changes: u64,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    pub daemon: Option<PathBuf>,
    /// An empty PostgreSQL database: run two daemons on it, register on the first and
    /// watch on the second, to time propagation between nodes.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// What a watch run measured.
pub(crate) struct WatchFigures {
    pub watchers: u64,
    pub changes: u64,
    /// 201 → each watcher, over all watchers and changes.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// 201 → the last watcher of each change.
    pub last_p50: Duration,
    pub last_p99: Duration,
    /// Size of a watcher's answer (with `Mode::Sse`: of the event, without its blank
    /// line) that held a timed change.
    pub answer_bytes: usize,
    /// Connections the watchers had to open again after one failed or closed.
    pub reconnects: u64,
    /// CPU time per timed change (its registration and its wave of answers, then the
    /// deregistration after it and its wave) of the daemon and of this bench.
    pub daemon_cpu_per_change: Duration,
    pub bench_cpu_per_change: Duration,
    /// TCP retransmissions on the machine while the changes were timed.
    pub retransmits: u64,
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) async fn run(args: WatchArgs) -> Result<()> {
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let mode = if args.sse { Mode::Sse } else { Mode::Blocking };
    let figures = measure(
        &binary,
        mode,
        args.watchers,
        args.changes,
        args.database_url.as_deref(),
    )
    .await?;
    let nodes = match args.database_url {
        Some(_) => "2 on PostgreSQL: register on one, watch the other",
        None => "1 (SQLite)",
    };
    let (who, slug) = match mode {
        Mode::Blocking => (
            "watcher",
            format!(
                "{STANDING}-{} instances, {} B answers",
                STANDING + 1,
                figures.answer_bytes
            ),
        ),
        Mode::Sse => (
            "SSE subscriber",
            format!(
                "{STANDING}-{} instances; events/instance stream, {} B events",
                STANDING + 1,
                figures.answer_bytes
            ),
        ),
    };
    let label = |what: &str| format!("201 → {who}, {what}");
    let last = |what: &str| format!("201 → last {who} of a change, {what}");
    let rows: Vec<(String, String)> = vec![
        ("nodes".into(), nodes.to_string()),
        (format!("{who}s"), figures.watchers.to_string()),
        ("changes timed".into(), figures.changes.to_string()),
        ("watched slug".into(), slug),
        (label("p50"), ms(figures.p50)),
        (label("p99"), ms(figures.p99)),
        (label("max"), ms(figures.max)),
        (last("p50"), ms(figures.last_p50)),
        (last("p99"), ms(figures.last_p99)),
        (format!("{who} reconnects"), figures.reconnects.to_string()),
        (
            "TCP retransmits meanwhile".into(),
            figures.retransmits.to_string(),
        ),
        (
            "CPU per change, daemon / bench".into(),
            format!(
                "{} / {}",
                ms(figures.daemon_cpu_per_change),
                ms(figures.bench_cpu_per_change)
            ),
        ),
    ];
    let rows: Vec<(&str, String)> = rows.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let shared = match args.database_url {
        Some(_) => " --database-url postgres://USER@HOST/AN_EMPTY_DATABASE",
        None => "",
    };
    let (title, flag) = match mode {
        Mode::Blocking => ("registry-bench watch", ""),
        Mode::Sse => ("registry-bench watch --sse", " --sse"),
    };
    let command = format!(
        "cargo build --release -p registry-bench -p registry-svc && target/release/registry-bench watch{flag} --watchers {} --changes {}{shared}",
        args.watchers, args.changes
    );
    print!("{}", table::render(title, &rows, &command));
    Ok(())
}

fn instance(url: String, tags: Vec<String>) -> RegisterInstanceRequest {
    RegisterInstanceRequest {
        url,
        slug: SLUG.to_string(),
        tags,
        health_check: Some(HealthCheck {
            check_type: Some(HealthCheckType::None),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Starts a daemon (two on `database_url`, watched on the second), runs the watch
/// workload on it and returns the figures; the daemons are gone when it returns.
pub(crate) async fn measure(
    binary: &Path,
    mode: Mode,
    watchers: u64,
    changes: u64,
    database_url: Option<&str>,
) -> Result<WatchFigures> {
    let mut daemon = Daemon::start_on(binary, database_url)?;
    eprintln!(
        "watch: daemon (pid {}) at {}, {watchers} {}, {changes} changes",
        daemon.pid(),
        daemon.base_url,
        match mode {
            Mode::Blocking => "blocking watchers",
            Mode::Sse => "SSE subscribers",
        }
    );
    let watched = match database_url {
        Some(_) => Some(Daemon::start_on(binary, database_url)?),
        None => None,
    };
    measure_on(&mut daemon, watched.as_ref(), mode, watchers, changes).await
}

/// Runs the watch workload on running daemons: registers on `daemon`, follows on
/// `watched` (another node of the same store) or, without it, on `daemon` itself. The
/// slug it uses ([`SLUG`]) must be empty; it is left holding the standing instances.
pub(crate) async fn measure_on(
    daemon: &mut Daemon,
    watched: Option<&Daemon>,
    mode: Mode,
    watchers: u64,
    changes: u64,
) -> Result<WatchFigures> {
    let limit = crate::procfs::open_files_limit()?;
    if limit < watchers + 256 {
        bail!(
            "the open files limit is {limit}, below the {} needed; raise it (ulimit -n)",
            watchers + 256
        );
    }
    let watched_url = watched.map_or(&daemon.base_url, |d| &d.base_url);
    let address = watched_url
        .strip_prefix("http://")
        .context("a daemon URL without http://")?
        .to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = RegistryClient::new(daemon.base_url.clone(), Some(daemon.token.clone()))
        .with_http_client(http);

    // Every instance of the slug is numbered and tagged with its number: the standing
    // ones 0..STANDING, then one per timed change. The watched slug holds the newest
    // STANDING of them between changes. (number, id), oldest first. With SSE, the last
    // standing one is registered once the subscribers are connected, as their warm-up.
    let mut standing = VecDeque::new();
    let before_watchers = match mode {
        Mode::Blocking => STANDING as u64,
        Mode::Sse => STANDING as u64 - 1,
    };
    for n in 0..before_watchers {
        let url = format!("http://127.0.0.1:1/watch/{n}");
        standing.push_back((
            n,
            client
                .register_instance(&instance(url, vec![tag(n)]))
                .await?,
        ));
    }

    // What the watchers look for: the instance numbered `appear` in an answer, the one
    // numbered `gone` missing from one; NO_CHANGE for nothing.
    let expect = Arc::new(Expect {
        appear: AtomicU64::new(NO_CHANGE),
        gone: AtomicU64::new(NO_CHANGE),
        gone_id: std::sync::Mutex::new((NO_CHANGE, String::new())),
    });
    // Watchers report (what, when its answer was in, answer size) once per expectation.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(Seen, Instant, usize)>();
    let connects = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    // Connecting all at once would overflow the daemon's accept queue; the SYNs retried
    // a second or more later would then land in the timed changes.
    let delay = |i: u64| Duration::from_micros(500 * i);
    let follower = |i: u64| Follower {
        delay: delay(i),
        address: address.clone(),
        token: daemon.token.clone(),
        expect: expect.clone(),
        seen: seen_tx.clone(),
        connects: connects.clone(),
        ready: ready.clone(),
    };
    let pool = match mode {
        Mode::Blocking => WatcherPool::start(watchers, |i| watcher(follower(i)))?,
        Mode::Sse => WatcherPool::start(watchers, |i| crate::sse::subscriber(follower(i)))?,
    };
    drop(seen_tx);
    // Every watcher connected and answered once (and shortly after parked again); every
    // subscriber connected and had its stream's 200.
    let started = Instant::now();
    while ready.load(Ordering::SeqCst) < watchers {
        if started.elapsed() > DEADLINE {
            bail!(
                "only {} of {watchers} watchers got an answer within {}s",
                ready.load(Ordering::SeqCst),
                DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut latencies = Vec::with_capacity((watchers * changes) as usize);
    let mut last_of_each = Vec::with_capacity(changes as usize);
    let mut answer_bytes = 0;
    let watched_pid = watched.map_or(daemon.pid(), Daemon::pid);
    let cpu = || -> Result<(u64, u64)> {
        Ok((
            crate::procfs::cpu_ticks(watched_pid)?,
            crate::procfs::cpu_ticks(std::process::id())?,
        ))
    };
    // Waits until every watcher has reported `want`; returns when each one's answer was in.
    let mut collect = async |want: Seen| -> Result<Vec<(Instant, usize)>> {
        let mut got = Vec::with_capacity(watchers as usize);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while (got.len() as u64) < watchers {
            let (seen, at, bytes) = tokio::time::timeout_at(deadline, seen_rx.recv())
                .await
                .with_context(|| {
                    format!(
                        "{want:?} reached only {} of {watchers} watchers in {}s",
                        got.len(),
                        DEADLINE.as_secs()
                    )
                })?
                .context("the watchers stopped")?;
            if seen == want {
                got.push((at, bytes));
            }
        }
        Ok(got)
    };
    if mode == Mode::Sse {
        // Warm-up, not timed: every subscriber has received an event on its stream.
        let n = STANDING as u64 - 1;
        expect.appear.store(n, Ordering::SeqCst);
        let url = format!("http://127.0.0.1:1/watch/{n}");
        standing.push_back((
            n,
            client
                .register_instance(&instance(url, vec![tag(n)]))
                .await?,
        ));
        collect(Seen::Appeared(n)).await?;
    }
    let cpu_before = cpu()?;
    let retransmits_before = crate::procfs::tcp_retransmits()?;
    for n in STANDING as u64..STANDING as u64 + changes {
        tokio::time::sleep(SETTLE).await;
        // Timed: a registration, from its 201 to every watcher's answer holding it.
        expect.appear.store(n, Ordering::SeqCst);
        let request = instance(format!("http://127.0.0.1:1/watch/{n}"), vec![tag(n)]);
        let id = client.register_instance(&request).await?;
        // The client has read and decoded the 201 here.
        let acknowledged = Instant::now();
        standing.push_back((n, id));
        let mut slowest = Duration::ZERO;
        for (at, bytes) in collect(Seen::Appeared(n)).await? {
            // A watcher may be told before the registering client reads its 201: 0.
            let latency = at.saturating_duration_since(acknowledged);
            latencies.push(latency);
            slowest = slowest.max(latency);
            answer_bytes = bytes;
        }
        last_of_each.push(slowest);
        // Not timed: the oldest instance goes, and every watcher is woken by that too;
        // the next change waits until all have seen it, so that the two never overlap.
        if let Some((old, id)) = standing.pop_front() {
            tokio::time::sleep(SETTLE).await;
            *expect.gone_id.lock().expect("not poisoned") = (old, id.clone());
            expect.gone.store(old, Ordering::SeqCst);
            client.delete_instance(&id).await?;
            collect(Seen::Gone(old)).await?;
        }
        daemon.check_alive()?;
    }
    let cpu_after = cpu()?;
    let retransmits = crate::procfs::tcp_retransmits()? - retransmits_before;
    drop(pool);
    let per_change = |ticks: u64| {
        Duration::from_secs_f64(
            ticks as f64 / crate::procfs::ticks_per_second() as f64 / changes as f64,
        )
    };

    latencies.sort();
    last_of_each.sort();
    let percentile =
        |sorted: &[Duration], p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    Ok(WatchFigures {
        watchers,
        changes,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: percentile(&latencies, 1.0),
        last_p50: percentile(&last_of_each, 0.50),
        last_p99: percentile(&last_of_each, 0.99),
        answer_bytes,
        retransmits,
        reconnects: connects.load(Ordering::Relaxed).saturating_sub(watchers),
        daemon_cpu_per_change: per_change(cpu_after.0 - cpu_before.0),
        bench_cpu_per_change: per_change(cpu_after.1 - cpu_before.1),
    })
}

/// The watchers, on a single-threaded runtime of their own thread: they cost the bench
/// less that way than spread over its shared runtime, and the driver's timing is not
/// delayed behind them. Dropping the pool stops them and joins the thread.
struct WatcherPool {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WatcherPool {
    fn start<F, Fut>(count: u64, mut make: F) -> Result<WatcherPool>
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tasks: Vec<Fut> = (0..count).map(&mut make).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the watchers' runtime")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchers".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut set = JoinSet::new();
                    for task in tasks {
                        set.spawn(task);
                    }
                    let _ = stopped.await;
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                });
            })
            .context("starting the watchers' thread")?;
        Ok(WatcherPool {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for WatcherPool {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One watcher: a blocking query after another on one keep-alive connection (a new one
/// after an error). Reports each expectation once, when the first answer meeting it is in.
async fn watcher(follower: Follower) {
    tokio::time::sleep(follower.delay).await;
    let mut index = 0;
    let (mut reported_appear, mut reported_gone) = (NO_CHANGE, NO_CHANGE);
    loop {
        follower.connects.fetch_add(1, Ordering::Relaxed);
        let Ok(mut conn) = Conn::connect(&follower.address).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut path = String::with_capacity(128);
        loop {
            path.clear();
            path.push_str("/registry-svc/instances?slug=");
            path.push_str(SLUG);
            path.push_str(&format!("&index={index}&wait=60s"));
            let Ok(answer_index) = conn.get(&path, &follower.token).await else {
                break;
            };
            let at = Instant::now();
            if index == 0 {
                follower.ready.fetch_add(1, Ordering::SeqCst);
            }
            index = index.max(answer_index);
            let appear = follower.expect.appear.load(Ordering::SeqCst);
            if appear != NO_CHANGE && appear != reported_appear && conn.body_contains(&tag(appear))
            {
                reported_appear = appear;
                if follower
                    .seen
                    .send((Seen::Appeared(appear), at, conn.body().len()))
                    .is_err()
                {
                    return;
                }
            }
            let gone = follower.expect.gone.load(Ordering::SeqCst);
            if gone != NO_CHANGE && gone != reported_gone && !conn.body_contains(&tag(gone)) {
                reported_gone = gone;
                if follower
                    .seen
                    .send((Seen::Gone(gone), at, conn.body().len()))
                    .is_err()
                {
                    return;
                }
            }
        }
        // The connection failed or the daemon refused: do not spin.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A hand-written HTTP/1.1 client connection: enough for `GET` with keep-alive, a
/// `Content-Length` or chunked answer, and the `X-Registry-Index` header.
struct Conn {
    stream: TcpStream,
    host: String,
    /// Bytes read; the first `consumed` belong to answers already returned.
    buf: Vec<u8>,
    consumed: usize,
    /// The last answer's body: `buf[range]` or, when it came in chunks, `chunks`.
    body: Body,
    chunks: Vec<u8>,
}

enum Body {
    In(std::ops::Range<usize>),
    Chunked,
}

impl Conn {
    async fn connect(address: &str) -> Result<Conn> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: address.to_string(),
            buf: Vec::with_capacity(64 * 1024),
            consumed: 0,
            body: Body::In(0..0),
            chunks: Vec::new(),
        })
    }

    /// The last answer's body.
    fn body(&self) -> &[u8] {
        match &self.body {
            Body::In(range) => &self.buf[range.clone()],
            Body::Chunked => &self.chunks,
        }
    }

    /// Reads more bytes into `buf`; an error at end of stream.
    async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("connection closed");
        }
        Ok(())
    }

    /// `GET path`; on a 200, returns the answer's index (its body is then `body()`).
    async fn get(&mut self, path: &str, token: &str) -> Result<u64> {
        // Usually the whole buffer: then this is a truncation, nothing moves.
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            self.host
        );
        self.stream.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let (length, chunked, index, ok) = {
            let head = std::str::from_utf8(&self.buf[..head_end]).context("a non-UTF-8 head")?;
            let mut lines = head.split("\r\n");
            let ok = lines
                .next()
                .unwrap_or_default()
                .starts_with("HTTP/1.1 200 ");
            let (mut length, mut chunked, mut index) = (None, false, 0);
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>()?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case(INDEX_HEADER) {
                    index = value.parse()?;
                }
            }
            (length, chunked, index, ok)
        };
        if chunked {
            self.chunks.clear();
            let mut at = head_end;
            loop {
                let line_end = loop {
                    if let Some(end) = find(&self.buf[at..], b"\r\n") {
                        break at + end;
                    }
                    self.fill().await?;
                };
                let size_text = std::str::from_utf8(&self.buf[at..line_end])?;
                let size_text = size_text.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .with_context(|| format!("bad chunk size {size_text:?}"))?;
                // The chunk, then its CRLF (after the last, empty one: the end CRLF).
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                self.chunks
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                at = line_end + 2 + size + 2;
                if size == 0 {
                    break;
                }
            }
            self.consumed = at;
            self.body = Body::Chunked;
        } else {
            let length = length.context("an answer without a length")?;
            while self.buf.len() < head_end + length {
                self.fill().await?;
            }
            self.consumed = head_end + length;
            self.body = Body::In(head_end..head_end + length);
        }
        if !ok {
            bail!(
                "answered {}",
                String::from_utf8_lossy(&self.buf[..head_end])
            );
        }
        Ok(index)
    }

    /// Whether the last body holds `"<text>"` (quoted, so `…-1` is not found in `…-10`).
    fn body_contains(&self, text: &str) -> bool {
        // `str::contains` searches far faster than comparing every window.
        std::str::from_utf8(self.body()).is_ok_and(|body| body.contains(&format!("\"{text}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{halves, serve};

    #[tokio::test]
    async fn reads_sized_and_chunked_answers_on_one_connection() {
        let address = serve(vec![
            halves("HTTP/1.1 200 OK\r\ncontent-length: 27\r\nx-registry-index: 7\r\n\r\n{\"tags\":[\"bench-change-1\"]}"),
            halves("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nX-Registry-Index: 9\r\n\r\n5\r\n{\"a\":\r\n14\r\n\"bench-change-10\"}  \r\n0\r\n\r\n"),
            halves("HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}"),
        ])
        .await;
        let mut conn = Conn::connect(&address).await.unwrap();
        assert_eq!(conn.get("/a", "t").await.unwrap(), 7);
        assert_eq!(conn.body(), b"{\"tags\":[\"bench-change-1\"]}".as_slice());
        assert!(conn.body_contains(&tag(1)));
        assert!(!conn.body_contains(&tag(10)));
        assert_eq!(conn.get("/b", "t").await.unwrap(), 9);
        assert_eq!(conn.body(), b"{\"a\":\"bench-change-10\"}  ".as_slice());
        assert!(conn.body_contains(&tag(10)));
        assert!(!conn.body_contains(&tag(1)));
        assert!(conn.get("/c", "t").await.is_err());
    }
}
