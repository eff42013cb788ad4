//! Nodes: the machines that run a registry daemon, with their resources.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::null_as_default;

/// Whether a node has heartbeated recently (within three of its heartbeat intervals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NodeStatus {
    /// Heartbeated within the last three of its heartbeat intervals.
    #[default]
    Online,
    /// Has not heartbeated for three of its heartbeat intervals.
    Offline,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStatus::Online => "Online",
            NodeStatus::Offline => "Offline",
        })
    }
}

/// A machine running a registry daemon, as the daemon reports it in its heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's id, kept in its data dir unless set.
    pub id: String,
    /// The daemon's URL as other nodes reach it.
    pub url: String,
    /// The region the node is in, if set.
    #[serde(default)]
    pub region: String,
    /// The availability zone the node is in, if set; zone-affinity balancing reads it.
    #[serde(default)]
    pub availability_zone: String,
    /// The time of the node's latest heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The machine's CPU, memory and disk use at that heartbeat.
    #[serde(default)]
    pub usage: ResourceUsage,
    /// The machine's GPUs, if `nvidia-smi` reports any.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub gpus: Vec<Gpu>,
    /// Whether the node heartbeats.
    #[serde(default)]
    pub status: NodeStatus,
    /// How often the node heartbeats (e.g. `10s`), as it publishes it; other nodes judge
    /// its liveness by it. Absent in records of daemons that did not publish it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
}

/// Amounts of one resource. Memory and disk are in bytes; CPU is in millicores
/// (`total` = logical cores × 1000), so `used`/`total` is a fraction like the others.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Every field optional, as the originals declare them (a client generated from either
// document reads the same); the daemon always writes them all.
#[serde(default)]
pub struct Usage {
    /// The amount in use.
    pub used: u64,
    /// The amount there is.
    pub total: u64,
    /// `used` as a percentage of `total`.
    pub percent: f64,
}

/// A machine's use of its resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)] // every field optional, as for `Usage`
pub struct ResourceUsage {
    /// CPU, in millicores.
    pub cpu: Usage,
    /// Memory, in bytes.
    pub memory: Usage,
    /// Disk of the data dir's file system, in bytes.
    pub disk: Usage,
}

/// One GPU as `nvidia-smi` reports it. Memory figures are MiB, power watts, temperature °C.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)] // every field optional, as for `Usage`
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// `<node url>:<index>`.
    pub id: String,
    /// The GPU's index on its machine.
    pub intra_node_id: u32,
    /// The GPU's model name.
    pub name: String,
    /// Its PCI bus id.
    pub bus_id: String,
    /// Its temperature.
    pub temperature: f64,
    /// Its performance state, `P0` (fastest) to `P12`.
    pub performance_state: String,
    /// Power drawn.
    pub power_usage: f64,
    /// The most power it may draw.
    pub power_cap: f64,
    /// Memory in use.
    pub memory_usage: u64,
    /// Memory there is.
    pub memory_total: u64,
    /// How busy its cores are, in percent.
    pub gpu_utilization: f64,
    /// Its compute mode, e.g. `Default`.
    pub compute_mode: String,
    /// The processes using it.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub process_details: Vec<GpuProcess>,
    /// The CUDA version its driver supports.
    #[serde(default)]
    pub cuda_version: String,
}

/// A process using a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)] // every field optional, as for `Usage`
#[serde(rename_all = "camelCase")]
pub struct GpuProcess {
    /// The process's id.
    pub pid: u32,
    /// Its name.
    pub process_name: String,
    /// GPU memory it uses, in MiB.
    pub memory_usage: u64,
}

/// Body of `POST /registry-svc/nodes`; empty or missing `ids` lists every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListNodesRequest {
    /// The ids of the nodes to list; empty for every node.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub ids: Vec<String>,
}

impl ListNodesRequest {
    /// Refuses more ids than [`limits::MAX_IDS`](crate::limits::MAX_IDS).
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        if self.ids.len() > crate::limits::MAX_IDS {
            return Err(crate::FieldError::new(
                "ids",
                format!(
                    "has {} ids, at most {} allowed",
                    self.ids.len(),
                    crate::limits::MAX_IDS
                ),
            ));
        }
        Ok(())
    }
}
