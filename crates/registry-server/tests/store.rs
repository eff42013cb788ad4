//! The store contract, run against every store implementation, and group commit.

mod common;

use async_trait::async_trait;
use registry_server::store::{
    Change, Kind, Mutation, Record, Snapshot, SqliteStore, Store, StoreError,
};
use registry_types::{Definition, Instance};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A store that takes its time to commit, like a slow disk, and records batch sizes.
struct SlowStore {
    inner: SqliteStore,
    batches: Mutex<Vec<usize>>,
    commits: AtomicUsize,
}

#[async_trait]
impl Store for SlowStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
    async fn commit(&self, changes: Vec<Change>) -> Result<Vec<u64>, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(changes.len());
        tokio::time::sleep(Duration::from_millis(20)).await; // a slow fsync
        self.inner.commit(changes).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[tokio::test]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SlowStore {
        inner: SqliteStore::open(&dir.path().join("registry.db")).unwrap(),
        batches: Mutex::new(Vec::new()),
        commits: AtomicUsize::new(0),
    });
    let server = registry_server::start_with_store(common::config(dir.path()), store.clone())
        .await
        .unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    let http = reqwest::Client::new();
    let before = store.commits.load(Ordering::SeqCst);

    let writes = 200;
    let mut tasks = Vec::new();
    for i in 0..writes {
        let (http, admin, url) = (
            http.clone(),
            admin.clone(),
            format!("{}/registry-svc/instance", server.base_url()),
        );
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"url": format!("http://127.0.0.1:{}", 10000 + i), "slug": "bulk"});
            http.put(url).bearer_auth(admin).body(body.to_string()).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), reqwest::StatusCode::CREATED);
    }
    let commits = store.commits.load(Ordering::SeqCst) - before;
    let largest = *store.batches.lock().unwrap().iter().max().unwrap();
    assert!(
        commits < writes,
        "{writes} concurrent writes took {commits} commits"
    );
    assert!(largest > 1, "no commit carried more than one write");

    let listed: serde_json::Value = http
        .get(format!(
            "{}/registry-svc/instances?slug=bulk",
            server.base_url()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["instances"].as_array().unwrap().len(), writes);
    server.shutdown().await.unwrap();
}

/// A store whose disk can be "unplugged".
struct FlakyStore {
    inner: SqliteStore,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for FlakyStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
    async fn commit(&self, changes: Vec<Change>) -> Result<Vec<u64>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk unplugged".into()));
        }
        self.inner.commit(changes).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk unplugged".into()));
        }
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[tokio::test]
async fn a_failed_commit_answers_503_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(&dir.path().join("registry.db")).unwrap(),
        down: Default::default(),
    });
    let server = registry_server::start_with_store(common::config(dir.path()), store.clone())
        .await
        .unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let http = reqwest::Client::new();
    let register = || {
        http.put(format!("{}/registry-svc/instance", server.base_url()))
            .bearer_auth(admin.trim())
            .body(r#"{"url": "http://127.0.0.1:7"}"#)
            .send()
    };
    let list = || async {
        let body: serde_json::Value = http
            .get(format!("{}/registry-svc/instances", server.base_url()))
            .bearer_auth(admin.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["instances"].as_array().unwrap().len()
    };

    store.down.store(true, Ordering::SeqCst);
    let refused = register().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("disk unplugged"),
        "{body}"
    );
    assert_eq!(list().await, 0, "a refused write is not visible");
    let ready = http
        .get(format!("{}/readyz", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    store.down.store(false, Ordering::SeqCst);
    assert_eq!(
        register().await.unwrap().status(),
        reqwest::StatusCode::CREATED
    );
    assert_eq!(list().await, 1);
    server.shutdown().await.unwrap();
}
