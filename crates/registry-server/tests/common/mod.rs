//! A real daemon on a free loopback port, in this process, and a small HTTP helper.
#![allow(dead_code)] // each test binary uses its own part of the harness

use registry_server::{Config, RunningServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;
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
    /// The `error` message of an error response; fails the test if the body has none.
    pub fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {} {:?}", self.status, self.text))
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::embedded(dir);
    // No GPUs in tests unless a test asks for its fake nvidia-smi.
    config.nvidia_smi = dir.join("no-nvidia-smi");
    config
}

impl Daemon {
    pub async fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_with(config(dir.path()), dir).await
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Daemon {
        let server = registry_server::start(config).await.expect("daemon starts");
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

    /// Creates a token for `slug` with `role` and returns its secret.
    pub async fn token(&self, slug: &str, role: &str) -> String {
        let reply = self
            .admin(
                Method::POST,
                "/registry-svc/tokens",
                Some(serde_json::json!({"slug": slug, "role": role})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["token"].as_str().unwrap().to_string()
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
