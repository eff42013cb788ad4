//! The change feed over HTTP: list indexes, blocking queries and the event stream.

mod common;

use common::{Daemon, EventStream, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A blocking query for the instances of `slug` changed after revision `index`, waiting
/// up to 30 s.
fn watch_slug(d: &Daemon, slug: &str, index: u64) -> JoinHandle<Reply> {
    d.spawn_get(&format!(
        "/registry-svc/instances?slug={slug}&index={index}&wait=30s"
    ))
}

/// The answer of a [`watch_slug`] query, which must come well before its wait ends.
async fn answer(waiting: JoinHandle<Reply>, what: &str) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer well before the 30 s wait"))
        .unwrap()
}

#[tokio::test]
async fn every_list_carries_the_index_of_its_kind() {
    let d = Daemon::start().await;
    let before = d.index_of(Method::GET, "/registry-svc/instances").await;
    d.register(json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "none"}}))
        .await;
    let after = d.index_of(Method::GET, "/registry-svc/instances").await;
    assert!(after > before, "{after} > {before}");
    let definitions = d.index_of(Method::GET, "/registry-svc/definitions").await;
    assert!(
        definitions < after,
        "a registration is not a definition change"
    );
    let nodes = d.admin(Method::POST, "/registry-svc/nodes", None).await;
    assert!(nodes.index() > 0);
    d.stop().await;
}

#[tokio::test]
async fn a_blocking_query_answers_with_the_change_it_waited_for() {
    let d = Daemon::start().await;
    let start = d
        .index_of(Method::GET, "/registry-svc/instances?slug=watched")
        .await;
    let waiting = watch_slug(&d, "watched", start);
    d.register(
        json!({"url": "http://127.0.0.1:1", "slug": "watched", "healthCheck": {"type": "none"}}),
    )
    .await;
    let reply = answer(waiting, "a registration in the slug").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.index() > start);
    assert_eq!(
        reply.body["instances"][0]["slug"], "watched",
        "{}",
        reply.text
    );
    d.stop().await;
}

#[tokio::test]
async fn a_slug_watcher_sleeps_through_other_slugs() {
    let d = Daemon::start().await;
    let start = d
        .index_of(Method::GET, "/registry-svc/instances?slug=watched")
        .await;
    let waiting = watch_slug(&d, "watched", start);
    // Changes of another slug, including one that moves an instance between two other
    // slugs: none is an answer for this watcher.
    let other = d
        .register(
            json!({"url": "http://127.0.0.1:1", "slug": "other", "healthCheck": {"type": "none"}}),
        )
        .await;
    d.register(json!({"id": other, "url": "http://127.0.0.1:1", "slug": "third", "healthCheck": {"type": "none"}}))
        .await;
    let after_others = d.index_of(Method::GET, "/registry-svc/instances").await;
    let watched = d
        .register(json!({"url": "http://127.0.0.1:2", "slug": "watched", "healthCheck": {"type": "none"}}))
        .await;
    let reply = answer(waiting, "a registration in the slug").await;
    // Had the other slugs' changes ended the wait, the answer would predate this one.
    assert!(
        reply.index() > after_others,
        "{} > {after_others}",
        reply.index()
    );
    assert_eq!(
        reply.body["instances"][0]["id"],
        watched.as_str(),
        "{}",
        reply.text
    );

    // Moving an instance out of a slug is a change of that slug.
    let index = reply.index();
    let waiting = watch_slug(&d, "watched", index);
    d.register(json!({"id": watched, "url": "http://127.0.0.1:2", "slug": "elsewhere", "healthCheck": {"type": "none"}}))
        .await;
    let reply = answer(waiting, "a move out of the slug").await;
    assert!(reply.index() > index);
    assert_eq!(reply.body["instances"], json!([]), "{}", reply.text);
    d.stop().await;
}

#[tokio::test]
async fn node_heartbeats_do_not_move_the_instance_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.heartbeat_interval = Duration::from_millis(50);
    let d = Daemon::start_with(config, dir).await;
    let instances = d.index_of(Method::GET, "/registry-svc/instances").await;
    let nodes = d.index_of(Method::POST, "/registry-svc/nodes").await;
    // A blocking node query wakes on the next heartbeat...
    let reply = d
        .admin(
            Method::POST,
            &format!("/registry-svc/nodes?index={nodes}&wait=30s"),
            None,
        )
        .await;
    assert!(reply.index() > nodes);
    // ...while the instance index has not moved, so instance watchers slept through it.
    let reply = d
        .admin(
            Method::GET,
            &format!("/registry-svc/instances?index={instances}&wait=100ms"),
            None,
        )
        .await;
    assert_eq!(reply.index(), instances);
    d.stop().await;
}

#[tokio::test]
async fn bad_blocking_parameters_are_named() {
    let d = Daemon::start().await;
    for (query, field) in [
        ("index=soon", "index"),
        ("index=1&wait=30", "wait"),
        ("index=-1", "index"),
    ] {
        let r = d
            .admin(
                Method::GET,
                &format!("/registry-svc/instances?{query}"),
                None,
            )
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), query);
    }
    let r = d
        .admin(Method::GET, "/registry-svc/events?kind=token", None)
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("kind"),
        "tokens are never on the feed",
    );
    let r = d
        .admin(Method::GET, "/registry-svc/events?since=x", None)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("since"), "since");
    d.stop().await;
}

/// Reads `count` events of an SSE response as (event name, JSON data), each within 10 s.
async fn read_events(response: reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut stream = EventStream::new(response);
    let mut events = Vec::new();
    while events.len() < count {
        events.push(next_event(&mut stream).await);
    }
    events
}

/// The next event of `stream`, within 10 s.
async fn next_event(stream: &mut EventStream) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the next event arrives")
}

#[tokio::test]
async fn the_event_stream_replays_from_a_revision_then_follows() {
    let d = Daemon::start().await;
    let start = d.index_of(Method::GET, "/registry-svc/instances").await;
    let first = d
        .register(json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "none"}}))
        .await;
    d.save_definition(json!({"id": "def-a"})).await;
    let response = d
        .events_request(&format!("since={start}&kind=instance&kind=definition"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let consume = tokio::spawn(read_events(response, 4));
    let r = d
        .admin(
            Method::DELETE,
            &format!("/registry-svc/instance/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    d.save_definition(json!({"id": "def-b"})).await;

    let events = consume.await.unwrap();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                e["kind"].as_str().unwrap().into(),
                e["op"].as_str().unwrap().into(),
            )
        })
        .collect();
    let change = |k: &str, op: &str| ("change".to_string(), k.to_string(), op.to_string());
    assert_eq!(
        summary,
        [
            change("instance", "put"),
            change("definition", "put"),
            change("instance", "delete"),
            change("definition", "put")
        ]
    );
    assert_eq!(events[0].1["id"], first.as_str());
    assert_eq!(events[0].1["object"]["url"], "http://127.0.0.1:1");
    assert_eq!(events[2].1["object"], Value::Null);
    let revisions: Vec<u64> = events
        .iter()
        .map(|(_, e)| e["revision"].as_u64().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert!(revisions[0] > start);
    d.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_resumes_where_it_stopped() {
    let d = Daemon::start().await;
    let start = d.index_of(Method::GET, "/registry-svc/instances").await;
    let response = d
        .events_request(&format!("since={start}&kind=instance"))
        .send()
        .await
        .unwrap();
    let consume = tokio::spawn(read_events(response, 1));
    d.register(json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "none"}}))
        .await;
    let seen = consume.await.unwrap();
    let last = seen[0].1["revision"].as_u64().unwrap();
    // Disconnected: two changes happen meanwhile.
    d.register(json!({"url": "http://127.0.0.1:2", "healthCheck": {"type": "none"}}))
        .await;
    d.register(json!({"url": "http://127.0.0.1:3", "healthCheck": {"type": "none"}}))
        .await;
    // EventSource reconnects with Last-Event-ID.
    let response = d
        .events_request("kind=instance")
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let missed = read_events(response, 2).await;
    let urls: Vec<&str> = missed
        .iter()
        .map(|(_, e)| e["object"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["http://127.0.0.1:2", "http://127.0.0.1:3"]);
    d.stop().await;
}

#[tokio::test]
async fn tokens_never_appear_on_the_feed() {
    let d = Daemon::start().await;
    let response = d.events_request("since=0").send().await.unwrap();
    let consume = tokio::spawn(read_events(response, 2));
    d.token("someone", "user").await;
    d.save_definition(json!({"id": "after-the-token"})).await;
    let events = consume.await.unwrap();
    // Everything since 0: the node's first heartbeat, then the definition; the bootstrap
    // and new tokens were skipped.
    assert!(
        events.iter().all(|(_, e)| e["kind"] != "token"),
        "{events:?}"
    );
    assert_eq!(events[0].1["kind"], "node");
    d.stop().await;
}

#[tokio::test]
async fn a_revision_older_than_the_history_gets_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        registry_store::SqliteStore::open_with_retention(&dir.path().join("registry.db"), 4)
            .unwrap(),
    );
    let d = Daemon::start_with_store(common::config(dir.path()), dir, store).await;
    for port in 1..=8 {
        d.register(
            json!({"url": format!("http://127.0.0.1:{port}"), "healthCheck": {"type": "none"}}),
        )
        .await;
    }
    let current = d.index_of(Method::GET, "/registry-svc/instances").await;
    let response = d
        .events_request("since=1&kind=instance")
        .send()
        .await
        .unwrap();
    let mut stream = EventStream::new(response);
    let (name, reset) = next_event(&mut stream).await;
    assert_eq!(name, "reset", "{reset}");
    assert!(reset["revision"].as_u64().unwrap() >= current);
    assert!(reset["reason"].as_str().unwrap().contains("re-list"));
    // Registered only once the reset is in: a change committed before the stream looked
    // at the log is part of the state the reset asks to re-list, so it has no event.
    d.register(json!({"url": "http://127.0.0.1:9", "healthCheck": {"type": "none"}}))
        .await;
    let (name, change) = next_event(&mut stream).await;
    assert_eq!(name, "change");
    assert_eq!(
        change["object"]["url"], "http://127.0.0.1:9",
        "then it follows live"
    );
    d.stop().await;
}

#[tokio::test]
async fn shutdown_ends_parked_watchers_and_streams() {
    let d = Daemon::start().await;
    let start = d.index_of(Method::GET, "/registry-svc/instances").await;
    let watcher = {
        let (http, url, admin) = (
            d.http.clone(),
            d.url(&format!("/registry-svc/instances?index={start}&wait=10m")),
            d.admin.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(admin).send().await })
    };
    let stream = d.events_request("kind=instance").send().await.unwrap();
    // The watcher parks; a stop must not wait out its ten minutes.
    tokio::time::timeout(Duration::from_secs(20), d.stop())
        .await
        .expect("shutdown does not wait for parked watchers");
    let answered = watcher
        .await
        .unwrap()
        .expect("the parked watcher is answered");
    assert_eq!(answered.status(), StatusCode::OK);
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.bytes())
        .await
        .expect("the event stream ends");
    assert!(rest.is_ok());
}
