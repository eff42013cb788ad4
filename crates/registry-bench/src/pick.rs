//! `registry-bench pick`: what choosing an instance costs a client.
//!
//! Registers `--instances` live instances of one slug (TCP checks every 100 ms on
//! listeners of the bench's own), starts one `Discovery` per balancer once they are
//! Healthy, and times `--picks` calls of `pick()` on each: no network, only the in-memory
//! set and the balancer.

use crate::daemon::Daemon;
use crate::table;
use anyhow::{bail, Context, Result};
use clap::Args;
use registry_client::types::{HealthCheck, HealthCheckType, RegisterInstanceRequest};
use registry_client::{Balancer, Discovery, DiscoveryOptions, RegistryClient};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SLUG: &str = "bench-pick";

#[derive(Args, Clone)]
pub(crate) struct PickArgs {
    /// Healthy instances to choose among.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    instances: u64,
    /// Calls of `pick()` timed per balancer.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    picks: u64,
    /// The `registry-svc` binary; default: the one beside this executable.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
}

pub(crate) async fn run(args: PickArgs) -> Result<()> {
    let binary = crate::daemon::locate(args.daemon.as_deref())?;
    let daemon = Daemon::start(&binary)?;
    let client = RegistryClient::new(daemon.base_url.clone(), Some(daemon.token.clone()));
    let mut listeners = Vec::new();
    for _ in 0..args.instances {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        listeners.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }));
        client
            .register_instance(&RegisterInstanceRequest {
                url: format!("http://127.0.0.1:{port}"),
                slug: SLUG.into(),
                health_check: Some(HealthCheck {
                    check_type: Some(HealthCheckType::Tcp),
                    interval: Some("1s".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context("registering an instance")?;
    }

    let balancers = [
        ("round-robin", Balancer::RoundRobin),
        ("random", Balancer::Random),
        ("power of two choices", Balancer::PowerOfTwoChoices),
        // The daemon's node has no zone: every pick takes the fallback path.
        ("zone affinity", Balancer::zone_affinity("zone-a")),
    ];
    let mut rows = vec![
        ("instances", args.instances.to_string()),
        ("picks per balancer", args.picks.to_string()),
    ];
    for (name, balancer) in balancers {
        let discovery = Discovery::start(
            client.clone(),
            SLUG,
            DiscoveryOptions::default().with_balancer(balancer),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while discovery.snapshot().len() < args.instances as usize {
            if Instant::now() > deadline {
                bail!("the instances did not all become Healthy within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = Instant::now();
        for _ in 0..args.picks {
            // Held and dropped at once, as a call that finished instantly.
            std::hint::black_box(discovery.pick()?);
        }
        let per_pick = started.elapsed().as_nanos() as f64 / args.picks as f64;
        rows.push((name, format!("{per_pick:.0} ns per pick")));
        discovery.stop();
    }
    for listener in listeners {
        listener.abort();
    }
    let command = format!(
        "cargo build --release && target/release/registry-bench pick --instances {} --picks {}",
        args.instances, args.picks
    );
    print!("{}", table::render("registry-bench pick", &rows, &command));
    drop(daemon);
    Ok(())
}
