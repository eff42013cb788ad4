//! 1Backend's echo endpoints: what a client sends comes back, as the original's do.

mod common;

use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ECHO: &str = "/registry-svc/echo";

#[tokio::test]
async fn get_echoes_the_query_a_repeated_parameter_as_an_array() {
    let d = Daemon::start().await;
    let user = d.token("svc-a", "user").await;
    let r = d
        .as_token(
            &user,
            Method::GET,
            &format!("{ECHO}?b=x&a=1&b=y%20z&empty=&flag"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"a": "1", "b": ["x", "y z"], "empty": "", "flag": ""})
    );
    let r = d.as_token(&user, Method::GET, ECHO, None).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
    d.stop().await;
}

#[tokio::test]
async fn post_and_put_echo_the_body_and_no_body_is_an_empty_object() {
    let d = Daemon::start().await;
    let user = d.token("svc-a", "user").await;
    let body = json!({"name": "x", "nested": {"list": [1, 2.5, null, true], "empty": {}}});
    for method in [Method::POST, Method::PUT] {
        let r = d
            .as_token(&user, method.clone(), ECHO, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {}", r.text);
        assert_eq!(r.body, body, "{method}");
        // The generated clients have no way to send a body; `null` is a Go client's none.
        for none in [None, Some("null".to_string())] {
            let r = d.send(method.clone(), ECHO, Some(&user), none).await;
            assert_eq!((r.status, r.body), (StatusCode::OK, json!({})), "{method}");
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn bad_bodies_and_missing_tokens_get_json_errors() {
    let d = Daemon::start().await;
    let admin = Some(d.admin.as_str());
    for (body, problem) in [
        ("{\"a\": ", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ("\"text\"", "JSON object"),
        ("{} trailing", "malformed JSON"),
    ] {
        d.send(Method::POST, ECHO, admin, Some(body.into()))
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some(problem), body);
    }
    let too_large = format!("{{\"a\": \"{}\"}}", "x".repeat(1024 * 1024));
    d.send(Method::PUT, ECHO, admin, Some(too_large))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, None, "a body over the limit");
    for method in [Method::GET, Method::POST, Method::PUT] {
        d.send(method.clone(), ECHO, None, None).await.assert_error(
            StatusCode::UNAUTHORIZED,
            None,
            &format!("{method} without a token"),
        );
    }
    d.send(Method::DELETE, ECHO, admin, None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, None, "DELETE");
    d.stop().await;
}

#[tokio::test]
async fn the_document_names_them_as_the_original_does() {
    let d = Daemon::start().await;
    let document: Value = d.send(Method::GET, "/openapi.json", None, None).await.body;
    let path = &document["paths"][ECHO];
    for (method, id) in [("get", "echoGet"), ("post", "echoPost"), ("put", "echoPut")] {
        assert_eq!(path[method]["operationId"], id, "{method}");
        assert!(path[method]["security"].is_array(), "{method}");
        assert_eq!(
            path[method]["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "object",
            "{method}"
        );
    }
    d.stop().await;
}
