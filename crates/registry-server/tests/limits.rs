//! Limits per caller against a real daemon: the rate limits per token and per source
//! address, and `--check-allow`, the networks health checks may dial.

mod common;

use clap::Parser;
use common::{config, details, Daemon, Reply};
use registry_server::{AllowedNetworks, Config, RateLimit};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// `registry-svc serve`'s flags, parsed as the binary parses them.
#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    config: Config,
}

fn limits(per_token: &str, per_address: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.rate_limit_token = RateLimit::parse(per_token).unwrap();
    config.rate_limit_address = RateLimit::parse(per_address).unwrap();
    (config, dir)
}

/// A client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Reply {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await.expect("request reaches the daemon")).await
}

/// Sends GETs until one is refused (at most 50): that refusal.
async fn until_refused(client: &reqwest::Client, url: &str, token: Option<&str>) -> Reply {
    for _ in 0..50 {
        let reply = get(client, url, token).await;
        if reply.status != StatusCode::OK {
            return reply;
        }
    }
    panic!("50 requests to {url} in a row were all served");
}

/// Asserts a 429 naming `which` limit, with a `Retry-After` of whole seconds, at least 1.
fn assert_limited(reply: &Reply, which: &str) {
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, Some(which), which);
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}", reply.text))
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
}

#[tokio::test]
async fn a_token_over_its_limit_gets_429_while_another_token_is_served() {
    let (config, dir) = limits("1:3", "off");
    let d = Daemon::start_with(config, dir).await;
    let busy = d.token("busy-svc", "user").await;
    let other = d.token("other-svc", "user").await;
    let url = d.url("/registry-svc/instances");

    let refused = until_refused(&d.http, &url, Some(&busy)).await;
    assert_limited(&refused, "rate limit per token");
    assert_eq!(
        get(&d.http, &url, Some(&other)).await.status,
        StatusCode::OK
    );
    // Not authenticated: counted against no token, so not refused as the busy one.
    let reply = get(&d.http, &url, Some("rsv_not-a-token")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
}

#[tokio::test]
async fn an_address_over_its_limit_gets_429_while_another_address_is_served() {
    let (config, dir) = limits("off", "1:3");
    let d = Daemon::start_with(config, dir).await;
    let url = d.url("/healthz");

    // Unauthenticated requests count against their address.
    let refused = until_refused(&client_from("127.0.0.2"), &url, None).await;
    assert_limited(&refused, "rate limit per source address");
    let reply = get(&client_from("127.0.0.1"), &url, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // The limited address is refused for every route, with a token too.
    let reply = get(
        &client_from("127.0.0.2"),
        &d.url("/registry-svc/instances"),
        Some(&d.admin),
    )
    .await;
    assert_limited(&reply, "rate limit per source address");
}

#[tokio::test]
async fn limits_are_off_with_0_or_off() {
    let serve = Serve::try_parse_from([
        "serve",
        "--rate-limit-token",
        "0",
        "--rate-limit-address",
        "off",
    ])
    .unwrap();
    assert_eq!(serve.config.rate_limit_token, RateLimit::Off);
    assert_eq!(serve.config.rate_limit_address, RateLimit::Off);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    (config.rate_limit_token, config.rate_limit_address) = (RateLimit::Off, RateLimit::Off);
    let d = Daemon::start_with(config, dir).await;
    let url = d.url("/registry-svc/instances");
    for n in 0..200 {
        let reply = get(&d.http, &url, Some(&d.admin)).await;
        assert_eq!(reply.status, StatusCode::OK, "request {n}: {}", reply.text);
    }
}

#[test]
fn bad_limit_and_network_flags_are_refused_at_start() {
    let refused = |flag: &str, value: &str| {
        Serve::try_parse_from(["serve", &format!("{flag}={value}")])
            .err()
            .unwrap_or_else(|| panic!("{flag} {value} accepted"))
            .to_string()
    };
    for bad in ["-5", "fast", "10:0", "1.5", "20000000", ""] {
        let error = refused("--rate-limit-token", bad);
        assert!(error.contains("RATE[:BURST]"), "{bad}: {error}");
        let error = refused("--rate-limit-address", bad);
        assert!(error.contains("--rate-limit-address"), "{bad}: {error}");
    }
    for bad in ["localhost", "127.0.0.0/40", "127.0.0.1,,10.0.0.0/8", ""] {
        let error = refused("--check-allow", bad);
        assert!(error.contains("--check-allow"), "{bad}: {error}");
    }
    let serve =
        Serve::try_parse_from(["serve", "--check-allow", "127.0.0.0/8, 10.0.0.0/8"]).unwrap();
    assert_eq!(
        serve.config.check_allow.unwrap().to_string(),
        "127.0.0.0/8,10.0.0.0/8"
    );
}

#[tokio::test]
async fn every_operation_documents_its_429() {
    let d = Daemon::start().await;
    let document = get(&d.http, &d.url("/openapi.json"), None).await.body;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let answer = &operation["responses"]["429"];
            assert!(
                answer["headers"]["Retry-After"].is_object()
                    && answer["content"]["application/json"].is_object(),
                "{method} {path}: {answer}"
            );
            operations += 1;
        }
    }
    assert!(operations > 10, "{operations} operations");
}

/// A daemon whose health checks may dial 127.0.0.2 only.
async fn checks_only_127_0_0_2() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.check_allow = Some(AllowedNetworks::parse("127.0.0.2/32").unwrap());
    Daemon::start_with(config, dir).await
}

#[tokio::test]
async fn a_literal_address_outside_check_allow_is_refused_naming_the_field() {
    let d = checks_only_127_0_0_2().await;
    let register = |body: Value| d.admin(Method::PUT, "/registry-svc/instance", Some(body));
    for (body, field) in [
        (json!({"url": "http://127.0.0.1:1"}), "`url`"),
        (json!({"url": "http://[::1]:1"}), "`url`"),
        (
            json!({"scheme": "http", "host": "127.0.0.1", "port": 1}),
            "`host`",
        ),
        (
            json!({"scheme": "http", "ip": "127.0.0.3", "port": 1}),
            "`ip`",
        ),
        (
            json!({"url": "http://127.0.0.2:1", "ip": "127.0.0.1"}),
            "`ip`",
        ),
    ] {
        let reply = register(body.clone()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field), &body.to_string());
        assert!(reply.error().contains("127.0.0.2/32"), "{}", reply.text);
    }
    let reply = register(json!({"url": "http://127.0.0.2:1"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert!(d.list_instances("").await.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["url"] == "http://127.0.0.2:1"));
}

/// A listener nobody accepts from: every connection made to it stays queued (even one
/// reset at once), so draining the queue counts every dial.
fn counting_listener(ip: &str) -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn dials(listener: &std::net::TcpListener) -> usize {
    std::iter::from_fn(|| listener.accept().ok()).count()
}

#[tokio::test]
async fn a_hostname_resolving_outside_check_allow_is_an_error_and_never_dialled() {
    let d = checks_only_127_0_0_2().await;
    // localhost is 127.0.0.1 (and ::1): outside the list.
    let (outside, outside_port) = counting_listener("127.0.0.1");
    let mut refused = Vec::new();
    for check_type in ["tcp", "http"] {
        let check = json!({"type": check_type, "interval": "1s", "unhealthyThreshold": 1});
        let url = format!("http://localhost:{outside_port}/{check_type}");
        refused.push(d.register(json!({"url": url, "healthCheck": check})).await);
    }
    for id in &refused {
        let instance = d
            .wait_for_status(id, "Error", Duration::from_secs(10))
            .await;
        let details = details(&instance);
        assert!(
            details.starts_with(&format!(
                "not dialled: localhost:{outside_port} resolves only to addresses outside"
            )) || details.starts_with("not dialled: localhost resolves only to addresses outside"),
            "{instance}"
        );
        assert!(details.contains("127.0.0.2/32"), "{instance}");
    }
    // Checks run meanwhile: one inside the list reaches its listener.
    let (inside, inside_port) = counting_listener("127.0.0.2");
    let check = json!({"interval": "1s", "unhealthyThreshold": 1});
    let allowed = d
        .register(json!({"url": format!("http://127.0.0.2:{inside_port}"), "healthCheck": check}))
        .await;
    d.wait_for_status(&allowed, "Healthy", Duration::from_secs(10))
        .await;
    assert!(dials(&inside) >= 1);
    assert_eq!(dials(&outside), 0, "the checker dialled outside the list");
}

#[tokio::test]
async fn a_redirect_cannot_lead_a_check_outside_check_allow() {
    let d = checks_only_127_0_0_2().await;
    let (outside, outside_port) = counting_listener("127.0.0.1");
    let inside = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let url = format!("http://{}", inside.local_addr().unwrap());
    let redirecting = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{outside_port}/healthz\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        loop {
            let (mut stream, _) = inside.accept().await.unwrap();
            let mut request = [0; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let check = json!({"type": "http", "interval": "1s", "unhealthyThreshold": 1});
    let id = d.register(json!({"url": url, "healthCheck": check})).await;
    let instance = d
        .wait_for_status(&id, "Error", Duration::from_secs(10))
        .await;
    assert_eq!(details(&instance), "HTTP 302", "{instance}");
    redirecting.abort();
    assert_eq!(dials(&outside), 0, "the checker followed the redirect");
}
