//! `registry-bench soak`: a long run of mixed traffic against one daemon, watching its
//! resources for leaks.
//!
//! For `--minutes` it keeps the daemon busy with everything that allocates per caller or
//! per object: registrations and removals, instances whose TCP targets (listeners on
//! 127.0.0.1) open and close so their health flips, blocking watchers and event-stream
//! subscribers that connect, wait a while and leave. Every `--sample-every` it reads the
//! daemon's resident memory, open descriptors and threads from `/proc`, prints a row, and
//! at the end compares the last third of the run with the middle third (the first is
//! warm-up) to say whether each figure stayed flat or grew.
//!
//! The daemon's tokio tasks are not counted (it publishes no such figure); its threads
//! and descriptors are what a leaked task would usually hold on to.

use crate::daemon::Daemon;
use crate::procfs;
use crate::sse::EventStream;
use crate::table;
use anyhow::{Context, Result};
use clap::Args;
use registry_client::types::{
    HealthCheck, HealthCheckType, InstanceFilter, InstanceStatus, RegisterInstanceRequest,
};
use registry_client::RegistryClient;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Listeners whose instances flip between Healthy and Unreachable.
const FLAPPING_TARGETS: u64 = 20;
/// Instances registered at the start and kept, spread over the flapping targets.
const STEADY_INSTANCES: u64 = 200;
/// Instances added and removed all along: the oldest goes once there are this many.
const CHURN_WINDOW: usize = 300;
/// One registration (and, past the window, one removal) this often.
const CHURN_EVERY: Duration = Duration::from_millis(100);
/// How long a flapping target accepts, then how long it is closed.
const FLAP_UP: Duration = Duration::from_secs(20);
const FLAP_DOWN: Duration = Duration::from_secs(20);
/// Health-check interval of every instance.
const CHECK_INTERVAL: &str = "2s";
const BLOCKING_WATCHERS: u64 = 20;
const EVENT_SUBSCRIBERS: u64 = 20;
/// Limit on any one plain API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Clone)]
pub(crate) struct SoakArgs {
    /// Length of the run, in minutes.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=1440))]
    minutes: u64,
    /// Seconds between two samples of the daemon's resources.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    sample_every: u64,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

/// What the traffic has done so far; read at each sample.
#[derive(Default)]
struct Counters {
    registrations: AtomicU64,
    removals: AtomicU64,
    watch_answers: AtomicU64,
    events: AtomicU64,
    /// Failed requests and streams of any kind (the run goes on).
    errors: AtomicU64,
}

/// One sample of the daemon and the traffic.
struct Sample {
    at: Duration,
    rss_kib: u64,
    descriptors: u64,
    threads: u64,
    healthy: u64,
    unreachable: u64,
    registrations: u64,
    removals: u64,
    watch_answers: u64,
    events: u64,
    errors: u64,
}

pub(crate) async fn run(args: SoakArgs) -> Result<()> {
    let mut daemon = Daemon::start_located(args.daemon.as_deref())?;
    let client = daemon.client(REQUEST_TIMEOUT)?;
    let counters = Arc::new(Counters::default());
    let mut traffic = JoinSet::new();

    let mut ports = Vec::new();
    for n in 0..FLAPPING_TARGETS {
        let (listener, port) = crate::loopback_listener().await?;
        ports.push(port);
        // Staggered, so that some target changes state every second or two.
        let offset = (FLAP_UP + FLAP_DOWN) * n as u32 / FLAPPING_TARGETS as u32;
        traffic.spawn(flap(listener, offset));
    }
    for n in 0..STEADY_INSTANCES {
        let port = ports[(n % FLAPPING_TARGETS) as usize];
        client
            .register_instance(&instance(port, "steady", n))
            .await
            .context("registering the steady instances")?;
    }
    traffic.spawn(churn(client.clone(), ports.clone(), counters.clone()));
    for n in 0..BLOCKING_WATCHERS {
        traffic.spawn(blocking_watcher(
            daemon.base_url.clone(),
            daemon.token.clone(),
            n,
            counters.clone(),
        ));
    }
    let address = daemon.base_url.trim_start_matches("http://").to_string();
    for n in 0..EVENT_SUBSCRIBERS {
        traffic.spawn(event_subscriber(
            address.clone(),
            daemon.token.clone(),
            n,
            counters.clone(),
        ));
    }

    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let every = Duration::from_secs(args.sample_every);
    let mut samples = Vec::new();
    eprintln!("soaking for {} minutes ...", args.minutes);
    loop {
        daemon.check_alive()?;
        let sample = take_sample(&daemon, &client, &counters, started.elapsed()).await?;
        eprint!("{}", row(&sample).join("  ") + "\n");
        samples.push(sample);
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(end.min(Instant::now() + every)).await;
    }
    traffic.shutdown().await;
    print!("{}", report(&samples, &args));
    Ok(())
}

/// An instance at `127.0.0.1:port`, checked over TCP; `kind` and `n` make its URL unique.
fn instance(port: u16, kind: &str, n: u64) -> RegisterInstanceRequest {
    RegisterInstanceRequest {
        url: format!("http://127.0.0.1:{port}/{kind}/{n}"),
        slug: format!("soak-{}", n % BLOCKING_WATCHERS),
        health_check: Some(HealthCheck {
            check_type: Some(HealthCheckType::Tcp),
            interval: Some(CHECK_INTERVAL.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pseudo-random length below `limit` for the `n`th session of something (a
/// splitmix64 step: the run needs variety, not secrecy, and stays reproducible).
fn spread(n: u64, limit: Duration) -> Duration {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Duration::from_millis(z % limit.as_millis().max(1) as u64)
}

/// Accepts and drops connections for [`FLAP_UP`], closes the port for [`FLAP_DOWN`] (the
/// daemon's checks are refused), and again, on the same port, after `offset`.
async fn flap(listener: TcpListener, offset: Duration) {
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(_) => return,
    };
    let mut listener = Some(listener);
    tokio::time::sleep(offset).await;
    loop {
        let up_until = Instant::now() + FLAP_UP;
        if let Some(listener) = listener.take() {
            while let Ok(Ok(_)) = tokio::time::timeout_at(up_until, listener.accept()).await {}
        }
        tokio::time::sleep(FLAP_DOWN).await;
        // The port was ours a moment ago; if something else took it, try again later.
        while listener.is_none() {
            match TcpListener::bind(address).await {
                Ok(bound) => listener = Some(bound),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

/// Registers an instance every [`CHURN_EVERY`] and, past [`CHURN_WINDOW`], removes the
/// oldest.
async fn churn(client: RegistryClient, ports: Vec<u16>, counters: Arc<Counters>) {
    let mut live = VecDeque::new();
    let mut tick = tokio::time::interval(CHURN_EVERY);
    for n in 0.. {
        tick.tick().await;
        let port = ports[(n % ports.len() as u64) as usize];
        match client.register_instance(&instance(port, "churn", n)).await {
            Ok(id) => {
                counters.registrations.fetch_add(1, Ordering::Relaxed);
                live.push_back(id);
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if live.len() > CHURN_WINDOW {
            let id = live.pop_front().expect("longer than the window");
            match client.delete_instance(&id).await {
                Ok(()) => counters.removals.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// Sessions of blocking queries on one slug: each on a new connection, a few polls with
/// waits of up to 10 s, then it leaves (the connection closes) and comes back.
async fn blocking_watcher(base_url: String, token: String, n: u64, counters: Arc<Counters>) {
    let filter = InstanceFilter {
        slug: Some(format!("soak-{n}")),
        ..Default::default()
    };
    for session in (n << 32).. {
        let Ok(http) = reqwest::Client::builder().no_proxy().build() else {
            return;
        };
        let client =
            RegistryClient::new(base_url.clone(), Some(token.clone())).with_http_client(http);
        let mut index = 0;
        let polls = 1 + spread(session, Duration::from_millis(5)).as_millis() as u64;
        for poll in 0..polls {
            let wait = Duration::from_secs(1) + spread(session ^ poll, Duration::from_secs(9));
            match client.list_instances_blocking(&filter, index, wait).await {
                Ok((_, next)) => {
                    counters.watch_answers.fetch_add(1, Ordering::Relaxed);
                    index = next;
                }
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        drop(client);
        tokio::time::sleep(spread(!session, Duration::from_secs(2))).await;
    }
}

/// Sessions on the event stream: each opens it, reads for up to 20 s, and leaves.
async fn event_subscriber(address: String, token: String, n: u64, counters: Arc<Counters>) {
    for session in (n << 32).. {
        let stay = Duration::from_secs(2) + spread(session, Duration::from_secs(18));
        match EventStream::open(&address, &token, None).await {
            Ok(mut stream) => {
                let _ = tokio::time::timeout(stay, async {
                    while stream.read().await.is_ok() {
                        while stream.next_event().is_some() {
                            counters.events.fetch_add(1, Ordering::Relaxed);
                        }
                        stream.compact();
                    }
                })
                .await;
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(spread(!session, Duration::from_secs(2))).await;
    }
}

async fn take_sample(
    daemon: &Daemon,
    client: &RegistryClient,
    counters: &Counters,
    at: Duration,
) -> Result<Sample> {
    let pid = daemon.pid();
    let rss_kib = procfs::rss_kib(pid)?;
    let descriptors = procfs::open_descriptors(pid)?;
    let threads = procfs::threads(pid)?;
    let all = client
        .list_instances(&InstanceFilter::default())
        .await
        .context("listing the instances")?;
    let count = |status| all.iter().filter(|i| i.status == status).count() as u64;
    Ok(Sample {
        at,
        rss_kib,
        descriptors,
        threads,
        healthy: count(InstanceStatus::Healthy),
        unreachable: count(InstanceStatus::Unreachable),
        registrations: counters.registrations.load(Ordering::Relaxed),
        removals: counters.removals.load(Ordering::Relaxed),
        watch_answers: counters.watch_answers.load(Ordering::Relaxed),
        events: counters.events.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
    })
}

const HEADER: [&str; 11] = [
    "min",
    "RSS MiB",
    "fds",
    "threads",
    "healthy",
    "unreachable",
    "registered",
    "removed",
    "watch answers",
    "events",
    "errors",
];

fn row(sample: &Sample) -> Vec<String> {
    vec![
        format!("{:.1}", sample.at.as_secs_f64() / 60.0),
        format!("{:.1}", sample.rss_kib as f64 / 1024.0),
        sample.descriptors.to_string(),
        sample.threads.to_string(),
        sample.healthy.to_string(),
        sample.unreachable.to_string(),
        sample.registrations.to_string(),
        sample.removals.to_string(),
        sample.watch_answers.to_string(),
        sample.events.to_string(),
        sample.errors.to_string(),
    ]
}

/// The table of samples, a verdict per resource, and the command.
fn report(samples: &[Sample], args: &SoakArgs) -> String {
    let rows: Vec<Vec<String>> = samples.iter().map(row).collect();
    let series =
        |pick: fn(&Sample) -> u64| -> Vec<f64> { samples.iter().map(|s| pick(s) as f64).collect() };
    let rss_mib: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    // Tolerances: RSS moves with allocator caches; descriptors and threads with the
    // connections and blocking-pool threads open at the moment of the sample.
    let verdicts = [
        ("RSS MiB", trend(&rss_mib, 0.10, 2.0)),
        (
            "open descriptors",
            trend(&series(|s| s.descriptors), 0.10, 16.0),
        ),
        ("threads", trend(&series(|s| s.threads), 0.10, 4.0)),
    ];
    let notes: Vec<(&str, String)> = verdicts
        .iter()
        .map(|(name, trend)| (*name, trend.to_string()))
        .collect();
    let mut command = format!(
        "cargo build --release && target/release/registry-bench soak --minutes {}",
        args.minutes
    );
    if args.sample_every != 30 {
        command += &format!(" --sample-every {}", args.sample_every);
    }
    table::Grid {
        title: &format!(
            "soak: {} steady + {CHURN_WINDOW} churning instances on {FLAPPING_TARGETS} flapping \
             targets, {BLOCKING_WATCHERS} blocking watchers, {EVENT_SUBSCRIBERS} event \
             subscribers",
            STEADY_INSTANCES
        ),
        header: &HEADER,
        rows: &rows,
        notes: &notes,
        command: &command,
    }
    .aligned()
}

/// Whether a resource grew over a run.
#[derive(Debug, PartialEq)]
enum Trend {
    /// The last third's mean is within the tolerance of the middle third's.
    Flat {
        middle: f64,
        last: f64,
    },
    Growing {
        middle: f64,
        last: f64,
    },
    /// Fewer than three samples: no thirds to compare.
    TooShort,
}

impl std::fmt::Display for Trend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trend::Flat { middle, last } => {
                write!(
                    f,
                    "flat (mean {middle:.1} in the middle third, {last:.1} in the last)"
                )
            }
            Trend::Growing { middle, last } => write!(
                f,
                "GROWING (mean {middle:.1} in the middle third, {last:.1} in the last)"
            ),
            Trend::TooShort => write!(f, "too few samples to tell"),
        }
    }
}

/// Compares the mean of the last third of `samples` with that of the middle third (the
/// first third is warm-up: caches filling, pools reaching their size): growing when the
/// last exceeds the middle by more than `relative` of it plus `absolute`.
fn trend(samples: &[f64], relative: f64, absolute: f64) -> Trend {
    let third = samples.len() / 3;
    if third == 0 {
        return Trend::TooShort;
    }
    let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
    let middle = mean(&samples[third..samples.len() - third]);
    let last = mean(&samples[samples.len() - third..]);
    if last > middle * (1.0 + relative) + absolute {
        Trend::Growing { middle, last }
    } else {
        Trend::Flat { middle, last }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_and_warm_up_are_flat() {
        // Climbs during warm-up, then wobbles around 100.
        let samples = [10.0, 50.0, 90.0, 101.0, 98.0, 103.0, 99.0, 102.0, 97.0];
        assert!(matches!(trend(&samples, 0.05, 0.0), Trend::Flat { .. }));
        // Lower at the end is not growth either.
        assert!(matches!(
            trend(&[5.0, 5.0, 5.0, 9.0, 9.0, 9.0, 4.0, 4.0, 4.0], 0.0, 0.0),
            Trend::Flat { .. }
        ));
    }

    #[test]
    fn steady_growth_is_growing() {
        let samples: Vec<f64> = (0..30).map(|n| 100.0 + 2.0 * n as f64).collect();
        // Middle third 120..138 (mean 129), last 140..158 (mean 149): +15%.
        assert_eq!(
            trend(&samples, 0.10, 0.0),
            Trend::Growing {
                middle: 129.0,
                last: 149.0
            }
        );
        // Within a looser tolerance (141.9 + 10) it passes, so the tolerance is what decides.
        assert!(matches!(trend(&samples, 0.10, 10.0), Trend::Flat { .. }));
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        assert_eq!(trend(&[1.0, 2.0], 0.1, 0.0), Trend::TooShort);
    }

    #[test]
    fn spread_stays_below_its_limit_and_varies() {
        let limit = Duration::from_secs(2);
        let lengths: Vec<Duration> = (0..100).map(|n| spread(n, limit)).collect();
        assert!(lengths.iter().all(|&d| d < limit));
        assert!(lengths.iter().any(|&d| d != lengths[0]));
    }
}
