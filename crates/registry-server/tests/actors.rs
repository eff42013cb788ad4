//! Who did what: every change names the token (or the daemon) that made it, on the event
//! stream and in the change log each store keeps across restarts.

mod common;

use common::postgres::TestDatabase;
use common::{CapturedLog, Daemon, EventStream};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// The next event of `stream` as (name, data), within 10 s.
async fn next_event(stream: &mut EventStream) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the next event arrives")
}

/// The id of the token the daemon's admin secret belongs to.
async fn admin_token_id(d: &Daemon) -> String {
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    let admins: Vec<&Value> = r.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["slug"] == "admin")
        .collect();
    match admins.as_slice() {
        [one] => one["id"].as_str().unwrap().to_string(),
        // No stored admin token: the daemon runs with REGISTRY_ADMIN_TOKEN.
        [] => "env-admin".to_string(),
        more => panic!("which admin? {more:?}"),
    }
}

/// Registers an instance as `user`, then removes it as the admin; returns its id.
async fn register_then_remove(d: &Daemon, user: &str) -> String {
    let id = d
        .register_as(
            user,
            json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "none"}}),
        )
        .await;
    let r = d
        .admin(
            Method::DELETE,
            &format!("/registry-svc/instance/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    id
}

/// A user registers two instances, the admin removes the first, the daemon finds the
/// second unreachable and later removes it: each event names who did it, and so does the
/// history replayed after `restart`.
async fn who_did_what<R, Fut>(d: Daemon, restart: R)
where
    R: FnOnce(Daemon) -> Fut,
    Fut: Future<Output = Daemon>,
{
    let admin_id = admin_token_id(&d).await;
    let node_id = d.self_node().await["id"].as_str().unwrap().to_string();
    let (user_id, user) = d
        .create_token(json!({"slug": "svc-a", "role": "user"}))
        .await;
    let start = d.index_of(Method::GET, "/registry-svc/instances").await;
    let mut stream = d.instance_events(start).await;

    let removed = register_then_remove(&d, &user).await;
    let dead = d
        .register_as(
            &user,
            json!({"url": "http://127.0.0.1:1", "deregisterAfter": "1s",
                   "healthCheck": {"type": "tcp", "interval": "1s", "unhealthyThreshold": 1}}),
        )
        .await;

    let user_actor = json!({"tokenId": user_id, "slug": "svc-a"});
    let admin_actor = json!({"tokenId": admin_id, "slug": "admin"});
    let registry_actor = json!({"slug": "registry", "node": node_id});
    let mut seen = Vec::new();
    for (id, op, by) in [
        (&removed, "put", &user_actor),
        (&removed, "delete", &admin_actor),
        (&dead, "put", &user_actor),
    ] {
        let (name, event) = next_event(&mut stream).await;
        assert_eq!(name, "change", "{event}");
        assert_eq!((&event["id"], &event["op"]), (&json!(id), &json!(op)));
        assert_eq!(&event["by"], by, "{op} of {id}: {event}");
        seen.push(event);
    }
    // The health check finds nothing at port 1: a change by the daemon itself.
    let (_, flip) = next_event(&mut stream).await;
    assert_eq!(flip["id"], dead.as_str(), "{flip}");
    assert_eq!(flip["object"]["status"], "Unreachable", "{flip}");
    assert_eq!(flip["by"], registry_actor, "{flip}");
    seen.push(flip);
    // Unreachable for longer than its deregisterAfter: the daemon removes it.
    let (_, removal) = next_event(&mut stream).await;
    assert_eq!(
        (&removal["id"], &removal["op"]),
        (&json!(dead), &json!("delete"))
    );
    assert_eq!(removal["by"], registry_actor, "{removal}");
    seen.push(removal);

    // The history, replayed from the store after a restart, still says who.
    let d = restart(d).await;
    let mut replay = d.instance_events(start).await;
    for before in &seen {
        let (_, again) = next_event(&mut replay).await;
        let summary = |e: &Value| (e["revision"].clone(), e["op"].clone(), e["by"].clone());
        assert_eq!(summary(&again), summary(before));
    }
    d.stop().await;
}

#[tokio::test]
async fn each_change_names_its_token_or_the_daemon_across_a_restart() {
    who_did_what(Daemon::start().await, Daemon::restart).await;
}

#[tokio::test]
async fn each_change_names_its_token_or_the_daemon_across_a_restart_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let admin = "postgres-test-admin-token-0123456789";
    let d = db.start_daemon(tempfile::tempdir().unwrap(), admin).await;
    who_did_what(d, |d| async {
        let dir = d.stop().await;
        db.start_daemon(dir, admin).await
    })
    .await;
}

/// The schema of the embedded store before changes had actors.
const SQLITE_SCHEMA_WITHOUT_ACTORS: &str = "
CREATE TABLE objects (
    kind     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    revision INTEGER NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    op       TEXT NOT NULL,
    body     TEXT
);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 1);
INSERT INTO objects (kind, key, revision, body) VALUES ('definition', 'old', 1, '{\"id\":\"old\"}');
INSERT INTO changes (revision, kind, key, op, body) VALUES (1, 'definition', 'old', 'put', '{\"id\":\"old\"}');
";

#[tokio::test]
async fn a_sqlite_file_of_the_previous_version_opens_and_its_old_changes_have_no_actor() {
    let dir = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(dir.path().join("registry.db"))
        .unwrap()
        .execute_batch(SQLITE_SCHEMA_WITHOUT_ACTORS)
        .unwrap();
    let d = Daemon::start_with(common::config(dir.path()), dir).await;
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(r.body["definitions"][0]["id"], "old", "{}", r.text);
    d.save_definition(json!({"id": "new"})).await;
    let admin_actor = json!({"tokenId": admin_token_id(&d).await, "slug": "admin"});

    // Twice: the upgraded file opens again as it is.
    let mut d = d;
    for _ in 0..2 {
        let response = d
            .events_request("since=0&kind=definition")
            .send()
            .await
            .unwrap();
        let mut stream = EventStream::new(response);
        let (_, old) = next_event(&mut stream).await;
        assert_eq!((&old["revision"], &old["id"]), (&json!(1), &json!("old")));
        assert_eq!(old["by"], Value::Null, "no actor was kept then: {old}");
        let (_, new) = next_event(&mut stream).await;
        assert_eq!(new["id"], "new");
        assert_eq!(new["by"], admin_actor, "{new}");
        d = d.restart().await;
    }
    d.stop().await;
}

#[tokio::test]
async fn the_log_says_who_made_each_change() {
    let log_dir = tempfile::tempdir().unwrap();
    // The only test of this binary to log: the others' lines land here too, harmlessly.
    let log = CapturedLog::start(log_dir.path(), "registry_server::state::audit=debug");
    let d = Daemon::start().await;
    let admin_id = admin_token_id(&d).await;
    let (user_id, user) = d
        .create_token(json!({"slug": "svc-b", "role": "user"}))
        .await;
    let id = register_then_remove(&d, &user).await;

    let logged = |op: &'static str, token: String| {
        let (log, id) = (log.clone(), id.clone());
        move || {
            let lines = log.lines_with(&[&id, op, &token]);
            async move { lines.len() == 1 && lines[0].contains(" INFO ") }
        }
    };
    let put = logged("op=\"put\"", format!("token_id=\"{user_id}\""));
    assert!(
        common::wait_until(Duration::from_secs(10), put).await,
        "one info line for the registration by {user_id}: {:?}",
        log.lines_with(&[&id])
    );
    let delete = logged("op=\"delete\"", format!("token_id=\"{admin_id}\""));
    assert!(
        common::wait_until(Duration::from_secs(10), delete).await,
        "one info line for the removal by {admin_id}: {:?}",
        log.lines_with(&[&id])
    );
    let heartbeats = log.lines_with(&["kind=\"node\"", "slug=\"registry\""]);
    assert!(
        !heartbeats.is_empty() && heartbeats.iter().all(|l| l.contains(" DEBUG ")),
        "the daemon's own heartbeats are logged at debug: {heartbeats:?}"
    );
    d.stop().await;
}
