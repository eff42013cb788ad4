//! This daemon as a node: its identity, its heartbeat, and node liveness.
//!
//! Every `--heartbeat-interval` the daemon samples its resources ([`usage`]) and GPUs
//! ([`gpu`]) and upserts its own node record through the writer, like any other change;
//! so a node removed by an admin while it is alive comes back at its next heartbeat.
//! The record carries the interval, and every node judges another's liveness by the
//! interval that node publishes, so nodes with different intervals can share a store.

mod bootstrap;
pub(crate) mod gpu;
pub(crate) mod usage;

pub(crate) use bootstrap::ensure_admin_token;

use crate::auth::Actor;
use crate::state::{Command, Registry, Writer};
use crate::Config;
use anyhow::Context;
use chrono::{DateTime, Utc};
use registry_types::{limits, Node, NodeStatus};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use usage::UsageSampler;

/// File in the data dir keeping the generated node id across restarts.
const NODE_ID_FILE: &str = "node-id";

/// A node is Offline once its last heartbeat is older than this many intervals.
const OFFLINE_AFTER_INTERVALS: u32 = 3;

/// Counts the nodes by liveness at each scrape: liveness follows the clock, not writes.
pub(crate) struct NodesCollector {
    this_node: Arc<ThisNode>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for NodesCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodesCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for NodesCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let now = Utc::now();
        let (online, all) = {
            let tables = self.registry.read();
            let online = tables
                .nodes()
                .filter(|n| self.this_node.is_online(n, now))
                .count();
            (online as u64, tables.nodes().count() as u64)
        };
        crate::metrics::encode_gauges(
            &mut encoder,
            "nodes",
            "Registry nodes by status",
            [
                ([("status", "Online")], online),
                ([("status", "Offline")], all - online),
            ],
        )
    }
}

/// The node this daemon runs on.
pub(crate) struct ThisNode {
    pub id: String,
    pub url: String,
    /// The daemon itself, as the actor of the changes it makes on its own.
    pub actor: Actor,
    region: String,
    availability_zone: String,
    interval: Duration,
    nvidia_smi: PathBuf,
    data_dir: PathBuf,
    sampler: Mutex<Option<UsageSampler>>,
    latest: RwLock<Node>,
}

impl ThisNode {
    /// Resolves the node's id (flag, else the one kept in the data dir, else a new one)
    /// and URL (flag, else `http://<hostname>:<port>`, `https://` when serving TLS).
    pub(crate) fn new(config: &Config, listening: SocketAddr) -> anyhow::Result<Self> {
        let id = match &config.node_id {
            Some(id) => id.clone(),
            None => kept_node_id(&config.data_dir)?,
        };
        let url = match &config.self_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| listening.ip().to_string());
                let scheme = if config.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{host}:{}", listening.port())
            }
        };
        let latest = Node {
            id: id.clone(),
            url: url.clone(),
            region: config.region.clone(),
            availability_zone: config.availability_zone.clone(),
            heartbeat_interval: Some(limits::format_duration(config.heartbeat_interval)),
            ..Default::default()
        };
        Ok(ThisNode {
            actor: Actor::registry(&id),
            id,
            url,
            region: config.region.clone(),
            availability_zone: config.availability_zone.clone(),
            interval: config.heartbeat_interval,
            nvidia_smi: config.nvidia_smi.clone(),
            data_dir: config.data_dir.clone(),
            sampler: Mutex::new(Some(UsageSampler::new())),
            latest: RwLock::new(latest),
        })
    }

    /// The node as of its latest heartbeat.
    pub(crate) fn latest(&self) -> Node {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `node` heartbeated within the last three of its own intervals.
    pub(crate) fn is_online(&self, node: &Node, now: DateTime<Utc>) -> bool {
        self.online_for(node, now).is_some()
    }

    /// How much longer `node` stays Online without another heartbeat; `None` when it is
    /// Offline now.
    fn online_for(&self, node: &Node, now: DateTime<Utc>) -> Option<Duration> {
        let offline_after = self.interval_of(node) * OFFLINE_AFTER_INTERVALS;
        let beat = node.last_heartbeat?;
        // A heartbeat stamped ahead of this node's clock counts as just now.
        let age = now.signed_duration_since(beat).to_std().unwrap_or_default();
        offline_after.checked_sub(age)
    }

    /// The heartbeat interval `node` publishes, so that a node heartbeating more slowly
    /// than this one is not judged by this one's pace. A record without it (written by
    /// an older daemon), or with one that does not read, is judged by this node's own.
    /// No published interval counts for more than the longest the flag allows, so a
    /// garbled record cannot keep a silent node Online for long.
    fn interval_of(&self, node: &Node) -> Duration {
        node.heartbeat_interval
            .as_deref()
            .and_then(|text| registry_types::parse_duration("", text).ok())
            .filter(|interval| !interval.is_zero())
            .map_or(self.interval, |interval| {
                interval.min(limits::HEARTBEAT_INTERVAL.max)
            })
    }

    /// `node` with its `status` worked out from its last heartbeat.
    pub(crate) fn with_liveness(&self, node: &Node, now: DateTime<Utc>) -> Node {
        Node {
            status: if self.is_online(node, now) {
                NodeStatus::Online
            } else {
                NodeStatus::Offline
            },
            ..node.clone()
        }
    }

    /// URLs of the nodes online now, this one always among them (its record may be
    /// missing for a moment after an admin removed it).
    /// The URLs of the online nodes, this one included, sorted; and how long until the
    /// first of the others goes Offline if it stays silent (`None` when no other is
    /// online): when to look again, as no change announces a node falling silent.
    pub(crate) fn online_nodes(
        &self,
        tables: &crate::state::Tables,
        now: DateTime<Utc>,
    ) -> (Vec<String>, Option<Duration>) {
        let mut next_silence: Option<Duration> = None;
        let mut online: Vec<String> = tables
            .nodes()
            .filter(|n| n.url != self.url)
            .filter_map(|n| {
                let left = self.online_for(n, now)?;
                next_silence = Some(next_silence.map_or(left, |next| next.min(left)));
                Some(n.url.clone())
            })
            .collect();
        online.push(self.url.clone());
        online.sort();
        (online, next_silence)
    }

    /// The nodes online and offline now, for `/metrics`.
    pub(crate) fn collector(self: &Arc<Self>, registry: Arc<Registry>) -> NodesCollector {
        NodesCollector {
            this_node: self.clone(),
            registry,
        }
    }

    /// How often liveness can change without any write: the heartbeat interval.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Samples resources and GPUs and records the heartbeat durably.
    pub(crate) async fn heartbeat(&self, writer: &Writer) -> crate::Result<()> {
        let sampler = self
            .sampler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let data_dir = self.data_dir.clone();
        let (sampler, usage) = tokio::task::spawn_blocking(move || {
            let mut sampler = sampler.unwrap_or_default();
            let usage = sampler.sample(&data_dir);
            (sampler, usage)
        })
        .await
        .map_err(|e| crate::Error::Internal(format!("resource sampling failed: {e}")))?;
        *self.sampler.lock().unwrap_or_else(|p| p.into_inner()) = Some(sampler);
        let node = Node {
            id: self.id.clone(),
            url: self.url.clone(),
            region: self.region.clone(),
            availability_zone: self.availability_zone.clone(),
            last_heartbeat: Some(Utc::now()),
            usage,
            gpus: gpu::detect_gpus(&self.nvidia_smi, &self.url).await,
            status: NodeStatus::Online,
            heartbeat_interval: Some(limits::format_duration(self.interval)),
        };
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = node.clone();
        writer.submit(&self.actor, Command::PutNode(node)).await?;
        Ok(())
    }

    /// Heartbeats every interval until `shutdown`.
    pub(crate) async fn heartbeat_loop(&self, writer: Writer, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; start() already beat once
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(e) = self.heartbeat(&writer).await {
                        tracing::warn!(error = &e as &dyn std::error::Error, "node heartbeat failed");
                    }
                }
            }
        }
    }
}

/// The node id kept in the data dir, created on first use.
fn kept_node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = crate::ids::node_id();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_generated_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = kept_node_id(dir.path()).unwrap();
        assert!(first.starts_with("node_"));
        assert_eq!(kept_node_id(dir.path()).unwrap(), first);
    }

    #[test]
    fn liveness_follows_the_last_heartbeat_and_the_interval_the_node_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded(dir.path());
        config.heartbeat_interval = Duration::from_secs(1);
        let this = ThisNode::new(&config, "127.0.0.1:5000".parse().unwrap()).unwrap();
        let now = Utc::now();
        let node = |age_secs: i64, interval: Option<&str>| Node {
            last_heartbeat: Some(now - chrono::Duration::seconds(age_secs)),
            heartbeat_interval: interval.map(String::from),
            ..Default::default()
        };
        let status = |node: Node| this.with_liveness(&node, now).status;
        assert_eq!(status(node(29, Some("10s"))), NodeStatus::Online);
        assert_eq!(status(node(31, Some("10s"))), NodeStatus::Offline);
        // Without a published interval, or with one that does not read: this node's own.
        assert_eq!(status(node(2, None)), NodeStatus::Online);
        assert_eq!(status(node(4, None)), NodeStatus::Offline);
        assert_eq!(status(node(4, Some("soon"))), NodeStatus::Offline);
        assert_eq!(status(node(4, Some("0s"))), NodeStatus::Offline);
        assert_eq!(
            status(Node::default()),
            NodeStatus::Offline,
            "never heartbeated"
        );
        // No more than the longest interval the flag allows.
        let longest = limits::HEARTBEAT_INTERVAL.max.as_secs() as i64;
        assert_eq!(
            status(node(3 * longest - 1, Some("1000h"))),
            NodeStatus::Online
        );
        assert_eq!(
            status(node(3 * longest + 1, Some("1000h"))),
            NodeStatus::Offline
        );
    }
}
