//! The daemon under test: found, started in a fresh data dir, and always cleaned up.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the daemon may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin token of daemons started on a shared store (a benchmark's throwaway one).
pub const SHARED_ADMIN_TOKEN: &str = "registry-bench-shared-admin-token";

/// The first line `registry-svc serve` prints, before its base URL.
const LISTENING: &str = "registry-svc listening on ";

/// The daemon binary: `explicit`, else `registry-svc` beside this executable.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
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
pub struct Daemon {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub base_url: String,
    /// The bootstrap admin token the daemon wrote to its data dir.
    pub token: String,
}

impl Daemon {
    /// Starts `binary serve --listen 127.0.0.1:0` in a new temporary data dir and waits
    /// until it is listening. Its log goes to `daemon.log` in that dir.
    pub fn start(binary: &Path) -> Result<Daemon> {
        Self::start_on(binary, None)
    }

    /// As [`Daemon::start`], on the shared PostgreSQL store at `database_url` when given;
    /// then every such daemon takes the same fixed admin token, [`SHARED_ADMIN_TOKEN`].
    pub fn start_on(binary: &Path, database_url: Option<&str>) -> Result<Daemon> {
        let dir = make_temp_dir()?;
        let log = fs::File::create(dir.join("daemon.log"));
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
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
                .env("REGISTRY_ADMIN_TOKEN", SHARED_ADMIN_TOKEN);
        }
        let spawned = log.context("creating the daemon log").and_then(|log| {
            command
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))
        });
        let child = match spawned {
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
            base_url: String::new(),
            token: String::new(),
        };
        daemon.base_url = daemon
            .read_address()
            .with_context(|| format!("daemon did not start{}", daemon.log_tail()))?;
        daemon.token = if database_url.is_some() {
            SHARED_ADMIN_TOKEN.to_string()
        } else {
            let token_file = daemon.dir.join("admin.token");
            fs::read_to_string(&token_file)
                .with_context(|| format!("reading {}", token_file.display()))?
                .trim()
                .to_string()
        };
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with the daemon's last log lines when it is no longer running.
    pub fn check_alive(&mut self) -> Result<()> {
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
        let text = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
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

/// A new, empty directory under the system's temp dir.
fn make_temp_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("registry-bench-{}-{nanos:09}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
