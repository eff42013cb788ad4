//! Schemathesis against `/openapi.json` of a real daemon: every check it has, every
//! operation, a fixed seed and a bounded number of examples per operation, so the run is
//! repeatable and short.
//!
//! Schemathesis is a Python program (`pip install schemathesis`); `.ci/run` installs it.
//! `REGISTRY_SCHEMATHESIS` names the `st` program (default: `st` on the PATH),
//! `REGISTRY_SCHEMATHESIS_SEED` and `REGISTRY_SCHEMATHESIS_EXAMPLES` change the seed and
//! the number of examples. Without schemathesis the test fails in CI and is skipped
//! elsewhere, saying so.
//!
//! The health checker dials (and resolves) every address registered, and generated
//! registrations name any host. So the test runs itself again, daemon and Schemathesis
//! both, in a network namespace of its own (`unshare --net`, as an unprivileged user
//! namespace) where only loopback exists: nothing it does can reach another machine, a
//! name server included.

mod common;

use common::Daemon;
use std::process::Stdio;

const DEFAULT_SEED: &str = "20261201";
const DEFAULT_EXAMPLES: &str = "10";

/// Set in the copy of this test that runs inside the namespace.
const INSIDE: &str = "REGISTRY_SCHEMATHESIS_ISOLATED";

/// Every check Schemathesis has is on by default (`--checks all` on the command line would
/// also override what is said here for one operation), and:
/// - Blocking queries park for up to their `wait`: held at 0 s, so a generated `index`
///   costs nothing, not the five-minute default; `wait` has its own tests (`ranges.rs`,
///   `feed.rs`).
/// - A restore's body is a file (a header line, then the objects it counts) that no
///   schema can state: a string that fits the schema is rarely a backup, and is rightly
///   refused with 400. So for that operation alone 400 counts as an answer to schema-valid
///   input; `backup.rs` tests restores whole, truncated and altered.
const CONFIG: &str = r#"
[parameters]
"query.wait" = "0s"

[[operations]]
include-path = "/registry-svc/restore"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 409]
"#;

#[tokio::test]
async fn schemathesis_finds_nothing_with_every_check() {
    let program = std::env::var("REGISTRY_SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    if !succeeds(&program, &["--version"]).await {
        return missing(&format!(
            "schemathesis ({program}) is not installed (pip install schemathesis)"
        ));
    }
    if std::env::var_os(INSIDE).is_none() {
        return run_isolated().await;
    }
    let only = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev is readable");
    let interfaces: Vec<&str> = only
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "the namespace has only loopback");
    let seed = std::env::var("REGISTRY_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let examples =
        std::env::var("REGISTRY_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| DEFAULT_EXAMPLES.into());

    let d = Daemon::start().await;
    let config = d.dir.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let output = tokio::process::Command::new(&program)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &d.url("/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {}", d.admin)])
        .args(["--seed", &seed, "--max-examples", &examples])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "10",
        ])
        // A node URL in one path segment is percent-encoded: most generated strings are
        // filtered out before one fits, which is no fault of the API.
        .args(["--suppress-health-check", "filter_too_much"])
        .current_dir(d.dir.path())
        .output()
        .await
        .expect("schemathesis runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis (seed {seed}, {examples} examples) found failures:\n{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "{}",
        said.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
    d.stop().await;
}

/// Runs this test again, inside a new user and network namespace with loopback up. Where
/// such namespaces are not allowed, the test fails in CI and is skipped elsewhere.
async fn run_isolated() {
    let namespace = ["--user", "--map-root-user", "--net", "--"];
    if !succeeds(
        "unshare",
        &[&namespace[..], &["ip", "link", "set", "lo", "up"]].concat(),
    )
    .await
    {
        return missing(
            "cannot make a network namespace (`unshare --user --net` and `ip` from util-linux \
             and iproute2)",
        );
    }
    let output = tokio::process::Command::new("unshare")
        .args(namespace)
        .args(["sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "schemathesis_finds_nothing_with_every_check",
            "--nocapture",
        ])
        .env(INSIDE, "1")
        .output()
        .await
        .expect("unshare runs");
    let said = String::from_utf8_lossy(&output.stdout);
    let complained = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}\n{complained}");
    eprintln!("{complained}");
}

/// Whether `program` runs with `args` and succeeds, its output discarded.
async fn succeeds(program: &str, args: &[&str]) -> bool {
    tokio::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// What the test needs is missing: a failure in CI (`.ci/run` installs it), a skip, said,
/// elsewhere.
fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}; .ci/run installs it"
    );
    eprintln!("skipped: {what}");
}
