//! Health checking end to end: real sockets on 127.0.0.1, short intervals, and waits
//! for what a caller eventually sees (never for a fixed time).

mod common;

use axum::extract::State;
use axum::http::StatusCode as HttpStatus;
use axum::routing::get;
use common::hooked::{Hooked, Recorder};
use common::{details, last_heartbeat, node_status, status, wait_until, Daemon, Listener};
use registry_store::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Long enough for any "eventually" here, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Services to check
// ---------------------------------------------------------------------------------------

/// How the test service answers `GET /healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 at once.
    Up,
    /// 503 at once.
    Failing,
    /// 200 after [`SLOW`].
    Slow,
}

/// How long a slow answer takes: well over the tests' `degradedLatency` (50ms), well
/// under their check timeout.
const SLOW: Duration = Duration::from_millis(200);

async fn healthz(State(mode): State<Arc<Mutex<Mode>>>) -> (HttpStatus, &'static str) {
    let mode = *mode.lock().unwrap();
    match mode {
        Mode::Up => (HttpStatus::OK, "ok"),
        Mode::Failing => (HttpStatus::SERVICE_UNAVAILABLE, "failing"),
        Mode::Slow => {
            tokio::time::sleep(SLOW).await;
            (HttpStatus::OK, "slow but ok")
        }
    }
}

/// A tiny HTTP service on a loopback port whose health can be switched, stopped (its
/// port then refuses connections) and started again on the same port.
struct Service {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    task: Option<JoinHandle<()>>,
}

impl Service {
    async fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut service = Service {
            port: listener.local_addr().unwrap().port(),
            mode: Arc::new(Mutex::new(Mode::Up)),
            task: None,
        };
        service.serve(listener);
        service
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .with_state(self.mode.clone());
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Closes the listener: from now on the port refuses connections.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await; // the listener is dropped once the task is
        }
    }

    /// Listens on the same port again (retrying while the port is not free yet).
    async fn restart(&mut self) {
        let address = format!("127.0.0.1:{}", self.port);
        let listener = Mutex::new(None);
        let bound = wait_until(DEADLINE, || async {
            match TcpListener::bind(address.as_str()).await {
                Ok(bound) => {
                    *listener.lock().unwrap() = Some(bound);
                    true
                }
                Err(_) => false,
            }
        })
        .await;
        assert!(bound, "port {} could not be bound again", self.port);
        let listener = listener.into_inner().unwrap().unwrap();
        self.serve(listener);
    }
}

/// A loopback port nothing listens on (bound once, then released).
async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Reading instances
// ---------------------------------------------------------------------------------------

/// Instances matching the query (e.g. `id=inst_x&status=Healthy`), as the admin.
async fn list(d: &Daemon, query: &str) -> Vec<Value> {
    d.list_instances(query).await.body["instances"]
        .as_array()
        .unwrap()
        .clone()
}

/// Watches one instance, remembering every status it was seen in (each once, in order).
struct Watch<'a> {
    d: &'a Daemon,
    id: String,
    seen: Vec<String>,
}

impl<'a> Watch<'a> {
    fn new(d: &'a Daemon, id: &str) -> Watch<'a> {
        Watch {
            d,
            id: id.to_string(),
            seen: Vec::new(),
        }
    }

    async fn read(&mut self) -> Value {
        let found = self
            .d
            .instance(&self.id)
            .await
            .unwrap_or_else(|| panic!("instance {} is gone", self.id));
        let now = status(&found).to_string();
        if self.seen.last() != Some(&now) {
            self.seen.push(now);
        }
        found
    }

    /// Polls until the instance is in `wanted` with details for which `ok` holds;
    /// returns it then.
    async fn until(&mut self, wanted: &str, ok: impl Fn(&str) -> bool) -> Value {
        // As `wait_until`, but keeping what was read.
        let end = Instant::now() + DEADLINE;
        loop {
            let last = self.read().await;
            if status(&last) == wanted && ok(details(&last)) {
                return last;
            }
            assert!(
                Instant::now() < end,
                "{} never became {wanted} with the expected details; last seen {last}, statuses seen {:?}",
                self.id,
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls until the instance is in `wanted` with details for which `ok` holds.
async fn wait_for(d: &Daemon, id: &str, wanted: &str, ok: impl Fn(&str) -> bool) -> Value {
    Watch::new(d, id).until(wanted, ok).await
}

/// Polls until the instance's lastHeartbeat is later than `after`; returns the instance.
async fn wait_for_heartbeat_after(
    d: &Daemon,
    id: &str,
    after: Option<chrono::DateTime<chrono::Utc>>,
) -> Value {
    d.wait_for_instance(id, DEADLINE, |now| {
        last_heartbeat(now).is_some() && last_heartbeat(now) > after
    })
    .await
    .unwrap_or_else(|last| panic!("lastHeartbeat of {id} never moved past {after:?}: {last}"))
}

fn heartbeat_path(id: &str) -> String {
    format!("/registry-svc/instance/{id}/heartbeat")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_check_follows_the_service_through_every_status() {
    let d = Daemon::start().await;
    let mut service = Service::start().await;
    let id = d
        .register(json!({
            "url": service.url(),
            "healthCheck": {
                "type": "http",
                // The timeout is capped at the interval; this one leaves room for SLOW.
                "interval": "1s",
                "timeout": "2s",
                "degradedLatency": "50ms",
            },
        }))
        .await;
    let mut watch = Watch::new(&d, &id);

    // Up: Healthy, with a heartbeat that keeps advancing.
    let healthy = watch.until("Healthy", |d| d.starts_with("HTTP 200")).await;
    let first_beat = last_heartbeat(&healthy);
    assert!(
        first_beat.is_some(),
        "a success sets lastHeartbeat: {healthy}"
    );
    wait_for_heartbeat_after(&d, &id, first_beat).await;
    let healthy_list = list(&d, "status=Healthy").await;
    assert!(healthy_list.iter().any(|i| i["id"] == id.as_str()));

    // Failing: Error, with the code in the details; gone from the Healthy filter.
    service.set(Mode::Failing);
    let error = watch.until("Error", |d| d == "HTTP 503").await;
    assert!(list(&d, &format!("id={id}&status=Healthy"))
        .await
        .is_empty());
    assert_eq!(list(&d, &format!("id={id}&status=Error")).await.len(), 1);
    let beat_while_failing = last_heartbeat(&error);

    // Slow: Degraded ("took 200ms (HTTP 200)"); a slow answer is still a sign of life.
    service.set(Mode::Slow);
    let degraded = watch.until("Degraded", |d| d.starts_with("took")).await;
    assert!(
        details(&degraded).contains("HTTP 200"),
        "{}",
        details(&degraded)
    );
    assert!(last_heartbeat(&degraded) > beat_while_failing, "{degraded}");
    assert!(list(&d, &format!("id={id}&status=Healthy"))
        .await
        .is_empty());

    // Gone: Unreachable, connection refused.
    service.stop().await;
    watch
        .until("Unreachable", |d| d == "connection refused")
        .await;
    assert_eq!(
        list(&d, &format!("id={id}&status=Unreachable")).await.len(),
        1
    );

    // Back on the same port: Healthy again, and in the Healthy filter again.
    service.set(Mode::Up);
    service.restart().await;
    let back = watch.until("Healthy", |d| d.starts_with("HTTP 200")).await;
    assert!(last_heartbeat(&back) > last_heartbeat(&degraded), "{back}");
    assert_eq!(list(&d, &format!("id={id}&status=Healthy")).await.len(), 1);

    // The first check may come before the first look, so Unknown may not be seen.
    let seen: Vec<&str> = watch
        .seen
        .iter()
        .map(String::as_str)
        .skip_while(|s| *s == "Unknown")
        .collect();
    assert_eq!(
        seen,
        ["Healthy", "Error", "Degraded", "Unreachable", "Healthy"],
        "the statuses a caller saw, in order"
    );
    service.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn default_tcp_check_sees_a_listener_come_and_go() {
    let d = Daemon::start().await;
    let listener = Listener::start().await;
    // No check type: a TCP dial of the instance's host and port.
    let id = d
        .register(json!({"url": listener.url(), "healthCheck": {"interval": "1s"}}))
        .await;
    let healthy = wait_for(&d, &id, "Healthy", |d| d.starts_with("connected")).await;
    assert!(last_heartbeat(&healthy).is_some(), "{healthy}");

    listener.stop().await;
    let down = wait_for(&d, &id, "Unreachable", |d| d == "connection refused").await;
    assert_eq!(
        last_heartbeat(&down),
        last_heartbeat(&down).max(last_heartbeat(&healthy)),
        "the last sign of life is kept: {down}"
    );
    d.stop().await;
}

#[tokio::test]
async fn one_failed_check_does_not_flip_the_status() {
    let d = Daemon::start().await;
    let listener = Listener::start().await;
    let id = d
        .register(json!({
            "url": listener.url(),
            "healthCheck": {"interval": "1s", "unhealthyThreshold": 3},
        }))
        .await;
    wait_for(&d, &id, "Healthy", |d| d.starts_with("connected")).await;

    // The first failed check shows in the details at once, while the status waits for
    // two more failures in a row.
    listener.stop().await;
    let first_failure = d
        .wait_for_instance(&id, DEADLINE, |now| details(now) == "connection refused")
        .await
        .unwrap_or_else(|last| panic!("no failed check was recorded: {last}"));
    assert_eq!(
        status(&first_failure),
        "Healthy",
        "one failed check changed the status: {first_failure}"
    );

    wait_for(&d, &id, "Unreachable", |d| d == "connection refused").await;
    d.stop().await;
}

#[tokio::test]
async fn ttl_instances_live_by_their_heartbeats() {
    let d = Daemon::start().await;
    let owner = d.token("beating-svc", "user").await;
    let stranger = d.token("other-svc", "user").await;
    // Nothing listens at this address: only the heartbeats say it is alive.
    let url = format!("http://127.0.0.1:{}", dead_port().await);
    let id = d
        .register_as(&owner, json!({"url": url, "ttl": "1s"}))
        .await;

    let mut previous = None;
    for _ in 0..3 {
        let r = d
            .as_token(&owner, Method::PUT, &heartbeat_path(&id), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);
        let now = d.instance(&id).await.unwrap();
        assert_eq!(status(&now), "Healthy", "{now}");
        assert_eq!(details(&now), "heartbeat received", "{now}");
        let beat = last_heartbeat(&now);
        assert!(beat.is_some() && beat >= previous, "{now}");
        previous = beat;
    }

    // Silence: Unreachable once the TTL has passed.
    let expired = wait_for(&d, &id, "Unreachable", |d| d.contains("TTL")).await;
    assert!(details(&expired).contains("TTL of 1s"), "{expired}");
    assert_eq!(last_heartbeat(&expired), previous, "{expired}");

    // One heartbeat brings it back.
    let r = d
        .as_token(&owner, Method::PUT, &heartbeat_path(&id), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let back = d.instance(&id).await.unwrap();
    assert_eq!(status(&back), "Healthy", "{back}");
    assert_eq!(details(&back), "heartbeat received", "{back}");
    assert!(last_heartbeat(&back) > previous, "{back}");

    // Only the owner (or an admin) may heartbeat it; unknown ids are a 404.
    let r = d
        .as_token(&stranger, Method::PUT, &heartbeat_path(&id), None)
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        Some("beating-svc"),
        "a stranger's heartbeat",
    );
    let r = d
        .as_token(
            &owner,
            Method::PUT,
            &heartbeat_path("inst_nosuch0000"),
            None,
        )
        .await;
    r.assert_error(
        StatusCode::NOT_FOUND,
        Some("inst_nosuch0000"),
        "an unknown id",
    );
    let r = d.send(Method::PUT, &heartbeat_path(&id), None, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, None, "no token");
    let r = d.admin(Method::PUT, &heartbeat_path(&id), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    d.stop().await;
}

#[tokio::test]
async fn ttl_expiry_names_a_silence_at_least_as_long_as_the_ttl() {
    let d = Daemon::start().await;
    let url = format!("http://127.0.0.1:{}", dead_port().await);
    let id = d.register(json!({"url": url, "ttl": "1s"})).await;
    let r = d.admin(Method::PUT, &heartbeat_path(&id), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let expired = wait_for(&d, &id, "Unreachable", |d| d.contains("TTL")).await;
    let silence = details(&expired)
        .split("no heartbeat for ")
        .nth(1)
        .unwrap_or_else(|| panic!("no silence named: {expired}"));
    let silence = humantime::parse_duration(silence)
        .unwrap_or_else(|e| panic!("{silence:?} is not a duration ({e}): {expired}"));
    assert!(
        silence >= Duration::from_secs(1),
        "silent for less than the TTL: {}",
        details(&expired)
    );
    d.stop().await;
}

#[tokio::test]
async fn a_heartbeat_without_a_ttl_only_records_the_sign_of_life() {
    let d = Daemon::start().await;
    let id = d
        .register(json!({"url": "http://127.0.0.1:9", "healthCheck": {"type": "none"}}))
        .await;
    let r = d.admin(Method::PUT, &heartbeat_path(&id), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let after = d.instance(&id).await.unwrap();
    assert_eq!(status(&after), "Unknown", "{after}");
    assert!(last_heartbeat(&after).is_some(), "{after}");
    d.stop().await;
}

#[tokio::test]
async fn unreachable_instances_are_deregistered_only_when_asked() {
    let d = Daemon::start().await;
    let check = json!({"interval": "1s"});
    let leaving = d
        .register(json!({
            "url": format!("http://127.0.0.1:{}", dead_port().await),
            "healthCheck": check,
            "deregisterAfter": "1s",
        }))
        .await;
    let staying = d
        .register(json!({
            "url": format!("http://127.0.0.1:{}", dead_port().await),
            "healthCheck": check,
        }))
        .await;

    // An instance with a TTL that never heartbeats goes the same way.
    let silent = d
        .register(json!({
            "url": format!("http://127.0.0.1:{}", dead_port().await),
            "ttl": "1s",
            "deregisterAfter": "1s",
        }))
        .await;

    for id in [&leaving, &silent] {
        let gone = wait_until(DEADLINE, || async { d.instance(id).await.is_none() }).await;
        assert!(gone, "{id} was not deregistered");
    }
    wait_for(&d, &staying, "Unreachable", |d| d == "connection refused").await;
    d.stop().await;
}

#[tokio::test]
async fn only_status_changes_are_changes_and_heartbeats_are_noted_until_shutdown() {
    let (d, store) = Hooked::start_daemon(Recorder::default()).await;
    let listener = Listener::start().await;
    let id = d
        .register(json!({"url": listener.url(), "healthCheck": {"interval": "1s"}}))
        .await;
    let healthy = wait_for(&d, &id, "Healthy", |_| true).await;
    let mut beat = last_heartbeat(&healthy);
    for _ in 0..3 {
        beat = last_heartbeat(&wait_for_heartbeat_after(&d, &id, beat).await);
    }
    let written = store.hooks.changes_to(&id);
    assert!(
        written.len() <= 2,
        "{} commits for one registration and one status change: {written:#?}",
        written.len()
    );
    assert!(written.iter().all(|c| c.kind == Kind::Instance));

    // Heartbeats are written as notes, batched: fewer notes than checks...
    let noted = wait_until(DEADLINE, || async { !store.hooks.notes_on(&id).is_empty() }).await;
    assert!(noted, "no note of the checks was written");
    // ...and a graceful stop writes what was kept in memory since the last one...
    let dir = d.stop().await;
    assert_eq!(
        store.hooks.changes_to(&id).len(),
        written.len(),
        "no change at shutdown either"
    );
    let notes = store.hooks.notes_on(&id);
    let last: Value = serde_json::from_str(&notes.last().unwrap().body).unwrap();
    assert!(
        last_heartbeat(&last) >= beat,
        "the last note carries the latest heartbeat: {last}"
    );
    drop(store);
    // ...so after a restart (the service now down, so no check can set a newer one) it
    // is still there.
    listener.stop().await;
    let d = Daemon::start_with(common::config(dir.path()), dir).await;
    let restored = d.instance(&id).await.unwrap();
    assert_eq!(
        last_heartbeat(&restored),
        last_heartbeat(&last),
        "{restored}"
    );
    assert!(last_heartbeat(&restored) >= beat);
    d.stop().await;
}

#[tokio::test]
async fn a_node_that_stopped_heartbeating_goes_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.heartbeat_interval = Duration::from_millis(100);
    config.node_id = Some("node-a".into());
    config.self_url = Some("http://127.0.0.1:40001".into());
    let a = Daemon::start_with(config.clone(), dir).await;
    assert_eq!(a.self_node().await["status"], "Online");
    let dir = a.stop().await;

    // The same store, now served as another node: node-a's record stays behind.
    config.node_id = Some("node-b".into());
    config.self_url = Some("http://127.0.0.1:40002".into());
    // Offline after 3 intervals of this daemon: node-a's last heartbeat soon is, while
    // node-b's own beats keep it Online.
    config.heartbeat_interval = Duration::from_millis(200);
    let b = Daemon::start_with(config, dir).await;
    let settled = b
        .wait_for_nodes(DEADLINE, |nodes| {
            node_status(nodes, "id", "node-a") == Some(json!("Offline"))
                && node_status(nodes, "id", "node-b") == Some(json!("Online"))
        })
        .await;
    if let Err(nodes) = settled {
        panic!("node-a never went Offline beside node-b: {nodes}");
    }
    b.stop().await;
}

#[tokio::test]
async fn a_hanging_check_times_out_without_holding_up_the_others() {
    let d = Daemon::start().await;
    let hanging = Listener::start_holding().await;
    let service = Service::start().await;
    let stuck = d
        .register(json!({
            "url": hanging.url(),
            "healthCheck": {"type": "http", "interval": "1s", "timeout": "200ms"},
        }))
        .await;
    let fine = d
        .register(json!({
            "url": service.url(),
            "healthCheck": {"type": "http", "interval": "1s"},
        }))
        .await;

    let timed_out = wait_for(&d, &stuck, "Unreachable", |d| d.starts_with("timed out")).await;
    assert!(
        details(&timed_out).contains("200ms"),
        "{}",
        details(&timed_out)
    );
    // Meanwhile the other instance is checked as often as ever.
    let healthy = wait_for(&d, &fine, "Healthy", |d| d.starts_with("HTTP 200")).await;
    let mut beat = last_heartbeat(&healthy);
    for _ in 0..3 {
        beat = last_heartbeat(&wait_for_heartbeat_after(&d, &fine, beat).await);
    }
    assert_eq!(status(&d.instance(&stuck).await.unwrap()), "Unreachable");
    hanging.stop().await;
    d.stop().await;
}

/// How soon a newly registered instance has had its first check, even on a loaded machine.
const FIRST_CHECK_DEADLINE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_new_instance_is_checked_at_once_not_an_interval_later() {
    let d = Daemon::start().await;
    let service = Service::start().await;
    let listener = Listener::start().await;
    // Intervals of an hour: only a check made at registration can be seen in time.
    let http = d
        .register(json!({"url": service.url(),
            "healthCheck": {"type": "http", "interval": "1h"}}))
        .await;
    let tcp = d
        .register(json!({"url": listener.url(), "healthCheck": {"interval": "1h"}}))
        .await;
    // A failure needs no second one while the status is still Unknown.
    let dead = d
        .register(json!({"url": "http://127.0.0.1:1", "healthCheck": {"interval": "1h"}}))
        .await;
    for (id, wanted) in [
        (&http, "Healthy"),
        (&tcp, "Healthy"),
        (&dead, "Unreachable"),
    ] {
        d.wait_for_status(id, wanted, FIRST_CHECK_DEADLINE).await;
    }
    listener.stop().await;
    d.stop().await;
}

/// A loopback listener that counts the connections it accepts (and closes them).
struct Counting {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Counting {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn stored_instances_are_spread_over_their_interval_at_start() {
    let d = Daemon::start().await;
    let stored = Counting::start().await;
    let check = json!({"interval": "1d"});
    for n in 0..50 {
        let url = format!("http://127.0.0.1:{}/i/{n}", stored.port);
        d.register(json!({"url": url, "healthCheck": check})).await;
    }
    let registered = wait_until(DEADLINE, || async { stored.accepted() == 50 }).await;
    assert!(registered, "{} of 50 first checks", stored.accepted());

    let d = d.restart().await;
    // Once a registration made after the start has had its check, at once, the stored
    // instances have not: each has its first check at a random point of a day.
    let fresh = Counting::start().await;
    let url = format!("http://127.0.0.1:{}", fresh.port);
    d.register(json!({"url": url, "healthCheck": check})).await;
    let checked = wait_until(FIRST_CHECK_DEADLINE, || async { fresh.accepted() == 1 }).await;
    assert!(checked, "the new instance was not checked at once");
    assert_eq!(stored.accepted(), 50, "stored instances checked at start");
    stored.task.abort();
    fresh.task.abort();
    d.stop().await;
}
