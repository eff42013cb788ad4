//! Browser callers from other origins: preflights answered before authentication, the
//! CORS headers on every answer, `--cors-origins` honoured; and a real headless Chromium
//! listing instances from a page of another origin.

mod common;

use common::{chromium, config, Daemon};
use registry_server::CorsOrigins;
use reqwest::header::{HeaderMap, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;

/// An origin a test page could have; no request is ever sent to it.
const PAGE: &str = "http://127.0.0.1:9";

/// One request per kind of path: every endpoint answers preflights.
const PATHS: [&str; 8] = [
    "/registry-svc/instances",
    "/registry-svc/instance",
    "/registry-svc/instance/inst_x/heartbeat",
    "/registry-svc/definition/def_x",
    "/registry-svc/nodes",
    "/registry-svc/echo",
    "/registry-svc/events",
    "/openapi.json",
];

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

/// The answer to a browser's preflight for `method path` from `origin`, with no token.
async fn preflight(d: &Daemon, path: &str, origin: &str, method: &str) -> reqwest::Response {
    d.http
        .request(Method::OPTIONS, d.url(path))
        .header(ORIGIN, origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

/// The answer to `GET path` from a page of `origin`, with `token` if given.
async fn get_from(d: &Daemon, path: &str, origin: &str, token: Option<&str>) -> common::Reply {
    let mut request = d.http.get(d.url(path)).header(ORIGIN, origin);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    common::Reply::read(request.send().await.unwrap()).await
}

async fn daemon_allowing(origins: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.cors_origins = CorsOrigins::parse(origins).unwrap();
    Daemon::start_with(config, dir).await
}

#[tokio::test]
async fn preflights_are_answered_on_every_endpoint_without_a_token() {
    let d = Daemon::start().await;
    for path in PATHS {
        let r = preflight(&d, path, PAGE, "PUT").await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let headers = r.headers();
        assert_eq!(
            header(headers, "access-control-allow-origin"),
            "*",
            "{path}"
        );
        let methods = header(headers, "access-control-allow-methods");
        for method in ["GET", "POST", "PUT", "DELETE"] {
            assert!(methods.contains(method), "{path}: {methods}");
        }
        let allowed = header(headers, "access-control-allow-headers");
        for name in ["authorization", "content-type"] {
            assert!(allowed.contains(name), "{path}: {allowed}");
        }
        assert!(!header(headers, "access-control-max-age").is_empty());
        assert!(headers.get("access-control-allow-credentials").is_none());
    }
    d.stop().await;
}

#[tokio::test]
async fn every_answer_carries_the_headers_and_other_wrong_methods_stay_json_errors() {
    let d = Daemon::start().await;
    let r = get_from(&d, "/registry-svc/instances", PAGE, Some(&d.admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(header(&r.headers, "access-control-allow-origin"), "*");
    let exposed = header(&r.headers, "access-control-expose-headers");
    assert!(exposed.contains("x-registry-index"), "{exposed}");
    assert!(exposed.contains("retry-after"), "{exposed}");

    // Errors too, so that a page can read them.
    for (path, token, status) in [
        ("/registry-svc/instances", None, StatusCode::UNAUTHORIZED),
        (
            "/no/such/path",
            Some(d.admin.as_str()),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = get_from(&d, path, PAGE, token).await;
        r.assert_error(status, None, path);
        assert_eq!(
            header(&r.headers, "access-control-allow-origin"),
            "*",
            "{path}"
        );
    }
    for (method, path) in [
        (Method::PATCH, "/registry-svc/instances"),
        (Method::DELETE, "/registry-svc/instances"),
        (Method::POST, "/registry-svc/echo/x"),
    ] {
        let status = if path.ends_with("/x") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        d.send(method.clone(), path, Some(&d.admin), None)
            .await
            .assert_error(status, None, &format!("{method} {path}"));
    }
    d.stop().await;
}

#[tokio::test]
async fn only_the_configured_origins_are_allowed() {
    let allowed = "http://127.0.0.1:8080";
    let d = daemon_allowing(&format!("{allowed}, https://app.example.test")).await;
    let r = preflight(&d, "/registry-svc/instances", allowed, "GET").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), allowed);
    assert!(header(r.headers(), "vary").contains("origin"));
    let r = get_from(&d, "/registry-svc/instances", allowed, Some(&d.admin)).await;
    assert_eq!(header(&r.headers, "access-control-allow-origin"), allowed);

    // Any other origin gets no allowance, so its browser keeps the answer from the page.
    for origin in [PAGE, "http://127.0.0.1:8081", "null"] {
        let r = preflight(&d, "/registry-svc/instances", origin, "GET").await;
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        let r = get_from(&d, "/registry-svc/instances", origin, Some(&d.admin)).await;
        assert!(
            r.headers.get("access-control-allow-origin").is_none(),
            "{origin}"
        );
    }
    d.stop().await;
}

// ---------------------------------------------------------------------------------------
// In a real browser
// ---------------------------------------------------------------------------------------

/// A page that lists instances from the daemon at `api` with `token` and shows what came
/// back (status, the `X-Registry-Index` header, the body) or why the browser refused.
fn page(api: &str, token: &str) -> String {
    format!(
        r#"<!doctype html>
<html><body><pre id="result">pending</pre><script>
fetch("{api}/registry-svc/instances", {{headers: {{"Authorization": "Bearer {token}"}}}})
  .then(r => r.text().then(body =>
    "status " + r.status + " index " + r.headers.get("X-Registry-Index") + " " + body))
  .catch(e => "refused: " + e)
  .then(text => {{ document.getElementById("result").textContent = text; }});
</script></body></html>"#
    )
}

/// Serves `html` at `/` on `listener` until the task is dropped.
fn serve_page(listener: TcpListener, html: String) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
}

/// The DOM of `url` as headless Chromium has it once the page's requests are done.
async fn dump_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            // Virtual time stands still while requests are in flight: the DOM is dumped
            // after the page's fetch has settled.
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("Chromium finishes within a minute")
        .expect("Chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        dom.contains("id=\"result\""),
        "no page from Chromium ({}): {dom}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

#[tokio::test]
async fn a_page_of_an_allowed_origin_lists_instances_in_chromium_and_another_is_refused() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Chromium is not installed (apt-get install chromium), and CI needs this test"
        );
        eprintln!("skipped: no Chromium (set REGISTRY_CHROMIUM or install chromium)");
        return;
    };
    let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = |l: &TcpListener| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let (allowed_origin, other_origin) = (origin(&allowed), origin(&other));
    let d = daemon_allowing(&allowed_origin).await;
    let id = d
        .register(json!({"url": "http://127.0.0.1:1/browser", "slug": "seen-in-a-browser"}))
        .await;
    let html = page(&d.url(""), &d.admin);
    let pages = [serve_page(allowed, html.clone()), serve_page(other, html)];

    let dom = dump_dom(&browser, &format!("{allowed_origin}/")).await;
    assert!(dom.contains("status 200"), "{dom}");
    assert!(dom.contains(&id), "the instance list did not arrive: {dom}");
    let index = dom
        .split("index ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next());
    assert!(
        index.is_some_and(|i| i.parse::<u64>().is_ok()),
        "X-Registry-Index not readable by the page: {dom}"
    );

    let dom = dump_dom(&browser, &format!("{other_origin}/")).await;
    assert!(dom.contains("refused: TypeError"), "{dom}");
    assert!(!dom.contains(&id), "{dom}");

    for page in pages {
        page.abort();
    }
    d.stop().await;
}
