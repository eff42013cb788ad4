//! Starting the daemon as a child process, shared by the tests of this folder.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `registry-svc serve` on a free loopback port with `data_dir`, a 1 s node
/// heartbeat and no `nvidia-smi`, after `configure` adds its flags or environment, and
/// returns the child and the address it listens on (`http://127.0.0.1:PORT`), once it
/// listens.
pub(crate) fn spawn(data_dir: &Path, configure: impl FnOnce(&mut Command)) -> (Child, String) {
    spawn_via(
        Command::new(env!("CARGO_BIN_EXE_registry-svc")),
        data_dir,
        configure,
    )
}

/// [`spawn`], with `command` running the binary (or something that execs it with the
/// arguments given to `command`).
pub(crate) fn spawn_via(
    mut command: Command,
    data_dir: &Path,
    configure: impl FnOnce(&mut Command),
) -> (Child, String) {
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "1s",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--nvidia-smi")
        .arg(data_dir.join("no-nvidia-smi"))
        .env_remove("REGISTRY_ADMIN_TOKEN")
        .env_remove("REGISTRY_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    configure(&mut command);
    let mut child = command.spawn().expect("registry-svc starts");
    // The first stdout line says where it listens; reading it waits for readiness.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("registry-svc listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}
