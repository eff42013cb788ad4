//! Values out of range: every one is refused at the edge with a 400 naming the field, the
//! ranges are published in `/openapi.json`, and a value already in the store that today's
//! rules refuse can neither stop the daemon nor its health checks.

mod common;

use common::{details, status, Daemon, Listener};
use registry_store::{Change, Kind, SqliteStore, Store};
use registry_types::{HealthCheck, Instance};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const INSTANCE: &str = "/registry-svc/instance";
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn durations_thresholds_and_text_out_of_range_are_400_naming_the_field() {
    let d = Daemon::start().await;
    let url = "http://127.0.0.1:1";
    let check = |check: Value| json!({"url": url, "healthCheck": check});
    let cases = [
        // Far in the future: once panicked the health scheduler for everyone.
        (json!({"url": url, "ttl": "300000h"}), "ttl"),
        (json!({"url": url, "ttl": "10ms"}), "ttl"),
        (
            json!({"url": url, "deregisterAfter": "300000h"}),
            "deregisterAfter",
        ),
        (
            check(json!({"interval": "300000h"})),
            "healthCheck.interval",
        ),
        // Too often: would make the checker an amplifier aimed at any address.
        (check(json!({"interval": "1ns"})), "healthCheck.interval"),
        (check(json!({"interval": "999ms"})), "healthCheck.interval"),
        (check(json!({"timeout": "2h"})), "healthCheck.timeout"),
        (
            check(json!({"degradedLatency": "0s"})),
            "healthCheck.degradedLatency",
        ),
        (
            check(json!({"healthyThreshold": 0})),
            "healthCheck.healthyThreshold",
        ),
        (
            check(json!({"unhealthyThreshold": 101})),
            "healthCheck.unhealthyThreshold",
        ),
        (
            check(json!({"unhealthyThreshold": -1})),
            "healthCheck.unhealthyThreshold",
        ),
        (json!({"url": url, "tags": ["blue\u{1b}[2J"]}), "tags[0]"),
        (json!({"url": url, "tags": ["a\nb"]}), "tags[0]"),
        (json!({"url": url, "metadata": {"k\u{7}": "v"}}), "metadata"),
        (
            json!({"url": url, "metadata": {"k": "\u{1b}]0;owned\u{7}"}}),
            "metadata.k",
        ),
        (
            json!({"url": url, "deploymentId": "d\u{0}"}),
            "deploymentId",
        ),
        (json!({"url": "http://127.0.0.1:1/\u{1b}"}), "url"),
        (
            json!({"url": "http://127.0.0.1:1", "tags": vec!["t"; 65]}),
            "tags",
        ),
    ];
    for (body, field) in cases {
        let r = d.admin(Method::PUT, INSTANCE, Some(body.clone())).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), &body.to_string());
    }
    let r = d
        .admin(
            Method::PUT,
            "/registry-svc/definition",
            Some(json!({"definition": {"id": "d", "image": {"name": "img\u{1b}[31m"}}})),
        )
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.image.name"),
        "image name",
    );
    let envars: Vec<Value> = (0..257).map(|i| json!({"key": format!("K{i}")})).collect();
    let r = d
        .admin(
            Method::PUT,
            "/registry-svc/definition",
            Some(json!({"definition": {"id": "d", "envars": envars}})),
        )
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.envars"),
        "257 envars",
    );
    let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
    assert_eq!(r.body, json!({"instances": []}), "nothing was stored");
    d.stop().await;
}

#[tokio::test]
async fn the_edges_of_each_range_are_accepted() {
    let d = Daemon::start().await;
    let r = d
        .admin(
            Method::PUT,
            INSTANCE,
            Some(json!({
                "url": "http://127.0.0.1:1",
                "ttl": "7d",
                "deregisterAfter": "30d",
                "tags": ["blue-é"],
                "metadata": {"note": "two\nlines"},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = d
        .admin(
            Method::PUT,
            INSTANCE,
            Some(json!({
                "url": "http://127.0.0.1:2",
                "healthCheck": {"interval": "1s", "timeout": "1ms", "unhealthyThreshold": 100},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    d.stop().await;
}

#[tokio::test]
async fn revisions_waits_and_page_sizes_out_of_range_are_400() {
    let d = Daemon::start().await;
    let too_big = (i64::MAX as u64) + 1;
    let cases = [
        (format!("/registry-svc/instances?index={too_big}"), "index"),
        (
            "/registry-svc/instances?index=1&wait=11m".to_string(),
            "wait",
        ),
        ("/registry-svc/instances?index=-1".to_string(), "index"),
        ("/registry-svc/instances?limit=0".to_string(), "limit"),
        ("/registry-svc/instances?limit=10001".to_string(), "limit"),
        (
            format!("/registry-svc/definitions?index={too_big}"),
            "index",
        ),
        (format!("/registry-svc/events?since={too_big}"), "since"),
        (
            "/registry-svc/events?since=18446744073709551616".to_string(),
            "since",
        ),
    ];
    for (path, field) in cases {
        let r = d.admin(Method::GET, &path, None).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), &path);
    }
    // The largest revision is a revision, from the future: answered at once.
    let r = d
        .admin(
            Method::GET,
            &format!("/registry-svc/instances?index={}&wait=10m", i64::MAX),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    d.stop().await;
}

#[tokio::test]
async fn the_ranges_are_published_in_the_api_document() {
    let d = Daemon::start().await;
    let doc = d.send(Method::GET, "/openapi.json", None, None).await.body;
    let schemas = &doc["components"]["schemas"];
    let check = &schemas["HealthCheck"]["properties"];
    assert_eq!(check["healthyThreshold"]["minimum"], json!(1), "{check}");
    assert_eq!(
        check["unhealthyThreshold"]["maximum"],
        json!(100),
        "{check}"
    );
    let interval = check["interval"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(interval.contains("from 1s to 1d"), "{interval}");
    assert!(check["interval"]["pattern"].is_string(), "{check}");
    let register = &schemas["RegisterInstanceRequest"]["properties"];
    assert_eq!(register["tags"]["maxItems"], json!(64), "{register}");
    assert_eq!(
        register["tags"]["items"]["maxLength"],
        json!(128),
        "{register}"
    );
    assert!(register["ttl"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("from 1s to 7d")));
    assert_eq!(register["port"]["minimum"], json!(1), "{register}");
    assert_eq!(register["port"]["maximum"], json!(65535), "{register}");
    let list = &doc["paths"]["/registry-svc/instances"]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {list}"))["schema"]
            .clone()
    };
    assert_eq!(param("limit")["minimum"], json!(1));
    assert_eq!(param("limit")["maximum"], json!(10000));
    assert_eq!(param("index")["maximum"], json!(i64::MAX));
    assert!(param("wait")["pattern"].is_string());
    d.stop().await;
}

/// An instance as an older version (or a hand edit) could have stored it.
fn stored_out_of_range(id: &str, url: &str) -> Change {
    let instance = Instance {
        id: id.into(),
        url: url.into(),
        slug: "old".into(),
        host: "127.0.0.1".into(),
        ip: "127.0.0.1".into(),
        port: 1,
        scheme: "http".into(),
        health_check: Some(HealthCheck {
            interval: Some("300000h".into()),
            ..Default::default()
        }),
        ttl: Some("300000h".into()),
        deregister_after: Some("300000h".into()),
        ..Default::default()
    };
    Change {
        kind: Kind::Instance,
        key: id.into(),
        body: Some(serde_json::to_string(&instance).unwrap().into()),
        claim: Some(url.into()),
        by: None,
    }
}

#[tokio::test]
async fn a_stored_value_out_of_range_stops_neither_the_daemon_nor_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(&dir.path().join("registry.db")).unwrap();
        let changes = [
            stored_out_of_range("inst_old1", "http://127.0.0.1:1/a"),
            stored_out_of_range("inst_old2", "http://127.0.0.1:1/b"),
        ];
        store.commit(changes.to_vec(), None).await.unwrap();
        store.close().await.unwrap();
    }
    let config = common::config(dir.path());
    let d = Daemon::start_with(config, dir).await;
    let r = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        d.instance("inst_old1").await.is_some(),
        "the old instance is served"
    );

    // The checker runs for everyone else.
    let listener = Listener::start().await;
    let id = d
        .register(json!({"url": listener.url(), "healthCheck": {"interval": "1s"}}))
        .await;
    let healthy = d.wait_for_status(&id, "Healthy", DEADLINE).await;
    assert!(details(&healthy).starts_with("connected"), "{healthy}");
    assert_eq!(status(&d.instance("inst_old1").await.unwrap()), "Unknown");
    let r = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // And again after a restart.
    let d = d.restart().await;
    let healthy = d.wait_for_status(&id, "Healthy", DEADLINE).await;
    assert_eq!(status(&healthy), "Healthy");
    listener.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn an_object_that_does_not_decode_is_left_out_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(&dir.path().join("registry.db")).unwrap();
        let good = stored_out_of_range("inst_good", "http://127.0.0.1:1/good");
        let mut bad = stored_out_of_range("inst_bad", "http://127.0.0.1:1/bad");
        bad.body = Some(r#"{"id":"inst_bad","url":"http://127.0.0.1:1","port":70000}"#.into());
        store.commit(vec![good, bad], None).await.unwrap();
        store.close().await.unwrap();
    }
    let d = Daemon::start_with(common::config(dir.path()), dir).await;
    assert!(d.instance("inst_good").await.is_some());
    assert!(d.instance("inst_bad").await.is_none());
    let r = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    d.stop().await;
}
