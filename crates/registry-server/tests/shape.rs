//! Answers in the original's shape: a caller that asks for no extensions gets exactly the
//! fields of OpenOrch's (or 1Backend's) schema, spelled as the deployment's dialect spells
//! them; `X-Registry-Extensions: true` gets the whole model. Also the original's input
//! rules: `null` bodies, empty filters, address parts kept beside a URL.

mod common;

use common::{config, Daemon, Reply};
use registry_server::Dialect;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The properties of each model in the original's OpenAPI document (`registry_svc.*`),
/// the same in both projects but for a repository's ports.
const INSTANCE: &[&str] = &[
    "deploymentId",
    "details",
    "host",
    "id",
    "ip",
    "lastHeartbeat",
    "nodeUrl",
    "path",
    "port",
    "scheme",
    "slug",
    "status",
    "tags",
    "url",
];
const NODE: &[&str] = &[
    "availabilityZone",
    "gpus",
    "id",
    "lastHeartbeat",
    "region",
    "url",
    "usage",
];
const DEFINITION: &[&str] = &[
    "apiSpecs",
    "clients",
    "envars",
    "id",
    "image",
    "ports",
    "repository",
];
const IMAGE: &[&str] = &["internalPorts", "name"];
const OPENORCH_REPOSITORY: &[&str] = &["buildContext", "containerFile", "ports", "url", "version"];
const ONEBACKEND_REPOSITORY: &[&str] = &[
    "buildContext",
    "containerFile",
    "internalPorts",
    "url",
    "version",
];
const USAGE: &[&str] = &["cpu", "disk", "memory"];

fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Every key of `object` is in `allowed` (the original's schema), and `required` are there.
fn assert_only(object: &Value, allowed: &[&str], required: &[&str], what: &str) {
    let allowed: BTreeSet<&str> = allowed.iter().copied().collect();
    let have = keys(object);
    let unknown: Vec<_> = have.difference(&allowed).collect();
    assert!(
        unknown.is_empty(),
        "{what}: fields {unknown:?} not in the original's schema: {object}"
    );
    for field in required {
        assert!(
            have.contains(field),
            "{what}: no required {field}: {object}"
        );
    }
}

async fn start(dialect: Dialect) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.dialect = dialect;
    Daemon::start_with(config, dir).await
}

fn definition() -> Value {
    json!({
        "id": "builder",
        "repository": {"url": "https://example.com/r.git", "internalPorts": [8080]},
        "envars": [{"key": "A", "value": "1"}],
        "ports": [{"internal": 8080, "host": 18080}],
    })
}

async fn register_everything(d: &Daemon) {
    d.save_definition(definition()).await;
    d.save_definition(json!({"id": "img", "image": {"name": "nginx", "internalPorts": [80]}}))
        .await;
    d.register(json!({
        "id": "inst_shape", "url": "http://127.0.0.1:1", "tags": ["blue"],
        "metadata": {"k": "v"}, "healthCheck": {"type": "none"}, "ttl": "1h",
        "deregisterAfter": "1d"
    }))
    .await;
    // A second one, so that a page of one stops short of the end.
    d.register(json!({"url": "http://127.0.0.1:7"})).await;
}

/// Checks every answer a caller without extensions gets against the original's schema.
async fn assert_original_shapes(d: &Daemon, repository: &[&str], ports: &str) {
    let r = d.plain(Method::GET, "/registry-svc/instances", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(keys(&r.body), BTreeSet::from(["instances"]));
    for instance in r.body["instances"].as_array().unwrap() {
        assert_only(instance, INSTANCE, &["id", "status", "url"], "instance");
    }
    let r = d
        .plain(Method::GET, "/registry-svc/instances?limit=1", None)
        .await;
    assert_eq!(keys(&r.body), BTreeSet::from(["instances"]), "{}", r.text);

    let r = d
        .plain(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(keys(&r.body), BTreeSet::from(["definitions"]), "{}", r.text);
    for definition in r.body["definitions"].as_array().unwrap() {
        assert_only(definition, DEFINITION, &["id"], "definition");
        if let Some(image) = definition.get("image") {
            assert_only(image, IMAGE, IMAGE, "image");
        }
        if let Some(repo) = definition.get("repository") {
            assert_only(repo, repository, &[ports, "url"], "repository");
            assert_eq!(repo[ports], json!([8080]));
        }
    }

    for body in [
        None,
        Some("null"),
        Some(""),
        Some("{}"),
        Some(r#"{"ids": null}"#),
    ] {
        let r = d.plain(Method::POST, "/registry-svc/nodes", body).await;
        assert_eq!(r.status, StatusCode::OK, "body {body:?}: {}", r.text);
        assert_eq!(keys(&r.body), BTreeSet::from(["nodes"]));
        let nodes = r.body["nodes"].as_array().unwrap();
        assert!(!nodes.is_empty(), "body {body:?}: {}", r.text);
        for node in nodes {
            assert_only(node, NODE, &["id", "url"], "node");
            assert_only(&node["usage"], USAGE, &[], "usage");
        }
    }

    let r = d.plain(Method::GET, "/registry-svc/node/self", None).await;
    assert_eq!(keys(&r.body), BTreeSet::from(["node"]), "{}", r.text);
    assert_only(&r.body["node"], NODE, &["id", "url"], "self node");

    let r = d
        .plain(
            Method::PUT,
            "/registry-svc/instance",
            Some(r#"{"url": "http://127.0.0.1:2"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body,
        json!({}),
        "the original answers a registration with {{}}"
    );

    let r = d
        .plain(Method::DELETE, "/registry-svc/instance/nope", None)
        .await;
    assert_eq!(keys(&r.body), BTreeSet::from(["error"]), "{}", r.text);
}

#[tokio::test]
async fn openorch_answers_have_exactly_the_original_fields() {
    let d = start(Dialect::OpenOrch).await;
    register_everything(&d).await;
    assert_original_shapes(&d, OPENORCH_REPOSITORY, "ports").await;
    d.stop().await;
}

#[tokio::test]
async fn onebackend_answers_have_exactly_the_original_fields() {
    let d = start(Dialect::OneBackend).await;
    register_everything(&d).await;
    assert_original_shapes(&d, ONEBACKEND_REPOSITORY, "internalPorts").await;
    d.stop().await;
}

#[tokio::test]
async fn extensions_come_when_asked() {
    let d = start(Dialect::OpenOrch).await;
    register_everything(&d).await;
    let r = d.list_instances("id=inst_shape").await;
    let instance = &r.body["instances"][0];
    assert_eq!(instance["metadata"], json!({"k": "v"}));
    assert_eq!(instance["ttl"], "1h");
    assert_eq!(instance["deregisterAfter"], "1d");
    assert_eq!(instance["healthCheck"]["type"], "none");
    let r = d.list_instances("limit=1").await;
    assert!(r.body["next"].is_string(), "{}", r.text);
    let node = d.self_node().await;
    assert!(node["status"].is_string());
    assert_eq!(node["heartbeatInterval"], "10s", "{node}");
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    let repo = &r.body["definitions"][0]["repository"];
    assert_eq!(
        repo["internalPorts"],
        json!([8080]),
        "the model's own spelling"
    );

    // `false` is the same as not asking; anything else is refused, naming the header.
    let ask = |value: &'static str| {
        d.plain
            .get(d.url("/registry-svc/instances"))
            .bearer_auth(&d.admin)
            .header("X-Registry-Extensions", value)
            .send()
    };
    let r = Reply::read(ask("false").await.unwrap()).await;
    assert!(
        r.body["instances"][0].get("metadata").is_none(),
        "{}",
        r.text
    );
    let r = Reply::read(ask("maybe").await.unwrap()).await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("x-registry-extensions"),
        "maybe",
    );
    d.stop().await;
}

#[tokio::test]
async fn both_spellings_of_repository_ports_are_read_in_both_dialects() {
    for dialect in [Dialect::OpenOrch, Dialect::OneBackend] {
        let d = start(dialect).await;
        for (id, field) in [("a", "ports"), ("b", "internalPorts")] {
            d.save_definition(json!({"id": id, "repository": {"url": "u", field: [9000]}}))
                .await;
        }
        let r = d
            .admin(Method::GET, "/registry-svc/definitions", None)
            .await;
        for definition in r.body["definitions"].as_array().unwrap() {
            assert_eq!(
                definition["repository"]["internalPorts"],
                json!([9000]),
                "{dialect:?}"
            );
        }
        d.stop().await;
    }
}

#[tokio::test]
async fn an_empty_filter_filters_nothing() {
    let d = Daemon::start().await;
    d.register(json!({"url": "http://127.0.0.1:3", "slug": "a"}))
        .await;
    d.register(json!({"url": "http://127.0.0.1:4", "slug": "b"}))
        .await;
    for query in ["slug=", "slug=&host=&status=&tag=", "deploymentId=&id="] {
        let r = d.list_instances(query).await;
        assert_eq!(
            r.body["instances"].as_array().unwrap().len(),
            2,
            "{query}: {}",
            r.text
        );
    }
    let r = d.list_instances("slug=a&host=").await;
    assert_eq!(
        r.body["instances"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    d.stop().await;
}

#[tokio::test]
async fn parts_given_beside_the_url_are_kept() {
    let d = Daemon::start().await;
    let id = d
        .register(json!({
            "url": "http://127.0.0.1:5/api", "path": "/v2", "host": "localhost", "port": 6,
            "scheme": "https", "healthCheck": {"type": "none"}
        }))
        .await;
    let instance = d.instance(&id).await.unwrap();
    assert_eq!(instance["url"], "http://127.0.0.1:5/api");
    assert_eq!(
        (
            &instance["scheme"],
            &instance["host"],
            &instance["port"],
            &instance["path"]
        ),
        (
            &json!("https"),
            &json!("localhost"),
            &json!(6),
            &json!("/v2")
        )
    );
    // The grammar of each part still holds.
    let r = d
        .admin(
            Method::PUT,
            "/registry-svc/instance",
            Some(json!({"url": "http://127.0.0.1:5", "path": "/a?b=1"})),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("path"), "a query in path");
    d.stop().await;
}

#[tokio::test]
async fn the_document_names_operations_as_the_original() {
    let d = Daemon::start().await;
    let r = d.plain(Method::GET, "/openapi.json", None).await;
    let mut ids = BTreeSet::new();
    for (path, operations) in r.body["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("no operationId on {method} {path}"));
            assert!(ids.insert(id.to_string()), "{id} twice");
        }
    }
    // The original's operationIds, from its swagger document.
    for id in [
        "saveDefinition",
        "deleteDefinition",
        "listDefinitions",
        "registerInstance",
        "removeInstance",
        "listInstances",
        "deleteNode",
        "selfNode",
        "listNodes",
    ] {
        assert!(ids.contains(id), "{id} missing from {ids:?}");
    }
    let schemas = &r.body["components"]["schemas"];
    assert_eq!(
        schemas["Instance"]["required"],
        json!(["id", "status", "url"])
    );
    assert_eq!(
        schemas["RepositorySpec"]["required"],
        json!(["ports", "url"])
    );
    for (name, schema) in schemas.as_object().unwrap() {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                property.get("description").is_some(),
                "{name}.{field} undescribed"
            );
        }
    }
    d.stop().await;
}
