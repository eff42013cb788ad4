//! Bad requests: every one answers the right status with a JSON `{"error": ...}` that names
//! the field at fault, and changes nothing.

mod common;

use common::{Daemon, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const INSTANCE: &str = "/registry-svc/instance";
const DEFINITION: &str = "/registry-svc/definition";
const TOKENS: &str = "/registry-svc/tokens";

async fn raw(d: &Daemon, method: Method, path: &str, body: &str) -> Reply {
    d.send(method, path, Some(&d.admin), Some(body.to_string()))
        .await
}

/// Asserts that no instance, definition or extra token was created.
async fn assert_nothing_stored(d: &Daemon) {
    let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
    assert_eq!(r.body, json!({"instances": []}));
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(r.body, json!({"definitions": []}));
    let r = d.admin(Method::GET, TOKENS, None).await;
    assert_eq!(r.body["tokens"].as_array().unwrap().len(), 1, "{}", r.text);
}

#[tokio::test]
async fn malformed_json_empty_body_trailing_garbage_and_arrays_are_400() {
    let d = Daemon::start().await;
    let valid = [
        (INSTANCE, r#"{"url": "http://127.0.0.1:1"}"#),
        (DEFINITION, r#"{"definition": {"id": "d"}}"#),
        (TOKENS, r#"{"slug": "s", "role": "user"}"#),
    ];
    for (path, good) in valid {
        let method = if path == TOKENS {
            Method::POST
        } else {
            Method::PUT
        };
        let bodies = [
            ("malformed", r#"{"url": "#.to_string()),
            ("truncated", good[..good.len() - 1].to_string()),
            ("empty", String::new()),
            ("whitespace", "  \n".to_string()),
            ("trailing garbage", format!("{good} x")),
            ("two objects", format!("{good}{good}")),
            ("empty array", "[]".to_string()),
            ("array of the object", format!("[{good}]")),
            ("string", "\"hello\"".to_string()),
            ("null", "null".to_string()),
            ("number", "42".to_string()),
        ];
        for (what, body) in bodies {
            let r = raw(&d, method.clone(), path, &body).await;
            r.assert_error(
                StatusCode::BAD_REQUEST,
                None,
                &format!("{what} to {path}: {body:?}"),
            );
        }
    }
    assert_nothing_stored(&d).await;
}

/// serde reads a struct from a JSON array positionally; a request body must be an object.
#[tokio::test]
async fn an_array_that_would_fill_the_fields_positionally_is_still_400() {
    let d = Daemon::start().await;
    // RegisterInstanceRequest's fields are id, deploymentId, url, ...
    let r = raw(
        &d,
        Method::PUT,
        INSTANCE,
        r#"["", "", "http://127.0.0.1:1"]"#,
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, None, "instance as an array");
    // CreateTokenRequest's fields are slug, role.
    let r = raw(&d, Method::POST, TOKENS, r#"["svc-a", "admin"]"#).await;
    r.assert_error(StatusCode::BAD_REQUEST, None, "token as an array");
    let r = raw(&d, Method::PUT, DEFINITION, r#"[{"id": "d"}]"#).await;
    r.assert_error(StatusCode::BAD_REQUEST, None, "definition as an array");
    let r = raw(&d, Method::POST, "/registry-svc/nodes", r#"[[]]"#).await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        None,
        "node list request as an array",
    );
    // Nor is a nested struct read from an array, at any depth.
    let nested = [
        (
            INSTANCE,
            r#"{"url": "http://127.0.0.1:1", "healthCheck": [null, null]}"#,
            "healthCheck",
        ),
        (DEFINITION, r#"{"definition": ["d"]}"#, "definition"),
        (
            DEFINITION,
            r#"{"definition": {"id": "d", "image": ["nginx", 80]}}"#,
            "definition.image",
        ),
        (
            DEFINITION,
            r#"{"definition": {"id": "d", "image": {"name": "nginx"}, "envars": [["K", "V"]]}}"#,
            "definition.envars[0]",
        ),
    ];
    for (path, body, field) in nested {
        let r = raw(&d, Method::PUT, path, body).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), body);
    }
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let d = Daemon::start().await;
    let cases = [
        (Method::PUT, INSTANCE, r#"{"url": 5}"#, "url"),
        (
            Method::PUT,
            INSTANCE,
            r#"{"scheme": "http", "host": "127.0.0.1", "port": "x"}"#,
            "port",
        ),
        (
            Method::PUT,
            INSTANCE,
            r#"{"url": "http://127.0.0.1:1", "tags": "x"}"#,
            "tags",
        ),
        (
            Method::PUT,
            INSTANCE,
            r#"{"url": "http://127.0.0.1:1", "healthCheck": {"healthyThreshold": "2"}}"#,
            "healthCheck.healthyThreshold",
        ),
        (
            Method::PUT,
            DEFINITION,
            r#"{"definition": {"id": 7}}"#,
            "definition.id",
        ),
        (
            Method::PUT,
            DEFINITION,
            r#"{"definition": "d"}"#,
            "definition",
        ),
        (
            Method::PUT,
            DEFINITION,
            r#"{"definition": {"id": "d", "ports": [{"internal": "80", "host": 1}]}}"#,
            "definition.ports[0].internal",
        ),
        (Method::POST, TOKENS, r#"{"slug": 5}"#, "slug"),
        (Method::POST, TOKENS, r#"{"slug": "s", "role": 1}"#, "role"),
        (
            Method::POST,
            "/registry-svc/nodes",
            r#"{"ids": "n"}"#,
            "ids",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = raw(&d, method, path, body).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), body);
    }
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn missing_required_fields_are_named() {
    let d = Daemon::start().await;
    let r = raw(&d, Method::PUT, INSTANCE, "{}").await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("url"), "instance {}");
    let r = raw(&d, Method::PUT, DEFINITION, "{}").await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("definition"), "definition {}");
    let r = raw(&d, Method::PUT, DEFINITION, r#"{"definition": null}"#).await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition"),
        "definition null",
    );
    let r = raw(&d, Method::PUT, DEFINITION, r#"{"definition": {}}"#).await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.id"),
        "definition without id",
    );
    let r = raw(
        &d,
        Method::PUT,
        DEFINITION,
        r#"{"definition": {"id": "d", "image": {"internalPorts": [80]}}}"#,
    )
    .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.image.name"),
        "image without name",
    );
    let r = raw(&d, Method::POST, TOKENS, "{}").await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("slug"), "token {}");
    // With parts instead of a URL, each missing part is named.
    let r = raw(
        &d,
        Method::PUT,
        INSTANCE,
        r#"{"scheme": "http", "port": 1}"#,
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("host"), "no host");
    let r = raw(
        &d,
        Method::PUT,
        INSTANCE,
        r#"{"scheme": "http", "host": "127.0.0.1"}"#,
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("port"), "no port");
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn invalid_values_name_the_field() {
    let d = Daemon::start().await;
    let cases = [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://"}), "url"),
        (json!({"url": "mailto:x"}), "url"),
        (json!({"url": "/relative/path"}), "url"),
        // The address grammar of the API document, enforced as published.
        (json!({"url": "http://127.0.0.1:1/health?full=1"}), "url"),
        (json!({"url": "http://user@127.0.0.1:1"}), "url"),
        (json!({"url": "tcp://127.0.0.1"}), "url"),
        (json!({"url": "http://127.0.0.1:0"}), "url"),
        (json!({"url": "http://127.0.0.01:1"}), "url"),
        (json!({"url": "file://localhost:1/x"}), "url"),
        (json!({"url": "http://127.0.0.1:1", "host": "a/b"}), "host"),
        (
            json!({"scheme": "http", "host": "127.0.0.1", "port": 1, "path": "/a?b"}),
            "path",
        ),
        (
            json!({"scheme": "1http", "host": "127.0.0.1", "port": 1}),
            "scheme",
        ),
        (
            json!({"scheme": "http", "host": "127.0.0.1", "port": 70000}),
            "port",
        ),
        (json!({"url": "http://127.0.0.1:1", "port": 70000}), "port"),
        (
            json!({"scheme": "http", "host": "127.0.0.1", "port": 0}),
            "port",
        ),
        (json!({"id": "a b", "url": "http://127.0.0.1:1"}), "id"),
        (json!({"id": "a/b", "url": "http://127.0.0.1:1"}), "id"),
        (json!({"url": "http://127.0.0.1:1", "slug": "a b"}), "slug"),
        (
            json!({"url": "http://127.0.0.1:1", "ip": "not-an-ip"}),
            "ip",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "nodeUrl": "nowhere"}),
            "nodeUrl",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "tags": [""]}),
            "tags[0]",
        ),
        (json!({"url": "http://127.0.0.1:1", "ttl": "30"}), "ttl"),
        (json!({"url": "http://127.0.0.1:1", "ttl": "soon"}), "ttl"),
        (
            json!({"url": "http://127.0.0.1:1", "deregisterAfter": "10 parsecs"}),
            "deregisterAfter",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "healthCheck": {"interval": "soon"}}),
            "healthCheck.interval",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "healthCheck": {"timeout": "5"}}),
            "healthCheck.timeout",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "healthCheck": {"degradedLatency": "x"}}),
            "healthCheck.degradedLatency",
        ),
        (
            json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "icmp"}}),
            "healthCheck.type",
        ),
    ];
    for (body, field) in cases {
        let r = d.admin(Method::PUT, INSTANCE, Some(body.clone())).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field), &body.to_string());
    }
    for id in ["a b", "a/b"] {
        let r = d
            .admin(
                Method::PUT,
                DEFINITION,
                Some(json!({"definition": {"id": id}})),
            )
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("definition.id"), id);
    }
    // A client library's language is one of the originals' list, as their clients check.
    for language in ["go", "", "Brainfuck"] {
        let body = json!({"definition": {"id": "d", "image": {"name": "a"},
            "clients": [{"language": language, "url": "https://example.com/lib"}]}});
        let r = d.admin(Method::PUT, DEFINITION, Some(body)).await;
        r.assert_error(
            StatusCode::BAD_REQUEST,
            Some("clients[0].language"),
            language,
        );
    }
    let r = d
        .admin(Method::PUT, DEFINITION, Some(json!({"definition": {"id": "d", "image": {"name": "a", "internalPorts": [70000]}}})))
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.image.internalPorts"),
        "internal port 70000",
    );
    let r = d
        .admin(
            Method::PUT,
            DEFINITION,
            Some(json!({"definition": {"id": "d", "hostPort": 70000}})),
        )
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.hostPort"),
        "hostPort 70000",
    );
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn bad_status_filter_is_400() {
    let d = Daemon::start().await;
    let r = d
        .admin(Method::GET, "/registry-svc/instances?status=Sleepy", None)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("status"), "status=Sleepy");
    assert!(r.error().contains("Sleepy"), "{}", r.text);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let d = Daemon::start().await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = format!(r#"{{"url": "http://127.0.0.1:1", "metadata": {{"pad": "{padding}"}}}}"#);
    let r = raw(&d, Method::PUT, INSTANCE, &body).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, None, "2 MiB instance");
    let body = format!(
        r#"{{"definition": {{"id": "d", "envars": [{{"key": "k", "value": "{padding}"}}]}}}}"#
    );
    let r = raw(&d, Method::PUT, DEFINITION, &body).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, None, "2 MiB definition");
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let d = Daemon::start().await;
    for path in [
        "/registry-svc/nope",
        "/nope",
        "/registry-svc",
        "/registry-svc/instance/a/b",
    ] {
        for token in [Some(d.admin.as_str()), None] {
            let r = d.send(Method::GET, path, token, None).await;
            r.assert_error(StatusCode::NOT_FOUND, None, path);
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_405_json() {
    let d = Daemon::start().await;
    let cases = [
        (Method::DELETE, "/registry-svc/instances"),
        (Method::GET, "/registry-svc/instance"),
        (Method::POST, "/registry-svc/instance"),
        (Method::GET, "/registry-svc/definition"),
        (Method::GET, "/registry-svc/nodes"),
        (Method::PUT, "/registry-svc/tokens"),
        (Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        let r = d.send(method.clone(), path, Some(&d.admin), None).await;
        // axum's own rejection, rewritten as JSON, says what the path allows.
        r.assert_error(
            StatusCode::METHOD_NOT_ALLOWED,
            Some("this path allows"),
            &format!("{method} {path}"),
        );
    }
}

#[tokio::test]
async fn any_content_type_is_read_as_json() {
    let d = Daemon::start().await;
    for (i, content_type) in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json",
    ]
    .into_iter()
    .enumerate()
    {
        let response = d
            .http
            .put(d.url(INSTANCE))
            .bearer_auth(&d.admin)
            .header("Content-Type", content_type)
            .body(format!(r#"{{"url": "http://127.0.0.1:{}"}}"#, i + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type}");
    }
    // And with no Content-Type at all.
    d.register(json!({"url": "http://127.0.0.1:9"})).await;
    let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
    assert_eq!(r.body["instances"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let d = Daemon::start().await;
    d.register(json!({"url": "http://127.0.0.1:1", "colour": "red", "nested": {"a": [1]}}))
        .await;
    let r = d
        .admin(Method::PUT, DEFINITION, Some(json!({"extra": 1, "definition": {"id": "d", "futureField": true, "image": {"name": "a", "digest": "sha"}}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = d
        .admin(
            Method::POST,
            TOKENS,
            Some(json!({"slug": "s", "expires": "never"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = d
        .admin(
            Method::POST,
            "/registry-svc/nodes",
            Some(json!({"ids": [], "region": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(
        r.body["definitions"][0],
        json!({"id": "d", "image": {"name": "a", "internalPorts": []}, "apiSpecs": [], "clients": [], "envars": [], "ports": []})
    );
    let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
    let instance: &Value = &r.body["instances"][0];
    assert!(instance.get("colour").is_none());
}

#[tokio::test]
async fn invalid_utf8_in_a_path_segment_is_a_client_error() {
    let d = Daemon::start().await;
    for path in [
        "/registry-svc/definition/%FF",
        "/registry-svc/instance/%FF",
        "/registry-svc/token/%C3%28",
        "/registry-svc/node/%FF",
    ] {
        let r = d.send(Method::DELETE, path, Some(&d.admin), None).await;
        assert!(
            r.status.is_client_error(),
            "{path}: {} {}",
            r.status,
            r.text
        );
        // axum's text, kept in the JSON error.
        r.assert_error(r.status, Some("Invalid UTF-8"), path);
    }
}
