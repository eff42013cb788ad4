//! Operational endpoints (liveness, readiness, the OpenAPI document, the docs page) and
//! durability of writes across a graceful shutdown.

mod common;

use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

#[tokio::test]
async fn healthz_and_readyz_need_no_token() {
    let d = Daemon::start().await;
    let r = d.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = d.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"status": "ready"}));
    // A bad token does not matter on them either.
    let r = d.send(Method::GET, "/readyz", Some("garbage"), None).await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn openapi(d: &Daemon) -> Value {
    let r = d.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    serde_json::from_str(&r.text).expect("/openapi.json is JSON")
}

/// `path → {methods}` of an OpenAPI document.
fn operations(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test]
async fn openapi_document_describes_exactly_the_api() {
    let d = Daemon::start().await;
    let document = openapi(&d).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{}",
        document["openapi"]
    );
    assert!(document["info"]["title"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("/registry-svc/definition", &["put"][..]),
        ("/registry-svc/definitions", &["get"]),
        ("/registry-svc/definition/{id}", &["delete"]),
        ("/registry-svc/instance", &["put"]),
        ("/registry-svc/instances", &["get"]),
        ("/registry-svc/instance/{id}", &["delete"]),
        ("/registry-svc/instance/{id}/heartbeat", &["put"]),
        ("/registry-svc/nodes", &["post"]),
        ("/registry-svc/node/self", &["get"]),
        ("/registry-svc/node/{url}", &["delete"]),
        ("/registry-svc/tokens", &["get", "post"]),
        ("/registry-svc/token/{id}", &["delete"]),
        ("/registry-svc/events", &["get"]),
        ("/registry-svc/backup", &["get"]),
        ("/registry-svc/restore", &["post"]),
        ("/registry-svc/echo", &["get", "post", "put"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/registry-svc/prometheus/targets", &["get"]),
    ]
    .into_iter()
    .map(|(path, methods)| {
        (
            path.to_string(),
            methods.iter().map(|m| m.to_string()).collect(),
        )
    })
    .collect();
    assert_eq!(operations(&document), expected);

    // The bearer scheme is declared, and the protected operations use it.
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["paths"]["/registry-svc/instances"]["get"]["security"].is_array());
}

/// Every operation of the document answers (with a success) when called as described.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let d = Daemon::start().await;
    // Objects for the operations that take an id.
    d.save_definition(json!({"id": "ops-def"})).await;
    d.register(json!({"id": "ops-inst", "url": "http://127.0.0.1:1"}))
        .await;
    let (token_id, _) = d.create_token(json!({"slug": "ops"})).await;
    let encoded_node = common::encode(d.self_node().await["url"].as_str().unwrap());

    let document = openapi(&d).await;
    let operations = operations(&document);
    assert!(operations.len() >= 14);
    // Removals go last, so an operation on an object (its heartbeat) finds it still there.
    let mut calls: Vec<(String, String)> = operations
        .into_iter()
        .flat_map(|(template, methods)| methods.into_iter().map(move |m| (template.clone(), m)))
        .collect();
    calls.sort_by_key(|(template, method)| (method == "delete", template.clone()));
    for (template, method) in calls {
        let path = template
            .replace("/definition/{id}", "/definition/ops-def")
            .replace("/instance/{id}", "/instance/ops-inst")
            .replace("/token/{id}", &format!("/token/{token_id}"))
            .replace("{url}", &encoded_node);
        assert!(!path.contains('{'), "no test value for {template}");
        let body = match (method.as_str(), template.as_str()) {
            ("put", "/registry-svc/definition") => Some(json!({"definition": {"id": "ops-def-2"}})),
            ("put", "/registry-svc/instance") => Some(json!({"url": "http://127.0.0.1:2"})),
            ("post", "/registry-svc/tokens") => Some(json!({"slug": "ops-2"})),
            _ => None,
        };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        if path == "/registry-svc/events" {
            // A stream that never ends: its answer starts, that is enough.
            let response = d
                .http
                .get(d.url(&path))
                .bearer_auth(&d.admin)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            continue;
        }
        if path == "/registry-svc/restore" {
            // Only into an empty registry: this daemon's backup, into a new one.
            let backup = d.admin(Method::GET, "/registry-svc/backup", None).await;
            let fresh = Daemon::start().await;
            let r = fresh
                .send(Method::POST, &path, Some(&fresh.admin), Some(backup.text))
                .await;
            assert!(
                r.status.is_success(),
                "POST {path}: {} {}",
                r.status,
                r.text
            );
            continue;
        }
        let r = d.admin(method.clone(), &path, body).await;
        assert_ne!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert!(
            r.status.is_success(),
            "{method} {path}: {} {}",
            r.status,
            r.text
        );
    }
}

/// The values of `attribute="..."` (or single-quoted) in an HTML page.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let mut values = Vec::new();
    let lower = html.to_ascii_lowercase();
    let needle = format!("{attribute}=");
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle) {
        let start = from + at + needle.len();
        let rest = &html[start..];
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or_default(),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or_default(),
        };
        values.push(value);
        from = start;
    }
    values
}

#[tokio::test]
async fn docs_page_is_self_contained() {
    let d = Daemon::start().await;
    let r = d.send(Method::GET, "/docs", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let content_type = r.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(r.text.to_ascii_lowercase().contains("<html"), "{}", r.text);
    assert!(
        r.text.contains("/openapi.json"),
        "the page uses the document"
    );
    for attribute in ["src", "href"] {
        for value in attribute_values(&r.text, attribute) {
            let value = value.trim().to_ascii_lowercase();
            assert!(
                !value.contains("http") && !value.starts_with("//"),
                "external {attribute}: {value}"
            );
        }
    }
    let lower = r.text.to_ascii_lowercase();
    assert!(!lower.contains("@import"), "no external stylesheets");
}

#[tokio::test]
async fn graceful_shutdown_keeps_every_acknowledged_write() {
    let d = Daemon::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u16 {
        let target = format!("http://127.0.0.1:{}", 2000 + i);
        let register = d.register(json!({"url": target, "tags": ["batch"]}));
        tasks.spawn(async move { (register.await, target) });
    }
    let registered: BTreeMap<String, String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(registered.len(), 50);

    let d = d.restart().await;
    let r = d
        .admin(Method::GET, "/registry-svc/instances?tag=batch", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let listed: BTreeMap<String, String> = r.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, registered);
}
