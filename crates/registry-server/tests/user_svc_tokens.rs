//! Tokens from the platform's User Svc: RS256 JWTs signed by a key made here with the
//! `openssl` CLI, verified against its public key given as a file or served by a fake User
//! Svc on a loopback port; what their slugs and roles may do; every way a token is refused;
//! and the rights of trusted slugs.
//!
//! Without `openssl` the tests that need a key fail under `CI=true` and are skipped
//! elsewhere.

mod common;

use common::{wait_until, Daemon, EventStream};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An RSA key pair as the User Svc holds one.
struct KeyPair {
    signing: EncodingKey,
    public_pem: String,
}

impl KeyPair {
    /// A new 2048-bit pair made by `openssl` in `dir`; `None` (the test is skipped) where
    /// there is no `openssl`, except under `CI=true`, where that fails the test.
    fn generate(dir: &Path, name: &str) -> Option<KeyPair> {
        let private = dir.join(format!("{name}.key"));
        let made = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .arg("-out")
            .arg(&private)
            .output();
        match made {
            Ok(out) => assert!(out.status.success(), "openssl genpkey: {out:?}"),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "openssl is needed for the User Svc token tests under CI=true: {e}"
                );
                eprintln!("skipped: no openssl CLI ({e})");
                return None;
            }
        }
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .output()
            .expect("openssl runs");
        assert!(public.status.success(), "openssl pkey: {public:?}");
        let private_pem = std::fs::read(&private).unwrap();
        Some(KeyPair {
            signing: EncodingKey::from_rsa_pem(&private_pem).expect("a PEM RSA private key"),
            public_pem: String::from_utf8(public.stdout).unwrap(),
        })
    }

    /// A token with these claims, signed with RS256.
    fn sign(&self, claims: &Value) -> String {
        encode(&Header::new(Algorithm::RS256), claims, &self.signing).unwrap()
    }

    /// Writes the public key to `dir` as the file `--user-svc-public-key` reads.
    fn public_key_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("user-svc-public.pem");
        std::fs::write(&path, &self.public_pem).unwrap();
        path
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// OpenOrch's claims: a user id, a slug and role ids, and no `exp`.
fn openorch(slug: &str, roles: &[&str]) -> Value {
    json!({"oui": format!("usr_{slug}"), "olu": slug, "ori": roles})
}

/// 1Backend's claims, with the registered claims it sets.
fn onebackend(slug: &str, roles: &[&str]) -> Value {
    json!({
        "1ui": format!("usr_{slug}"), "1sl": slug, "1ro": roles, "1ai": "app_1",
        "jti": "tok_1", "iat": now(), "exp": now() + 600,
    })
}

/// A daemon that accepts tokens signed by `keys`, given as a key file; `None` when the
/// test is skipped.
async fn daemon_trusting_file() -> Option<(Daemon, KeyPair)> {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::generate(dir.path(), "user-svc")?;
    let mut config = common::config(dir.path());
    config.user_svc_public_key = Some(keys.public_key_file(dir.path()));
    Some((Daemon::start_with(config, dir).await, keys))
}

#[tokio::test]
async fn a_service_registers_its_own_instances_and_no_others() {
    let Some((d, keys)) = daemon_trusting_file().await else {
        return;
    };
    let svc = keys.sign(&openorch("model-svc", &["user-svc:user"]));

    let mine = d
        .register_as(&svc, json!({"url": "http://127.0.0.1:1"}))
        .await;
    let listed = d.instance(&mine).await.expect("listed");
    assert_eq!(listed["slug"], "model-svc");

    // Not for another slug, and not another slug's instance.
    let r = d
        .as_token(
            &svc,
            Method::PUT,
            "/registry-svc/instance",
            Some(json!({"url": "http://127.0.0.1:2", "slug": "other-svc"})),
        )
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        Some("model-svc"),
        "register for another slug",
    );
    let theirs = d
        .register(json!({"url": "http://127.0.0.1:3", "slug": "other-svc"}))
        .await;
    let r = d
        .as_token(
            &svc,
            Method::DELETE,
            &format!("/registry-svc/instance/{theirs}"),
            None,
        )
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        Some(&theirs),
        "remove another slug's instance",
    );

    // A user looks, but manages no tokens, definitions or nodes.
    let r = d
        .as_token(&svc, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = d
        .as_token(&svc, Method::GET, "/registry-svc/tokens", None)
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        Some("registry-svc:token:manage"),
        "list tokens",
    );
    let r = d
        .as_token(&svc, Method::DELETE, "/registry-svc/definition/d", None)
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        Some("registry-svc:definition:delete"),
        "delete a definition",
    );

    // The change is the User Svc account's.
    let r = d
        .as_token(
            &svc,
            Method::DELETE,
            &format!("/registry-svc/instance/{mine}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let response = d
        .events_request("since=0&kind=instance")
        .send()
        .await
        .unwrap();
    let mut events = EventStream::new(response);
    loop {
        let (_, event) = events.next().await;
        if event["op"] == "delete" && event["id"] == mine.as_str() {
            assert_eq!(
                event["by"],
                json!({"tokenId": "user-svc", "slug": "model-svc"})
            );
            break;
        }
    }
}

#[tokio::test]
async fn the_platform_admin_role_is_an_admin_in_either_dialect() {
    let Some((d, keys)) = daemon_trusting_file().await else {
        return;
    };
    for claims in [
        openorch("jane", &["user-svc:user", "user-svc:admin"]),
        onebackend("jane", &["user-svc:admin"]),
    ] {
        let admin = keys.sign(&claims);
        let r = d
            .as_token(&admin, Method::GET, "/registry-svc/tokens", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{claims}: {}", r.text);
        assert!(r.body["tokens"].is_array(), "{}", r.text);
    }
    // 1Backend's claims name a user, as OpenOrch's do.
    let user = keys.sign(&onebackend("joe", &["user-svc:user"]));
    let id = d
        .register_as(&user, json!({"url": "http://127.0.0.1:4"}))
        .await;
    assert_eq!(d.instance(&id).await.unwrap()["slug"], "joe");

    // The registry's own tokens keep working beside them.
    let ours = d.token("svc-a", "user").await;
    let r = d
        .as_token(&ours, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn bad_tokens_are_401_naming_the_problem() {
    let Some((d, keys)) = daemon_trusting_file().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other = KeyPair::generate(dir.path(), "other").unwrap();
    let good = keys.sign(&openorch("model-svc", &[]));
    let admin = keys.sign(&openorch("model-svc", &["user-svc:admin"]));
    let part = |token: &str, i: usize| token.split('.').nth(i).unwrap().to_string();
    // `{"alg":"none","typ":"JWT"}`, base64url.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let hs256_with_public_key = encode(
        &Header::new(Algorithm::HS256),
        &openorch("model-svc", &["user-svc:admin"]),
        &EncodingKey::from_secret(keys.public_pem.as_bytes()),
    )
    .unwrap();
    let cases = [
        (
            "the admin's claims under a user's signature",
            format!("{}.{}.{}", part(&good, 0), part(&admin, 1), part(&good, 2)),
            "bad signature",
        ),
        (
            "signed by another key",
            other.sign(&openorch("model-svc", &[])),
            "bad signature",
        ),
        (
            "expired",
            keys.sign(&json!({"olu": "model-svc", "exp": now() - 3600})),
            "expired",
        ),
        (
            "not valid yet",
            keys.sign(&json!({"olu": "model-svc", "nbf": now() + 3600})),
            "not valid yet",
        ),
        (
            "exp as text",
            keys.sign(&json!({"olu": "model-svc", "exp": "99999999999"})),
            "`exp`",
        ),
        (
            "alg none",
            format!("{none_header}.{}.", part(&admin, 1)),
            "`alg`",
        ),
        (
            "HS256 keyed with the public key",
            hs256_with_public_key,
            "HS256",
        ),
        (
            "no slug",
            keys.sign(&json!({"ori": ["user-svc:admin"]})),
            "no account",
        ),
        (
            "a slug that is no slug",
            keys.sign(&openorch("a b", &[])),
            "slug",
        ),
        (
            "two slugs",
            keys.sign(&json!({"olu": "a", "1sl": "b"})),
            "two slugs",
        ),
        (
            "roles of the wrong type",
            keys.sign(&json!({"olu": "a", "ori": "user-svc:admin"})),
            "claims",
        ),
        ("garbage", "a.b.c".to_string(), "malformed"),
        ("two parts", "abc.def".to_string(), "malformed"),
        (
            "too long",
            format!(
                "{}.{}.{}",
                part(&good, 0),
                "A".repeat(20_000),
                part(&good, 2)
            ),
            "bytes",
        ),
    ];
    for (what, token, names) in cases {
        let r = d
            .as_token(&token, Method::GET, "/registry-svc/instances", None)
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, Some(names), what);
    }
    // The good one still works.
    let r = d
        .as_token(&good, Method::GET, "/registry-svc/instances", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_registry_without_a_user_svc_key_says_so() {
    let d = Daemon::start().await;
    let r = d
        .as_token(
            "eyJhbGciOiJSUzI1NiJ9.eyJvbHUiOiJhIn0.c2ln",
            Method::GET,
            "/registry-svc/instances",
            None,
        )
        .await;
    r.assert_error(
        StatusCode::UNAUTHORIZED,
        Some("--user-svc-url"),
        "a JWT with no key configured",
    );
}

#[tokio::test]
async fn a_bad_key_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-key.pem");
    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let mut config = common::config(dir.path());
    config.user_svc_public_key = Some(path);
    let error = registry_server::start(config).await.err().expect("refused");
    assert!(
        format!("{error:#}").contains("--user-svc-public-key"),
        "{error:#}"
    );
}

/// A fake User Svc on a loopback port: `GET /user-svc/public-key` answers the key it
/// holds now, or 503 while it holds none.
struct FakeUserSvc {
    url: String,
    key: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUserSvc {
    async fn start() -> FakeUserSvc {
        use axum::{http::StatusCode as Status, routing::get, Json, Router};
        let key: Arc<Mutex<Option<String>>> = Arc::default();
        let serve_key = key.clone();
        let app = Router::new().route(
            "/user-svc/public-key",
            get(move || {
                let key = serve_key.lock().unwrap().clone();
                async move {
                    match key {
                        Some(pem) => Ok(Json(json!({"publicKey": pem}))),
                        None => Err(Status::SERVICE_UNAVAILABLE),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeUserSvc { url, key, task }
    }

    fn serve(&self, keys: &KeyPair) {
        *self.key.lock().unwrap() = Some(keys.public_pem.clone());
    }
}

#[tokio::test]
async fn the_key_is_fetched_from_the_user_svc_and_a_rotation_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let Some(first) = KeyPair::generate(dir.path(), "first") else {
        return;
    };
    let second = KeyPair::generate(dir.path(), "second").unwrap();
    let user_svc = FakeUserSvc::start().await;
    let mut config = common::config(dir.path());
    config.user_svc_url = Some(user_svc.url.parse().unwrap());
    // Long enough that only a signature failure fetches the key again within the test.
    config.user_svc_key_refresh = Duration::from_secs(3600);
    let d = Daemon::start_with(config, dir).await;
    let admin_by_first = first.sign(&openorch("jane", &["user-svc:admin"]));
    let admin_by_second = second.sign(&openorch("jane", &["user-svc:admin"]));

    // Until the User Svc answers with a key, a JWT cannot be checked: 503, not the
    // caller's fault. The registry's own tokens work all along.
    let r = d
        .as_token(&admin_by_first, Method::GET, "/registry-svc/tokens", None)
        .await;
    r.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("public key"),
        "no key yet",
    );
    let r = d.admin(Method::GET, "/registry-svc/tokens", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    user_svc.serve(&first);
    let accepted = |token: String| {
        let d = &d;
        move || {
            let token = token.clone();
            async move {
                d.as_token(&token, Method::GET, "/registry-svc/tokens", None)
                    .await
                    .status
                    == StatusCode::OK
            }
        }
    };
    assert!(
        wait_until(Duration::from_secs(10), accepted(admin_by_first.clone())).await,
        "the first key is fetched"
    );

    // The User Svc rotates its key: a token signed by the new one is refused until the
    // registry fetches the key again, which its signature failure asks for.
    user_svc.serve(&second);
    assert!(
        wait_until(Duration::from_secs(10), accepted(admin_by_second)).await,
        "the rotated key is fetched after a signature failure"
    );
    let r = d
        .as_token(&admin_by_first, Method::GET, "/registry-svc/tokens", None)
        .await;
    r.assert_error(
        StatusCode::UNAUTHORIZED,
        Some("bad signature"),
        "a token of the old key",
    );
    user_svc.task.abort();
}

/// A trusted slug has what the original registry grants `deploy-svc`: besides looking and
/// managing every slug's instances, deleting definitions and nodes; never saving
/// definitions, tokens or backups. Both with one of this registry's tokens and with a User
/// Svc token.
#[tokio::test]
async fn a_trusted_slug_has_the_rights_of_the_original_deploy_svc() {
    let Some((d, keys)) = daemon_trusting_file().await else {
        return;
    };
    let ours = d.token("deploy-svc", "user").await;
    let platform = keys.sign(&openorch("deploy-svc", &["user-svc:user"]));
    for deploy in [ours, platform] {
        d.save_definition(json!({"id": "d"})).await;
        let r = d
            .as_token(&deploy, Method::GET, "/registry-svc/definitions", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = d
            .as_token(&deploy, Method::DELETE, "/registry-svc/definition/d", None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "delete a definition: {}",
            r.text
        );
        let r = d
            .as_token(
                &deploy,
                Method::DELETE,
                &format!(
                    "/registry-svc/node/{}",
                    common::encode("http://127.0.0.1:1")
                ),
                None,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "delete a node passes the permission: {}",
            r.text
        );
        let r = d
            .as_token(&deploy, Method::POST, "/registry-svc/nodes", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        let id = d
            .register(json!({"url": "http://127.0.0.1:5", "slug": "other-svc"}))
            .await;
        let r = d
            .as_token(
                &deploy,
                Method::DELETE,
                &format!("/registry-svc/instance/{id}"),
                None,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "remove another slug's instance: {}",
            r.text
        );

        for (method, path, body, permission) in [
            (
                Method::PUT,
                "/registry-svc/definition",
                Some(json!({"definition": {"id": "e"}})),
                "definition:create",
            ),
            (Method::GET, "/registry-svc/tokens", None, "token:manage"),
            (Method::GET, "/registry-svc/backup", None, "backup"),
        ] {
            let r = d.as_token(&deploy, method.clone(), path, body).await;
            r.assert_error(
                StatusCode::FORBIDDEN,
                Some(permission),
                &format!("{method} {path}"),
            );
        }
    }
}
