//! The backup format: what `GET /registry-svc/backup` writes and `POST /registry-svc/restore`
//! reads.
//!
//! A backup is NDJSON: one JSON object per line. The first line is a [`BackupHeader`]; every
//! other line holds one object under the name of its kind, `{"definition": {...}}`,
//! `{"instance": {...}}`, `{"node": {...}}` or `{"token": {...}}`, each in the JSON the API
//! and the store use (tokens as stored: a hash, never a secret). The header counts the
//! objects of each kind, so a file cut short is told from a whole one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `format` of every backup's header.
pub const BACKUP_FORMAT: &str = "registry-svc-backup";

/// The version of the format this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BackupHeader {
    /// Always `registry-svc-backup`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^registry-svc-backup$"))]
    pub format: String,
    /// Version of the format; this build reads version 1 only.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1))]
    pub version: u32,
    /// Revision of the store the backup was taken at: it holds every change up to this one.
    pub revision: u64,
    /// When the backup was taken.
    pub taken_at: DateTime<Utc>,
    /// URL of the node that took it.
    pub node: String,
    /// How many definition lines follow.
    pub definitions: u64,
    /// How many instance lines follow.
    pub instances: u64,
    /// How many node lines follow.
    pub nodes: u64,
    /// How many token lines follow.
    pub tokens: u64,
}

impl BackupHeader {
    /// Objects of every kind together: the lines after the header.
    pub fn objects(&self) -> u64 {
        self.definitions + self.instances + self.nodes + self.tokens
    }
}

/// Answer to `POST /registry-svc/restore`: what was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSummary {
    /// Definitions loaded.
    pub definitions: u64,
    /// Instances loaded.
    pub instances: u64,
    /// Tokens loaded.
    pub tokens: u64,
    /// Node records in the backup, left out: every daemon registers its own node.
    pub nodes_skipped: u64,
    /// Revision of the backup restored.
    pub backup_revision: u64,
    /// Revision of this registry's last restored change: durable when this is answered.
    pub revision: u64,
}
