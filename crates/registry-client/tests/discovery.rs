//! Discovery, blocking queries and self-registration against a real registry daemon, started
//! in this process on a free loopback port, with instances at live loopback listeners.

use registry_client::types::{
    HealthCheck, HealthCheckType, InstanceFilter, InstanceStatus, RegisterInstanceRequest,
};
use registry_client::{
    register_self, Backoff, Balancer, Discovery, DiscoveryError, DiscoveryOptions, InstanceList,
    InstanceWatch, RegistryClient, WatchError,
};
use registry_server::{Config, RunningServer};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A daemon in a temporary data dir, and an admin client for it.
struct Registry {
    server: Option<RunningServer>,
    dir: tempfile::TempDir,
    client: RegistryClient,
}

impl Registry {
    async fn start() -> Registry {
        Registry::start_in(tempfile::tempdir().unwrap(), |_| {}).await
    }

    async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Registry {
        let mut config = Config::embedded(dir.path());
        config.nvidia_smi = dir.path().join("no-nvidia-smi");
        adjust(&mut config);
        let server = registry_server::start(config).await.expect("daemon starts");
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let client = RegistryClient::new(server.base_url(), Some(token.trim().to_string()));
        Registry {
            server: Some(server),
            dir,
            client,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr()
    }

    async fn stop(mut self) -> (tempfile::TempDir, RegistryClient) {
        let server = self.server.take().unwrap();
        tokio::time::timeout(DEADLINE, server.shutdown())
            .await
            .expect("shutdown in time")
            .expect("clean shutdown");
        (self.dir, self.client)
    }

    /// Registers an instance of `slug` at `addr`, checked over TCP every 100 ms.
    async fn register(&self, slug: &str, addr: SocketAddr) -> String {
        self.register_with(RegisterInstanceRequest {
            url: format!("http://{addr}"),
            slug: slug.to_string(),
            health_check: Some(fast_tcp_check()),
            ..Default::default()
        })
        .await
    }

    async fn register_with(&self, request: RegisterInstanceRequest) -> String {
        self.client.register_instance(&request).await.unwrap()
    }

    async fn status_of(&self, id: &str) -> Option<InstanceStatus> {
        let filter = InstanceFilter {
            id: Some(id.to_string()),
            ..Default::default()
        };
        let list = self.client.list_instances(&filter).await.unwrap();
        list.first().map(|i| i.status)
    }
}

fn fast_tcp_check() -> HealthCheck {
    HealthCheck {
        check_type: Some(HealthCheckType::Tcp),
        interval: Some("1s".into()),
        timeout: Some("100ms".into()),
        ..Default::default()
    }
}

/// A loopback listener that accepts and closes connections until dropped.
struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on a free loopback port.
    async fn start() -> Listener {
        Listener::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `addr`, which must be free.
    async fn start_on(addr: SocketAddr) -> Listener {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr} is not free: {e}"));
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        Listener { addr, task }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options for quick tests: short blocking queries and retries.
fn options(balancer: Balancer) -> DiscoveryOptions {
    DiscoveryOptions {
        balancer,
        wait: Duration::from_secs(5),
        node_refresh: Duration::from_secs(1),
        min_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after `DEADLINE`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(discovery: &Discovery) -> BTreeSet<String> {
    discovery.instances().into_iter().map(|i| i.id).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// Waits until the cache of `discovery` holds exactly the instances `want`.
async fn eventually_cached(what: &str, discovery: &Discovery, want: &[&str]) {
    eventually(what, || {
        let found = ids(discovery);
        let want = set(want);
        async move { found == want }
    })
    .await;
}

#[tokio::test]
async fn list_answers_carry_an_index_and_blocking_queries_wait_for_a_change() {
    let registry = Registry::start().await;
    let listener = Listener::start().await;
    let filter = InstanceFilter::default();
    registry.register("svc", listener.addr).await;
    let (list, index) = registry
        .client
        .list_instances_indexed(&filter)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(index > 0, "no index on the list");
    let (_, node_index) = registry.client.list_nodes_indexed(&[]).await.unwrap();
    assert!(node_index > 0, "no index on the node list");

    // Nothing changes: the query waits out its (sub-second) wait and keeps the index.
    let (list, same) = wait_for_stable(&registry.client, &filter, index).await;
    assert_eq!(list.len(), 1);

    // A registration wakes a long wait early, with a higher index.
    let client = registry.client.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let answer = client
            .list_instances_blocking(&InstanceFilter::default(), same, Duration::from_secs(30))
            .await
            .unwrap();
        (answer, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = Listener::start().await;
    let id = registry.register("svc", other.addr).await;
    let ((list, woke_at), took) = waiting.await.unwrap();
    assert!(woke_at > same, "{woke_at} after {same}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(list.iter().any(|i| i.id == id));
}

/// Blocking queries from `index` until one waits out a whole check interval (1 s, the
/// shortest there is) with no change, so the first health checks have settled; returns
/// that answer.
async fn wait_for_stable(
    client: &RegistryClient,
    filter: &InstanceFilter,
    mut index: u64,
) -> (Vec<registry_client::types::Instance>, u64) {
    let start = Instant::now();
    loop {
        let started = Instant::now();
        let (list, next) = client
            .list_instances_blocking(filter, index, Duration::from_millis(1200))
            .await
            .unwrap();
        if next == index {
            assert!(started.elapsed() >= Duration::from_millis(1200));
            return (list, next);
        }
        assert!(start.elapsed() < DEADLINE, "the index never settled");
        index = next;
    }
}

#[tokio::test]
async fn discovery_follows_health_and_removals() {
    let registry = Registry::start().await;
    let (a, b) = (Listener::start().await, Listener::start().await);
    let id_a = registry.register("svc", a.addr).await;
    let id_b = registry.register("svc", b.addr).await;
    let other = Listener::start().await;
    registry.register("other-svc", other.addr).await;

    let discovery = Discovery::start(
        registry.client.clone(),
        "svc",
        options(Balancer::RoundRobin),
    );
    discovery.wait_ready(DEADLINE).await.unwrap();
    let mut changes = discovery.subscribe();
    eventually_cached(
        "both instances are healthy in the cache",
        &discovery,
        &[&id_a, &id_b],
    )
    .await;
    assert!(discovery.snapshot().index() > 0);
    let picks: BTreeSet<String> = (0..4)
        .map(|_| discovery.pick().unwrap().id.clone())
        .collect();
    assert_eq!(picks, set(&[&id_a, &id_b]), "round-robin visits both");

    // A removal disappears, and subscribers hear of it.
    changes.borrow_and_update();
    registry.client.delete_instance(&id_a).await.unwrap();
    eventually_cached(
        "the removed instance leaves the cache",
        &discovery,
        &[&id_b],
    )
    .await;
    assert!(changes.has_changed().unwrap());

    // The last listener goes away: Unreachable, so nothing is left to pick.
    drop(b);
    eventually("the unreachable instance leaves the cache", || {
        let empty = discovery.snapshot().is_empty();
        async move { empty }
    })
    .await;
    assert_eq!(
        registry.status_of(&id_b).await,
        Some(InstanceStatus::Unreachable)
    );
    let err = discovery.pick().unwrap_err();
    assert_eq!(err, DiscoveryError::NoInstance { slug: "svc".into() });
    assert_eq!(err.to_string(), "no healthy instance of \"svc\"");

    // It comes back on the same address: Healthy again, pickable again.
    // The released port is free again.
    let _back = Listener::start_on(address_of(&registry, &id_b).await).await;
    eventually_cached(
        "the recovered instance returns to the cache",
        &discovery,
        &[&id_b],
    )
    .await;
    assert_eq!(discovery.pick().unwrap().id, id_b);
}

/// The address the instance `id` was registered at.
async fn address_of(registry: &Registry, id: &str) -> SocketAddr {
    let filter = InstanceFilter {
        id: Some(id.to_string()),
        ..Default::default()
    };
    let list = registry.client.list_instances(&filter).await.unwrap();
    format!("{}:{}", list[0].host, list[0].port)
        .parse()
        .unwrap()
}

#[tokio::test]
async fn cache_keeps_serving_while_the_registry_is_down_and_recovers() {
    let registry = Registry::start().await;
    let addr = registry.addr();
    let a = Listener::start().await;
    let id_a = registry.register("svc", a.addr).await;
    let discovery = Discovery::start(registry.client.clone(), "svc", options(Balancer::Random));
    eventually_cached("the instance is healthy in the cache", &discovery, &[&id_a]).await;

    let (dir, _) = registry.stop().await;
    eventually("discovery notices the registry is gone", || {
        let failing = discovery.last_error().is_some();
        async move { failing }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(discovery.pick().unwrap().id, id_a, "last known set serves");
    }
    assert_eq!(ids(&discovery), set(&[&id_a]));

    // The registry returns on the same address: the discovery picks up new changes.
    let registry = Registry::start_in(dir, |config| config.listen = addr.to_string()).await;
    let b = Listener::start().await;
    let id_b = registry.register("svc", b.addr).await;
    eventually_cached(
        "a registration after the outage reaches the cache",
        &discovery,
        &[&id_a, &id_b],
    )
    .await;
    assert_eq!(discovery.last_error(), None);
}

/// The watch's next answer or failure, which must come before `DEADLINE`.
async fn next_of(watch: &mut InstanceWatch) -> Result<InstanceList, WatchError> {
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("the watch answers in time")
}

#[tokio::test]
async fn an_instance_watch_reports_changes_paces_quiet_waits_and_outlives_an_outage() {
    let registry = Registry::start().await;
    let addr = registry.addr();
    let filter = InstanceFilter {
        slug: Some("svc".into()),
        ..Default::default()
    };
    let mut watch = InstanceWatch::new(registry.client.clone(), filter)
        .with_wait(Duration::from_millis(300))
        .with_backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ));
    assert_eq!(watch.index(), None);
    let first = next_of(&mut watch).await.unwrap();
    assert!(first.changed, "the first answer counts as a change");
    assert!(first.instances.is_empty());
    assert_eq!(watch.index(), Some(first.index));

    // Nothing changes: the blocking query waits out its wait and keeps the index.
    let quiet_started = Instant::now();
    let quiet = next_of(&mut watch).await.unwrap();
    assert!(!quiet.changed);
    assert_eq!(quiet.index, first.index);

    // A registration is the next answer, asked for no sooner than a second after the quiet
    // one: a registry that answers at once is polled, not hammered.
    let id = registry
        .register_with(RegisterInstanceRequest {
            url: "http://127.0.0.1:1".into(),
            slug: "svc".into(),
            health_check: Some(HealthCheck {
                check_type: Some(HealthCheckType::None),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let changed = next_of(&mut watch).await.unwrap();
    assert!(quiet_started.elapsed() >= Duration::from_secs(1));
    assert!(changed.changed && changed.index > quiet.index);
    assert_eq!(changed.instances.len(), 1);
    assert_eq!(changed.instances[0].id, id);

    // The registry goes away: a failure with a retry delay from the backoff, not the end.
    let (dir, _) = registry.stop().await;
    let failure = next_of(&mut watch).await.unwrap_err();
    assert!(failure.error.status().is_none(), "{failure:?}");
    assert!(failure.retry_in <= Duration::from_millis(20), "{failure:?}");
    assert_eq!(watch.index(), Some(changed.index));

    // It comes back on the same address: the watch carries on and lists the instance.
    let _registry = Registry::start_in(dir, |config| config.listen = addr.to_string()).await;
    let start = Instant::now();
    let list = loop {
        match next_of(&mut watch).await {
            Ok(list) => break list,
            Err(_) => assert!(start.elapsed() < DEADLINE, "the watch never recovered"),
        }
    };
    assert_eq!(list.instances.len(), 1);
    assert_eq!(list.instances[0].id, id);
}

#[tokio::test]
async fn zone_affinity_prefers_instances_on_nodes_in_the_zone() {
    let registry = Registry::start_in(tempfile::tempdir().unwrap(), |config| {
        config.availability_zone = "zone-a".into();
    })
    .await;
    let node = registry.client.node_self().await.unwrap();
    assert_eq!(node.availability_zone, "zone-a");
    let (local, remote) = (Listener::start().await, Listener::start().await);
    let id_local = registry
        .register_with(RegisterInstanceRequest {
            url: format!("http://{}", local.addr),
            slug: "svc".into(),
            node_url: node.url.clone(),
            health_check: Some(fast_tcp_check()),
            ..Default::default()
        })
        .await;
    let id_remote = registry.register("svc", remote.addr).await;

    let near = Discovery::start(
        registry.client.clone(),
        "svc",
        options(Balancer::zone_affinity("zone-a")),
    );
    let far = Discovery::start(
        registry.client.clone(),
        "svc",
        options(Balancer::zone_affinity("zone-b")),
    );
    for discovery in [&near, &far] {
        eventually_cached(
            "both instances are healthy in the cache",
            discovery,
            &[&id_local, &id_remote],
        )
        .await;
    }
    assert_eq!(near.snapshot().zone_of(&id_local), Some("zone-a"));
    for _ in 0..10 {
        assert_eq!(near.pick().unwrap().id, id_local, "the local zone wins");
    }
    let picked: BTreeSet<String> = (0..10).map(|_| far.pick().unwrap().id.clone()).collect();
    assert_eq!(
        picked,
        set(&[&id_local, &id_remote]),
        "no instance in zone-b"
    );

    // The local instance fails: fall back to the other zone.
    drop(local);
    eventually_cached("the zone-a instance leaves the cache", &near, &[&id_remote]).await;
    assert_eq!(near.pick().unwrap().id, id_remote);
}

#[tokio::test]
async fn register_self_stays_healthy_comes_back_and_deregisters() {
    let registry = Registry::start().await;
    let registration = register_self(
        registry.client.clone(),
        RegisterInstanceRequest {
            url: "http://127.0.0.1:9/self".into(),
            slug: "self-svc".into(),
            ttl: Some("1s".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = registration.id().to_string();
    assert_eq!(registration.heartbeat_period(), Duration::from_secs(1) / 3);
    assert_eq!(registry.status_of(&id).await, Some(InstanceStatus::Healthy));

    // Healthy throughout several TTLs, thanks to the heartbeats.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(3500) {
        assert_eq!(registry.status_of(&id).await, Some(InstanceStatus::Healthy));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Removed behind its back: the next heartbeat gets 404 and registers it again.
    registry.client.delete_instance(&id).await.unwrap();
    eventually("the instance is registered again, Healthy", || {
        let status = registry.status_of(&id);
        async move { status.await == Some(InstanceStatus::Healthy) }
    })
    .await;

    registration.deregister().await.unwrap();
    assert_eq!(registry.status_of(&id).await, None);
    // No heartbeat brings it back (two heartbeat periods later).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(registry.status_of(&id).await, None);
}

#[tokio::test]
async fn register_self_defaults_the_ttl_and_dropping_removes_the_instance() {
    let registry = Registry::start().await;
    let registration = register_self(
        registry.client.clone(),
        RegisterInstanceRequest {
            url: "http://127.0.0.1:9/dropped".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = registration.id().to_string();
    let filter = InstanceFilter {
        id: Some(id.clone()),
        ..Default::default()
    };
    let instance = registry
        .client
        .list_instances(&filter)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(instance.ttl.as_deref(), Some("30s"));
    assert_eq!(instance.status, InstanceStatus::Healthy);
    assert_eq!(registration.heartbeat_period(), Duration::from_secs(10));

    drop(registration);
    eventually("the dropped registration is removed", || {
        let status = registry.status_of(&id);
        async move { status.await.is_none() }
    })
    .await;
}

#[tokio::test]
async fn unreachable_registry_is_reported_and_stop_ends_the_wait() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let client = RegistryClient::new(format!("http://{addr}"), None);
    let discovery = Discovery::start(client, "svc", options(Balancer::PowerOfTwoChoices));

    let err = discovery.pick().unwrap_err();
    assert!(matches!(err, DiscoveryError::NotReady { .. }), "{err:?}");
    let err = discovery
        .wait_ready(Duration::from_millis(300))
        .await
        .unwrap_err();
    let DiscoveryError::NotReady { slug, last_error } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(slug, "svc");
    let last_error = last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("request to the registry failed"),
        "{err}"
    );
    assert!(err.to_string().contains("last error"), "{err}");

    let waiter = discovery.clone();
    let waiting = tokio::spawn(async move { waiter.ready().await });
    discovery.stop();
    let result = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result, Err(DiscoveryError::Stopped { slug: "svc".into() }));
}

#[tokio::test]
async fn pages_through_a_long_list() {
    let registry = Registry::start().await;
    let mut registered = BTreeSet::new();
    for port in 30_000..30_023 {
        registered.insert(
            registry
                .register_with(RegisterInstanceRequest {
                    url: format!("http://127.0.0.1:{port}"),
                    slug: "paged".into(),
                    health_check: Some(HealthCheck {
                        check_type: Some(HealthCheckType::None),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await,
        );
    }
    let filter = InstanceFilter {
        slug: Some("paged".into()),
        ..Default::default()
    };
    let (mut listed, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let (page, next) = registry
            .client
            .list_instances_page(&filter, 10, after.as_deref())
            .await
            .unwrap();
        pages += 1;
        listed.extend(page.into_iter().map(|i| i.id));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), registered);
    registry.stop().await;
}
