//! Backup and restore against real daemons: `GET /registry-svc/backup` from one,
//! `POST /registry-svc/restore` into another, over HTTP, on SQLite files and PostgreSQL.

mod common;

use common::postgres::TestDatabase;
use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a seeded daemon holds besides its bulk instances.
struct Seeded {
    /// Secret of a user token of the account `svc-a`.
    user: String,
    /// Id of `svc-a`'s instance, registered with health settings.
    checked: String,
}

/// Two definitions, a user token, one instance of that user with health settings, and
/// `bulk` more instances registered by concurrent PUTs (no health check, so the checker
/// dials nothing).
async fn seed(daemon: &Daemon, bulk: usize) -> Seeded {
    daemon.save_definition(echo_definition()).await;
    daemon
        .save_definition(
            json!({"id": "web", "image": {"name": "example/web", "internalPorts": [8080]}}),
        )
        .await;
    let user = daemon.token("svc-a", "user").await;
    let checked = daemon
        .register_as(
            &user,
            json!({
                "url": "http://127.0.0.1:1/api",
                "tags": ["blue", "canary"],
                "metadata": {"version": "1.2.3"},
                "healthCheck": {"type": "http", "path": "/healthz", "interval": "1h", "timeout": "2s",
                                "healthyThreshold": 2, "unhealthyThreshold": 3},
                "deregisterAfter": "24h",
            }),
        )
        .await;
    const WORKERS: usize = 32;
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let registrations: Vec<_> = (worker..bulk)
                .step_by(WORKERS)
                .map(|n| {
                    daemon.register(json!({
                        "url": format!("http://127.0.0.{}:{}/bulk", 2 + n / 60_000, 1 + n % 60_000),
                        "slug": format!("bulk-{}", n % 10),
                        "tags": [format!("t{}", n % 7)],
                        "healthCheck": {"type": "none"},
                    }))
                })
                .collect();
            tokio::spawn(async move {
                for registration in registrations {
                    registration.await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    Seeded { user, checked }
}

fn echo_definition() -> Value {
    json!({"id": "echo", "image": {"name": "example/echo", "internalPorts": [8080]}})
}

/// Sends `request` over and over while `work` runs; returns what `work` gave and the
/// slowest answer meanwhile (each must be a success).
async fn slowest_answer_during<T>(
    request: reqwest::RequestBuilder,
    work: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn({
        let done = done.clone();
        async move {
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = request.try_clone().unwrap().send().await.unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                assert!(status.is_success(), "{status} {text}");
                slowest = slowest.max(started.elapsed());
            }
            slowest
        }
    });
    let output = work.await;
    done.store(true, Ordering::Relaxed);
    (output, prober.await.unwrap())
}

/// `GET /registry-svc/backup` as the admin: the NDJSON text, asserting a 200.
async fn backup(daemon: &Daemon) -> String {
    let response = daemon
        .http
        .get(daemon.url("/registry-svc/backup"))
        .bearer_auth(&daemon.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert_eq!(content_type, "application/x-ndjson");
    response.text().await.unwrap()
}

async fn restore(daemon: &Daemon, text: String) -> common::Reply {
    daemon
        .send(
            Method::POST,
            "/registry-svc/restore",
            Some(&daemon.admin),
            Some(text),
        )
        .await
}

/// The header and the objects of a backup, by kind and key.
fn read_backup(text: &str) -> (Value, BTreeMap<(String, String), Value>) {
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut objects = BTreeMap::new();
    for line in lines {
        let line: Value = serde_json::from_str(line).unwrap();
        let (kind, object) = line.as_object().unwrap().iter().next().unwrap();
        let key = match kind.as_str() {
            "node" => &object["url"],
            _ => &object["id"],
        };
        let key = (kind.clone(), key.as_str().unwrap().to_string());
        assert!(objects.insert(key, object.clone()).is_none(), "{line}");
    }
    (header, objects)
}

/// An instance without what the health checker changes as it goes.
fn settings(instance: &Value) -> Value {
    let mut instance = instance.clone();
    for field in ["status", "details", "lastHeartbeat"] {
        instance.as_object_mut().unwrap().remove(field);
    }
    instance
}

/// Every instance the daemon lists, by id, without their health state.
async fn listed(daemon: &Daemon) -> BTreeMap<String, Value> {
    let r = daemon.list_instances("").await;
    r.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), settings(i)))
        .collect()
}

/// The objects of `kind` in a backup, by key, without instances' health state.
fn of_kind(objects: &BTreeMap<(String, String), Value>, kind: &str) -> BTreeMap<String, Value> {
    objects
        .iter()
        .filter(|((k, _), _)| k == kind)
        .map(|((_, key), object)| (key.clone(), settings(object)))
        .collect()
}

/// The instances of `svc-a`, listed with its token `user` (asserting a 200).
async fn owned_by_svc_a(daemon: &Daemon, user: &str) -> Vec<Value> {
    let r = daemon
        .as_token(
            user,
            Method::GET,
            "/registry-svc/instances?slug=svc-a",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["instances"].as_array().unwrap().clone()
}

async fn round_trip(bulk: usize) {
    let source = Daemon::start().await;
    let started = Instant::now();
    let seeded = seed(&source, bulk).await;
    println!(
        "registered {} instances in {:?}",
        bulk + 1,
        started.elapsed()
    );

    // Writers keep going while a backup is taken: the definition saved again and again
    // is saved with the same content, so the backup matches what is listed whenever.
    let save_again = source
        .http
        .put(source.url("/registry-svc/definition"))
        .bearer_auth(&source.admin)
        .body(json!({"definition": echo_definition()}).to_string());
    let started = Instant::now();
    let (text, slowest) = slowest_answer_during(save_again, backup(&source)).await;
    println!(
        "backup: {} bytes in {:?}; slowest write meanwhile {slowest:?}",
        text.len(),
        started.elapsed()
    );
    let (header, objects) = read_backup(&text);
    assert_eq!(header["format"], "registry-svc-backup");
    assert_eq!(header["version"], 1);
    assert_eq!(header["instances"], bulk as u64 + 1);
    assert_eq!(header["definitions"], 2);
    assert_eq!(header["tokens"], 2, "the bootstrap admin token and svc-a's");
    assert_eq!(header["nodes"], 1);
    assert!(header["revision"].as_u64().unwrap() > bulk as u64);
    assert!(
        !text.contains(&seeded.user) && !text.contains(&source.admin),
        "a backup holds token hashes, never secrets"
    );
    let in_backup = of_kind(&objects, "instance");
    assert_eq!(
        in_backup,
        listed(&source).await,
        "the backup holds what the daemon lists"
    );

    let target = Daemon::start().await;
    let read = target
        .http
        .get(target.url("/registry-svc/instances?limit=1"))
        .bearer_auth(&target.admin);
    let started = Instant::now();
    let (r, slowest) = slowest_answer_during(read, restore(&target, text)).await;
    println!(
        "restore: {:?}; slowest read meanwhile {slowest:?}",
        started.elapsed()
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["instances"], bulk as u64 + 1);
    assert_eq!(r.body["definitions"], 2);
    assert_eq!(r.body["tokens"], 2);
    assert_eq!(r.body["nodesSkipped"], 1);
    assert_eq!(r.body["backupRevision"], header["revision"]);

    // Answered once durable: a restart finds everything.
    let target = target.restart().await;
    assert_eq!(listed(&target).await, in_backup);
    let definitions = target
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    let definitions: BTreeMap<String, Value> = definitions.body["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d.clone()))
        .collect();
    assert_eq!(definitions, of_kind(&objects, "definition"));

    let checked = target.instance(&seeded.checked).await.unwrap();
    assert_eq!(checked["slug"], "svc-a");
    assert_eq!(checked["healthCheck"]["interval"], "1h");
    assert_eq!(checked["healthCheck"]["healthyThreshold"], 2);
    assert_eq!(checked["deregisterAfter"], "24h");
    assert_eq!(checked["metadata"]["version"], "1.2.3");

    // The old tokens work: svc-a still owns its instance, the old admin token is admin.
    assert_eq!(owned_by_svc_a(&target, &seeded.user).await.len(), 1);
    let r = target
        .as_token(&source.admin, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["tokens"].as_array().unwrap().len(), 3, "{}", r.text);
    let r = target
        .as_token(
            &seeded.user,
            Method::DELETE,
            &format!("/registry-svc/instance/{}", seeded.checked),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // The source's node record was skipped: every daemon registers its own.
    let source_node = source.self_node().await["url"].clone();
    let target_node = target.self_node().await["url"].clone();
    let nodes = target
        .admin(Method::POST, "/registry-svc/nodes", None)
        .await;
    let urls: Vec<&Value> = nodes.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["url"])
        .collect();
    assert!(urls.contains(&&target_node), "{urls:?}");
    assert!(!urls.contains(&&source_node), "{urls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_keeps_instances_definitions_and_tokens() {
    round_trip(2_000).await;
}

/// The full size: `cargo test --release -p registry-server --test backup -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "100,000 instances: run by hand, in release"]
async fn round_trip_of_100_000_instances() {
    round_trip(99_999).await;
}

#[tokio::test]
async fn restore_only_into_an_empty_registry() {
    let source = Daemon::start().await;
    seed(&source, 3).await;
    let text = backup(&source).await;

    let r = restore(&source, text.clone()).await;
    r.assert_error(
        StatusCode::CONFLICT,
        Some("not empty"),
        "restore into its source",
    );

    // A definition is enough to make a registry not empty; so is a second token.
    let target = Daemon::start().await;
    target
        .save_definition(
            json!({"id": "mine", "image": {"name": "example/mine", "internalPorts": [80]}}),
        )
        .await;
    let r = restore(&target, text.clone()).await;
    r.assert_error(StatusCode::CONFLICT, Some("1 definitions"), "a definition");
    let target = Daemon::start().await;
    target.token("someone", "user").await;
    let r = restore(&target, text.clone()).await;
    r.assert_error(StatusCode::CONFLICT, Some("2 tokens"), "a second token");

    // Restored once, a registry is no longer empty.
    let target = Daemon::start().await;
    assert_eq!(restore(&target, text.clone()).await.status, StatusCode::OK);
    // A large file too gets its 409, not a connection closed while it is being sent.
    let padded = text + &"\n".repeat(16 << 20);
    let r = restore(&target, padded).await;
    r.assert_error(
        StatusCode::CONFLICT,
        Some("4 instances"),
        "a second restore",
    );
}

#[tokio::test]
async fn only_admins_back_up_and_restore() {
    let daemon = Daemon::start().await;
    let user = daemon.token("svc-a", "user").await;
    for (method, path) in [
        (Method::GET, "/registry-svc/backup"),
        (Method::POST, "/registry-svc/restore"),
    ] {
        let r = daemon
            .send(method.clone(), path, Some(&user), Some("{}".into()))
            .await;
        r.assert_error(StatusCode::FORBIDDEN, Some("registry-svc:backup"), path);
        let r = daemon.send(method, path, None, Some("{}".into())).await;
        r.assert_error(StatusCode::UNAUTHORIZED, None, path);
    }
}

#[tokio::test]
async fn a_broken_backup_changes_nothing() {
    let source = Daemon::start().await;
    seed(&source, 5).await;
    let text = backup(&source).await;
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.len() - 1;
    let instance_line = lines
        .iter()
        .position(|l| l.starts_with(r#"{"instance""#))
        .unwrap();
    let bad_url = lines[instance_line].replacen("http://127.0.0.", "http://[bad", 1);
    let joined = |lines: &[&str]| lines.join("\n") + "\n";
    let cases = [
        (String::new(), "empty"),
        ("not json\n".to_string(), "line 1"),
        (
            text.replacen("registry-svc-backup", "something-else", 1),
            "format",
        ),
        (
            text.replacen("\"version\":1", "\"version\":2", 1),
            "version 2",
        ),
        (joined(&lines[..last]), "truncated"),
        (
            text[..text.len() - 10].to_string(),
            &*format!("line {}", last + 1),
        ),
        (
            joined(&[&lines[..last], &[lines[last], lines[last]]].concat()),
            "appears twice",
        ),
        (
            joined(
                &[
                    &lines[..instance_line],
                    &[bad_url.as_str()],
                    &lines[instance_line + 1..],
                ]
                .concat(),
            ),
            &*format!("line {}: invalid field `instance.url`", instance_line + 1),
        ),
        (
            joined(&[&lines[..last], &[r#"{"server": {"id": "x"}}"#]].concat()),
            "unknown variant `server`",
        ),
        (
            // The first admin token's file is named in logs.
            text.replacen(r#""path":""#, r#""path":"\u001b[2J"#, 1),
            "token.writtenTo.path",
        ),
    ];
    let target = Daemon::start().await;
    for (body, names) in cases {
        let r = restore(&target, body).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(names), names);
        let r = target.list_instances("").await;
        assert_eq!(
            r.body["instances"],
            json!([]),
            "after {names}: half restored"
        );
    }
    let r = restore(&target, text).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "nothing was left behind: {}",
        r.text
    );
}

#[tokio::test]
async fn a_postgres_backup_restores_into_sqlite() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Daemon::start_with(database.daemon_config(dir.path()), dir).await;
    let seeded = seed(&source, 200).await;
    let text = backup(&source).await;
    let (_, objects) = read_backup(&text);

    let target = Daemon::start().await;
    let r = restore(&target, text).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(listed(&target).await, of_kind(&objects, "instance"));
    assert_eq!(listed(&target).await, listed(&source).await);
    assert_eq!(owned_by_svc_a(&target, &seeded.user).await.len(), 1);
}

#[tokio::test]
async fn a_sqlite_backup_restores_into_postgres() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let source = Daemon::start().await;
    let seeded = seed(&source, 200).await;
    let text = backup(&source).await;
    let (_, objects) = read_backup(&text);

    let dir = tempfile::tempdir().unwrap();
    let target = Daemon::start_with(database.daemon_config(dir.path()), dir).await;
    let r = restore(&target, text).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(listed(&target).await, of_kind(&objects, "instance"));
    assert_eq!(listed(&target).await, listed(&source).await);
    assert_eq!(owned_by_svc_a(&target, &seeded.user).await.len(), 1);

    // Durable in PostgreSQL: a second daemon on the same database serves it all.
    let dir = tempfile::tempdir().unwrap();
    let mut peer = Daemon::start_with(database.daemon_config(dir.path()), dir).await;
    // The database had tokens already, so the peer made no admin token of its own.
    peer.admin = target.admin.clone();
    assert_eq!(listed(&peer).await, listed(&source).await);
}

#[tokio::test]
async fn the_api_document_describes_backup_and_restore() {
    let daemon = Daemon::start().await;
    let r = daemon.send(Method::GET, "/openapi.json", None, None).await;
    let paths = &r.body["paths"];
    let backup = &paths["/registry-svc/backup"]["get"];
    assert!(
        backup["responses"]["200"]["content"]["application/x-ndjson"].is_object(),
        "{backup}"
    );
    let restore = &paths["/registry-svc/restore"]["post"];
    for status in ["200", "400", "403", "409", "413"] {
        assert!(
            restore["responses"][status].is_object(),
            "{status}: {restore}"
        );
    }
    let body = &restore["requestBody"];
    assert!(
        body["content"]["application/x-ndjson"].is_object(),
        "{body}"
    );
    assert!(
        body["description"].as_str().unwrap().contains("268435456"),
        "{body}"
    );
}

#[tokio::test]
async fn an_oversized_restore_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = Daemon::start().await;
    let addr = daemon.server.as_ref().unwrap().addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /registry-svc/restore HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n",
        daemon.admin,
        (256u64 << 20) + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // No byte of the body is sent: the answer must come anyway.
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("268435456"), "{answer}");
}
