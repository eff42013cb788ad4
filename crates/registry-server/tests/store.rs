//! The store contract, run against every store implementation, and group commit.

mod common;

use async_trait::async_trait;
use common::hooked::{Hooked, Hooks};
use registry_server::store::{
    Change, Kind, Mutation, Record, Snapshot, SqliteStore, Store, StoreError,
};
use registry_types::{Definition, Instance};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn instance(id: &str, url: &str) -> Mutation {
    Mutation::Put(Record::Instance(Instance {
        id: id.into(),
        url: url.into(),
        slug: "svc".into(),
        ..Default::default()
    }))
}

fn definition(id: &str) -> Mutation {
    Mutation::Put(Record::Definition(Definition {
        id: id.into(),
        image: None,
        repository: None,
        api_specs: vec![],
        clients: vec![],
        envars: vec![],
        ports: vec![],
    }))
}

fn encode(mutations: &[Mutation]) -> Vec<Change> {
    mutations.iter().map(Mutation::encode).collect()
}

fn keys(snapshot: &Snapshot, kind: Kind) -> Vec<String> {
    let mut keys: Vec<_> = snapshot
        .records
        .iter()
        .filter(|r| r.kind() == kind)
        .map(|r| r.key().to_string())
        .collect();
    keys.sort();
    keys
}

/// What every store must do. `open` opens the same store again, as after a restart.
async fn store_contract(open: impl Fn() -> Arc<dyn Store>) {
    let store = open();
    let empty = store.load().await.unwrap();
    assert_eq!(empty.revision, 0);
    assert!(empty.records.is_empty());
    store.ping().await.unwrap();

    let first = store
        .commit(encode(&[
            instance("a", "http://127.0.0.1:1"),
            definition("d1"),
            instance("b", "http://127.0.0.1:2"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![1, 2, 3],
        "revisions are store-wide and consecutive"
    );
    let second = store
        .commit(encode(&[
            Mutation::Delete {
                kind: Kind::Instance,
                key: "a".into(),
            },
            instance("b", "http://127.0.0.1:3"),
        ]))
        .await
        .unwrap();
    assert_eq!(second, vec![4, 5]);

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.revision, 5);
    assert_eq!(keys(&loaded, Kind::Instance), ["b"]);
    assert_eq!(keys(&loaded, Kind::Definition), ["d1"]);
    let b = loaded.records.iter().find(|r| r.key() == "b").unwrap();
    assert!(
        matches!(b, Record::Instance(i) if i.url == "http://127.0.0.1:3"),
        "latest put wins"
    );

    let log = store.changes_since(0, 100).await.unwrap();
    assert!(!log.trimmed);
    let logged: Vec<(u64, &str, bool)> = log
        .changes
        .iter()
        .map(|c| (c.revision, c.change.key.as_str(), c.change.body.is_some()))
        .collect();
    assert_eq!(
        logged,
        [
            (1, "a", true),
            (2, "d1", true),
            (3, "b", true),
            (4, "a", false),
            (5, "b", true)
        ]
    );
    let page = store.changes_since(3, 1).await.unwrap();
    assert_eq!(page.changes.len(), 1, "the limit is kept");
    assert_eq!(page.changes[0].revision, 4);
    assert!(store
        .changes_since(5, 100)
        .await
        .unwrap()
        .changes
        .is_empty());

    store.close().await.unwrap();
    drop(store);
    let reopened = open();
    let again = reopened.load().await.unwrap();
    assert_eq!(again.revision, 5, "the revision survives a restart");
    assert_eq!(keys(&again, Kind::Instance), ["b"]);
    assert_eq!(
        reopened.commit(encode(&[definition("d2")])).await.unwrap(),
        vec![6]
    );
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    store_contract(|| Arc::new(SqliteStore::open(&path).unwrap())).await;
}

#[tokio::test]
async fn a_trimmed_change_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_retention(&dir.path().join("registry.db"), 4).unwrap();
    for i in 0..12 {
        store
            .commit(encode(&[definition(&format!("d{i}"))]))
            .await
            .unwrap();
    }
    let page = store.changes_since(1, 100).await.unwrap();
    assert!(page.trimmed, "revision 2 is long gone");
    assert!(page.changes.is_empty());
    let recent = store.changes_since(10, 100).await.unwrap();
    assert!(!recent.trimmed);
    assert_eq!(
        recent
            .changes
            .iter()
            .map(|c| c.revision)
            .collect::<Vec<_>>(),
        [11, 12]
    );
    assert!(
        !store.changes_since(12, 100).await.unwrap().trimmed,
        "up to date is not trimmed"
    );
}

#[tokio::test]
async fn sqlite_store_reports_an_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let err = SqliteStore::open(&file.join("registry.db"))
        .err()
        .expect("cannot open under a file");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn one_sqlite_file_serves_one_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let first = SqliteStore::open(&path).unwrap();
    let err = SqliteStore::open(&path)
        .err()
        .expect("a second open is refused");
    assert!(
        err.to_string().contains("in use by another registry-svc"),
        "{err}"
    );
    drop(first);
    SqliteStore::open(&path).expect("free again once the first is closed");
}

/// Commits take their time, like a slow disk; batch sizes are recorded.
#[derive(Default)]
struct Slow {
    batches: Mutex<Vec<usize>>,
    commits: AtomicUsize,
}

#[async_trait]
impl Hooks for Slow {
    async fn before_commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(changes.len());
        tokio::time::sleep(Duration::from_millis(20)).await; // a slow fsync
        Ok(())
    }
}

#[tokio::test]
async fn concurrent_writes_share_commits() {
    let (d, store) = Hooked::start_daemon(Slow::default()).await;
    let before = store.hooks.commits.load(Ordering::SeqCst);

    let writes = 200;
    let mut tasks = Vec::new();
    for i in 0..writes {
        let body = json!({"url": format!("http://127.0.0.1:{}", 10000 + i), "slug": "bulk"});
        tasks.push(tokio::spawn(d.register(body)));
    }
    for task in tasks {
        task.await.expect("every write is acknowledged with a 201");
    }
    let commits = store.hooks.commits.load(Ordering::SeqCst) - before;
    let largest = *store.hooks.batches.lock().unwrap().iter().max().unwrap();
    assert!(
        commits < writes,
        "{writes} concurrent writes took {commits} commits"
    );
    assert!(largest > 1, "no commit carried more than one write");

    let r = d
        .admin(Method::GET, "/registry-svc/instances?slug=bulk", None)
        .await;
    assert_eq!(r.body["instances"].as_array().unwrap().len(), writes);
    d.stop().await;
}

/// A disk that can be "unplugged": commits and pings fail while it is down.
#[derive(Default)]
struct Flaky {
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk unplugged".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Hooks for Flaky {
    async fn before_commit(&self, _changes: &[Change]) -> Result<(), StoreError> {
        self.check()
    }
    fn before_ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

#[tokio::test]
async fn a_failed_commit_answers_503_and_changes_nothing() {
    let (d, store) = Hooked::start_daemon(Flaky::default()).await;
    let instance = json!({"url": "http://127.0.0.1:7"});
    let listed = || async {
        let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
        r.body["instances"].as_array().unwrap().len()
    };

    store.hooks.down.store(true, Ordering::SeqCst);
    let r = d
        .admin(
            Method::PUT,
            "/registry-svc/instance",
            Some(instance.clone()),
        )
        .await;
    r.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("disk unplugged"),
        "a write to an unplugged disk",
    );
    assert_eq!(listed().await, 0, "a refused write is not visible");
    let ready = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);

    store.hooks.down.store(false, Ordering::SeqCst);
    d.register(instance).await;
    assert_eq!(listed().await, 1);
    d.stop().await;
}
