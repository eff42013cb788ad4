//! The `registry-svc` binary as a user runs it: `serve` in a child process, the CLI
//! against it, and restarts after SIGTERM and SIGKILL.

mod serve;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_registry-svc");

/// A daemon child process; killed on drop so a failing test leaves nothing behind.
struct Daemon {
    child: Child,
    addr: String,
    data_dir: PathBuf,
}

impl Daemon {
    fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &[])
    }

    /// Starts a daemon with `extra` flags beside the usual ones.
    fn start_with(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> Daemon {
        let (child, addr) = serve::spawn(data_dir, |command| {
            command.args(extra);
        });
        Daemon {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Starts a daemon that may hold at most `files` open files (soft and hard limit, so
    /// it cannot raise them), with `extra` flags.
    fn start_with_open_files(data_dir: &Path, files: u32, extra: &[&std::ffi::OsStr]) -> Daemon {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!(r#"ulimit -n {files} && exec "$0" "$@""#))
            .arg(BIN);
        let (child, addr) = serve::spawn_via(shell, data_dir, |command| {
            command.args(extra);
        });
        Daemon {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Runs the CLI against this daemon, as the admin from its data dir's token file.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--addr")
            .arg(&self.addr)
            .args(args)
            .env("REGISTRY_DATA_DIR", &self.data_dir)
            .env_remove("REGISTRY_TOKEN")
            .output()
            .unwrap()
    }

    /// Saves the example definition `file` with the CLI.
    fn save_definition(&self, file: &str) {
        let path = examples_dir().join(file);
        let out = ok(self.cli(&["definitions", "save", path.to_str().unwrap()]));
        assert!(out.contains("saved definition"), "{out}");
    }

    /// Registers an instance with the CLI's `instances register ARGS` and returns its id.
    fn register(&self, args: &[&str]) -> String {
        let out = ok(self.cli(&[&["instances", "register"], args].concat()));
        let id = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        assert!(id.starts_with("inst_"), "{out}");
        id
    }

    fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/definitions")
}

#[test]
fn cli_tour_against_a_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    for file in ["test-a.yaml", "test-b.yaml"] {
        daemon.save_definition(file);
    }
    let defs = json(daemon.cli(&["def", "ls", "-o", "json"]));
    let test_a = defs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "test-a")
        .unwrap();
    assert_eq!(test_a["image"]["internalPorts"], serde_json::json!([8080]));
    assert_eq!(
        test_a["ports"],
        serde_json::json!([{"internal": 8080, "host": 8887}])
    );
    let table = ok(daemon.cli(&["definitions", "ls"]));
    assert!(
        table.starts_with("ID") && table.contains("test-b"),
        "{table}"
    );

    let id = daemon.register(&[
        "--url",
        "http://127.0.0.1:1",
        "--slug",
        "web",
        "--tag",
        "blue",
    ]);
    // The address is dead: its first check, made at once, makes it Unreachable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let listed = json(daemon.cli(&["i", "ls", "--slug", "web", "--tag", "blue", "-o", "json"]));
        if listed[0]["status"] == "Unreachable" || std::time::Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "Unreachable", "{listed}");
    let none = json(daemon.cli(&["i", "ls", "--slug", "nobody", "-o", "json"]));
    assert_eq!(none, serde_json::json!([]));

    let node = json(daemon.cli(&["nodes", "self", "-o", "json"]));
    assert_eq!(node["status"], "Online");
    let nodes = ok(daemon.cli(&["nodes", "ls"]));
    assert!(nodes.contains(node["id"].as_str().unwrap()), "{nodes}");

    // A user token made with the CLI can look but not administer.
    let secret = ok(daemon.cli(&["tokens", "create", "--slug", "user-svc"]));
    let secret = secret.trim();
    let as_user = |args: &[&str]| {
        Command::new(BIN)
            .args(["--addr", &daemon.addr, "--token", secret])
            .args(args)
            .output()
            .unwrap()
    };
    ok(as_user(&["instances", "ls"]));
    let refused = as_user(&["definitions", "rm", "test-a"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("403"),
        "{stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line error: {stderr}"
    );

    let bad = daemon.cli(&["instances", "rm", "inst_missing00"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not found"));
    ok(daemon.cli(&["instances", "rm", &id]));
    ok(daemon.cli(&["definitions", "rm", "test-a"]));
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let mut ids = Vec::new();
    for port in 2000..2025 {
        let url = format!("http://127.0.0.1:{port}");
        ids.push(daemon.register(&["--url", &url, "--slug", "durable"]));
    }
    daemon.save_definition("test-a.yaml");
    daemon.signal("-KILL");

    let daemon = Daemon::start(dir.path());
    let listed = json(daemon.cli(&["instances", "ls", "--slug", "durable", "-o", "json"]));
    let mut found: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids, "every acknowledged registration is back");
    let defs = json(daemon.cli(&["definitions", "ls", "-o", "json"]));
    assert_eq!(defs[0]["id"], "test-a");
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let node = json(daemon.cli(&["nodes", "self", "-o", "json"]));
    daemon.register(&["--url", "http://127.0.0.1:3"]);
    let status = daemon.signal("-TERM");
    assert!(status.success(), "graceful exit, got {status:?}");

    let daemon = Daemon::start(dir.path());
    let again = json(daemon.cli(&["nodes", "self", "-o", "json"]));
    assert_eq!(
        again["id"], node["id"],
        "the node id is kept in the data dir"
    );
    let listed = json(daemon.cli(&["instances", "ls", "-o", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Daemon::start(dir.path());
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another registry-svc"),
        "{stderr}"
    );
}

#[test]
fn an_instance_with_a_ttl_is_kept_healthy_by_cli_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let id = daemon.register(&["--url", "http://127.0.0.1:4", "--ttl", "30s"]);

    let out = ok(daemon.cli(&["instances", "heartbeat", &id]));
    assert_eq!(out, format!("heartbeat sent for {id}\n"));
    let listed = json(daemon.cli(&["instances", "ls", "--id", &id, "-o", "json"]));
    assert_eq!(listed[0]["status"], "Healthy", "{listed}");
    assert_eq!(listed[0]["details"], "heartbeat received", "{listed}");
    assert!(listed[0]["lastHeartbeat"].is_string(), "{listed}");

    let confirmed = json(daemon.cli(&["i", "heartbeat", &id, "-o", "json"]));
    assert_eq!(
        confirmed,
        serde_json::json!({"id": id, "result": "heartbeat"})
    );

    let missing = daemon.cli(&["instances", "heartbeat", "inst_missing00"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn instances_ls_watch_redraws_on_each_change_until_interrupted() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut watch = Command::new(BIN)
        .args([
            "--addr",
            &daemon.addr,
            "instances",
            "ls",
            "--watch",
            "--slug",
            "web",
        ])
        .env("REGISTRY_DATA_DIR", &daemon.data_dir)
        .env_remove("REGISTRY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Reads lines until one satisfies `want`; returns all lines read.
    let read_until = |want: &dyn Fn(&str) -> bool, what: &str| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    let done = want(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no {what} in {seen:?}"),
            }
        }
    };

    // Not a terminal: the first frame is the plain table, no escape codes.
    let first = read_until(&|line| line.starts_with("ID"), "table header");
    assert!(first.iter().all(|l| !l.contains('\x1b')), "{first:?}");

    let id = daemon.register(&["--url", "http://127.0.0.1:1", "--slug", "web"]);
    let next = read_until(&|line| line.contains(&id), "redraw with the new instance");
    assert!(
        next.iter().any(|l| l.starts_with("--- index ")),
        "separator before the redraw: {next:?}"
    );

    let status = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = watch.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn secrets_in_the_environment_never_show_in_help_or_errors() {
    let url = "postgres://registry:s3cret-pw@127.0.0.1:1/registry";
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .env("REGISTRY_DATABASE_URL", url)
        .env("REGISTRY_ADMIN_TOKEN", "admin-s3cret")
        .output()
        .unwrap();
    assert!(help.status.success());
    let shown = String::from_utf8_lossy(&help.stdout);
    assert!(shown.contains("REGISTRY_DATABASE_URL"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");

    // A database that cannot be reached: the error names it without its password.
    let dir = tempfile::tempdir().unwrap();
    let failed = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("REGISTRY_DATABASE_URL", url)
        .env("REGISTRY_ADMIN_TOKEN", "admin-s3cret")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(said.contains("127.0.0.1:1"), "{said}");
    assert!(!said.contains("s3cret"), "{said}");
}

#[test]
fn backup_and_restore_move_a_registry_to_a_fresh_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let source = Daemon::start(&dir.path().join("source"));
    source.save_definition("test-a.yaml");
    let user = ok(source.cli(&["tokens", "create", "--slug", "web"]));
    let user = user.trim();
    let id = source.register(&[
        "--url",
        "http://127.0.0.1:1",
        "--slug",
        "web",
        "--tag",
        "blue",
    ]);

    let file = dir.path().join("registry.backup");
    let file_arg = file.to_str().unwrap();
    let out = ok(source.cli(&["backup", file_arg]));
    assert!(
        out.contains("1 definitions, 1 instances") && out.contains(file_arg),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds token hashes");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let to_stdout = ok(source.cli(&["backup", "-"]));
    assert!(
        to_stdout.starts_with(r#"{"format":"registry-svc-backup""#),
        "{to_stdout}"
    );

    let target = Daemon::start(&dir.path().join("target"));
    let refused = |args: &[&str], names: &str| {
        let refused = target.cli(args);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(
            stderr.starts_with("error: ") && stderr.contains(names),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    };
    refused(&["restore", "Cargo.toml"], "backup line 1");
    let out = ok(target.cli(&["restore", file_arg]));
    assert_eq!(
        out.trim(),
        "restored 1 definitions, 1 instances and 2 tokens (1 node records skipped)"
    );
    let listed = json(target.cli(&["i", "ls", "-o", "json"]));
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["tags"], serde_json::json!(["blue"]));
    // The user token made on the source works on the target.
    let as_user = Command::new(BIN)
        .args([
            "--addr",
            &target.addr,
            "--token",
            user,
            "instances",
            "rm",
            &id,
        ])
        .output()
        .unwrap();
    ok(as_user);
    refused(&["restore", file_arg], "409");
    let missing = target.cli(&["restore", "/nonexistent/backup"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/backup"),
        "{stderr}"
    );
}

#[test]
fn the_cli_speaks_https_to_a_daemon_with_a_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and a certificate for 127.0.0.1 it signs.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let tls = tempfile::tempdir().unwrap();
    let (ca_file, cert_file, key_file) = (
        tls.path().join("ca.pem"),
        tls.path().join("cert.pem"),
        tls.path().join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, server.pem()).unwrap();
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();

    let daemon = Daemon::start_with(
        dir.path(),
        &[
            "--tls-cert".as_ref(),
            cert_file.as_os_str(),
            "--tls-key".as_ref(),
            key_file.as_os_str(),
        ],
    );
    assert!(daemon.addr.starts_with("https://"), "{}", daemon.addr);

    let untrusted = daemon.cli(&["nodes", "ls"]);
    assert!(
        !untrusted.status.success(),
        "a certificate from an unknown CA must be refused"
    );
    let nodes = json(daemon.cli(&[
        "--ca-cert",
        ca_file.to_str().unwrap(),
        "nodes",
        "ls",
        "-o",
        "json",
    ]));
    assert!(
        nodes[0]["url"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://"),
        "{nodes}"
    );
}

/// Out of file descriptors (more connections allowed than it may open files), the daemon
/// waits for descriptors to come back instead of spinning on failed accepts, and serves
/// again once the connections holding them close.
#[test]
fn out_of_descriptors_the_daemon_waits_and_then_serves_again() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_open_files(
        dir.path(),
        64,
        &["--max-connections".as_ref(), "1000".as_ref()],
    );
    let addr = d.addr.trim_start_matches("http://").to_string();
    let healthz = || -> bool {
        let Ok(mut stream) = TcpStream::connect(&addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    };
    assert!(healthz());

    // Far more connections than it has descriptors for; the kernel queues the rest.
    let hogs: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    assert!(!healthz(), "a daemon out of descriptors answered");
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.child.id())).unwrap();
        // utime and stime, in clock ticks, after the command name's closing parenthesis.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let (before, since) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu() - before;
    let ticks_per_second = 100; // USER_HZ on Linux
    let share = ticks as f64 / (since.elapsed().as_secs_f64() * ticks_per_second as f64);
    assert!(
        share < 0.2,
        "the daemon spun at {:.0}% of a core while out of descriptors",
        share * 100.0
    );

    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthz() {
        assert!(
            Instant::now() < deadline,
            "never served again after the descriptors came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
