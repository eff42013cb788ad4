//! PostgreSQL failover: three daemons on a primary and its streaming standby, named
//! together in one URL; the primary dies under write load and the standby is promoted.
//! The daemons move to the new primary by themselves, every acknowledged write is there,
//! and clients see nothing but 503s meanwhile.
//!
//! The test makes two PostgreSQL clusters of its own on free loopback ports with the
//! Debian tools (`pg_createcluster`, `pg_basebackup`, `pg_ctlcluster`, as root), and drops
//! them at the end, also on failure. Without those tools it says "skipped" and passes
//! (but fails under `CI=true`).

mod common;

use common::{wait_until, CapturedLog, Daemon};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const ADMIN: &str = "failover-test-admin-token-0123456789abcdef";
/// Long enough for anything but the failover itself on a busy machine.
const DEADLINE: Duration = Duration::from_secs(30);
/// How soon after the promotion every daemon must take writes again.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Concurrent writers of instances; one more writes definitions.
const INSTANCE_WRITERS: usize = 4;

// ---------------------------------------------------------------------------------------
// Two PostgreSQL clusters
// ---------------------------------------------------------------------------------------

/// The newest PostgreSQL whose server tools are installed (e.g. `15`), and its `bin`;
/// `Err` says what is missing.
fn postgres_tools() -> Result<(String, PathBuf), String> {
    for tool in ["pg_createcluster", "pg_ctlcluster", "pg_dropcluster"] {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            return Err(format!("{tool} not found (Debian's postgresql-common)"));
        }
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, String)> = std::fs::read_dir(root)
        .map_err(|e| format!("no {}: {e}", root.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|v| root.join(v).join("bin/pg_basebackup").is_file())
        .filter_map(|v| Some((v.parse().ok()?, v)))
        .collect();
    versions.sort();
    let (_, version) = versions
        .pop()
        .ok_or("no PostgreSQL server under /usr/lib/postgresql")?;
    // The clusters belong to the postgres user; only root makes them for it.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("making PostgreSQL clusters for the postgres user needs root".into());
    }
    let bin = root.join(&version).join("bin");
    Ok((version, bin))
}

/// Runs `program` with `args`; its output, or `Err` with what it printed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{program} {}: {}\n{text}",
            args.join(" "),
            output.status
        ))
    }
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A free loopback port (free when asked; PostgreSQL takes it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One PostgreSQL cluster made by this test: its name and port.
struct Cluster {
    name: String,
    port: u16,
}

/// The clusters of a test in a temporary directory; stopped and dropped when this is
/// dropped (their logs printed first if the test failed).
struct Clusters {
    version: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    made: Vec<String>,
    prefix: String,
}

impl Clusters {
    fn new(version: String, bin: PathBuf) -> Clusters {
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL runs as postgres and writes its data and logs under here.
        must(
            "chown",
            &["postgres:postgres", dir.path().to_str().unwrap()],
        );
        Clusters {
            version,
            bin,
            dir,
            made: Vec::new(),
            prefix: format!("registry_failover_{}", std::process::id()),
        }
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn ctl(&self, cluster: &Cluster, action: &[&str]) -> Result<String, String> {
        let mut args = vec!["--skip-systemctl-redirect", &self.version, &cluster.name];
        args.extend_from_slice(action);
        run("pg_ctlcluster", &args)
    }

    /// A new cluster `suffix` on a free port, not started, set up for streaming
    /// replication with trust on loopback (initdb's default lines, replication included).
    fn create(&mut self, suffix: &str) -> Cluster {
        let name = format!("{}_{suffix}", self.prefix);
        let port = free_port();
        let data = self.data(&name);
        let log = self.log(&name);
        must(
            "pg_createcluster",
            &[
                &self.version,
                &name,
                "--port",
                &port.to_string(),
                "--datadir",
                data.to_str().unwrap(),
                "--logfile",
                log.to_str().unwrap(),
                "--start-conf",
                "manual",
                "--",
                "--auth=trust",
            ],
        );
        self.made.push(name.clone());
        let settings = "listen_addresses = '127.0.0.1'\n\
                        wal_level = replica\n\
                        max_wal_senders = 5\n\
                        hot_standby = on\n\
                        fsync = off\n\
                        shared_buffers = 16MB\n";
        let conf = format!(
            "/etc/postgresql/{}/{name}/conf.d/failover-test.conf",
            self.version
        );
        std::fs::write(&conf, settings).unwrap_or_else(|e| panic!("cannot write {conf}: {e}"));
        Cluster { name, port }
    }

    fn start(&self, cluster: &Cluster) {
        self.ctl(cluster, &["start"])
            .unwrap_or_else(|e| panic!("{e}\n{}", self.tail(&cluster.name)));
    }

    /// A standby of `primary`: a new cluster whose data is a base backup of it, started.
    fn standby_of(&mut self, primary: &Cluster, suffix: &str) -> Cluster {
        let standby = self.create(suffix);
        let data = self.data(&standby.name);
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        let backup = self.bin.join("pg_basebackup");
        must(
            "runuser",
            &[
                "-u",
                "postgres",
                "--",
                backup.to_str().unwrap(),
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        self.start(&standby);
        standby
    }

    /// The last lines of `name`'s log.
    fn tail(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("--- {name} log ---\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if std::thread::panicking() {
                eprintln!("{}", self.tail(name));
            }
            let _ = run(
                "pg_ctlcluster",
                &[
                    "--skip-systemctl-redirect",
                    &self.version,
                    name,
                    "stop",
                    "-m",
                    "immediate",
                ],
            );
            // pg_dropcluster leaves a configuration directory holding files it did not
            // write: this test's settings go first, and the directory after.
            let conf = format!("/etc/postgresql/{}/{name}", self.version);
            let _ = std::fs::remove_file(format!("{conf}/conf.d/failover-test.conf"));
            if let Err(e) = run("pg_dropcluster", &[&self.version, name]) {
                eprintln!("could not drop PostgreSQL cluster {name}: {e}");
            }
            let _ = std::fs::remove_dir_all(&conf);
        }
    }
}

/// The daemons' log; its store lines are printed if the test fails.
struct Log(CapturedLog);

impl Drop for Log {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the daemons' store log ---");
            for line in self.0.lines_with(&["registry_store"]) {
                eprintln!("{line}");
            }
        }
    }
}

async fn connect(port: u16) -> PgConnection {
    PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL on port {port}: {e}"))
}

/// The replication states (`sync_state`) of the standbys streaming from `conn`'s server.
async fn streaming(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'")
        .fetch_all(conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Daemons and writers
// ---------------------------------------------------------------------------------------

async fn node(database_url: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.database_url = Some(database_url.to_string());
    config.admin_token = Some(ADMIN.into());
    let mut d = Daemon::start_with(config, dir).await;
    d.admin = ADMIN.into();
    d
}

/// What the writers saw.
#[derive(Default)]
struct Seen {
    /// Instances whose registration was acknowledged (201), by id.
    instances: Vec<String>,
    /// Definitions whose save was acknowledged (201), by id.
    definitions: Vec<String>,
    /// 503 answers.
    unavailable: usize,
    /// Anything else: neither a 201 nor a 503.
    unexpected: Vec<String>,
    /// Each acknowledged write: the daemon, when it was sent and when answered.
    acks: Vec<(usize, Instant, Instant)>,
}

/// Writes until `stop`, one request at a time, round the daemons (their base URLs):
/// registrations of instances, or saves of definitions; records every answer in `seen`.
async fn writer(
    daemons: Vec<String>,
    writer: usize,
    definitions: bool,
    seen: Arc<Mutex<Seen>>,
    stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut n = 0usize;
    while !*stop.borrow() {
        n += 1;
        let daemon = (writer + n) % daemons.len();
        let base = &daemons[daemon];
        let request = if definitions {
            let body = json!({"definition": {"id": format!("def-{n}")}});
            http.put(format!("{base}/registry-svc/definition"))
                .body(body.to_string())
        } else {
            let body = json!({"url": format!("http://127.0.0.1:1/w{writer}-{n}"),
                              "healthCheck": {"type": "none"}});
            http.put(format!("{base}/registry-svc/instance"))
                .body(body.to_string())
        };
        let sent = Instant::now();
        let answer = request
            .bearer_auth(ADMIN)
            .header(registry_types::constants::EXTENSIONS_HEADER, "true")
            .send()
            .await;
        let answer = match answer {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or_default();
                Ok((status, body))
            }
            Err(e) => Err(e),
        };
        let answered = Instant::now();
        let mut seen = seen.lock().unwrap();
        match answer {
            Ok((StatusCode::CREATED, body)) => {
                seen.acks.push((daemon, sent, answered));
                if definitions {
                    seen.definitions.push(format!("def-{n}"));
                } else {
                    let id = body["id"].as_str();
                    let id = id.unwrap_or_else(|| panic!("no id in {body}"));
                    seen.instances.push(id.to_string());
                }
            }
            Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => seen.unavailable += 1,
            Ok((status, body)) => seen
                .unexpected
                .push(format!("{status} from daemon {daemon}: {body}")),
            Err(e) => seen.unexpected.push(format!("daemon {daemon}: {e}")),
        }
    }
}

/// The ids of everything of `kind` (`instances` or `definitions`) `d` lists.
async fn listed(d: &Daemon, kind: &str) -> BTreeSet<String> {
    let r = d
        .admin(Method::GET, &format!("/registry-svc/{kind}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// The keys of the stored objects of `kind` in the database on `port`.
async fn stored(port: u16, kind: &str) -> BTreeSet<String> {
    let mut conn = connect(port).await;
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM objects WHERE kind = $1")
        .bind(kind)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    keys.into_iter().collect()
}

/// Waits until the acknowledged writes (`seen`) made after `since` include one on each
/// daemon of `count`; when each did (after `since`), or `None` past `deadline`.
async fn wait_all_write(
    seen: &Mutex<Seen>,
    count: usize,
    since: Instant,
    deadline: Duration,
) -> Option<Vec<Instant>> {
    let first = Mutex::new(vec![None; count]);
    let all = wait_until(deadline, || async {
        let mut first = first.lock().unwrap();
        for (daemon, sent, answered) in &seen.lock().unwrap().acks {
            if *sent >= since && first[*daemon].is_none() {
                first[*daemon] = Some(*answered);
            }
        }
        first.iter().all(Option::is_some)
    })
    .await;
    all.then(|| first.into_inner().unwrap().into_iter().flatten().collect())
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_follow_a_promoted_standby_with_only_503s_and_no_acknowledged_write_lost() {
    let (version, bin) = match postgres_tools() {
        Ok(tools) => tools,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; the failover test needs PostgreSQL's server and postgresql-common"
            );
            println!("skipped: {why} (see docs/testing.md, PostgreSQL failover)");
            return;
        }
    };

    let log_dir = tempfile::tempdir().unwrap();
    let log = Log(CapturedLog::start(
        log_dir.path(),
        "registry_store=info,sqlx=warn,registry_server=warn",
    ));

    // A primary and a standby streaming from it, synchronously: a commit is acknowledged
    // only once the standby has it, so no acknowledged write can be lost.
    let mut clusters = Clusters::new(version, bin);
    let primary = clusters.create("a");
    clusters.start(&primary);
    let standby = clusters.standby_of(&primary, "b");
    let mut admin = connect(primary.port).await;
    assert!(
        wait_until(DEADLINE, || async {
            !streaming(&mut connect(primary.port).await).await.is_empty()
        })
        .await,
        "the standby never streamed\n{}",
        clusters.tail(&standby.name)
    );
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&mut admin).await.unwrap();
    }
    let _ = admin.close().await;
    assert!(
        wait_until(DEADLINE, || async {
            streaming(&mut connect(primary.port).await).await == ["sync"]
        })
        .await,
        "the standby never became synchronous"
    );

    // Three daemons, each told of both servers; the standby second.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let daemons = [node(&url).await, node(&url).await, node(&url).await];
    let bases: Vec<String> = daemons.iter().map(|d| d.url("")).collect();

    // Write load: concurrent writers round the daemons.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop, stopped) = watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..=INSTANCE_WRITERS {
        writers.push(tokio::spawn(writer(
            bases.clone(),
            w,
            w == INSTANCE_WRITERS,
            Arc::clone(&seen),
            stopped.clone(),
        )));
    }
    let started = Instant::now();
    assert!(
        wait_all_write(&seen, daemons.len(), started, DEADLINE)
            .await
            .is_some(),
        "the daemons take no writes before the failover"
    );
    assert!(
        wait_until(DEADLINE, || async { seen.lock().unwrap().acks.len() >= 50 }).await,
        "fewer than 50 writes acknowledged before the failover"
    );
    let before = seen.lock().unwrap().acks.len();

    // The primary dies (as in a crash: no shutdown checkpoint, connections cut), and the
    // operator promotes the standby. Nobody tells the daemons.
    clusters
        .ctl(&primary, &["stop", "-m", "immediate"])
        .unwrap_or_else(|e| panic!("{e}"));
    let died = Instant::now();
    clusters
        .ctl(&standby, &["promote"])
        .unwrap_or_else(|e| panic!("{e}"));
    let promoted = Instant::now();

    // Every daemon takes writes again, by itself, soon.
    let recovered = wait_all_write(
        &seen,
        daemons.len(),
        died,
        RECOVERY_BOUND + (promoted - died),
    )
    .await;
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "not every daemon took a write within {RECOVERY_BOUND:?} of the promotion\n{}",
            clusters.tail(&standby.name)
        )
    });
    // Each daemon moved by itself, and said so.
    for line in log.0.lines_with(&["registry_store"]) {
        println!("{line}");
    }
    let switched = log
        .0
        .lines_with(&["switched to another PostgreSQL primary"]);
    assert!(
        switched.len() >= daemons.len(),
        "fewer than {} switches logged: {switched:#?}",
        daemons.len()
    );
    let slowest = recovered.iter().max().unwrap().duration_since(promoted);
    // And keeps taking them for a while.
    let resumed = Instant::now();
    assert!(
        wait_until(DEADLINE, || async {
            let seen = seen.lock().unwrap();
            seen.acks
                .iter()
                .filter(|(_, sent, _)| *sent >= resumed)
                .count()
                >= 50
        })
        .await,
        "writes did not keep going after the failover"
    );
    stop.send(true).unwrap();
    for w in writers {
        w.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    println!(
        "failover: {} writes acknowledged ({before} before the primary died), {} answered 503, \
         promotion took {:?}, every daemon wrote again {:?} after the primary died \
         ({slowest:?} after the promotion; each: {:?})",
        seen.acks.len(),
        seen.unavailable,
        promoted - died,
        recovered.iter().max().unwrap().duration_since(died),
        recovered
            .iter()
            .map(|r| r.duration_since(died))
            .collect::<Vec<_>>(),
    );
    assert!(
        seen.unexpected.is_empty(),
        "clients saw errors other than 503: {:?}",
        seen.unexpected
    );

    // Every acknowledged write is in the new primary, and every daemon lists it.
    let instances: BTreeSet<String> = seen.instances.iter().cloned().collect();
    let definitions: BTreeSet<String> = seen.definitions.iter().cloned().collect();
    let in_store = stored(standby.port, "instance").await;
    let lost: Vec<&String> = instances.difference(&in_store).collect();
    assert!(
        lost.is_empty(),
        "acknowledged instances missing from the new primary: {lost:?}"
    );
    let in_store = stored(standby.port, "definition").await;
    let lost: Vec<&String> = definitions.difference(&in_store).collect();
    assert!(
        lost.is_empty(),
        "acknowledged definitions missing from the new primary: {lost:?}"
    );
    for (n, d) in daemons.iter().enumerate() {
        let all = wait_until(DEADLINE, || async {
            listed(d, "instances").await.is_superset(&instances)
                && listed(d, "definitions").await.is_superset(&definitions)
        })
        .await;
        if !all {
            let missing: Vec<String> = instances
                .difference(&listed(d, "instances").await)
                .chain(definitions.difference(&listed(d, "definitions").await))
                .cloned()
                .collect();
            panic!("daemon {n} lacks acknowledged writes: {missing:?}");
        }
    }

    // The daemons hear of each other's commits on the new primary: a write on one
    // reaches the others, which write nothing themselves, by notification alone.
    let id = daemons[0]
        .register(json!({"url": "http://127.0.0.1:1/after", "healthCheck": {"type": "none"}}))
        .await;
    for (n, d) in daemons.iter().enumerate().skip(1) {
        assert!(
            wait_until(DEADLINE, || async {
                listed(d, "instances").await.contains(&id)
            })
            .await,
            "daemon {n} never heard of a write made on daemon 0 after the failover"
        );
    }

    // The old primary stayed down: the daemons wrote to the new one only.
    assert!(
        clusters.ctl(&primary, &["status"]).is_err(),
        "the old primary is running again"
    );
    for d in daemons {
        d.stop().await;
    }
}
