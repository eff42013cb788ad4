//! Authentication and authorization over HTTP: bearer tokens, roles, the token endpoints,
//! the bootstrap admin token and REGISTRY_ADMIN_TOKEN.

mod common;

use common::{Daemon, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every endpoint under /registry-svc, with a body good enough to pass validation.
fn protected_endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::PUT,
            "/registry-svc/definition",
            Some(json!({"definition": {"id": "d"}})),
        ),
        (Method::GET, "/registry-svc/definitions", None),
        (Method::DELETE, "/registry-svc/definition/d", None),
        (
            Method::PUT,
            "/registry-svc/instance",
            Some(json!({"url": "http://127.0.0.1:1"})),
        ),
        (Method::GET, "/registry-svc/instances", None),
        (Method::DELETE, "/registry-svc/instance/i", None),
        (Method::POST, "/registry-svc/nodes", None),
        (Method::GET, "/registry-svc/node/self", None),
        (
            Method::DELETE,
            "/registry-svc/node/http%3A%2F%2F127.0.0.1%3A1",
            None,
        ),
        (
            Method::POST,
            "/registry-svc/tokens",
            Some(json!({"slug": "x", "role": "user"})),
        ),
        (Method::GET, "/registry-svc/tokens", None),
        (Method::DELETE, "/registry-svc/token/t", None),
    ]
}

#[tokio::test]
async fn no_token_is_401_everywhere() {
    let d = Daemon::start().await;
    for (method, path, body) in protected_endpoints() {
        let r = d
            .send(method.clone(), path, None, body.map(|b| b.to_string()))
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, None, &format!("{method} {path}"));
        assert!(r.error().to_lowercase().contains("token"), "{}", r.text);
    }
    // Nothing was changed by the refused writes.
    let r = d.admin(Method::GET, "/registry-svc/instances", None).await;
    assert_eq!(r.body, json!({"instances": []}));
}

#[tokio::test]
async fn unknown_token_is_401() {
    let d = Daemon::start().await;
    for (method, path, body) in protected_endpoints() {
        let r = d
            .send(
                method.clone(),
                path,
                Some("rsv_not-a-real-token"),
                body.map(|b| b.to_string()),
            )
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, None, &format!("{method} {path}"));
    }
}

/// Lists instances with `header` as the whole Authorization header.
async fn with_authorization(d: &Daemon, header: &str) -> reqwest::Response {
    d.http
        .get(d.url("/registry-svc/instances"))
        .header("Authorization", header)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_authorization_header_is_401() {
    let d = Daemon::start().await;
    let admin = d.admin.clone();
    for header in [
        "Basic x".to_string(),
        format!("Basic {admin}"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        admin.clone(),
        format!("Token {admin}"),
    ] {
        let r = Reply::read(with_authorization(&d, &header).await).await;
        r.assert_error(StatusCode::UNAUTHORIZED, None, &format!("{header:?}"));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    // The same token in the right form works, and the scheme is case-insensitive.
    for header in [format!("Bearer {admin}"), format!("bearer {admin}")] {
        let response = with_authorization(&d, &header).await;
        assert_eq!(response.status(), StatusCode::OK, "{header:?}");
    }
}

#[tokio::test]
async fn user_tokens_are_refused_on_admin_only_endpoints() {
    let d = Daemon::start().await;
    // Real objects, so a 403 cannot be a disguised 404.
    d.save_definition(json!({"id": "d"})).await;
    let (victim_id, _) = d.create_token(json!({"slug": "victim"})).await;
    let node = common::encode(d.self_node().await["url"].as_str().unwrap());

    let user = d.token("svc-a", "user").await;
    let cases = [
        (
            Method::PUT,
            "/registry-svc/definition".to_string(),
            Some(json!({"definition": {"id": "d2"}})),
        ),
        (
            Method::PUT,
            "/registry-svc/definition".to_string(),
            Some(json!({"definition": {"id": "d"}})),
        ),
        (
            Method::DELETE,
            "/registry-svc/definition/d".to_string(),
            None,
        ),
        (Method::DELETE, format!("/registry-svc/node/{node}"), None),
        (
            Method::POST,
            "/registry-svc/tokens".to_string(),
            Some(json!({"slug": "svc-a", "role": "admin"})),
        ),
        (Method::GET, "/registry-svc/tokens".to_string(), None),
        (
            Method::DELETE,
            format!("/registry-svc/token/{victim_id}"),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let r = d.as_token(&user, method.clone(), &path, body).await;
        r.assert_error(
            StatusCode::FORBIDDEN,
            Some("permission"),
            &format!("{method} {path}"),
        );
    }

    // Nothing changed.
    let r = d
        .admin(Method::GET, "/registry-svc/definitions", None)
        .await;
    assert_eq!(r.body["definitions"].as_array().unwrap().len(), 1);
    assert_eq!(
        d.admin(Method::POST, "/registry-svc/nodes", None)
            .await
            .body["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    let mut slugs: Vec<_> = r.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].to_string())
        .collect();
    slugs.sort();
    assert_eq!(slugs, vec!["\"admin\"", "\"svc-a\"", "\"victim\""]);
}

#[tokio::test]
async fn user_tokens_may_read_and_register() {
    let d = Daemon::start().await;
    let user = d.token("svc-a", "user").await;
    for (path, empty) in [
        ("/registry-svc/definitions", json!({"definitions": []})),
        ("/registry-svc/instances", json!({"instances": []})),
    ] {
        let r = d.as_token(&user, Method::GET, path, None).await;
        assert_eq!(
            (r.status, r.body.clone()),
            (StatusCode::OK, empty),
            "{path}"
        );
    }
    let r = d
        .as_token(&user, Method::POST, "/registry-svc/nodes", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["nodes"].as_array().unwrap().len(), 1);
    let r = d
        .as_token(&user, Method::GET, "/registry-svc/node/self", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["node"]["id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    d.register_as(&user, json!({"url": "http://127.0.0.1:1"}))
        .await;
}

#[tokio::test]
async fn token_lifecycle() {
    let d = Daemon::start().await;
    let r = d
        .admin(
            Method::POST,
            "/registry-svc/tokens",
            Some(json!({"slug": "svc-a", "role": "user"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let secret = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        (r.body["slug"].as_str(), r.body["role"].as_str()),
        (Some("svc-a"), Some("user"))
    );
    assert!(
        !id.is_empty() && secret.len() >= 22,
        "at least 128 bits: {secret}"
    );
    assert_ne!(id, secret);

    // The role defaults to user; an admin token can be made too.
    let r = d
        .admin(
            Method::POST,
            "/registry-svc/tokens",
            Some(json!({"slug": "svc-b"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (StatusCode::CREATED, Some("user"))
    );
    let other_secret = r.body["token"].as_str().unwrap().to_string();
    assert_ne!(other_secret, secret);
    let ops = d.token("ops", "admin").await;
    let r = d
        .as_token(&ops, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a created admin token is an admin: {}",
        r.text
    );

    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let tokens = r.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 4, "bootstrap admin + 3: {}", r.text);
    let listed = tokens
        .iter()
        .find(|t| t["id"] == id)
        .expect("the new token is listed");
    assert_eq!(listed["slug"], "svc-a");
    assert_eq!(listed["role"], "user");
    let created_at = listed["createdAt"].as_str().expect("createdAt");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("createdAt is RFC 3339");
    for token in tokens {
        let mut keys: Vec<_> = token.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec!["createdAt", "id", "role", "slug"], "{token}");
    }
    for s in [&secret, &other_secret, &ops, &d.admin] {
        assert!(
            !r.text.contains(s.as_str()),
            "a secret leaks into the list: {}",
            r.text
        );
    }

    // The token works until it is revoked, then stops at once.
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = d
        .admin(Method::DELETE, &format!("/registry-svc/token/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/instances", None)
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, None, "revoked token");
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    assert!(r.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != id.as_str()));
    // Others are unaffected.
    assert_eq!(
        d.as_token(&other_secret, Method::GET, "/registry-svc/instances", None)
            .await
            .status,
        StatusCode::OK
    );

    let r = d
        .admin(Method::DELETE, &format!("/registry-svc/token/{id}"), None)
        .await;
    r.assert_error(StatusCode::NOT_FOUND, None, "revoking twice");
    let r = d
        .admin(Method::DELETE, "/registry-svc/token/tok_unknown", None)
        .await;
    r.assert_error(StatusCode::NOT_FOUND, None, "revoking an unknown token");
}

#[tokio::test]
async fn revocation_survives_a_restart() {
    let d = Daemon::start().await;
    let (id, secret) = d.create_token(json!({"slug": "svc-a"})).await;
    let kept = d.token("svc-b", "user").await;
    let r = d
        .admin(Method::DELETE, &format!("/registry-svc/token/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d = d.restart().await;
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = d
        .as_token(&kept, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "created tokens are durable");
}

#[tokio::test]
async fn bootstrap_admin_token_file() {
    let d = Daemon::start().await;
    let path = d.dir.path().join("admin.token");
    let secret = std::fs::read_to_string(&path)
        .expect("admin.token is written")
        .trim()
        .to_string();
    assert!(secret.len() >= 22, "{secret:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    // It is an admin token with slug admin.
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            r.body["tokens"][0]["slug"].as_str(),
            r.body["tokens"][0]["role"].as_str()
        ),
        (Some("admin"), Some("admin"))
    );
    let before = std::fs::read(&path).unwrap();

    let d = d.restart().await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is not replaced on restart"
    );
    let r = d
        .as_token(
            &secret,
            Method::PUT,
            "/registry-svc/definition",
            Some(json!({"definition": {"id": "x"}})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "the same token still works: {}",
        r.text
    );
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(
        r.body["tokens"].as_array().unwrap().len(),
        1,
        "no second admin token: {}",
        r.text
    );
}

#[tokio::test]
async fn admin_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.admin_token = Some("secret-admin-token-for-tests".into());
    let d = Daemon::start_with(config, dir).await;
    assert!(
        !d.dir.path().join("admin.token").exists(),
        "no admin.token when the token is configured"
    );
    let env_token = "secret-admin-token-for-tests";

    d.register_as(env_token, json!({"url": "http://127.0.0.1:1"}))
        .await;
    let r = d
        .as_token(env_token, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.body["instances"][0]["slug"], "admin", "{}", r.text);
    // Admin-only endpoints accept it.
    let r = d
        .as_token(env_token, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({"tokens": []}))
    );
    let user = d
        .as_token(
            env_token,
            Method::POST,
            "/registry-svc/tokens",
            Some(json!({"slug": "svc-a"})),
        )
        .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
    // A near miss is not it.
    let r = d
        .as_token(
            "secret-admin-token-for-test",
            Method::GET,
            "/registry-svc/instances",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_create_validates_role_and_slug() {
    let d = Daemon::start().await;
    let r = d
        .admin(
            Method::POST,
            "/registry-svc/tokens",
            Some(json!({"slug": "svc-a", "role": "superuser"})),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("role"), "invalid role");
    for slug in ["bad slug", "a/b", ""] {
        let r = d
            .admin(
                Method::POST,
                "/registry-svc/tokens",
                Some(json!({"slug": slug, "role": "user"})),
            )
            .await;
        r.assert_error(
            StatusCode::BAD_REQUEST,
            Some("slug"),
            &format!("slug {slug:?}"),
        );
    }
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    assert_eq!(
        r.body["tokens"].as_array().unwrap().len(),
        1,
        "no token was created: {}",
        r.text
    );
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let d = Daemon::start().await;
    let tokens = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    let bootstrap = tokens.body["tokens"][0]["id"].as_str().unwrap().to_string();
    let revoke = |id: &str| format!("/registry-svc/token/{id}");

    // The only admin token: revoking it would lock every admin out.
    let r = d.admin(Method::DELETE, &revoke(&bootstrap), None).await;
    r.assert_error(
        StatusCode::CONFLICT,
        Some("last admin token"),
        "the only admin",
    );
    // User tokens do not count as a way in.
    d.token("user-svc", "user").await;
    let r = d.admin(Method::DELETE, &revoke(&bootstrap), None).await;
    r.assert_error(
        StatusCode::CONFLICT,
        Some(&bootstrap),
        "admin beside a user",
    );

    // With a second admin token, the first may go; then the second is the last.
    let (second, secret) = d
        .create_token(json!({"slug": "ops", "role": "admin"}))
        .await;
    let r = d.admin(Method::DELETE, &revoke(&bootstrap), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = d
        .as_token(&secret, Method::DELETE, &revoke(&second), None)
        .await;
    r.assert_error(
        StatusCode::CONFLICT,
        Some("last admin token"),
        "the second admin",
    );
    let r = d
        .as_token(&secret, Method::GET, "/registry-svc/tokens", None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the last admin still gets in: {}",
        r.text
    );
    d.stop().await;
}
