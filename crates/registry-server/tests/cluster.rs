//! Many daemons on one PostgreSQL database: every node sees every write, tokens work
//! everywhere, health checks are shared and taken over, and the cluster rides out a
//! database outage and missed notifications.
//!
//! Each test creates a database of its own ([`TestDatabase`]) and starts its daemons in
//! this process, each with its own data dir and free loopback port. Without
//! `REGISTRY_TEST_DATABASE_URL` the tests say "skipped" and pass (but fail under `CI=true`).

mod common;

use common::postgres::TestDatabase;
use common::{
    details, last_heartbeat, metric_value, node_status, status, wait_for_value, wait_until,
    CapturedLog, Daemon, EventStream, Listener, Reply,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One admin token for every daemon of a test (`REGISTRY_ADMIN_TOKEN`).
const ADMIN: &str = "cluster-test-admin-token-0123456789abcdef";
/// Long enough for a change to reach every node on a busy machine.
const DEADLINE: Duration = Duration::from_secs(15);
/// A short heartbeat, for tests where liveness matters: Offline after 600 ms of silence.
const FAST_HEARTBEAT: Duration = Duration::from_millis(200);
/// The default heartbeat, where liveness does not matter.
const SLOW_HEARTBEAT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------------------

/// A daemon on the PostgreSQL database at `database_url`, with the shared admin token.
async fn node(database_url: &str, heartbeat: Duration) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.database_url = Some(database_url.to_string());
    config.admin_token = Some(ADMIN.into());
    config.heartbeat_interval = heartbeat;
    let mut d = Daemon::start_with(config, dir).await;
    d.admin = ADMIN.into();
    d
}

/// Three daemons on `db`.
async fn cluster(db: &TestDatabase, heartbeat: Duration) -> [Daemon; 3] {
    [
        node(&db.url, heartbeat).await,
        node(&db.url, heartbeat).await,
        node(&db.url, heartbeat).await,
    ]
}

/// Stops `d` like SIGKILL would: no flush, no goodbye to the store.
fn crash(d: &mut Daemon) {
    d.server.take().expect("the daemon is running").abort();
}

/// This node's URL, as the others know it.
async fn node_url(d: &Daemon) -> String {
    d.self_node().await["url"].as_str().unwrap().to_string()
}

/// Waits until every daemon lists all of them as Online.
async fn wait_all_online(nodes: &[&Daemon]) {
    let mut urls = BTreeSet::new();
    for d in nodes {
        urls.insert(node_url(d).await);
    }
    for d in nodes {
        let all = d
            .wait_for_nodes(DEADLINE, |listed| {
                let online: BTreeSet<String> = listed
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["status"] == "Online")
                    .filter_map(|n| n["url"].as_str().map(String::from))
                    .collect();
                urls.is_subset(&online)
            })
            .await;
        if let Err(seen) = all {
            panic!("{} never saw all of {urls:?} Online: {seen}", d.url(""));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// The instances matching `query`, by id.
async fn instances_by_id(d: &Daemon, query: &str) -> HashMap<String, Value> {
    d.list_instances(query).await.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

async fn definition_ids(d: &Daemon) -> BTreeSet<String> {
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Which node checks each of `ids`, as an index into `nodes`; `None` while any is unclear.
///
/// The node checking an instance keeps the heartbeat of every successful check in its
/// own memory (the others get them as notes, every few seconds), so its view of
/// `lastHeartbeat` runs ahead of every other node's. An instance counts as checked by one
/// node when that node's view leads every other by at least `lead`; two nodes checking
/// the same instance would both keep their views fresh and never lead each other by it.
async fn checkers(nodes: &[&Daemon], ids: &[String], lead: Duration) -> Option<Vec<usize>> {
    let mut views = Vec::new();
    for d in nodes {
        views.push(instances_by_id(d, "").await);
    }
    let lead = chrono::Duration::from_std(lead).unwrap();
    let mut found = Vec::new();
    for id in ids {
        let mut beats: Vec<(Option<chrono::DateTime<chrono::Utc>>, usize)> = views
            .iter()
            .enumerate()
            .map(|(n, view)| (view.get(id).and_then(last_heartbeat), n))
            .collect();
        beats.sort();
        let (Some(first), checker) = beats[beats.len() - 1] else {
            return None;
        };
        match beats[beats.len() - 2].0 {
            Some(second) if first - second < lead => return None,
            _ => found.push(checker),
        }
    }
    Some(found)
}

/// Polls until `d` lists `id` among the instances matching `query`.
async fn wait_listed(d: &Daemon, query: &str, id: &str) -> bool {
    wait_until(DEADLINE, || async {
        instances_by_id(d, query).await.contains_key(id)
    })
    .await
}

/// Polls until `d` lists every one of `ids` (slug `checked`) as `wanted`; else `Err` with
/// the (id, status) pairs it listed last.
async fn wait_all_checked(
    d: &Daemon,
    ids: &[String],
    wanted: &str,
) -> Result<(), Vec<(Value, Value)>> {
    let last = Mutex::new(HashMap::new());
    let all = wait_until(DEADLINE, || async {
        let listed = instances_by_id(d, "slug=checked").await;
        let all = ids
            .iter()
            .all(|id| listed.get(id).is_some_and(|i| status(i) == wanted));
        *last.lock().unwrap() = listed;
        all
    })
    .await;
    if all {
        return Ok(());
    }
    let last = last.into_inner().unwrap();
    Err(last
        .values()
        .map(|i| (i["id"].clone(), i["status"].clone()))
        .collect())
}

/// `PUT /registry-svc/instance` of an unchecked instance at `url` as the admin; no status asserted.
async fn try_register(d: &Daemon, url: &str) -> Reply {
    d.admin(
        Method::PUT,
        "/registry-svc/instance",
        Some(json!({"url": url, "healthCheck": {"type": "none"}})),
    )
    .await
}

/// A registration checked by TCP every 100 ms.
fn checked_instance(port: u16, extra: Value) -> Value {
    let mut body = json!({
        "url": format!("http://127.0.0.1:{port}"),
        "slug": "checked",
        "healthCheck": {"type": "tcp", "interval": "1s"},
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

// ---------------------------------------------------------------------------------------
// A PostgreSQL proxy that can be cut
// ---------------------------------------------------------------------------------------

/// Forwards connections to the test PostgreSQL server until cut. Cutting closes every
/// forwarded connection and makes new ones close at once; restoring forwards again.
struct PgProxy {
    /// `db`'s URL with the proxy as its host and port.
    url: String,
    cut: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl PgProxy {
    async fn start(db: &TestDatabase) -> PgProxy {
        let mut url = url::Url::parse(&db.url).unwrap();
        let upstream = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        let cut = Arc::new(watch::channel(false).0);
        let task = tokio::spawn({
            let cut = cut.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let mut cut = cut.subscribe();
                    if *cut.borrow_and_update() {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let forward = async move {
                            let mut client = client;
                            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        };
                        // Whichever ends first; a cut drops both sockets.
                        tokio::select! {
                            _ = forward => {}
                            _ = cut.wait_for(|cut| *cut) => {}
                        }
                    });
                }
            }
        });
        PgProxy {
            url: url.to_string(),
            cut,
            task,
        }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

/// A node on `db` through a new [`PgProxy`] and one on `db` directly, both with the slow
/// heartbeat unless `heartbeat` says otherwise: `(proxy, proxied node, direct node)`.
async fn proxied_and_direct(db: &TestDatabase, heartbeat: Duration) -> (PgProxy, Daemon, Daemon) {
    let proxy = PgProxy::start(db).await;
    let proxied = node(&proxy.url, heartbeat).await;
    let direct = node(&db.url, heartbeat).await;
    (proxy, proxied, direct)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_write_on_any_node_is_read_on_every_node() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let [a, b, c] = cluster(&db, SLOW_HEARTBEAT).await;
    let all = [&a, &b, &c];

    // A registration on A is listed on B and C.
    let id = a
        .register(json!({"url": "http://127.0.0.1:1/one", "slug": "spread",
                         "healthCheck": {"type": "none"}}))
        .await;
    for d in [&b, &c] {
        let seen = wait_listed(d, "slug=spread", &id).await;
        assert!(seen, "{id} registered on A never listed on {}", d.url(""));
    }
    let listed = &instances_by_id(&c, "slug=spread").await[&id];
    assert_eq!(listed["url"], "http://127.0.0.1:1/one");

    // A definition saved on B shows on A (and C).
    b.save_definition(
        json!({"id": "def-from-b", "image": {"name": "nginx:1", "internalPorts": [80]}}),
    )
    .await;
    for d in [&a, &c] {
        let seen = wait_until(DEADLINE, || async {
            definition_ids(d).await.contains("def-from-b")
        })
        .await;
        assert!(
            seen,
            "the definition saved on B never showed on {}",
            d.url("")
        );
    }

    // Deletes on C disappear everywhere.
    let r = c
        .admin(
            Method::DELETE,
            &format!("/registry-svc/instance/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = c
        .admin(Method::DELETE, "/registry-svc/definition/def-from-b", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    for d in [&a, &b] {
        let gone = wait_until(DEADLINE, || async {
            !instances_by_id(d, "slug=spread").await.contains_key(&id)
                && !definition_ids(d).await.contains("def-from-b")
        })
        .await;
        assert!(gone, "the deletes on C never reached {}", d.url(""));
    }

    // Revisions are global: once settled, every node gives each kind the same index.
    let indexes = Mutex::new(Vec::new());
    let agree = wait_until(DEADLINE, || async {
        let mut seen = Vec::new();
        for d in all {
            let i = d.list_instances("").await.index();
            let defs = d.index_of(Method::GET, "/registry-svc/definitions").await;
            let nodes = d.index_of(Method::POST, "/registry-svc/nodes").await;
            seen.push((i, defs, nodes));
        }
        let same = seen.windows(2).all(|w| w[0] == w[1]);
        *indexes.lock().unwrap() = seen;
        same
    })
    .await;
    let indexes = indexes.into_inner().unwrap();
    assert!(
        agree,
        "indexes (instance, definition, node) per node: {indexes:?}"
    );

    // A blocking query on B and an event stream on C both wake for a registration on A.
    let since = b.list_instances("slug=watched").await.index();
    let blocked = b.spawn_get(&format!(
        "/registry-svc/instances?slug=watched&index={since}&wait=30s"
    ));
    let stream_since = c.list_instances("").await.index();
    let stream = c.instance_events(stream_since).await;
    let watched = a
        .register(
            json!({"url": "http://127.0.0.1:1/watched", "slug": "watched",
                         "healthCheck": {"type": "none"}}),
        )
        .await;

    let r = tokio::time::timeout(DEADLINE, blocked)
        .await
        .expect("the blocking query on B returns after a change on A")
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ids: Vec<&str> = r.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [watched.as_str()], "{}", r.text);
    assert!(r.index() > since, "{} > {since}", r.index());

    let event = tokio::time::timeout(DEADLINE, next_change_of(stream, &watched))
        .await
        .expect("C's event stream carries the registration made on A");
    assert_eq!(event["kind"], "instance", "{event}");
    assert_eq!(event["op"], "put", "{event}");
    assert_eq!(
        event["object"]["url"], "http://127.0.0.1:1/watched",
        "{event}"
    );
    assert_eq!(
        event["by"],
        json!({"tokenId": "env-admin", "slug": "admin"}),
        "who made it travels with the change: {event}"
    );
    assert!(
        event["revision"].as_u64().unwrap() > stream_since,
        "{event}"
    );

    for d in [a, b, c] {
        d.stop().await;
    }
}

/// Reads `change` events from an SSE response until one is about `id`; every event
/// before must be an instance change too.
async fn next_change_of(mut stream: EventStream, id: &str) -> Value {
    loop {
        let (_, event) = stream.next().await;
        assert_eq!(event["kind"], "instance", "kind=instance only: {event}");
        if event["id"] == id {
            return event;
        }
    }
}

#[tokio::test]
async fn a_token_created_on_one_node_works_on_the_others_until_revoked() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let [a, b, c] = cluster(&db, SLOW_HEARTBEAT).await;
    let (token_id, secret) = a
        .create_token(json!({"slug": "orders-svc", "role": "user"}))
        .await;
    let list = |d: &Daemon| {
        let secret = secret.clone();
        let request = d
            .http
            .get(d.url("/registry-svc/instances"))
            .bearer_auth(secret);
        async move { request.send().await.unwrap().status() }
    };

    for d in [&b, &c] {
        let works = wait_until(DEADLINE, || async { list(d).await == StatusCode::OK }).await;
        assert!(
            works,
            "the token created on A never worked on {}",
            d.url("")
        );
    }
    // The token's account owns what it registers, on whichever node.
    let id = b
        .register_as(
            &secret,
            json!({"url": "http://127.0.0.1:1/orders",
                                     "healthCheck": {"type": "none"}}),
        )
        .await;
    let owned = wait_listed(&a, "slug=orders-svc", &id).await;
    assert!(
        owned,
        "the registration made with the token on B never showed on A"
    );

    let r = a
        .admin(
            Method::DELETE,
            &format!("/registry-svc/token/{token_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    for d in [&b, &c] {
        let refused = wait_until(DEADLINE, || async {
            list(d).await == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(
            refused,
            "the token revoked on A still works on {}",
            d.url("")
        );
    }
    for d in [a, b, c] {
        d.stop().await;
    }
}

#[tokio::test]
async fn checks_are_shared_and_survivors_take_over_those_of_crashed_nodes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let [mut a, mut b, c] = cluster(&db, FAST_HEARTBEAT).await;
    wait_all_online(&[&a, &b, &c]).await;

    let mut listeners = Vec::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let listener = Listener::start().await;
        // Registered on the three nodes in turn: who registers does not decide who checks.
        let on = [&a, &b, &c][n % 3];
        ids.push(
            on.register(checked_instance(listener.port, json!({})))
                .await,
        );
        listeners.push(listener);
    }

    // All become Healthy, as any node sees it.
    for d in [&a, &b, &c] {
        if let Err(last) = wait_all_checked(d, &ids, "Healthy").await {
            panic!("not all Healthy on {}: {last:?}", d.url(""));
        }
    }

    // Each instance is checked by exactly one node, and the work is spread.
    let shares = Mutex::new(None);
    let one_each = wait_until(DEADLINE, || async {
        let found = checkers(&[&a, &b, &c], &ids, Duration::from_millis(300)).await;
        let done = found.is_some();
        *shares.lock().unwrap() = found;
        done
    })
    .await;
    assert!(
        one_each,
        "some instance is checked by no node or by several"
    );
    let shares = shares.into_inner().unwrap().unwrap();
    let busy: BTreeSet<usize> = shares.iter().copied().collect();
    assert!(busy.len() >= 2, "one node checks everything: {shares:?}");

    // Two nodes crash. Then every service goes away: only a survivor that took over
    // every check can see all of them go Unreachable.
    let survivor_url = node_url(&c).await;
    let crashed_urls = [node_url(&a).await, node_url(&b).await];
    crash(&mut a);
    crash(&mut b);
    for listener in listeners {
        listener.stop().await;
    }
    // Offline after 3 heartbeats, re-assessed within one more, then 2 failed checks.
    if let Err(last) = wait_all_checked(&c, &ids, "Unreachable").await {
        panic!("the survivor did not take over every check: {last:?}");
    }

    // The survivor lists the crashed nodes Offline and itself Online.
    let settled = c
        .wait_for_nodes(DEADLINE, |nodes| {
            crashed_urls
                .iter()
                .all(|url| node_status(nodes, "url", url) == Some(json!("Offline")))
                && node_status(nodes, "url", &survivor_url) == Some(json!("Online"))
        })
        .await;
    if let Err(nodes) = settled {
        panic!("crashed nodes Offline, survivor Online: {nodes}");
    }

    // And it keeps taking writes.
    let id = c
        .register(json!({"url": "http://127.0.0.1:1/after-crash", "healthCheck": {"type": "none"}}))
        .await;
    assert!(instances_by_id(&c, "").await.contains_key(&id));
    c.stop().await;
}

#[tokio::test]
async fn the_node_an_instance_runs_on_checks_it() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let [mut a, b, mut c] = cluster(&db, FAST_HEARTBEAT).await;
    wait_all_online(&[&a, &b, &c]).await;
    let b_url = node_url(&b).await;
    let listener = Listener::start().await;
    // Registered on A, running on B.
    let id = a
        .register(checked_instance(listener.port, json!({"nodeUrl": b_url})))
        .await;
    // Waits for B to be the one checker, rather than taking the first node seen alone:
    // on a loaded machine a late heartbeat of B's can make C think B offline and check
    // its instances for a moment, as it should.
    let checked_by = Mutex::new(None);
    let by_b = wait_until(DEADLINE, || async {
        let found = checkers(
            &[&a, &b, &c],
            std::slice::from_ref(&id),
            Duration::from_millis(300),
        )
        .await;
        let done = found == Some(vec![1]);
        *checked_by.lock().unwrap() = found;
        done
    })
    .await;
    assert!(
        by_b,
        "{id} runs on B, so B checks it (0: A, 1: B, 2: C); last seen: {:?}",
        checked_by.into_inner().unwrap()
    );

    // Without A and C, B still sees it go.
    crash(&mut a);
    crash(&mut c);
    listener.stop().await;
    b.wait_for_instance(&id, DEADLINE, |i| status(i) == "Unreachable")
        .await
        .unwrap_or_else(|last| panic!("B never saw its own instance go Unreachable: {last}"));
    b.stop().await;
}

/// What a writer under load saw: ids acknowledged (201), and how many were refused.
#[derive(Default)]
struct Load {
    acknowledged: Mutex<Vec<String>>,
    refused: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

#[tokio::test]
async fn a_database_outage_refuses_writes_keeps_reads_and_loses_nothing() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (proxy, p, direct) = proxied_and_direct(&db, SLOW_HEARTBEAT).await;
    let before = p
        .register(json!({"url": "http://127.0.0.1:1/before", "slug": "before",
                         "healthCheck": {"type": "none"}}))
        .await;
    p.save_definition(json!({"id": "def-before"})).await;

    // Four writers register 300 distinct instances through the proxied node. Once the
    // outage has refused 30 of them they wait for the database to come back, so that
    // writes land before, during and after it.
    const TOTAL: usize = 300;
    let load = Arc::new(Load::default());
    let next = Arc::new(AtomicUsize::new(0));
    let (restored_tx, restored) = watch::channel(false);
    let writers: Vec<JoinHandle<()>> = (0..4)
        .map(|_| {
            let (load, next, mut restored) = (load.clone(), next.clone(), restored.clone());
            let (http, url) = (p.http.clone(), p.url("/registry-svc/instance"));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= TOTAL {
                        return;
                    }
                    let body = json!({"url": format!("http://127.0.0.1:1/load-{n}"),
                                      "slug": "load", "healthCheck": {"type": "none"}});
                    let response = http
                        .put(&url)
                        .bearer_auth(ADMIN)
                        .body(body.to_string())
                        .send()
                        .await
                        .expect("the daemon answers during the outage");
                    let r = Reply::read(response).await;
                    match r.status {
                        StatusCode::CREATED => load
                            .acknowledged
                            .lock()
                            .unwrap()
                            .push(r.body["id"].as_str().unwrap().to_string()),
                        StatusCode::SERVICE_UNAVAILABLE => {
                            if load.refused.fetch_add(1, Ordering::SeqCst) + 1 >= 30 {
                                let _ = restored.wait_for(|r| *r).await;
                            } else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        _ => load
                            .unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", r.status, r.text)),
                    }
                }
            })
        })
        .collect();

    let some_acked = wait_until(DEADLINE, || async {
        load.acknowledged.lock().unwrap().len() >= 50
    })
    .await;
    assert!(some_acked, "the writers never got going");
    proxy.cut();
    let refusing = wait_until(DEADLINE, || async {
        load.refused.load(Ordering::SeqCst) >= 10
    })
    .await;
    assert!(
        refusing,
        "no write was refused while the database was cut off"
    );

    // Reads are served from memory.
    let listed = instances_by_id(&p, "slug=before").await;
    assert!(listed.contains_key(&before), "{listed:?}");
    assert!(definition_ids(&p).await.contains("def-before"));
    // Writes say why they are refused.
    let r = try_register(&p, "http://127.0.0.1:1/during").await;
    r.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "a write while cut off",
    );
    let error = r.error().to_lowercase();
    assert!(
        error.contains("unavailable") && (error.contains("store") || error.contains("postgres")),
        "{error}"
    );
    assert!(!error.contains("password"), "{error}");
    let ready = p.send(Method::GET, "/readyz", None, None).await;
    ready.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "/readyz while cut off",
    );
    // The other node, on the database directly, is not affected.
    let ready = direct.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);

    // The database is back: writes succeed again without a restart.
    let acknowledged_before = load.acknowledged.lock().unwrap().len();
    proxy.restore();
    let writes = wait_until(DEADLINE, || async {
        try_register(&p, "http://127.0.0.1:1/after").await.status == StatusCode::CREATED
    })
    .await;
    assert!(writes, "writes never succeeded again after the outage");
    restored_tx.send_replace(true);
    for writer in writers {
        writer.await.unwrap();
    }
    let ready = p.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);

    let unexpected = load.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "only 201 or 503: {unexpected:?}");
    let acknowledged: BTreeSet<String> =
        load.acknowledged.lock().unwrap().iter().cloned().collect();
    let refused = load.refused.load(Ordering::SeqCst);
    assert_eq!(acknowledged.len() + refused, TOTAL);
    assert!(
        acknowledged.len() > acknowledged_before,
        "no registration was acknowledged after the outage"
    );

    // Nothing acknowledged is lost, on this node or on the other.
    for d in [&p, &direct] {
        let missing = Mutex::new(Vec::new());
        let complete = wait_until(DEADLINE, || async {
            let listed = instances_by_id(d, "slug=load").await;
            let lost: Vec<String> = acknowledged
                .iter()
                .filter(|id| !listed.contains_key(*id))
                .cloned()
                .collect();
            let done = lost.is_empty();
            *missing.lock().unwrap() = lost;
            done
        })
        .await;
        let missing = missing.into_inner().unwrap();
        assert!(
            complete,
            "{} of {} acknowledged registrations missing on {}: {missing:?}",
            missing.len(),
            acknowledged.len(),
            d.url("")
        );
    }
    p.stop().await;
    direct.stop().await;
    drop(proxy);
}

#[tokio::test]
async fn a_status_change_seen_during_an_outage_is_recorded_once_the_database_is_back() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (proxy, p, other) = proxied_and_direct(&db, SLOW_HEARTBEAT).await;
    let listener = Listener::start().await;
    // Checked by the node behind the proxy (it runs there); one failure is enough.
    let id = other
        .register(checked_instance(
            listener.port,
            json!({"nodeUrl": node_url(&p).await,
                   "healthCheck": {"type": "tcp", "interval": "1s", "unhealthyThreshold": 1}}),
        ))
        .await;
    for d in [&p, &other] {
        d.wait_for_status(&id, "Healthy", DEADLINE).await;
    }

    proxy.cut();
    listener.stop().await;
    // With a threshold of 1 the first failed check is the status change, which cannot be
    // written; the details of a later one show in P's memory. A write refused after that
    // shows the writer has been through the status change already.
    p.wait_for_instance(&id, DEADLINE, |i| details(i).contains("refused"))
        .await
        .unwrap_or_else(|last| panic!("P's checks never saw the listener go: {last}"));
    let r = try_register(&p, "http://127.0.0.1:1/during").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(
        status(&p.instance(&id).await.unwrap()),
        "Healthy",
        "nothing written while cut off"
    );

    proxy.restore();
    for d in [&p, &other] {
        d.wait_for_instance(&id, DEADLINE, |i| status(i) == "Unreachable")
            .await
            .unwrap_or_else(|last| {
                panic!(
                    "the change to Unreachable seen while cut off never reached {}: {last}",
                    d.url("")
                )
            });
    }
    p.stop().await;
    other.stop().await;
    drop(proxy);
}

#[tokio::test]
async fn a_node_that_missed_notifications_catches_up() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // No heartbeats during the test: a later commit (B's own, or A's that B hears of)
    // would also bring B up to date, and this test is about the notifications it missed.
    let (proxy, b, a) = proxied_and_direct(&db, Duration::from_secs(3600)).await;
    // B follows A while connected.
    let first = a
        .register(json!({"url": "http://127.0.0.1:1/first", "slug": "missed",
                         "healthCheck": {"type": "none"}}))
        .await;
    let follows = wait_listed(&b, "slug=missed", &first).await;
    assert!(follows, "B never saw A's registration");

    proxy.cut();
    let cut_off = wait_until(DEADLINE, || async {
        b.send(Method::GET, "/readyz", None, None).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(
        cut_off,
        "B still reached the database through the cut proxy"
    );
    let mut ids = vec![first];
    for n in 0..10 {
        ids.push(
            a.register(json!({"url": format!("http://127.0.0.1:1/missed-{n}"),
                              "slug": "missed", "healthCheck": {"type": "none"}}))
                .await,
        );
    }
    proxy.restore();
    let caught_up = wait_until(DEADLINE, || async {
        let listed = instances_by_id(&b, "slug=missed").await;
        ids.iter().all(|id| listed.contains_key(id))
    })
    .await;
    assert!(caught_up, "B never caught up with what it missed");
    // Same revision, same list.
    let same = wait_until(DEADLINE, || async {
        let (ra, rb) = (a.list_instances("").await, b.list_instances("").await);
        ra.index() == rb.index() && ra.body == rb.body
    })
    .await;
    assert!(same, "A and B disagree after the catch-up");
    a.stop().await;
    b.stop().await;
    drop(proxy);
}

// ---------------------------------------------------------------------------------------
// The first admin token, and liveness by each node's own interval
// ---------------------------------------------------------------------------------------

/// A daemon on `db` without `REGISTRY_ADMIN_TOKEN`: it makes the registry's first admin
/// token, or finds one.
async fn node_without_admin_token(db_url: String) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.database_url = Some(db_url);
    config.heartbeat_interval = SLOW_HEARTBEAT;
    Daemon::start_with(config, dir).await
}

#[tokio::test]
async fn nodes_starting_together_on_an_empty_database_make_one_admin_token() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log_dir = tempfile::tempdir().unwrap();
    // The only test of this binary to log.
    let log = CapturedLog::start(log_dir.path(), "registry_server::nodes::bootstrap=info");
    let starting = (0..4).map(|_| node_without_admin_token(db.url.clone()));
    let mut nodes = futures_util::future::join_all(starting).await;
    // One node more, once the first token is there.
    nodes.push(node_without_admin_token(db.url.clone()).await);

    let holders: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].dir.path().join("admin.token").exists())
        .collect();
    let [holder] = holders[..] else {
        panic!("one node holds the admin token file, not {holders:?}");
    };
    let secret = nodes[holder].admin.clone();
    assert!(secret.starts_with("rsv_"), "{secret:?}");
    let holder_url = node_url(&nodes[holder]).await;
    let holder_file = nodes[holder].dir.path().join("admin.token");
    let holder_file = holder_file.display().to_string();

    for d in &mut nodes {
        d.admin = secret.clone();
        let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", d.url(""), r.text);
        let tokens = r.body["tokens"].as_array().unwrap();
        assert_eq!(
            tokens.len(),
            1,
            "exactly one token, on {}: {}",
            d.url(""),
            r.text
        );
        assert_eq!(tokens[0]["role"], "admin", "{}", r.text);
    }
    let made = log.lines_with(&["created the registry's first admin token", &holder_file]);
    assert_eq!(made.len(), 1, "{made:?}");
    for (n, d) in nodes.iter().enumerate().filter(|(n, _)| *n != holder) {
        let url = node_url(d).await;
        let lines = log.lines_with(&[
            &format!("node={url} "),
            &format!("holder={holder_url} "),
            &format!("file={holder_file}"),
        ]);
        assert_eq!(
            lines.len(),
            1,
            "node {n} logs where the first admin token is: {:?}",
            log.lines_with(&[&url])
        );
    }
}

#[tokio::test]
async fn each_node_is_judged_by_the_heartbeat_interval_it_publishes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // The fast node alone would call a node Offline after 3 × 200 ms of silence; the slow
    // one is silent for up to a second between its heartbeats.
    let slow_interval = Duration::from_secs(1);
    let fast = node(&db.url, FAST_HEARTBEAT).await;
    let mut slow = node(&db.url, slow_interval).await;
    let slow_url = node_url(&slow).await;
    wait_all_online(&[&fast, &slow]).await;

    let slow_seen_by_fast = || async {
        let r = fast.admin(Method::POST, "/registry-svc/nodes", None).await;
        let nodes = r.body["nodes"].as_array().unwrap().clone();
        nodes.into_iter().find(|n| n["url"] == slow_url.as_str())
    };
    let seen = slow_seen_by_fast()
        .await
        .expect("the fast node lists the slow one");
    assert_eq!(seen["heartbeatInterval"], "1s", "{seen}");

    // Still Online after two of its own intervals: every gap between its heartbeats is
    // longer than three of the fast node's intervals, so two intervals hold at least one
    // whole gap in which the fast node's own pace would have called it Offline.
    let watched_until = tokio::time::Instant::now() + 2 * slow_interval;
    while tokio::time::Instant::now() < watched_until {
        let seen = slow_seen_by_fast().await.expect("listed");
        assert_eq!(
            seen["status"], "Online",
            "judged by its own interval: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    crash(&mut slow);
    let offline = wait_for_value(
        DEADLINE,
        || async { slow_seen_by_fast().await.unwrap_or_default() },
        |n| n["status"] == "Offline",
    )
    .await;
    let seen_at = chrono::Utc::now();
    let offline = offline.unwrap_or_else(|last| panic!("never Offline: {last}"));
    let beat = last_heartbeat(&offline).expect("it heartbeated");
    let silent = (seen_at - beat).to_std().unwrap();
    assert!(
        silent >= 3 * slow_interval,
        "Offline after {silent:?} of silence, before three of its own intervals: {offline}"
    );
}

#[tokio::test]
async fn a_slow_node_takes_over_a_fast_one_as_soon_as_it_falls_silent() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // The survivor heartbeats every 30 s; the node that crashes is Offline after 600 ms of
    // silence. Looking again only at its own pace, the survivor would take over up to
    // 30 s late.
    let mut fast = node(&db.url, FAST_HEARTBEAT).await;
    let survivor = node(&db.url, Duration::from_secs(30)).await;
    wait_all_online(&[&fast, &survivor]).await;

    let mut listeners = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let listener = Listener::start().await;
        let check =
            json!({"healthCheck": {"type": "tcp", "interval": "1s", "unhealthyThreshold": 1}});
        ids.push(
            survivor
                .register(checked_instance(listener.port, check))
                .await,
        );
        listeners.push(listener);
    }
    if let Err(last) = wait_all_checked(&survivor, &ids, "Healthy").await {
        panic!("not all Healthy: {last:?}");
    }
    let shares = wait_for_value(
        DEADLINE,
        || async { json!(checkers(&[&fast, &survivor], &ids, Duration::from_millis(300)).await) },
        |found| found.as_array().is_some_and(|f| f.contains(&json!(0))),
    )
    .await
    .unwrap_or_else(|last| panic!("the fast node checks nothing: {last:?}"));

    crash(&mut fast);
    let crashed_at = tokio::time::Instant::now();
    for listener in listeners {
        listener.stop().await;
    }
    // Silent for 600 ms, then the fast node's share is first checked at a random point of
    // its 1 s interval, and one failure makes it Unreachable: about 2 s, given slack here.
    if let Err(last) = wait_all_checked(&survivor, &ids, "Unreachable").await {
        panic!("the survivor did not take over every check: {last:?}");
    }
    let took = crashed_at.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the survivor took {took:?} to see every instance of the crashed node's share \
         ({shares:?}) fail"
    );
}

// ---------------------------------------------------------------------------------------
// Writers on every node
// ---------------------------------------------------------------------------------------

/// The counter `name` of `/metrics`, summed over `nodes`.
async fn counted(nodes: &[&Daemon], name: &str) -> u64 {
    let mut total = 0;
    for d in nodes {
        let text = d.metrics_text().await;
        let count = metric_value(&text, name).unwrap_or_else(|| panic!("no {name} in {text}"));
        total += count as u64;
    }
    total
}

/// How many batches the writers of `nodes` planned again because another node had
/// changed what they read.
async fn replans(nodes: &[&Daemon]) -> u64 {
    counted(nodes, "registry_writer_replans_total").await
}

/// Registers each of `urls` (unchecked, slug `slug`) on `d`, `writers` at a time; returns
/// the id each registration was answered with, in the order of `urls`.
async fn register_all(d: &Daemon, slug: &str, urls: &[String], writers: usize) -> Vec<String> {
    let mut ids = vec![String::new(); urls.len()];
    for (chunk, start) in urls.chunks(writers).zip((0..).step_by(writers)) {
        let pending: Vec<_> = chunk
            .iter()
            .map(|url| {
                tokio::spawn(d.register(json!({"url": url, "slug": slug,
                                               "healthCheck": {"type": "none"}})))
            })
            .collect();
        for (i, task) in pending.into_iter().enumerate() {
            ids[start + i] = task.await.unwrap();
        }
    }
    ids
}

#[tokio::test]
async fn writers_on_three_nodes_lose_no_update_and_replan_only_on_real_conflicts() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let nodes = cluster(&db, SLOW_HEARTBEAT).await;
    let all: Vec<&Daemon> = nodes.iter().collect();
    let before = replans(&all).await;

    // Disjoint writes: each node registers URLs of its own, all at once.
    let per_node = 150;
    let own_urls = |n: usize| -> Vec<String> {
        (0..per_node)
            .map(|i| format!("http://127.0.{n}.1:{}/own", 1000 + i))
            .collect()
    };
    let written = futures_util::future::join_all(
        nodes
            .iter()
            .enumerate()
            .map(|(n, d)| async move { register_all(d, "disjoint", &own_urls(n), 16).await }),
    )
    .await;
    let ids: BTreeSet<String> = written.into_iter().flatten().collect();
    assert_eq!(ids.len(), 3 * per_node, "one instance per registration");
    for d in &all {
        let every = wait_until(DEADLINE, || async {
            let listed = instances_by_id(d, "slug=disjoint").await;
            ids.iter().all(|id| listed.contains_key(id))
        })
        .await;
        assert!(every, "{} does not list every registration", d.url(""));
    }
    let disjoint = replans(&all).await - before;
    assert_eq!(
        disjoint, 0,
        "writes to different objects on different nodes were planned again"
    );

    // Conflicting writes: every node registers the same URLs at the same moment. A
    // registration finds the instance at its URL, so each URL must stay one instance,
    // whichever node committed first: the others' plans are refused and made again.
    let contested: Vec<String> = (0..60)
        .map(|i| format!("http://127.0.9.1:{}/contested", 2000 + i))
        .collect();
    let orders = vec![contested.clone(); 3];
    let answers = futures_util::future::join_all(
        nodes
            .iter()
            .zip(&orders)
            .map(|(d, order)| register_all(d, "contested", order, 16)),
    )
    .await;
    let mut id_of_url: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (order, ids) in orders.iter().zip(&answers) {
        for (url, id) in order.iter().zip(ids) {
            id_of_url.entry(url).or_default().insert(id);
        }
    }
    let split: Vec<_> = id_of_url.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        split.is_empty(),
        "URLs registered as several instances: {split:?}"
    );
    for d in &all {
        let one_each = wait_until(DEADLINE, || async {
            instances_by_id(d, "slug=contested").await.len() == contested.len()
        })
        .await;
        assert!(
            one_each,
            "{} lists {} contested instances, not {}",
            d.url(""),
            instances_by_id(d, "slug=contested").await.len(),
            contested.len()
        );
    }
    eprintln!(
        "re-plans: {disjoint} for {} disjoint writes, {} for {} contested ones",
        3 * per_node,
        replans(&all).await - before - disjoint,
        3 * contested.len()
    );
    for d in nodes {
        d.stop().await;
    }
}

#[tokio::test]
async fn health_details_reach_every_node_within_seconds_and_wake_no_watcher() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let [a, b, c] = cluster(&db, SLOW_HEARTBEAT).await;
    let listener = Listener::start().await;
    let id = a
        .register(json!({"url": listener.url(), "slug": "quiet",
                         "healthCheck": {"type": "tcp", "interval": "1s"}}))
        .await;
    for d in [&a, &b, &c] {
        d.wait_for_status(&id, "Healthy", DEADLINE).await;
    }

    // A blocking query on B and an event stream on C, for a minute and more.
    let quiet_for = Duration::from_secs(65);
    let since = b.list_instances("slug=quiet").await.index();
    let blocked = b.spawn_get(&format!(
        "/registry-svc/instances?slug=quiet&index={since}&wait={}s",
        quiet_for.as_secs()
    ));
    let mut events = c.instance_events(c.list_instances("").await.index()).await;
    let stream = tokio::spawn(async move {
        tokio::time::timeout(quiet_for - Duration::from_secs(2), events.next())
            .await
            .ok()
    });

    // Meanwhile every check's heartbeat reaches every node within seconds: checks every
    // second, notes written and read every two.
    let started = tokio::time::Instant::now();
    let mut samples = tokio::time::interval(Duration::from_secs(1));
    let mut worst = chrono::Duration::zero();
    while started.elapsed() < quiet_for - Duration::from_secs(5) {
        samples.tick().await;
        for d in [&a, &b, &c] {
            let instance = d.instance(&id).await.unwrap();
            assert_eq!(status(&instance), "Healthy", "{instance}");
            let beat = last_heartbeat(&instance).expect("a Healthy instance has a heartbeat");
            worst = worst.max(chrono::Utc::now() - beat);
        }
    }
    assert!(
        worst < chrono::Duration::seconds(10),
        "a node's view of the heartbeat lagged {worst} behind the checks"
    );

    let event = stream.await.unwrap();
    assert!(
        event.is_none(),
        "an instance event in a quiet minute: {event:?}"
    );
    // They came as notes.
    let all = [&a, &b, &c];
    assert!(counted(&all, "registry_health_notes_writes_total").await > 0);
    assert!(counted(&all, "registry_health_notes_applied_total").await > 0);
    let r = blocked.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.index(),
        since,
        "the blocking query woke for a change in a quiet minute: {}",
        r.text
    );
    for d in [a, b, c] {
        d.stop().await;
    }
    listener.stop().await;
}
