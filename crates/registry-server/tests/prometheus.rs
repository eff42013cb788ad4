//! A real Prometheus server reads the daemon: it scrapes `/metrics`, and finds the
//! services to scrape through `GET /registry-svc/prometheus/targets` with the
//! `http_sd_configs` and relabelling docs/operations.md gives, so a service registered
//! with the registry is scraped without a line of configuration of its own, and dropped
//! once its health check fails.
//!
//! Needs `prometheus` on PATH (Debian: `apt-get install prometheus`) or
//! `REGISTRY_PROMETHEUS`; says "skipped" without it, and fails under `CI=true`.

mod common;

use common::{wait_for_value, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Long enough for Prometheus to start, discover, scrape and forget on a loaded machine;
/// each wait ends as soon as what it waits for is true.
const DEADLINE: Duration = Duration::from_secs(60);

/// The Prometheus to run: `REGISTRY_PROMETHEUS`, else `prometheus` on PATH.
fn prometheus() -> Option<String> {
    if let Ok(path) = std::env::var("REGISTRY_PROMETHEUS") {
        return Some(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .any(|dir| dir.join("prometheus").is_file())
        .then(|| "prometheus".to_string())
}

/// A service with metrics of its own: answers every HTTP request with a line of the
/// Prometheus text format, one connection at a time, in one task, so that aborting the
/// task closes the port and every connection at once.
struct Toy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Toy {
    async fn start() -> Toy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = async {
                    let mut request = Vec::new();
                    let mut buffer = [0; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = stream.read(&mut buffer).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        request.extend_from_slice(&buffer[..n]);
                    }
                    let body = "# TYPE toy_answers counter\ntoy_answers_total 42\n";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(body.as_bytes()).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
            }
        });
        Toy { port, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A loopback port free a moment ago, for Prometheus to listen on.
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The configuration of docs/operations.md ("Watching it"), pointed at `registry`
/// (`host:port`) with the token in `token_file`, and every interval at one second.
fn config(registry: &str, token_file: &Path) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: registry
    static_configs:
      - targets: ["{registry}"]
  - job_name: services
    http_sd_configs:
      - url: http://{registry}/registry-svc/prometheus/targets
        refresh_interval: 1s
        authorization:
          type: Bearer
          credentials_file: {token}
    relabel_configs:
      - source_labels: [__meta_registry_scheme]
        target_label: __scheme__
      - source_labels: [__meta_registry_slug]
        target_label: service
      - source_labels: [__meta_registry_instance_id]
        target_label: instance_id
      - source_labels: [__meta_registry_zone]
        target_label: zone
      - regex: __meta_registry_metadata_(.+)
        action: labelmap
        replacement: meta_$1
"#,
        token = token_file.display()
    )
}

/// A Prometheus server on a free loopback port, killed when dropped.
struct Prometheus {
    api: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl Prometheus {
    async fn start(binary: &str, dir: &Path, config: &str) -> Prometheus {
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port().await;
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            api: format!("http://127.0.0.1:{port}"),
            log: dir.join("prometheus.log"),
            http: reqwest::Client::new(),
            _child: child,
        };
        let ready = common::wait_until(DEADLINE, || async {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.api))
                .send()
                .await;
            ready.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        assert!(ready, "Prometheus never ready:\n{}", prometheus.log());
        prometheus
    }

    /// What Prometheus logged, for a failure's message.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, asserting a success.
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/api/v1/{path}", self.api))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }

    async fn query(&self, query: &str) -> Value {
        let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        self.get(&format!("query?query={encoded}")).await["result"].clone()
    }

    /// The active targets of `job`.
    async fn targets(&self, job: &str) -> Vec<Value> {
        let data = self.get("targets?state=active").await;
        data["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["labels"]["job"] == job)
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn prometheus_finds_scrapes_and_drops_a_registered_service() {
    let Some(binary) = prometheus() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Prometheus is not installed (apt-get install prometheus), and CI needs this test"
        );
        eprintln!("skipped: no Prometheus (set REGISTRY_PROMETHEUS or install prometheus)");
        return;
    };
    let d = Daemon::start().await;
    let toy = Toy::start().await;
    let id = d
        .register(json!({
            "url": format!("http://127.0.0.1:{}", toy.port), "slug": "toy",
            "metadata": {"team.name": "core"},
            "healthCheck": {"type": "http", "path": "/metrics", "interval": "1s"},
        }))
        .await;
    d.wait_for_status(&id, "Healthy", DEADLINE).await;

    let dir = tempfile::tempdir().unwrap();
    // Prometheus reads the targets with a user token: looking is all it needs.
    let token_file = dir.path().join("registry.token");
    std::fs::write(&token_file, d.token("prometheus", "user").await).unwrap();
    let registry = d.server.as_ref().unwrap().addr().to_string();
    let prometheus = Prometheus::start(&binary, dir.path(), &config(&registry, &token_file)).await;

    // Discovered through the registry, relabelled as documented, and scraped.
    let scraped = wait_for_value(
        DEADLINE,
        || async { json!(prometheus.targets("services").await) },
        |targets| {
            targets
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["health"] == "up")
        },
    )
    .await
    .unwrap_or_else(|last| {
        panic!(
            "the toy service never scraped: {last}\n{}",
            prometheus.log()
        )
    });
    let target = &scraped[0];
    assert_eq!(target["labels"]["service"], "toy", "{target}");
    assert_eq!(target["labels"]["instance_id"], id.as_str(), "{target}");
    assert_eq!(target["labels"]["meta_team_name"], "core", "{target}");
    assert_eq!(
        target["labels"]["instance"],
        format!("127.0.0.1:{}", toy.port),
        "{target}"
    );
    assert_eq!(target["discoveredLabels"]["__meta_registry_slug"], "toy");
    let up = wait_for_value(
        DEADLINE,
        || async {
            prometheus
                .query(r#"up{job="services",service="toy"}"#)
                .await
        },
        |result| result[0]["value"][1] == "1",
    )
    .await
    .unwrap_or_else(|last| panic!("up never 1: {last}"));
    assert_eq!(up.as_array().unwrap().len(), 1, "{up}");
    let answers = prometheus
        .query(r#"toy_answers_total{service="toy"}"#)
        .await;
    assert_eq!(answers[0]["value"][1], "42", "{answers}");

    // The daemon's own metrics, as Prometheus stored them.
    for query in [
        r#"registry_build_info{job="registry"}"#,
        r#"registry_instances{job="registry",slug="toy",status="Healthy"}"#,
        r#"registry_http_requests_total{job="registry",route="/registry-svc/prometheus/targets",method="GET",status="200"}"#,
        r#"registry_http_request_duration_seconds_count{job="registry",route="/metrics"}"#,
        r#"registry_health_checks_total{job="registry",type="http",outcome="Healthy"}"#,
        r#"registry_writer_commit_duration_seconds_count{job="registry"}"#,
        r#"registry_feed_revision{job="registry"}"#,
        r#"process_resident_memory_bytes{job="registry"}"#,
    ] {
        wait_for_value(
            DEADLINE,
            || prometheus.query(query),
            |result| result.as_array().is_some_and(|r| !r.is_empty()),
        )
        .await
        .unwrap_or_else(|last| panic!("{query}: nothing stored ({last})"));
    }

    // Stopped, the service fails its checks, leaves the targets and Prometheus drops it.
    toy.stop().await;
    d.wait_for_status(&id, "Unreachable", DEADLINE).await;
    wait_for_value(
        DEADLINE,
        || async { json!(prometheus.targets("services").await) },
        |targets| targets.as_array().unwrap().is_empty(),
    )
    .await
    .unwrap_or_else(|last| panic!("the stopped service is still a target: {last}"));
    d.stop().await;
}
