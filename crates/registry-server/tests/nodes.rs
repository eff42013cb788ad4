//! Nodes over HTTP: this daemon's own node, the ids filter, node/self, stable ids, removal
//! and re-registration by heartbeat, and GPU detection through a fake `nvidia-smi`.

mod common;

use common::{encode, wait_until, Daemon};
#[cfg(unix)]
use common::{fake_nvidia_smi, nvidia_smi_fixture as fixture};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SELF_URL: &str = "http://127.0.0.1:40123";

/// The test config with this daemon's node at `SELF_URL`.
fn config(dir: &Path) -> registry_server::Config {
    let mut config = common::config(dir);
    config.self_url = Some(SELF_URL.into());
    config
}

async fn start_with(configure: impl FnOnce(&mut registry_server::Config)) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    configure(&mut config);
    Daemon::start_with(config, dir).await
}

async fn nodes(d: &Daemon, body: Option<&str>) -> Vec<Value> {
    let r = d
        .send(
            Method::POST,
            "/registry-svc/nodes",
            Some(&d.admin),
            body.map(str::to_string),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{body:?}: {}", r.text);
    r.body["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes array: {}", r.text))
        .clone()
}

#[tokio::test]
async fn lists_this_daemons_node() {
    let d = start_with(|_| {}).await;
    for body in [
        None,
        Some("{}"),
        Some(r#"{"ids": []}"#),
        Some(r#"{"ids": null}"#),
    ] {
        let listed = nodes(&d, body).await;
        assert_eq!(listed.len(), 1, "{body:?}: {listed:?}");
        let node = &listed[0];
        assert_eq!(node["url"], SELF_URL, "{body:?}");
        assert!(
            node["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{node}"
        );
        assert_eq!(node["status"], "Online");
        let beat = node["lastHeartbeat"]
            .as_str()
            .unwrap_or_else(|| panic!("no lastHeartbeat: {node}"));
        chrono::DateTime::parse_from_rfc3339(beat).expect("lastHeartbeat is RFC 3339");
        assert!(
            node["usage"]["memory"]["total"].as_u64().unwrap() > 0,
            "{node}"
        );
        assert!(
            node["usage"]["memory"]["used"].as_u64().unwrap()
                <= node["usage"]["memory"]["total"].as_u64().unwrap()
        );
        let cpu_total = node["usage"]["cpu"]["total"].as_u64().unwrap();
        assert!(
            cpu_total > 0 && cpu_total % 1000 == 0,
            "millicores: {cpu_total}"
        );
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        assert!(
            cpu_total / 1000 >= usable,
            "{cpu_total} millicores but {usable} usable cores"
        );
        assert_eq!(node["gpus"], json!([]), "no nvidia-smi, no GPUs");
        assert_eq!(node["region"], "");
    }
}

#[tokio::test]
async fn region_and_zone_are_reported() {
    let d = start_with(|c| {
        c.region = "eu-west".into();
        c.availability_zone = "eu-west-1b".into();
    })
    .await;
    let node = d.self_node().await;
    assert_eq!(
        (node["region"].as_str(), node["availabilityZone"].as_str()),
        (Some("eu-west"), Some("eu-west-1b"))
    );
    assert_eq!(nodes(&d, None).await[0]["availabilityZone"], "eu-west-1b");
}

#[tokio::test]
async fn ids_filter() {
    let d = start_with(|_| {}).await;
    let id = nodes(&d, None).await[0]["id"].as_str().unwrap().to_string();
    let listed = nodes(&d, Some(&json!({"ids": [id]}).to_string())).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let listed = nodes(&d, Some(&json!({"ids": ["no-such-node", id]}).to_string())).await;
    assert_eq!(listed.len(), 1);
    let r = d
        .admin(
            Method::POST,
            "/registry-svc/nodes",
            Some(json!({"ids": ["no-such-node"]})),
        )
        .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({"nodes": []}))
    );
}

#[tokio::test]
async fn node_self_is_the_listed_node() {
    let d = start_with(|_| {}).await;
    let listed = nodes(&d, None).await;
    let node = d.self_node().await;
    assert_eq!(node["id"], listed[0]["id"]);
    assert_eq!(node["url"], SELF_URL);
    assert_eq!(node["status"], "Online");
    assert!(node["usage"]["memory"]["total"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn node_id_is_kept_across_restarts() {
    let d = start_with(|_| {}).await;
    let id = d.self_node().await["id"].as_str().unwrap().to_string();
    let dir = d.stop().await;
    let d = Daemon::start_with(config(dir.path()), dir).await;
    assert_eq!(d.self_node().await["id"], id.as_str());
    let listed = nodes(&d, None).await;
    assert_eq!(
        listed.len(),
        1,
        "still one node after a restart: {listed:?}"
    );
    assert_eq!(listed[0]["id"], id.as_str());
}

#[tokio::test]
async fn configured_node_id_is_used() {
    let d = start_with(|c| c.node_id = Some("node-fixed".into())).await;
    assert_eq!(d.self_node().await["id"], "node-fixed");
    assert_eq!(nodes(&d, None).await[0]["id"], "node-fixed");
    let listed = nodes(&d, Some(r#"{"ids": ["node-fixed"]}"#)).await;
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn delete_removes_the_node_and_unknown_is_404() {
    // The default 10 s heartbeat does not bring it back within the test.
    let d = start_with(|_| {}).await;
    let path = format!("/registry-svc/node/{}", encode(SELF_URL));
    let r = d.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());
    assert_eq!(nodes(&d, None).await, Vec::<Value>::new());
    let r = d.admin(Method::DELETE, &path, None).await;
    r.assert_error(StatusCode::NOT_FOUND, None, "deleting again");

    let r = d
        .admin(
            Method::DELETE,
            &format!("/registry-svc/node/{}", encode("http://127.0.0.9:1")),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, Some("127.0.0.9"), "an unknown node");
}

#[tokio::test]
async fn a_removed_live_node_comes_back_at_its_next_heartbeat() {
    let d = start_with(|c| c.heartbeat_interval = Duration::from_millis(200)).await;
    let before = d.self_node().await;
    let path = format!("/registry-svc/node/{}", encode(SELF_URL));
    let r = d.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let (d, before) = (&d, &before);
    let back = wait_until(Duration::from_secs(5), || async move {
        let listed = nodes(d, None).await;
        listed.len() == 1 && listed[0]["lastHeartbeat"] != before["lastHeartbeat"]
    })
    .await;
    assert!(back, "the node did not re-register within 5 s");
    let listed = nodes(d, None).await;
    assert_eq!(listed[0]["id"], before["id"]);
    assert_eq!(listed[0]["url"], SELF_URL);
    assert_eq!(listed[0]["status"], "Online");
}

#[cfg(unix)]
#[tokio::test]
async fn gpus_from_a_fake_nvidia_smi() {
    let dir = tempfile::tempdir().unwrap();
    let smi = fake_nvidia_smi(dir.path()).await;
    let mut config = config(dir.path());
    config.nvidia_smi = smi;
    let d = Daemon::start_with(config, dir).await;

    let csv = std::fs::read_to_string(fixture("two-gpus.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "the fixture has two GPUs");

    for node in [nodes(&d, None).await.remove(0), d.self_node().await] {
        let gpus = node["gpus"]
            .as_array()
            .unwrap_or_else(|| panic!("no gpus: {node}"));
        assert_eq!(gpus.len(), 2, "{node}");
        for (i, (gpu, row)) in gpus.iter().zip(&rows).enumerate() {
            assert_eq!(gpu["id"], format!("{SELF_URL}:{i}"));
            assert_eq!(gpu["intraNodeId"], i);
            assert_eq!(gpu["name"], row[0]);
            assert_eq!(gpu["memoryTotal"], row[3].parse::<u64>().unwrap());
            assert_eq!(gpu["memoryUsage"], row[4].parse::<u64>().unwrap());
            assert_eq!(gpu["busId"], row[8]);
            assert_eq!(gpu["computeMode"], row[9]);
            assert_eq!(gpu["performanceState"], row[10]);
            assert_eq!(gpu["cudaVersion"], "12.4");
        }
        assert_eq!(gpus[0]["name"], "NVIDIA GeForce RTX 4090");
        assert_eq!(gpus[1]["busId"], "00000000:4C:00.0");
        assert_eq!(gpus[0]["memoryTotal"], 24564);
        assert_eq!(gpus[0]["temperature"], 46.0);
        assert_eq!(gpus[0]["powerCap"], 450.0);
    }
}
