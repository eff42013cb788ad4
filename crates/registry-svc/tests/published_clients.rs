//! The published clients of OpenOrch and 1Backend, unchanged, against a real daemon in
//! that project's dialect, each calling every endpoint of its `RegistrySvc` API:
//!
//! - the npm packages `@openorch/client` and `@1backend/client`, driven by
//!   `tests/npm-clients/run.mjs`, which checks every answer against the package's models;
//! - the Go clients (each project's `clients/go`), driven by `tests/go-clients`, whose
//!   generated models refuse any answer with a field they do not know or without one they
//!   require.
//!
//! The npm packages are installed outside the repository (`.ci/run` does it, from
//! `tests/npm-clients/package.json`) and found through `REGISTRY_NPM_CLIENTS`, their
//! `node_modules` folder. The Go clients are published only as Go modules on GitHub, which
//! CI cannot reach: `REGISTRY_GO_CLIENTS` names a folder holding each project's
//! `clients/go` sources as `openorch/` and `1backend/`, or is `unavailable`, which
//! `.ci/run` says out loud. A client that is not there fails the test in CI and skips it
//! elsewhere.

mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The two projects.
const PROJECTS: [Project; 2] = [
    ("openorch", "@openorch/client", ""),
    ("1backend", "@1backend/client", "onebackend"),
];

/// A `serve` child process on a free loopback port; killed on drop.
struct Serve {
    child: Child,
    base_url: String,
    token: String,
    _data_dir: tempfile::TempDir,
}

impl Serve {
    /// Starts a daemon in `dialect`, given by `REGISTRY_DIALECT`.
    fn start(dialect: &str) -> Serve {
        let data_dir = tempfile::tempdir().unwrap();
        let (child, base_url) = serve::spawn(data_dir.path(), |command| {
            command.env("REGISTRY_DIALECT", dialect);
        });
        let token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .expect("the daemon wrote its admin token");
        Serve {
            child,
            base_url,
            token: token.trim().to_string(),
            _data_dir: data_dir,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program --version` (or `version`) runs.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Ends the test when its clients are missing: a failure in CI, a skip elsewhere.
fn missing(why: &str, fix: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}; {fix}");
    eprintln!("skipped: {why} (see docs/testing.md, published clients)");
}

/// Each project's dialect, the name of its npm package and its Go build tag.
type Project = (&'static str, &'static str, &'static str);

/// Runs each project's driver against a fresh daemon in its dialect and fails with every
/// driver's report when any call failed.
fn against_each_dialect(driver: impl Fn(Project, &Serve) -> Output) {
    let mut reports = Vec::new();
    let mut failed = false;
    for project in PROJECTS {
        let dialect = project.0;
        let serve = Serve::start(dialect);
        let run = driver(project, &serve);
        failed |= !run.status.success();
        reports.push(format!(
            "== against REGISTRY_DIALECT={dialect} ({})\n{}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let report = reports.join("\n");
    assert!(!failed, "{report}");
    println!("{report}");
}

/// The `node_modules` folder holding both packages, when it and `node` are there.
fn npm_clients() -> Result<PathBuf, String> {
    let modules = std::env::var_os("REGISTRY_NPM_CLIENTS")
        .map(PathBuf::from)
        .ok_or("REGISTRY_NPM_CLIENTS is not set")?;
    for (_, package, _) in PROJECTS {
        let manifest = modules.join(package).join("package.json");
        if !manifest.is_file() {
            return Err(format!("{} is missing", manifest.display()));
        }
    }
    if !runs("node", "--version") {
        return Err("node is not installed".into());
    }
    Ok(modules)
}

#[test]
fn published_npm_clients_call_every_endpoint_in_their_dialect() {
    let modules = match npm_clients() {
        Ok(modules) => modules,
        Err(why) => return missing(&why, ".ci/run installs the npm clients"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm-clients/run.mjs");
    against_each_dialect(|(_, package, _), serve| {
        Command::new("node")
            .arg(&script)
            .args([package, serve.base_url.as_str(), serve.token.as_str()])
            .env("REGISTRY_NPM_CLIENTS", &modules)
            .output()
            .expect("node runs")
    });
}

/// The folder of both projects' Go client sources and the `go` to build with.
fn go_clients() -> Result<(PathBuf, String), String> {
    let sources = std::env::var("REGISTRY_GO_CLIENTS")
        .map_err(|_| "REGISTRY_GO_CLIENTS is not set".to_string())?;
    if sources == "unavailable" {
        // Said on purpose (by .ci/run): the sources cannot be fetched there.
        eprintln!("skipped: REGISTRY_GO_CLIENTS=unavailable (see docs/testing.md)");
        return Err(String::new());
    }
    let sources = PathBuf::from(sources);
    for (dialect, _, _) in PROJECTS {
        let client = sources.join(dialect).join("client.go");
        if !client.is_file() {
            return Err(format!("{} is missing", client.display()));
        }
    }
    let go = std::env::var("REGISTRY_GO").unwrap_or_else(|_| "go".into());
    if !runs(&go, "version") {
        return Err(format!("{go} is not installed"));
    }
    Ok((sources, go))
}

/// Builds `tests/go-clients` against the client sources in `client` (copied unchanged but
/// for the gomock mocks, which need a module nothing else does) into `work`, offline.
fn build_go_driver(go: &str, client: &Path, tag: &str, work: &Path) -> PathBuf {
    let (module, driver) = (work.join("client"), work.join("driver"));
    for dir in [&module, &driver] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let copy_go_files = |from: &Path, to: &Path, skip: fn(&str) -> bool| {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".go") && !skip(&name) {
                std::fs::copy(&path, to.join(&name)).unwrap();
            }
        }
    };
    copy_go_files(client, &module, |name| {
        name.starts_with("mock_") || name.ends_with("_test.go")
    });
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-clients");
    copy_go_files(&here, &driver, |_| false);
    std::fs::write(module.join("go.mod"), "module registryclient\n\ngo 1.23\n").unwrap();
    std::fs::write(
        driver.join("go.mod"),
        "module goclients\n\ngo 1.23\n\nrequire registryclient v0.0.0\n\n\
         replace registryclient => ../client\n",
    )
    .unwrap();
    let binary = work.join("driver-bin");
    let build = Command::new(go)
        .current_dir(&driver)
        .args(["build", "-tags", tag, "-o"])
        .arg(&binary)
        .arg(".")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go runs");
    assert!(
        build.status.success(),
        "the Go driver does not build against {}:\n{}",
        client.display(),
        String::from_utf8_lossy(&build.stderr)
    );
    binary
}

#[test]
fn published_go_clients_call_every_endpoint_in_their_dialect() {
    let (sources, go) = match go_clients() {
        Ok(found) => found,
        Err(why) if why.is_empty() => return,
        Err(why) => {
            return missing(
                &why,
                "set REGISTRY_GO_CLIENTS to the clients' sources, or to `unavailable`",
            )
        }
    };
    let work = tempfile::tempdir().unwrap();
    against_each_dialect(|(dialect, _, tag), serve| {
        let driver = build_go_driver(&go, &sources.join(dialect), tag, &work.path().join(dialect));
        Command::new(driver)
            .args(["-url", &serve.base_url, "-token", &serve.token])
            .args(["-dialect", dialect])
            .output()
            .expect("the Go driver runs")
    });
}
