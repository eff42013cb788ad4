//! The published JavaScript clients of OpenOrch (`@openorch/client`) and 1Backend
//! (`@1backend/client`), unchanged, against a real daemon in that project's dialect:
//! `tests/npm-clients/run.mjs` calls every endpoint of the package's `RegistrySvcApi` and
//! checks every answer against the package's own models.
//!
//! The packages are installed outside the repository (`.ci/run` does it, from
//! `tests/npm-clients/package.json`) and found through `REGISTRY_NPM_CLIENTS`, their
//! `node_modules` folder. Without them, or without `node`, the test fails in CI and is
//! skipped elsewhere.

mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Each package and the dialect of the project that publishes it.
const CLIENTS: [(&str, &str); 2] = [
    ("@openorch/client", "openorch"),
    ("@1backend/client", "1backend"),
];

/// A `serve` child process on a free loopback port; killed on drop.
struct Serve {
    child: Child,
    base_url: String,
}

impl Serve {
    /// Starts a daemon in `dialect`, given by `REGISTRY_DIALECT` (which a daemon without
    /// dialects ignores, so the test runs the same before and after they exist).
    fn start(dialect: &str, data_dir: &Path) -> Serve {
        let (child, base_url) = serve::spawn(data_dir, |command| {
            command.env("REGISTRY_DIALECT", dialect);
        });
        Serve { child, base_url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `node_modules` folder holding both packages, when it and `node` are there.
fn installed_clients() -> Result<PathBuf, String> {
    let modules = std::env::var_os("REGISTRY_NPM_CLIENTS")
        .map(PathBuf::from)
        .ok_or("REGISTRY_NPM_CLIENTS is not set")?;
    for (package, _) in CLIENTS {
        let manifest = modules.join(package).join("package.json");
        if !manifest.is_file() {
            return Err(format!("{} is missing", manifest.display()));
        }
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Err("node is not installed".into());
    }
    Ok(modules)
}

#[test]
fn published_npm_clients_call_every_endpoint_in_their_dialect() {
    let modules = match installed_clients() {
        Ok(modules) => modules,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{why}; .ci/run installs the npm clients"
            );
            eprintln!("skipped: {why} (see docs/testing.md, npm clients)");
            return;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm-clients/run.mjs");
    let mut reports = Vec::new();
    let mut failed = false;
    for (package, dialect) in CLIENTS {
        let data_dir = tempfile::tempdir().unwrap();
        let serve = Serve::start(dialect, data_dir.path());
        let token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .expect("the daemon wrote its admin token");
        let run = Command::new("node")
            .arg(&script)
            .args([package, &serve.base_url, token.trim()])
            .env("REGISTRY_NPM_CLIENTS", &modules)
            .output()
            .expect("node runs");
        failed |= !run.status.success();
        reports.push(format!(
            "== {package} against REGISTRY_DIALECT={dialect} ({})\n{}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let report = reports.join("\n");
    assert!(!failed, "{report}");
    println!("{report}");
}
