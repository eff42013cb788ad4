//! The store contract, run against every store implementation, and group commit.

mod common;

use async_trait::async_trait;
use common::hooked::{Hooked, Hooks};
use common::postgres::TestDatabase;
use registry_store::postgres::NOTIFY_CHANNEL;
use registry_store::{
    Basis, Change, Kind, Note, PostgresStore, Read, Snapshot, SqliteStore, Store, StoreError,
};
use registry_types::{Definition, Instance};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A put of `object`: a store sees only its kind, key and JSON text.
fn put(kind: Kind, key: &str, object: impl serde::Serialize) -> Change {
    Change {
        kind,
        key: key.into(),
        body: Some(serde_json::to_string(&object).unwrap().into()),
        claim: None,
        by: None,
    }
}

fn delete(kind: Kind, key: &str) -> Change {
    Change {
        kind,
        key: key.into(),
        body: None,
        claim: None,
        by: None,
    }
}

/// A put of an instance, which claims its URL.
fn instance(id: &str, url: &str) -> Change {
    let instance = Instance {
        id: id.into(),
        url: url.into(),
        slug: "svc".into(),
        ..Default::default()
    };
    Change {
        claim: Some(url.into()),
        ..put(Kind::Instance, id, instance)
    }
}

/// A basis at `revision` that read `reads`.
fn basis(revision: u64, reads: &[Read]) -> Option<Basis> {
    Some(Basis {
        revision,
        reads: reads.to_vec(),
    })
}

fn note(key: &str, text: &str) -> Note {
    Note {
        kind: Kind::Instance,
        key: key.into(),
        body: format!("{{\"details\":{text:?}}}").into(),
    }
}

fn notes(snapshot: &Snapshot) -> Vec<(String, String)> {
    let mut notes: Vec<_> = snapshot
        .notes()
        .map(|n| (n.key.to_string(), n.body.to_string()))
        .collect();
    notes.sort();
    notes
}

fn definition(id: &str) -> Change {
    let definition = Definition {
        id: id.into(),
        image: None,
        repository: None,
        api_specs: vec![],
        clients: vec![],
        envars: vec![],
        ports: vec![],
    };
    put(Kind::Definition, id, definition)
}

/// The URL of the stored instance `id`.
fn instance_url(snapshot: &Snapshot, id: &str) -> String {
    let object = snapshot.objects().find(|o| o.key == id).unwrap();
    serde_json::from_str::<Instance>(object.body).unwrap().url
}

fn keys(snapshot: &Snapshot, kind: Kind) -> Vec<String> {
    let mut keys: Vec<_> = snapshot
        .objects()
        .filter(|o| o.kind == kind)
        .map(|o| o.key.to_string())
        .collect();
    keys.sort();
    keys
}

/// What every store must do. `open` opens the same store again, as after a restart.
async fn store_contract<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let store = open().await;
    let empty = store.load().await.unwrap();
    assert_eq!(empty.revision, 0);
    assert!(empty.is_empty());
    store.ping().await.unwrap();

    let first = store
        .commit(
            vec![
                instance("a", "http://127.0.0.1:1"),
                definition("d1"),
                instance("b", "http://127.0.0.1:2"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![1, 2, 3],
        "revisions are store-wide and consecutive"
    );
    let second = store
        .commit(
            vec![
                delete(Kind::Instance, "a"),
                instance("b", "http://127.0.0.1:3"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(second, vec![4, 5]);

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.revision, 5);
    assert_eq!(keys(&loaded, Kind::Instance), ["b"]);
    assert_eq!(keys(&loaded, Kind::Definition), ["d1"]);
    assert_eq!(
        instance_url(&loaded, "b"),
        "http://127.0.0.1:3",
        "latest put wins"
    );

    // A commit planned on an older revision changes nothing if what it relied on
    // changed since: an object it read, one it writes, a claim it looked up or takes,
    // or any object of a kind it read whole.
    let instance_b = Read::Object(Kind::Instance, "b".into());
    for (reads, change) in [
        (vec![instance_b.clone()], definition("late")),
        (vec![], instance("b", "http://127.0.0.1:4")),
        (
            vec![Read::Claim("http://127.0.0.1:3".into())],
            definition("late"),
        ),
        (vec![], instance("c", "http://127.0.0.1:3")),
        (vec![Read::Kind(Kind::Instance)], definition("late")),
    ] {
        let stale = store.commit(vec![change], basis(4, &reads)).await;
        assert!(
            matches!(stale, Err(StoreError::Stale { latest: 5 })),
            "{reads:?}: {stale:?}"
        );
    }
    // Changes since to other objects do not count.
    let unrelated = [
        Read::Object(Kind::Definition, "d1".into()),
        Read::Object(Kind::Instance, "a".into()),
        Read::Claim("http://127.0.0.1:2".into()),
        Read::Kind(Kind::Token),
    ];
    let late = store
        .commit(vec![definition("late")], basis(4, &unrelated))
        .await
        .unwrap();
    assert_eq!(late, [6]);
    store
        .commit(
            vec![delete(Kind::Definition, "late")],
            basis(6, &[instance_b]),
        )
        .await
        .unwrap();

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
            (5, "b", true),
            (6, "late", true),
            (7, "late", false),
        ]
    );
    assert_eq!(
        log.changes[4].change.claim.as_deref(),
        Some("http://127.0.0.1:3")
    );

    // Notes: no revision, the latest per object, none for objects not stored, and
    // dropped with their object.
    store
        .put_notes(vec![
            note("b", "first"),
            note("gone", "x"),
            note("b", "second"),
        ])
        .await
        .unwrap();
    let noted = store.load().await.unwrap();
    assert_eq!(noted.revision, 7, "notes take no revision");
    assert_eq!(
        notes(&noted),
        [("b".into(), r#"{"details":"second"}"#.into())]
    );
    assert!(store
        .changes_since(7, 100)
        .await
        .unwrap()
        .changes
        .is_empty());
    let own = store.notes_since(0, 100).await.unwrap();
    assert!(
        own.notes.is_empty(),
        "a handle does not read its own notes back"
    );
    assert!(own.cursor > 0, "but moves on past them");
    let page = store.changes_since(3, 1).await.unwrap();
    assert_eq!(page.changes.len(), 1, "the limit is kept");
    assert_eq!(page.changes[0].revision, 4);

    store.close().await.unwrap();
    drop(store);
    let reopened = open().await;
    let again = reopened.load().await.unwrap();
    assert_eq!(again.revision, 7, "the revision survives a restart");
    assert_eq!(keys(&again, Kind::Instance), ["b"]);
    assert_eq!(notes(&again).len(), 1, "so do notes");
    reopened
        .commit(vec![delete(Kind::Instance, "b")], None)
        .await
        .unwrap();
    assert!(reopened.load().await.unwrap().notes().next().is_none());
    reopened
        .commit(vec![instance("b", "http://127.0.0.1:3")], None)
        .await
        .unwrap();
    // The actor of a change is kept in the log as the text it was given.
    let actor = arcstr::literal!(r#"{"tokenId":"tok_1","slug":"svc"}"#);
    assert_eq!(
        reopened
            .commit(
                vec![Change {
                    by: Some(actor.clone()),
                    ..definition("d2")
                }],
                None
            )
            .await
            .unwrap(),
        vec![10]
    );
    let log = reopened.changes_since(8, 100).await.unwrap().changes;
    let actors: Vec<_> = log.iter().map(|c| c.change.by.as_deref()).collect();
    assert_eq!(actors, [None, Some(actor.as_str())]);
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let path = &path;
    store_contract(
        move || async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn Store> },
    )
    .await;
}

#[tokio::test]
async fn a_trimmed_change_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_retention(&dir.path().join("registry.db"), 4).unwrap();
    trimmed_log_contract(&store).await;
}

/// A store keeping 4 changes, after 12 commits, cannot serve a reader at revision 1.
async fn trimmed_log_contract(store: &dyn Store) {
    for i in 0..12 {
        store
            .commit(vec![definition(&format!("d{i}"))], None)
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
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
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
            return Err(StoreError::unavailable("disk unplugged"));
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
        Some("the store is unavailable; see the daemon log"),
        "a write to an unplugged disk",
    );
    assert!(
        !r.text.contains("disk unplugged"),
        "the store's own error stays in the log: {}",
        r.text
    );
    assert_eq!(listed().await, 0, "a refused write is not visible");
    let ready = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);

    store.hooks.down.store(false, Ordering::SeqCst);
    d.register(instance).await;
    assert_eq!(listed().await, 1);
    d.stop().await;
}

/// Holds every commit while closed, counting those it holds.
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    held: AtomicUsize,
    opened: tokio::sync::Notify,
}

#[async_trait]
impl Hooks for Gate {
    async fn before_commit(&self, _changes: &[Change]) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            loop {
                let opened = self.opened.notified();
                tokio::pin!(opened);
                opened.as_mut().enable();
                if !self.closed.load(Ordering::SeqCst) {
                    break;
                }
                opened.await;
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_bad_registration_is_refused_without_waiting_for_a_commit() {
    let (d, gate) = Hooked::start_daemon(Gate::default()).await;
    let d = Arc::new(d);
    gate.hooks.closed.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let d = d.clone();
        async move {
            d.admin(
                Method::PUT,
                "/registry-svc/instance",
                Some(json!({"url": "http://127.0.0.1:7"})),
            )
            .await
        }
    });
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            gate.hooks.held.load(Ordering::SeqCst) > 0
        })
        .await,
        "the registration never reached the store"
    );

    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        d.admin(
            Method::PUT,
            "/registry-svc/instance",
            Some(json!({"url": "http://127.0.0.1:7", "tags": [""]})),
        ),
    )
    .await
    .expect("a bad registration waited for the held commit");
    refused.assert_error(StatusCode::BAD_REQUEST, Some("tags[0]"), "an empty tag");
    assert!(
        !held.is_finished(),
        "the good one is still waiting on its commit"
    );

    gate.hooks.closed.store(false, Ordering::SeqCst);
    gate.hooks.opened.notify_waiters();
    assert_eq!(held.await.unwrap().status, StatusCode::CREATED);
    Arc::into_inner(d).unwrap().stop().await;
}

// PostgreSQL: the same contract, and what sharing one database between daemons needs.
// Each test gets a database of its own; without REGISTRY_TEST_DATABASE_URL they skip.

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let url = db.url.as_str();
    store_contract(move || async move {
        Arc::new(PostgresStore::connect(url).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn postgres_notes_reach_the_other_daemons_in_order_and_without_a_revision() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (writing, reading) = (
        PostgresStore::connect(&db.url).await.unwrap(),
        PostgresStore::connect(&db.url).await.unwrap(),
    );
    let keys: Vec<String> = (0..5).map(|i| format!("i{i}")).collect();
    let changes = keys
        .iter()
        .map(|k| instance(k, &format!("http://127.0.0.1:{}", 10 + k.len())))
        .collect();
    writing.commit(changes, None).await.unwrap();
    let start = reading.load().await.unwrap().notes_cursor;

    writing
        .put_notes(keys.iter().map(|k| note(k, "one")).collect())
        .await
        .unwrap();
    writing.put_notes(vec![note("i3", "two")]).await.unwrap();
    reading.put_notes(vec![note("i4", "mine")]).await.unwrap();
    let first = reading.notes_since(start, 3).await.unwrap();
    let read: Vec<_> = first.notes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(read, ["i0", "i1", "i2"], "oldest first, the limit kept");
    let rest = reading.notes_since(first.cursor, 100).await.unwrap();
    let read: Vec<_> = rest
        .notes
        .iter()
        .map(|n| (n.key.as_str(), n.body.as_str()))
        .collect();
    assert_eq!(
        read,
        [("i3", r#"{"details":"two"}"#)],
        "i3 as it is now; i4 rewritten by the reader itself"
    );
    assert!(reading
        .notes_since(rest.cursor, 100)
        .await
        .unwrap()
        .notes
        .is_empty());
    assert_eq!(
        reading.load().await.unwrap().revision,
        5,
        "notes take no revision"
    );
    writing.close().await.unwrap();
    reading.close().await.unwrap();
}

#[tokio::test]
async fn a_commit_whose_basis_left_the_log_is_planned_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_retention(&dir.path().join("registry.db"), 4).unwrap();
    for i in 0..12 {
        store
            .commit(vec![definition(&format!("d{i}"))], None)
            .await
            .unwrap();
    }
    let stale = store.commit(vec![definition("x")], basis(2, &[])).await;
    assert!(
        matches!(stale, Err(StoreError::Stale { latest: 12 })),
        "what changed after revision 2 is no longer known: {stale:?}"
    );
    store
        .commit(vec![definition("x")], basis(10, &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trimmed_postgres_change_log_says_so() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PostgresStore::connect_with_retention(&db.url, 4)
        .await
        .unwrap();
    trimmed_log_contract(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn postgres_commits_from_two_daemons_get_distinct_consecutive_revisions() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let stores = [
        Arc::new(PostgresStore::connect(&db.url).await.unwrap()),
        Arc::new(PostgresStore::connect(&db.url).await.unwrap()),
    ];
    let commits_each = 50;
    let mut tasks = Vec::new();
    for (daemon, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..commits_each {
                // Two changes a commit: a commit's revisions must be consecutive too.
                let keys = [format!("n{daemon}-{i}-a"), format!("n{daemon}-{i}-b")];
                let revisions = store
                    .commit(vec![definition(&keys[0]), definition(&keys[1])], None)
                    .await
                    .unwrap();
                assert_eq!(revisions.len(), 2);
                assert_eq!(revisions[1], revisions[0] + 1, "one commit, consecutive");
                written.extend(revisions.into_iter().zip(keys));
            }
            written
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    written.sort();
    let total = 2 * commits_each as u64 * 2;
    assert_eq!(
        written.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "every revision from 1 to {total} exactly once"
    );

    let log = stores[0].changes_since(0, 10_000).await.unwrap();
    assert!(!log.trimmed);
    let logged: Vec<(u64, String)> = log
        .changes
        .iter()
        .map(|c| (c.revision, c.change.key.clone()))
        .collect();
    assert_eq!(logged, written, "the log lists every commit, in order");
    let loaded = stores[1].load().await.unwrap();
    assert_eq!(loaded.revision, total);
    assert_eq!(loaded.len(), total as usize);
    for store in stores {
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn postgres_puts_and_deletes_of_one_key_in_one_commit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let delete = |key: &str| delete(Kind::Instance, key);
    let revisions = store
        .commit(
            vec![
                instance("a", "http://127.0.0.1:1"),
                instance("a", "http://127.0.0.1:2"),
                instance("b", "http://127.0.0.1:3"),
                delete("b"),
                delete("c"),
                instance("c", "http://127.0.0.1:4"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(revisions, [1, 2, 3, 4, 5, 6]);
    let loaded = store.load().await.unwrap();
    assert_eq!(
        keys(&loaded, Kind::Instance),
        ["a", "c"],
        "the last change wins"
    );
    assert_eq!(instance_url(&loaded, "a"), "http://127.0.0.1:2");
    assert_eq!(store.changes_since(0, 100).await.unwrap().changes.len(), 6);
    store.close().await.unwrap();
}

#[tokio::test]
async fn postgres_migrations_run_once_when_daemons_start_together() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let connects = (0..4).map(|_| PostgresStore::connect(&db.url));
    let stores = futures_util::future::join_all(connects).await;
    for store in &stores {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let mut conn = db.connection().await;
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4]);
    let revision: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'revision'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(revision, 0);
    for store in stores {
        store.unwrap().close().await.unwrap();
    }
}

#[tokio::test]
async fn a_postgres_listener_hears_commits_from_another_daemon() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let listening = PostgresStore::connect(&db.url).await.unwrap();
    let writing = PostgresStore::connect(&db.url).await.unwrap();
    let mut listener = listening.listen().await.unwrap();
    writing
        .commit(vec![definition("d1"), definition("d2")], None)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10s")
        .unwrap();
    assert_eq!(heard.channel(), NOTIFY_CHANNEL);
    assert_eq!(heard.payload(), "2", "the payload is the last revision");
    writing.commit(vec![definition("d3")], None).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10s")
        .unwrap();
    assert_eq!(heard.payload(), "3");
    writing.close().await.unwrap();
    listening.close().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_and_keeps_its_password() {
    // Port 1 on loopback refuses at once; no database needed.
    let err = PostgresStore::connect("postgres://registry:hunter2@127.0.0.1:1/registry")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.database_url = Some("mysql://root:hunter2@127.0.0.1/registry".into());
    let err = registry_server::start(config)
        .await
        .err()
        .expect("only PostgreSQL is supported");
    let message = format!("{err:#}");
    assert!(message.contains("--database-url"), "{message}");
    assert!(message.contains("postgres://"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_daemon_on_postgres_keeps_its_instances_across_a_restart() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let admin = "postgres-test-admin-token-0123456789";
    let start = |dir: tempfile::TempDir| db.start_daemon(dir, admin);
    let d = start(tempfile::tempdir().unwrap()).await;
    let id = d
        .register(json!({"url": "http://127.0.0.1:9911", "slug": "pg"}))
        .await;
    let dir = d.stop().await;
    assert!(
        !dir.path().join("registry.db").exists(),
        "no embedded store beside PostgreSQL"
    );

    // A new data dir: whatever the daemon finds comes from PostgreSQL.
    let d = start(tempfile::tempdir().unwrap()).await;
    let r = d
        .admin(Method::GET, "/registry-svc/instances?slug=pg", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let instances = r.body["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{}", r.text);
    assert_eq!(instances[0]["id"], id.as_str());
    assert_eq!(instances[0]["url"], "http://127.0.0.1:9911");
    let ready = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    d.stop().await;
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_version_is_upgraded() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // As version 1 of the schema left it, with one change logged then.
    let mut conn = db.connection().await;
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version) VALUES (1);
         CREATE TABLE objects (kind TEXT NOT NULL, key TEXT NOT NULL, revision BIGINT NOT NULL,
                               body TEXT NOT NULL, PRIMARY KEY (kind, key));
         CREATE TABLE changes (revision BIGINT PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,
                               op TEXT NOT NULL, body TEXT);
         CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
         INSERT INTO meta (name, value) VALUES ('revision', 1);
         INSERT INTO objects VALUES ('definition', 'old', 1, '{\"id\":\"old\"}');
         INSERT INTO changes VALUES (1, 'definition', 'old', 'put', '{\"id\":\"old\"}');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let actor = arcstr::literal!(r#"{"slug":"registry","node":"n1"}"#);
    store
        .commit(
            vec![Change {
                by: Some(actor.clone()),
                ..definition("new")
            }],
            basis(1, &[]),
        )
        .await
        .unwrap();
    let log = store.changes_since(0, 100).await.unwrap().changes;
    let logged: Vec<_> = log
        .iter()
        .map(|c| (c.change.key.as_str(), c.change.by.as_deref()))
        .collect();
    assert_eq!(logged, [("old", None), ("new", Some(actor.as_str()))]);
    assert_eq!(
        keys(&store.load().await.unwrap(), Kind::Definition),
        ["new", "old"]
    );
    store.close().await.unwrap();
}
