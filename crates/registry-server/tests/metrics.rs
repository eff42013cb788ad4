//! `GET /metrics` (the daemon's metrics in the Prometheus text format) and
//! `GET /registry-svc/prometheus/targets` (instances for Prometheus' HTTP service
//! discovery), against a real daemon. Prometheus itself reads both in `prometheus.rs`.

mod common;

use common::{config, metric_value, Daemon, Listener};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn metrics_need_no_token_and_count_what_the_daemon_holds_and_does() {
    let d = Daemon::start().await;
    d.save_definition(json!({"id": "counted"})).await;
    let mut web = Vec::new();
    for port in 1..=3 {
        let url = format!("http://127.0.0.1:{port}");
        web.push(d.register(json!({"url": url, "slug": "web"})).await);
    }
    // Dead addresses: each instance fails its first check, made at once.
    for id in &web {
        d.wait_for_status(id, "Unreachable", Duration::from_secs(10))
            .await;
    }
    let id = d
        .register(json!({"url": "http://127.0.0.1:4", "slug": "db"}))
        .await;
    let r = d
        .admin(
            Method::DELETE,
            &format!("/registry-svc/instance/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = d
        .admin(Method::DELETE, "/registry-svc/instance/inst_gone", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = d.send(Method::GET, "/ui/assets/app.js", None, None).await;
    assert_eq!(r.status, StatusCode::OK);

    let text = d.metrics_text().await;
    let expected = [
        // Requests by route template, never by the path sent.
        (
            r#"registry_http_requests_total{route="/registry-svc/instance",method="PUT",status="201"}"#,
            4.0,
        ),
        (
            r#"registry_http_requests_total{route="/registry-svc/instance/{id}",method="DELETE",status="204"}"#,
            1.0,
        ),
        (
            r#"registry_http_requests_total{route="/registry-svc/instance/{id}",method="DELETE",status="404"}"#,
            1.0,
        ),
        (
            r#"registry_http_request_duration_seconds_count{route="/registry-svc/instance",method="PUT"}"#,
            4.0,
        ),
        // What the tables hold, counted at the scrape.
        (
            r#"registry_http_requests_total{route="/ui/assets/{name}",method="GET",status="200"}"#,
            1.0,
        ),
        (
            r#"registry_instances{slug="web",status="Unreachable"}"#,
            3.0,
        ),
        (r#"registry_instances{slug="web",status="Healthy"}"#, 0.0),
        ("registry_definitions", 1.0),
        ("registry_tokens", 1.0),
        (r#"registry_nodes{status="Online"}"#, 1.0),
        (r#"registry_nodes{status="Offline"}"#, 0.0),
        ("registry_writer_queue_depth", 0.0),
        ("registry_writer_commits_failed_total", 0.0),
        ("registry_writer_replans_total", 0.0),
        ("registry_health_notes_applied_total", 0.0),
        ("registry_feed_blocking_watchers", 0.0),
        ("registry_feed_event_subscribers", 0.0),
        (
            &format!(
                "registry_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    for (series, wanted) in expected {
        assert_eq!(
            metric_value(&text, series),
            Some(wanted),
            "{series} in\n{text}"
        );
    }
    assert!(
        !text.contains("slug=\"db\""),
        "no instance of db is left:\n{text}"
    );
    assert!(!text.contains("inst_gone"), "{text}");
    let revision = metric_value(&text, "registry_feed_revision").unwrap();
    assert!(revision >= 6.0, "{revision}");
    assert!(metric_value(&text, "registry_writer_commit_duration_seconds_count").unwrap() >= 5.0);
    assert!(metric_value(&text, "registry_writer_batch_size_count").unwrap() >= 5.0);
    // The store of one daemon announces nothing: no lag to report.
    assert!(!text.contains("registry_feed_behind_revisions"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(metric_value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
        assert!(metric_value(&text, "process_open_fds").unwrap() > 0.0);
    }
    d.stop().await;
}

/// Waits until `/metrics` counts `count` blocking watchers and as many event streams.
async fn wait_for_listeners(d: &Daemon, count: f64) {
    let counted = common::wait_until(Duration::from_secs(10), || async {
        let text = d.metrics_text().await;
        metric_value(&text, "registry_feed_blocking_watchers") == Some(count)
            && metric_value(&text, "registry_feed_event_subscribers") == Some(count)
    })
    .await;
    assert!(counted, "not {count} of each: {}", d.metrics_text().await);
}

#[tokio::test]
async fn watchers_subscribers_and_checks_are_counted() {
    let d = Daemon::start().await;
    let listener = Listener::start().await;
    let id = d
        .register(
            json!({"url": listener.url(), "slug": "checked", "healthCheck": {"interval": "1s"}}),
        )
        .await;
    d.wait_for_status(&id, "Healthy", Duration::from_secs(10))
        .await;
    let index = d.index_of(Method::GET, "/registry-svc/definitions").await;
    let watcher = d.spawn_get(&format!("/registry-svc/definitions?index={index}&wait=30s"));
    let stream = d.events_request("").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    wait_for_listeners(&d, 1.0).await;
    let text = d.metrics_text().await;
    let checks = r#"registry_health_checks_total{type="tcp",outcome="Healthy"}"#;
    assert!(metric_value(&text, checks).unwrap() >= 1.0, "{text}");
    let took = r#"registry_health_check_duration_seconds_count{type="tcp"}"#;
    assert!(metric_value(&text, took).unwrap() >= 1.0, "{text}");
    assert_eq!(
        metric_value(&text, "registry_health_checks_overdue"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"registry_instances{slug="checked",status="Healthy"}"#
        ),
        Some(1.0)
    );

    drop(stream);
    d.save_definition(json!({"id": "wakes-the-watcher"})).await;
    assert_eq!(watcher.await.unwrap().status, StatusCode::OK);
    wait_for_listeners(&d, 0.0).await;
    listener.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn past_the_largest_slugs_instances_are_summed_under_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.metrics_max_slugs = 2;
    let mut d = Daemon::start_with(config.clone(), dir).await;
    let mut port = 0;
    for (slug, count) in [("big", 3), ("mid", 2), ("small-a", 1), ("small-b", 1)] {
        for _ in 0..count {
            port += 1;
            // Unchecked, so each stays Unknown for the counts below.
            d.register(
                json!({"url": format!("http://127.0.0.1:{port}"), "slug": slug,
                              "healthCheck": {"type": "none"}}),
            )
            .await;
        }
    }
    // The same whether the tables were built by writes or loaded at a start.
    for restarted in [false, true] {
        let text = d.metrics_text().await;
        for (slug, count) in [("big", 3.0), ("mid", 2.0), ("_other", 2.0)] {
            let series = format!("registry_instances{{slug=\"{slug}\",status=\"Unknown\"}}");
            assert_eq!(
                metric_value(&text, &series),
                Some(count),
                "{series} ({restarted}) in\n{text}"
            );
        }
        assert!(!text.contains("small-a"), "{text}");
        if !restarted {
            let dir = d.stop().await;
            d = Daemon::start_with(config.clone(), dir).await;
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn bad_input_on_metrics_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.metrics_token = Some("metrics-secret".into());
    let d = Daemon::start_with(config, dir).await;
    let r = d.send(Method::GET, "/metrics", None, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, Some("token"), "no token");
    let r = d.send(Method::GET, "/metrics", Some(&d.admin), None).await;
    r.assert_error(
        StatusCode::UNAUTHORIZED,
        Some("--metrics-token"),
        "another token",
    );
    let r = d
        .send(
            Method::GET,
            "/metrics?format=json",
            Some("metrics-secret"),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("format"), "a query parameter");
    let r = d.send(Method::POST, "/metrics", None, None).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, None, "a wrong method");
    let r = d
        .send(Method::GET, "/metrics", Some("metrics-secret"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("registry_build_info"), "{}", r.text);
    d.stop().await;
}

#[tokio::test]
async fn the_document_publishes_metrics_as_text_and_the_targets() {
    let d = Daemon::start().await;
    let r = d.send(Method::GET, "/openapi.json", None, None).await;
    let document: Value = serde_json::from_str(&r.text).unwrap();
    let metrics = &document["paths"]["/metrics"]["get"];
    assert!(
        metrics["responses"]["200"]["content"]["text/plain; version=0.0.4; charset=utf-8"]
            .is_object(),
        "{metrics}"
    );
    let targets = &document["paths"]["/registry-svc/prometheus/targets"]["get"];
    let params: Vec<&str> = targets["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["slug", "tag"], "{targets}");
    d.stop().await;
}

/// The targets as `http_sd_configs` reads them, as the admin.
async fn targets(d: &Daemon, query: &str) -> Vec<Value> {
    let r = d
        .admin(
            Method::GET,
            &format!("/registry-svc/prometheus/targets{query}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    r.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn targets_are_the_healthy_instances_with_meta_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.region = "eu".into();
    config.availability_zone = "eu-1a".into();
    let d = Daemon::start_with(config, dir).await;
    let node = d.self_node().await["url"].as_str().unwrap().to_string();
    let live = Listener::start().await;
    let check = json!({"interval": "1s"});
    let up = d
        .register(json!({
            "url": format!("{}/api", live.url()), "slug": "web", "tags": ["blue", "v2"],
            "metadata": {"team.name": "core", "metrics-path": "/stats"}, "healthCheck": check,
            "nodeUrl": node,
        }))
        .await;
    let also_live = Listener::start().await;
    let other = d
        .register(json!({"url": also_live.url(), "slug": "api", "healthCheck": check}))
        .await;
    let down = d
        .register(json!({"url": "http://127.0.0.1:1", "slug": "web", "healthCheck": check}))
        .await;
    d.wait_for_status(&up, "Healthy", Duration::from_secs(10))
        .await;
    d.wait_for_status(&other, "Healthy", Duration::from_secs(10))
        .await;
    d.wait_for_status(&down, "Unreachable", Duration::from_secs(10))
        .await;

    let all = targets(&d, "").await;
    let ids: Vec<&str> = all
        .iter()
        .map(|g| g["labels"]["__meta_registry_instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{all:?}");
    assert!(
        ids.contains(&up.as_str()) && ids.contains(&other.as_str()),
        "{all:?}"
    );
    let web = targets(&d, "?slug=web&tag=blue").await;
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(
        web[0]["targets"],
        json!([format!("127.0.0.1:{}", live.port)])
    );
    let labels = &web[0]["labels"];
    for (name, wanted) in [
        ("slug", "web"),
        ("scheme", "http"),
        ("path", "/api"),
        ("status", "Healthy"),
        ("tags", ",blue,v2,"),
        ("metadata_team_name", "core"),
        ("metadata_metrics_path", "/stats"),
        ("node", &node),
        ("zone", "eu-1a"),
        ("region", "eu"),
    ] {
        assert_eq!(
            labels[format!("__meta_registry_{name}")],
            wanted,
            "{labels}"
        );
    }
    // An instance beside no known node has the labels, empty.
    let api = targets(&d, "?slug=api").await;
    assert_eq!(api[0]["labels"]["__meta_registry_zone"], "", "{api:?}");
    assert!(targets(&d, "?slug=web&tag=green").await.is_empty());
    assert!(targets(&d, "?slug=nobody").await.is_empty());
    live.stop().await;
    also_live.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn targets_need_a_token_and_refuse_bad_filters() {
    let d = Daemon::start().await;
    let path = "/registry-svc/prometheus/targets";
    let r = d.send(Method::GET, path, None, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, Some("token"), "no token");
    let user = d.token("someone", "user").await;
    let r = d.as_token(&user, Method::GET, path, None).await;
    assert_eq!(r.status, StatusCode::OK, "a user may look: {}", r.text);
    assert_eq!(r.body, json!([]));
    let many_tags = (0..65)
        .map(|i| format!("tag=t{i}"))
        .collect::<Vec<_>>()
        .join("&");
    for (query, names) in [
        ("slug=no%20spaces", "slug"),
        (&format!("slug={}", "s".repeat(129)), "slug"),
        (&format!("tag={}", "t".repeat(129)), "tag"),
        ("tag=a%0Ab", "tag"),
        (&many_tags, "tag"),
    ] {
        let r = d.admin(Method::GET, &format!("{path}?{query}"), None).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(names), query);
    }
    d.stop().await;
}

#[tokio::test]
async fn on_a_shared_store_a_node_says_how_far_behind_the_store_it_is() {
    let Some(db) = common::postgres::TestDatabase::create().await else {
        return;
    };
    let admin = "metrics-cluster-admin";
    let a = db.start_daemon(tempfile::tempdir().unwrap(), admin).await;
    let b = db.start_daemon(tempfile::tempdir().unwrap(), admin).await;
    // Not checked, so that it stays Unknown wherever it is counted.
    a.register(json!({"url": "http://127.0.0.1:1", "slug": "shared",
        "healthCheck": {"type": "none"}}))
        .await;
    let index = a.index_of(Method::GET, "/registry-svc/instances").await as f64;
    // Node b hears of the commit and applies it: the store's revision reaches it, and
    // it is then behind by nothing.
    let caught_up = common::wait_until(Duration::from_secs(10), || async {
        let text = b.metrics_text().await;
        metric_value(&text, "registry_feed_store_revision").is_some_and(|r| r >= index)
            && metric_value(&text, "registry_feed_behind_revisions") == Some(0.0)
            && metric_value(
                &text,
                r#"registry_instances{slug="shared",status="Unknown"}"#,
            ) == Some(1.0)
    })
    .await;
    assert!(caught_up, "{}", b.metrics_text().await);
    a.stop().await;
    b.stop().await;
}
