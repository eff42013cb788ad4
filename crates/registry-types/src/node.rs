//! Nodes: the machines that run a registry daemon, with their resources.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::null_as_default;

/// Whether a node has heartbeated recently (within three heartbeat intervals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NodeStatus {
    #[default]
    Online,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    #[serde(default)]
    pub usage: ResourceUsage,
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub gpus: Vec<Gpu>,
    #[serde(default)]
    pub status: NodeStatus,
}

/// Amounts of one resource. Memory and disk are in bytes; CPU is in millicores
/// (`total` = logical cores × 1000), so `used`/`total` is a fraction like the others.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub used: u64,
    pub total: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceUsage {
    pub cpu: Usage,
    pub memory: Usage,
    pub disk: Usage,
}

/// One GPU as `nvidia-smi` reports it. Memory figures are MiB, power watts, temperature °C.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// `<node url>:<index>`.
    pub id: String,
    pub intra_node_id: u32,
    pub name: String,
    pub bus_id: String,
    pub temperature: f64,
    pub performance_state: String,
    pub power_usage: f64,
    pub power_cap: f64,
    pub memory_usage: u64,
    pub memory_total: u64,
    pub gpu_utilization: f64,
    pub compute_mode: String,
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub process_details: Vec<GpuProcess>,
    #[serde(default)]
    pub cuda_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GpuProcess {
    pub pid: u32,
    pub process_name: String,
    pub memory_usage: u64,
}

/// Body of `POST /registry-svc/nodes`; empty or missing `ids` lists every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListNodesRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub ids: Vec<String>,
}

impl ListNodesRequest {
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
