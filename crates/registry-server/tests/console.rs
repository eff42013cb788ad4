//! The web console at `/ui`: served without a token, with a strict Content-Security-Policy,
//! content types and validators; and driven in a real headless Chromium by
//! `tests/console/e2e.mjs` (playwright-core from npm, installed outside the repository by
//! `.ci/run` from `tests/console/package-lock.json` and found through
//! `REGISTRY_CONSOLE_MODULES`). Without Chromium, node or the package the browser test fails
//! in CI and is skipped elsewhere.

mod common;

use common::{chromium, config, fake_nvidia_smi, Daemon};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_without_a_token_with_a_strict_policy_and_validators() {
    let d = Daemon::start().await;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/assets/app.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/live.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/console.css", "text/css; charset=utf-8"),
        ("/ui/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = d.plain.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, CONTENT_TYPE), content_type, "{path}");
        let policy = header(&r, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&r, CACHE_CONTROL), "no-cache", "{path}");
        let etag = header(&r, ETAG).to_string();
        assert!(
            etag.starts_with('"') && etag.len() > 10,
            "{path}: ETag {etag:?}"
        );

        // A browser holding the current copy gets a 304 without a body.
        let again = d
            .plain
            .get(d.url(path))
            .header(IF_NONE_MATCH, format!("W/\"x\", {etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, ETAG), etag, "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");
    }

    // The page loads no inline script: everything it runs is a file of its own.
    let page = d.plain.get(d.url("/ui")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/assets/app.js"></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "{html}");

    d.plain
        .get(d.url("/ui/assets/nothing.js"))
        .send()
        .await
        .map(common::Reply::read)
        .unwrap()
        .await
        .assert_error(
            StatusCode::NOT_FOUND,
            Some("nothing.js"),
            "an unknown asset",
        );
    // The data behind the console still needs a token.
    let r = d
        .plain
        .get(d.url("/registry-svc/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    d.stop().await;
}

/// The `node_modules` holding playwright-core, when it, node and Chromium are there.
fn browser_tools() -> Result<(PathBuf, String), String> {
    let browser = chromium().ok_or("no Chromium (set REGISTRY_CHROMIUM or install chromium)")?;
    let modules = std::env::var_os("REGISTRY_CONSOLE_MODULES")
        .map(PathBuf::from)
        .ok_or("REGISTRY_CONSOLE_MODULES is not set")?;
    if !modules.join("playwright-core/package.json").is_file() {
        return Err(format!("no playwright-core in {}", modules.display()));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node is not installed".into());
    }
    Ok((modules, browser))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_signs_in_follows_changes_live_and_pages_through_10000() {
    let (modules, browser) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; .ci/run installs what the console test needs"
            );
            eprintln!("skipped: {why} (see docs/testing.md, the web console)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.nvidia_smi = fake_nvidia_smi(dir.path()).await;
    // A node address that is only shown, never dialled.
    config.self_url = Some("http://127.0.0.10:58231".into());
    config.region = "eu-central".into();
    config.availability_zone = "eu-central-1a".into();
    let d = Daemon::start_with(config, dir).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/e2e.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("REGISTRY_URL", d.url(""))
        .env("REGISTRY_TOKEN", &d.admin)
        .env("REGISTRY_CONSOLE_MODULES", &modules)
        .env("REGISTRY_CHROMIUM", &browser)
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the browser test finishes within 5 minutes")
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{report}");
    println!("{report}");
    d.stop().await;
}
