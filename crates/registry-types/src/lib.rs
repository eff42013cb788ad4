//! The wire model of Registry Svc, shared by the daemon, the client library and the CLI.
//!
//! Every type here serializes to exactly the JSON the HTTP API speaks (OpenOrch-compatible
//! field names). Requests come in a lenient "input" shape and are turned into the strict
//! model by a `validate`/`into_*` step that returns a [`FieldError`] naming the bad field,
//! so the server and the CLI reject bad input with the same words. The ranges of every
//! value are in [`limits`]; the names and defaults the daemon and its clients share (the
//! index header, the default address and data dir, ...) in [`constants`].
//!
//! ```
//! use registry_types::{query, InstanceFilter, InstanceStatus, RegisterInstanceRequest};
//!
//! // A registration as a client sends it, checked as the daemon checks it.
//! let request: RegisterInstanceRequest = serde_json::from_str(
//!     r#"{"url": "http://127.0.0.1:8080", "slug": "user-svc", "tags": ["v2", ""]}"#,
//! )?;
//! let error = request.validate().unwrap_err();
//! assert_eq!(error.field, "tags[1]");
//! assert_eq!(error.to_string(), "invalid field `tags[1]`: is empty");
//!
//! // The query string of a list request, and back.
//! let filter = InstanceFilter {
//!     slug: Some("user-svc".into()),
//!     status: Some(InstanceStatus::Healthy),
//!     ..Default::default()
//! };
//! assert_eq!(filter.to_query(), "slug=user-svc&status=Healthy");
//! assert_eq!(query::parse::<InstanceFilter>(&filter.to_query())?, filter);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod backup;
pub mod constants;
mod definition;
mod duration;
mod error;
mod instance;
pub mod limits;
mod node;
mod number;
mod object;
pub mod query;
mod token;
mod validate;

#[cfg(test)]
mod properties;

pub use address::AddressPart;
pub use backup::{BackupHeader, RestoreSummary, BACKUP_FORMAT, BACKUP_VERSION};
pub use definition::{
    ApiSpec, Client, Definition, DefinitionInput, EnvVar, ImageInput, ImageSpec, PortMapping,
    RepositoryInput, RepositorySpec, SaveDefinitionRequest,
};
pub use duration::parse_duration;
pub use error::{ErrorBody, FieldError};
pub use instance::{
    HealthCheck, HealthCheckType, Instance, InstanceFilter, InstanceStatus, RegisterInstanceRequest,
};
pub use node::{Gpu, GpuProcess, ListNodesRequest, Node, NodeStatus, ResourceUsage, Usage};
pub use token::{CreateTokenRequest, CreatedToken, Role, TokenInfo};
pub use validate::{validate_id, validate_slug, validate_tag, ID_PATTERN, TEXT_PATTERN};

/// The path prefix every resource endpoint lives under.
pub const API_PREFIX: &str = "/registry-svc";

/// Response bodies of the list endpoints; the collection is always present, even when empty.
pub mod responses {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Answer to `GET /registry-svc/definitions`.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ListDefinitionsResponse {
        /// The definitions, in id order.
        #[serde(default)]
        pub definitions: Vec<Definition>,
        /// Extension: present when a `limit` stopped the page short of the end; the
        /// `after` of the next page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub next: Option<String>,
    }

    /// Answer to `GET /registry-svc/instances`.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ListInstancesResponse {
        /// The instances the filters match, in id order.
        #[serde(default)]
        pub instances: Vec<Instance>,
        /// Extension: present when a `limit` stopped the page short of the end; the
        /// `after` of the next page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub next: Option<String>,
    }

    /// Answer to `POST /registry-svc/nodes`.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ListNodesResponse {
        /// The nodes asked for.
        #[serde(default)]
        pub nodes: Vec<Node>,
    }

    /// Answer to `GET /registry-svc/node/self`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct NodeSelfResponse {
        /// The node of the daemon answering.
        pub node: Node,
    }

    /// Answer to `GET /registry-svc/tokens`.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ListTokensResponse {
        /// Every token, without its secret.
        #[serde(default)]
        pub tokens: Vec<TokenInfo>,
    }

    /// Answer to `PUT /registry-svc/instance`. OpenOrch answers `{}`; the id is added so a
    /// caller that let the registry pick one can find, heartbeat or remove its instance.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RegisterInstanceResponse {
        /// The instance's id, to heartbeat or remove it by.
        #[serde(default)]
        pub id: String,
    }

    /// The `{}` answered by writes that have nothing else to say.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct Empty {}
}
