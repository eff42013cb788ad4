//! A real daemon on a free loopback port, in this process, and a small HTTP helper.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of the harness

pub mod hooked;
pub mod postgres;

use registry_server::{Config, RunningServer};
use registry_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Daemon {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub admin: String,
    /// Asks for the registry's extensions on every request, as its own client does: the
    /// suites check the whole model.
    pub http: reqwest::Client,
    /// Asks for nothing: answers come in the original's schema, as its clients see them.
    pub plain: reqwest::Client,
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

    /// The `X-Registry-Index` header as a number; fails the test if it is missing.
    pub fn index(&self) -> u64 {
        self.headers
            .get("x-registry-index")
            .unwrap_or_else(|| panic!("no X-Registry-Index on {}", self.text))
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
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

/// A client that sends `X-Registry-Extensions: true` with every request.
pub fn extended_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        registry_types::constants::EXTENSIONS_HEADER,
        reqwest::header::HeaderValue::from_static("true"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client builds")
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
            http: extended_client(),
            plain: reqwest::Client::new(),
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

    /// As the admin, asking for no extensions, with a raw body (`None` sends none).
    pub async fn plain(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let mut request = self
            .plain
            .request(method, self.url(path))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        Reply::read(request.send().await.expect("request reaches the daemon")).await
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

    /// `GET /registry-svc/instances?<query>` as the admin, asserting a 200.
    pub async fn list_instances(&self, query: &str) -> Reply {
        let r = self
            .admin(
                Method::GET,
                &format!("/registry-svc/instances?{query}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
        r
    }

    /// The instance with this id as this daemon lists it, if it is listed.
    pub async fn instance(&self, id: &str) -> Option<Value> {
        self.list_instances(&format!("id={id}")).await.body["instances"]
            .as_array()
            .unwrap()
            .first()
            .cloned()
    }

    /// Polls instance `id` until `check` holds for it: `Ok(instance)`, or after `deadline`
    /// `Err` with the last one seen (`Value::Null` while it was not listed).
    pub async fn wait_for_instance(
        &self,
        id: &str,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value, Value> {
        let read = || async { self.instance(id).await.unwrap_or(Value::Null) };
        wait_for_value(deadline, read, check).await
    }

    /// Polls until instance `id` is listed with status `wanted`; fails the test after `deadline`.
    pub async fn wait_for_status(&self, id: &str, wanted: &str, deadline: Duration) -> Value {
        self.wait_for_instance(id, deadline, |i| status(i) == wanted)
            .await
            .unwrap_or_else(|last| {
                panic!("{id} never {wanted} on {}; last seen {last}", self.url(""))
            })
    }

    /// Polls `POST /registry-svc/nodes` until `check` holds for the listed `nodes`:
    /// `Ok(nodes)`, or after `deadline` `Err` with the last list.
    pub async fn wait_for_nodes(
        &self,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value, Value> {
        let read = || async {
            let r = self.admin(Method::POST, "/registry-svc/nodes", None).await;
            r.body["nodes"].clone()
        };
        wait_for_value(deadline, read, check).await
    }

    /// The `X-Registry-Index` of the answer to `method path` as the admin.
    pub async fn index_of(&self, method: Method, path: &str) -> u64 {
        self.admin(method, path, None).await.index()
    }

    /// Starts `GET path` as the admin in a task (for a blocking query); yields its reply.
    pub fn spawn_get(&self, path: &str) -> JoinHandle<Reply> {
        let request = self.http.get(self.url(path)).bearer_auth(&self.admin);
        tokio::spawn(async move { Reply::read(request.send().await.unwrap()).await })
    }

    /// `/metrics` without a token, asserting a 200 in the Prometheus text format.
    pub async fn metrics_text(&self) -> String {
        let r = self.send(Method::GET, "/metrics", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        r.text
    }

    /// The event stream of instance changes after revision `since`, as the admin,
    /// asserting a 200.
    pub async fn instance_events(&self, since: u64) -> EventStream {
        let response = self
            .events_request(&format!("since={since}&kind=instance"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        EventStream::new(response)
    }

    /// A request for the event stream `/registry-svc/events?<query>` as the admin.
    pub fn events_request(&self, query: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(&format!("/registry-svc/events?{query}")))
            .bearer_auth(&self.admin)
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

/// Polls `read` until `check` holds for what it read: `Ok(value)`, or after `deadline`
/// `Err` with the last value read.
pub async fn wait_for_value<R, Fut>(
    deadline: Duration,
    mut read: R,
    check: impl Fn(&Value) -> bool,
) -> Result<Value, Value>
where
    R: FnMut() -> Fut,
    Fut: Future<Output = Value>,
{
    let last = std::sync::Mutex::new(Value::Null);
    let done = wait_until(deadline, || {
        let now = read();
        async {
            let now = now.await;
            let done = check(&now);
            *last.lock().unwrap() = now;
            done
        }
    })
    .await;
    let last = last.into_inner().unwrap();
    if done {
        Ok(last)
    } else {
        Err(last)
    }
}

/// An instance's `status`, empty when it has none.
pub fn status(instance: &Value) -> &str {
    instance["status"].as_str().unwrap_or_default()
}

/// An instance's `details`, empty when it has none.
pub fn details(instance: &Value) -> &str {
    instance["details"].as_str().unwrap_or_default()
}

/// An instance's `lastHeartbeat`, if it has one; fails the test if it is not RFC 3339.
pub fn last_heartbeat(instance: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    instance["lastHeartbeat"].as_str().map(|beat| {
        chrono::DateTime::parse_from_rfc3339(beat)
            .unwrap_or_else(|e| panic!("lastHeartbeat {beat:?} is not RFC 3339: {e}"))
            .to_utc()
    })
}

/// The status of the node in `nodes` whose `field` is `value`, if it is listed.
pub fn node_status(nodes: &Value, field: &str, value: &str) -> Option<Value> {
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n[field] == value)
        .map(|n| n["status"].clone())
}

/// A bare TCP listener on a free loopback port that accepts connections and closes them
/// (enough for a tcp check) or holds them open without ever answering (a hanging service).
pub struct Listener {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens and closes every connection it accepts.
    pub async fn start() -> Listener {
        Listener::spawn(false).await
    }

    /// Listens and keeps every connection it accepts open, never answering.
    pub async fn start_holding() -> Listener {
        Listener::spawn(true).await
    }

    /// Binds a free loopback port and accepts on it, holding connections when `hold`.
    async fn spawn(hold: bool) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                if hold {
                    held.push(stream);
                }
            }
        });
        Listener { port, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes the listener (and any connections it held): its port refuses from now on.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The value of the series `series` (name and labels exactly as written) in a
/// `/metrics` answer, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a sample value is a number"))
}

/// An SSE response, read one event at a time.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Reads the events of `response`.
    pub fn new(response: reqwest::Response) -> EventStream {
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event as (event name, JSON data), skipping keep-alive comments; fails
    /// the test if the stream ends.
    pub async fn next(&mut self) -> (String, Value) {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if !data.is_empty() {
                    return (name, serde_json::from_str(&data).unwrap());
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the event stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// A recorded `nvidia-smi` output in `tests/fixtures/nvidia-smi`.
pub fn nvidia_smi_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nvidia-smi")
        .join(name)
}

/// Writes a fake `nvidia-smi` that prints the recorded fixtures, and waits until it can be
/// executed: a process forked by another test thread while the file was open for writing
/// makes `exec` fail with ETXTBSY until that process has exec'd in turn.
#[cfg(unix)]
pub async fn fake_nvidia_smi(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\n\
         case \"$1\" in\n\
         --query-gpu=*) [ \"$2\" = --format=csv,noheader,nounits ] || exit 3; cat '{}' ;;\n\
         --query) cat '{}' ;;\n\
         --probe) exit 0 ;;\n\
         *) exit 4 ;;\n\
         esac\n",
        nvidia_smi_fixture("two-gpus.csv").display(),
        nvidia_smi_fixture("query.txt").display(),
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runnable = wait_until(Duration::from_secs(5), || {
        let status = std::process::Command::new(&path).arg("--probe").status();
        async move {
            match status {
                Ok(status) => {
                    assert!(
                        status.success(),
                        "the fake nvidia-smi fails its probe: {status}"
                    );
                    true
                }
                Err(e) if e.raw_os_error() == Some(26) => false, // ETXTBSY
                Err(e) => panic!("cannot run the fake nvidia-smi: {e}"),
            }
        }
    })
    .await;
    assert!(runnable, "the fake nvidia-smi stayed busy");
    path
}

/// The Chromium to run: `REGISTRY_CHROMIUM`, else the path of the first of the usual
/// names on `PATH`.
pub fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("REGISTRY_CHROMIUM") {
        return Some(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|file| file.is_file())
        })
        .map(|file| file.display().to_string())
}

/// The log of a test binary, in a file: lines of the targets `filter` names, from every
/// daemon of the binary. Only one test of a binary may start it.
#[derive(Clone)]
pub struct CapturedLog(PathBuf);

impl CapturedLog {
    /// Installs the binary's log subscriber, writing into `dir/log`.
    pub fn start(dir: &Path, filter: &str) -> CapturedLog {
        let path = dir.join("log");
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(std::fs::File::create(&path).unwrap()))
            .init();
        CapturedLog(path)
    }

    /// The lines logged so far that contain every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        let text = std::fs::read_to_string(&self.0).unwrap();
        text.lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_string)
            .collect()
    }
}
