//! A real daemon on a free loopback port, in this process, and a small HTTP helper.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod hooked;
pub mod postgres;

use registry_server::store::Store;
use registry_server::{Config, RunningServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Daemon {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub admin: String,
    pub http: reqwest::Client,
}

/// A response: status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Reads a whole response; the body is `Value::Null` when empty or not JSON.
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// The `error` message of an error response; fails the test if the body has none.
    pub fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {} {:?}", self.status, self.text))
    }

    /// Asserts `status`, a JSON content type, a non-empty `error` that contains `names` when given.
    pub fn assert_error(&self, status: StatusCode, names: Option<&str>, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: content-type {content_type:?}, body {:?}",
            self.text
        );
        let error = self.error();
        assert!(!error.trim().is_empty(), "{what}: empty error");
        if let Some(names) = names {
            assert!(
                error.contains(names),
                "{what}: error {error:?} does not name `{names}`"
            );
        }
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::embedded(dir);
    // No GPUs in tests unless a test asks for its fake nvidia-smi.
    config.nvidia_smi = dir.join("no-nvidia-smi");
    config
}

/// Percent-encodes a URL for use as one path segment.
pub fn encode(url: &str) -> String {
    url.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
}

impl Daemon {
    pub async fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_with(config(dir.path()), dir).await
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Daemon {
        let server = registry_server::start(config).await.expect("daemon starts");
        Daemon::serving(server, dir)
    }

    /// Starts a daemon on `store` instead of the one `config` names.
    pub async fn start_with_store(
        config: Config,
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
    ) -> Daemon {
        let server = registry_server::start_with_store(config, store)
            .await
            .expect("daemon starts");
        Daemon::serving(server, dir)
    }

    fn serving(server: RunningServer, dir: tempfile::TempDir) -> Daemon {
        let admin = std::fs::read_to_string(dir.path().join("admin.token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        Daemon {
            server: Some(server),
            dir,
            admin,
            http: reqwest::Client::new(),
        }
    }

    /// Stops gracefully and starts again on the same data dir with the default config.
    pub async fn restart(self) -> Daemon {
        let dir = self.stop().await;
        Daemon::start_with(config(dir.path()), dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.as_ref().unwrap().base_url())
    }

    /// Sends `body` (raw text, so tests can send broken JSON) with an optional token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request reaches the daemon");
        Reply::read(response).await
    }

    /// As the admin, with a JSON value body.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, Some(&self.admin), body.map(|b| b.to_string()))
            .await
    }

    pub async fn as_token(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.send(method, path, Some(token), body.map(|b| b.to_string()))
            .await
    }

    /// Creates a token from `body` as the admin, asserting a 201; returns `(id, secret)`.
    pub async fn create_token(&self, body: Value) -> (String, String) {
        let reply = self
            .admin(Method::POST, "/registry-svc/tokens", Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{body}: {}", reply.text);
        let field = |name: &str| {
            reply.body[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {}", reply.text))
                .to_string()
        };
        (field("id"), field("token"))
    }

    /// Creates a token for `slug` with `role` and returns its secret.
    pub async fn token(&self, slug: &str, role: &str) -> String {
        self.create_token(json!({"slug": slug, "role": role}))
            .await
            .1
    }

    /// Saves `definition` as the admin, asserting a 201 with an empty object.
    pub async fn save_definition(&self, definition: Value) {
        let r = self
            .admin(
                Method::PUT,
                "/registry-svc/definition",
                Some(json!({ "definition": definition })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{definition}: {}", r.text);
        assert_eq!(r.body, json!({}), "{}", r.text);
    }

    /// Registers an instance as the admin and returns its id, asserting a 201.
    pub fn register(&self, body: Value) -> impl Future<Output = String> + Send + 'static {
        self.register_as(&self.admin, body)
    }

    /// Registers an instance as `token` and returns its id, asserting a 201; spawnable.
    pub fn register_as(
        &self,
        token: &str,
        body: Value,
    ) -> impl Future<Output = String> + Send + 'static {
        let request = self
            .http
            .put(self.url("/registry-svc/instance"))
            .bearer_auth(token)
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("request reaches the daemon");
            let r = Reply::read(response).await;
            assert_eq!(r.status, StatusCode::CREATED, "{body}: {}", r.text);
            r.body["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {}", r.text))
                .to_string()
        }
    }

    /// This daemon's own node from `/registry-svc/node/self`, asserting a 200.
    pub async fn self_node(&self) -> Value {
        let r = self
            .admin(Method::GET, "/registry-svc/node/self", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["node"].clone()
    }

    /// Stops the daemon gracefully and hands back its data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server
            .take()
            .unwrap()
            .shutdown()
            .await
            .expect("clean shutdown");
        self.dir
    }
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn wait_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
