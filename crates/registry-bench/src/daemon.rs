//! The daemon under test: found, started in a fresh data dir, and always cleaned up.

use anyhow::{bail, Context, Result};
use registry_client::RegistryClient;
use registry_types::constants;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the daemon may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin token of daemons started on a shared store (a benchmark's throwaway one).
pub(crate) const SHARED_ADMIN_TOKEN: &str = "registry-bench-shared-admin-token";

/// The first line `registry-svc serve` prints, before its base URL.
const LISTENING: &str = "registry-svc listening on ";

/// The daemon binary: `explicit`, else `registry-svc` beside this executable.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--daemon {}: no such file", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let beside = me.with_file_name("registry-svc");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "no daemon binary at {}; run `cargo build --release` first (it builds both), \
         or pass --daemon PATH",
        beside.display()
    )
}

/// A running `registry-svc serve` child. Dropping it kills the daemon and removes its
/// data dir, on success and on every error path alike.
pub(crate) struct Daemon {
    child: Child,
    dir: PathBuf,
    binary: PathBuf,
    database_url: Option<String>,
    /// Starts so far in `dir`: 1, then one more per [`Daemon::restart`].
    starts: u32,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub base_url: String,
    /// The bootstrap admin token the daemon wrote to its data dir.
    pub token: String,
}

impl Daemon {
    /// Starts `binary serve --listen 127.0.0.1:0` in a new temporary data dir and waits
    /// until it is listening. Its log goes to `daemon.log` in that dir.
    pub(crate) fn start(binary: &Path) -> Result<Daemon> {
        Self::start_on(binary, None)
    }

    /// Starts the binary [`locate`] finds for `path`, and says on stderr which it is and
    /// where it listens.
    pub(crate) fn start_located(path: Option<&Path>) -> Result<Daemon> {
        let binary = locate(path)?;
        let daemon = Self::start(&binary)?;
        eprintln!(
            "daemon {} (pid {}) at {}",
            binary.display(),
            daemon.pid(),
            daemon.base_url
        );
        Ok(daemon)
    }

    /// As [`Daemon::start`], on the shared PostgreSQL store at `database_url` when given;
    /// then every such daemon takes the same fixed admin token, [`SHARED_ADMIN_TOKEN`].
    pub(crate) fn start_on(binary: &Path, database_url: Option<&str>) -> Result<Daemon> {
        let dir = make_temp_dir()?;
        let child = match spawn(binary, &dir, database_url, 1) {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, Drop cleans up.
        let mut daemon = Daemon {
            child,
            dir,
            binary: binary.to_path_buf(),
            database_url: database_url.map(str::to_string),
            starts: 1,
            base_url: String::new(),
            token: String::new(),
        };
        daemon.await_address()?;
        Ok(daemon)
    }

    /// Kills the daemon (SIGKILL: nothing is flushed on the way out, the store must be
    /// durable as it is) and starts a new one on the same data dir. Returns when the new
    /// one has printed its address, with the instant just before it was spawned; its new
    /// base URL and token are in `base_url` and `token`.
    pub(crate) fn restart(&mut self) -> Result<Instant> {
        let _ = self.child.kill();
        self.child.wait().context("waiting for the killed daemon")?;
        self.starts += 1;
        let spawned_at = Instant::now();
        // A failed spawn leaves the dead child in place: Drop still removes the dir.
        self.child = spawn(
            &self.binary,
            &self.dir,
            self.database_url.as_deref(),
            self.starts,
        )?;
        self.await_address()?;
        Ok(spawned_at)
    }

    /// Waits for the address line, then reads the admin token.
    fn await_address(&mut self) -> Result<()> {
        self.base_url = self
            .read_address()
            .with_context(|| format!("daemon did not start{}", self.log_tail()))?;
        self.token = if self.database_url.is_some() {
            SHARED_ADMIN_TOKEN.to_string()
        } else {
            let token_file = self.dir.join(constants::ADMIN_TOKEN_FILE);
            fs::read_to_string(&token_file)
                .with_context(|| format!("reading {}", token_file.display()))?
                .trim()
                .to_string()
        };
        Ok(())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of this daemon with its admin token, each request limited to `timeout`.
    pub(crate) fn client(&self, timeout: Duration) -> Result<RegistryClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(
            RegistryClient::new(self.base_url.clone(), Some(self.token.clone()))
                .with_http_client(http),
        )
    }

    /// `Err` with the daemon's last log lines when it is no longer running.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("the daemon exited ({status}){}", self.log_tail()),
            Err(e) => Err(e).context("checking on the daemon"),
        }
    }

    /// Reads the first stdout line, with a deadline; a thread keeps draining stdout
    /// afterwards so a later line never meets a closed pipe.
    fn read_address(&mut self) -> Result<String> {
        let stdout = self.child.stdout.take().context("no daemon stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line.context("reading the daemon's stdout")?,
            Err(_) => bail!("no address printed within {}s", STARTUP_TIMEOUT.as_secs()),
        };
        match line.trim().strip_prefix(LISTENING) {
            Some(url) => Ok(url.trim_end_matches('/').to_string()),
            None if line.is_empty() => bail!("it exited before printing its address"),
            None => bail!("unexpected first line {:?}", line.trim()),
        }
    }

    /// The end of the daemon's log, as a suffix for error messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join(log_name(self.starts))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
        format!("; its log ends:\n  {tail}")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The log of the `start`-th daemon in a data dir: `daemon.log`, then `daemon-2.log`, ...
fn log_name(start: u32) -> String {
    match start {
        1 => "daemon.log".to_string(),
        n => format!("daemon-{n}.log"),
    }
}

/// Spawns `binary serve` on 127.0.0.1:0 in `dir`, its stderr to that dir's log.
fn spawn(binary: &Path, dir: &Path, database_url: Option<&str>, start: u32) -> Result<Child> {
    let log = fs::File::create(dir.join(log_name(start))).context("creating the daemon log")?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // Only the flags above configure it: no admin token, database or address from
    // the caller's environment.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(name);
        }
    }
    if let Some(url) = database_url {
        command
            .args(["--database-url", url])
            .env(constants::ADMIN_TOKEN_ENV, SHARED_ADMIN_TOKEN);
    }
    command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// A new, empty directory under the system's temp dir, named `registry-bench-…`.
pub(crate) fn make_temp_dir() -> Result<PathBuf> {
    static MADE: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "registry-bench-{}-{}-{nanos:09}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A temporary directory, removed with everything in it when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir> {
        make_temp_dir().map(TempDir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
