//! The Registry Svc daemon as a library.
//!
//! [`start`] opens the store, loads it into memory, binds the HTTP listener, registers this
//! daemon as a node and serves until [`RunningServer::shutdown`]; [`serve`] does the same
//! until SIGINT or SIGTERM. The binary `registry-svc serve` is a thin wrapper over
//! [`serve`]; tests use [`start`] to run a real daemon on a free loopback port.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let config = registry_server::Config::embedded(dir.path());
//! let server = registry_server::start(config).await?;
//! println!("serving on {}", server.base_url());
//! server.shutdown().await
//! # }
//! ```
//!
//! How a request flows:
//!
//! ```text
//! write: request → auth::Caller → validate → state::Command → state::Writer (group commit)
//!        → store commit (revision R, fsync) → state tables updated → feed announces R
//!        → response
//! read:  request → auth::Caller → state tables (memory only) → response
//! ```
//!
//! The modules are private and import only downwards; `tests/layers.rs` keeps them so:
//!
//! ```text
//! transport → api, dns → backup, health, nodes → state → auth, feed → registry-store (crate)
//! ```
//!
//! with the small leaf modules (config, error, ids, cache, rate limits, the supervisor,
//! the networks checks may dial) below them all.

mod accept;
mod api;
mod auth;
mod backup;
mod cache;
mod check_allow;
mod config;
mod cors;
mod dns;
mod error;
mod feed;
mod health;
mod ids;
mod metrics;
mod nodes;
mod rate_limit;
mod state;
mod supervisor;
mod transport;
mod ui;

pub use check_allow::AllowedNetworks;
pub use config::{Config, Dialect};
pub use cors::CorsOrigins;
pub use dns::{DnsCounters, DnsQueryCount};
pub use nodes::gpu::{parse_cuda_version, parse_gpu_csv};
pub use rate_limit::RateLimit;

use error::{Error, Result};

use anyhow::Context;
use feed::Feed;
use registry_store::{redact_password, PostgresStore, SqliteStore, Store};
use state::{Registry, Writer};
use std::net::SocketAddr;
use std::sync::Arc;
use supervisor::{supervise, Task};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daemon started by [`start`].
pub struct RunningServer {
    addr: SocketAddr,
    /// `https` when serving TLS, else `http`.
    scheme: &'static str,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Every task of the daemon, for [`RunningServer::abort`].
    tasks: Vec<tokio::task::AbortHandle>,
    /// Where the DNS server listens, when `--dns-listen` asks for one.
    dns_addr: Option<SocketAddr>,
    dns_counters: Arc<DnsCounters>,
}

impl RunningServer {
    /// The address the HTTP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` when serving TLS.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The address the DNS server is bound to (UDP and TCP), if it runs.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// What the DNS server has counted (all zero when it does not run).
    pub fn dns_counters(&self) -> Arc<DnsCounters> {
        self.dns_counters.clone()
    }

    /// Stops everything at once, like a crash: no flush, no goodbye to the store. Tests
    /// use it to play a daemon killed with SIGKILL.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.task.abort();
    }

    /// Stops accepting connections, finishes the requests in flight, commits every
    /// queued write and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("server task failed")?
    }
}

/// Starts a daemon on the store its configuration names; returns once it is serving.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let store = open_store(&config).await?;
    start_with_store(config, store).await
}

/// The store a configuration asks for: PostgreSQL when `--database-url` names one, else
/// the embedded SQLite file in the data directory.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.database_url {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Ok(Arc::new(PostgresStore::connect(url).await?));
        }
        anyhow::bail!(
            "--database-url {}: unsupported database URL; expected postgres://… or \
             postgresql://… (leave it unset to use the embedded SQLite store in --data-dir)",
            redact_password(url)
        );
    }
    let path = config.data_dir.join("registry.db");
    Ok(Arc::new(SqliteStore::open(&path)?))
}

/// Starts a daemon on a store opened by the caller (tests wrap a store to observe it).
pub async fn start_with_store(
    config: Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<RunningServer> {
    let snapshot = store.load().await.context("loading the store")?;
    let registry = Arc::new(Registry::from_snapshot(snapshot).context("loading the store")?);
    let shutdown = CancellationToken::new();
    let feed = Arc::new(Feed::new(registry.clone(), store.clone(), shutdown.clone()));
    let tasks = Arc::new(supervisor::Tasks::default());
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.register_collector(state::TablesCollector {
        registry: registry.clone(),
        max_slugs: config.metrics_max_slugs as usize,
    });
    metrics.register_collector(feed::FeedCollector::new(feed.clone()));
    let (writer, writer_task) = Writer::start(
        store.clone(),
        registry.clone(),
        feed.clone(),
        tasks.clone(),
        &metrics,
    );

    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(transport::Tls::load(
            cert,
            key,
            config.tls_client_ca.as_deref(),
        )?)),
        (None, None) if config.tls_client_ca.is_some() => {
            anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key")
        }
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let limits = transport::Limits::new(&config, transport::raise_open_file_limit());
    let listener = transport::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let this_node = Arc::new(nodes::ThisNode::new(&config, addr)?);
    let dns_counters = Arc::new(DnsCounters::default());
    let dns = match config.dns_listen {
        Some(listen) => {
            let settings = dns::Settings {
                listen,
                domain: config.dns_domain.clone(),
                ttl: config.dns_ttl.as_secs().try_into().unwrap_or(u32::MAX),
                include_degraded: config.dns_include_degraded,
                max_tcp_connections: config.dns_max_tcp_connections,
                rate_limit_address: config.dns_rate_limit_address,
            };
            let server = dns::DnsServer::start(
                &settings,
                registry.clone(),
                dns_counters.clone(),
                shutdown.clone(),
            )
            .await
            .with_context(|| format!("cannot serve DNS on {listen}"))?;
            tracing::info!(addr = %server.addr(), domain = %settings.domain, "serving DNS");
            metrics.register_collector(dns::DnsCollector(dns_counters.clone()));
            Some(server)
        }
        None => None,
    };
    let dns_addr = dns.as_ref().map(dns::DnsServer::addr);
    metrics.register_collector(this_node.collector(registry.clone()));

    if config.admin_token.is_none() {
        nodes::ensure_admin_token(&registry, &writer, &this_node, &config.data_dir).await?;
    }

    this_node
        .heartbeat(&writer)
        .await
        .context("registering this node")?;

    let heartbeat = tokio::spawn({
        let (this_node, writer, shutdown) = (this_node.clone(), writer.clone(), shutdown.clone());
        supervise(Task::NodeHeartbeat, tasks.clone(), move || {
            let (this_node, writer, shutdown) =
                (this_node.clone(), writer.clone(), shutdown.clone());
            async move { this_node.heartbeat_loop(writer, shutdown).await }
        })
    });
    let health = tokio::spawn({
        let (registry, feed) = (registry.clone(), feed.clone());
        let (writer, this_node, shutdown) = (writer.clone(), this_node.clone(), shutdown.clone());
        let checks = health::Checks {
            shared: config.database_url.is_some(),
            allowed: config.check_allow.clone().map(Arc::new),
            counts: Arc::new(health::HealthMetrics::register(&metrics)),
        };
        supervise(Task::HealthChecker, tasks.clone(), move || {
            health::HealthChecker::run(
                registry.clone(),
                feed.clone(),
                writer.clone(),
                this_node.clone(),
                checks.clone(),
                shutdown.clone(),
            )
        })
    });
    let health_notes = Arc::new(state::HealthNotes::new(
        store.clone(),
        registry.clone(),
        &metrics,
    ));
    let notes = tokio::spawn({
        let (health_notes, shutdown) = (health_notes.clone(), shutdown.clone());
        let shared = config.database_url.is_some();
        supervise(Task::HealthNotes, tasks.clone(), move || {
            let (health_notes, shutdown) = (health_notes.clone(), shutdown.clone());
            async move { health_notes.run(shared, shutdown).await }
        })
    });
    let user_svc_key = auth::UserSvcKey::from_config(&config)?;
    let auth = Arc::new(auth::AuthState {
        tokens: registry.clone(),
        admin_token_hash: config.admin_token.as_deref().map(auth::hash_token),
        trusted_slugs: config.trusted_slugs.clone().into(),
        user_svc: user_svc_key.clone(),
        verified_tokens: Default::default(),
        rate_limits: rate_limit::RateLimits::new(
            config.rate_limit_token,
            config.rate_limit_address,
        ),
    });
    let app = api::ApiState::new(api::ApiParts {
        auth,
        registry: registry.clone(),
        writer: writer.clone(),
        store: store.clone(),
        this_node: this_node.clone(),
        instance_lists: Default::default(),
        instance_queries: Default::default(),
        tasks,
        check_allow: config.check_allow.clone(),
        feed,
        dialect: config.dialect,
        metrics,
        metrics_token_hash: config
            .metrics_token
            .as_deref()
            .filter(|token| !token.is_empty())
            .map(auth::hash_token),
    });
    let service = api::service(app, &config.cors_origins);
    tracing::info!(
        %addr,
        node = %this_node.url,
        max_connections = limits.max_connections,
        "serving"
    );
    tracing::info!(
        per_token = %config.rate_limit_token,
        per_address = %config.rate_limit_address,
        check_allow = %config.check_allow.as_ref().map_or("any".into(), ToString::to_string),
        cors_origins = %config.cors_origins,
        "limits per caller"
    );

    let mut tasks = vec![
        heartbeat.abort_handle(),
        health.abort_handle(),
        notes.abort_handle(),
        writer_task.abort_handle(),
    ];
    if let Some(key) = user_svc_key {
        let fetch = tokio::spawn(key.keep_fetched(shutdown.clone()));
        tasks.push(fetch.abort_handle());
    }
    tasks.extend(dns.as_ref().map(dns::DnsServer::abort_handle));
    if let Some(tls) = &tls {
        let watch = tokio::spawn(tls.clone().watch(shutdown.clone()));
        tasks.push(watch.abort_handle());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            transport::serve(listener, service, tls, limits, shutdown).await;
            if let Some(dns) = dns {
                dns.stopped().await;
            }
            heartbeat.await.ok();
            health.await.ok();
            notes.await.ok();
            health_notes.write().await;
            // That was the last writer handle (the router's went with the server): the
            // writer commits what is queued and ends.
            drop(writer);
            writer_task.await.ok();
            store.close().await.context("closing the store")?;
            tracing::info!("stopped");
            Ok(())
        }
    });
    Ok(RunningServer {
        addr,
        scheme,
        shutdown,
        task,
        tasks,
        dns_addr,
        dns_counters,
    })
}

/// Runs a daemon until SIGINT or SIGTERM, then shuts it down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    // One plain line for people and scripts (tests read the port from it).
    println!("registry-svc listening on {}", server.base_url());
    if let Some(addr) = server.dns_addr() {
        println!("registry-svc answering DNS on {addr} (UDP and TCP)");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.ok();
}
