//! A tiny service that registers itself, keeps its TTL alive, discovers another service and
//! calls it through client-side load balancing, and deregisters on Ctrl-C.
//!
//! ```text
//! registry-svc serve &                       # a local registry (admin token in ./registry-data)
//! export REGISTRY_TOKEN=$(cat registry-data/admin.token)
//! cargo run -p registry-client --example hello_service               # slug hello-svc, calls itself
//! HELLO_SLUG=hello-b HELLO_TARGET=hello-svc cargo run -p registry-client --example hello_service
//! ```
//!
//! Environment: `REGISTRY_ADDR` (default `http://127.0.0.1:58231`), `REGISTRY_TOKEN`,
//! `HELLO_SLUG` (this service's slug, default `hello-svc`; a non-admin token registers under
//! its own slug), `HELLO_TARGET` (the slug to call, default `HELLO_SLUG`).
//! Everything listens and connects on 127.0.0.1 only.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use registry_client::types::{constants, RegisterInstanceRequest};
use registry_client::{register_self, Balancer, Discovery, DiscoveryOptions, RegistryClient};
use std::time::Duration;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = env_or(constants::ADDR_ENV, constants::DEFAULT_URL);
    let token = std::env::var(constants::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty());
    let slug = env_or("HELLO_SLUG", "hello-svc");
    let target = env_or("HELLO_TARGET", &slug);
    let client = RegistryClient::new(addr, token);

    // Serve "hello" on a free loopback port.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route(
            "/",
            get(|State(name): State<String>| async move { format!("hello from {name}\n") }),
        )
        .with_state(format!("{slug} at {url}"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Register with a 15 s TTL: a heartbeat goes out every 5 s until we deregister.
    let registration = register_self(
        client.clone(),
        RegisterInstanceRequest {
            url: url.clone(),
            slug: slug.clone(),
            ttl: Some("15s".into()),
            ..Default::default()
        },
    )
    .await?;
    println!(
        "{slug} serving at {url}, registered as {}",
        registration.id()
    );

    // Follow the target's healthy instances; pick one per call, least busy of two.
    let options = DiscoveryOptions::default().with_balancer(Balancer::PowerOfTwoChoices);
    let discovery = Discovery::start(client, target.clone(), options);
    if let Err(err) = discovery.wait_ready(Duration::from_secs(10)).await {
        eprintln!("warning: {err}");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => call(&http, &discovery).await,
        }
    }

    println!("deregistering {}", registration.id());
    registration.deregister().await?;
    discovery.stop();
    server.abort();
    Ok(())
}

/// Calls one instance of the discovered service and prints what it says.
async fn call(http: &reqwest::Client, discovery: &Discovery) {
    let instance = match discovery.pick() {
        Ok(instance) => instance,
        Err(err) => {
            println!("no call: {err}");
            return;
        }
    };
    // `instance` is held until the answer is read: it counts as one request in flight.
    let answer = match http.get(instance.url()).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(err) => format!("failed: {err}\n"),
    };
    print!("{} -> {answer}", instance.id);
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}
