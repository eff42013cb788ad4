//! What Prometheus reads: the daemon's own metrics (`GET /metrics`), and every instance
//! worth scraping in the shape of its HTTP service discovery
//! (`GET /registry-svc/prometheus/targets`), so one scrape job covers every service the
//! registry knows.

use super::query::TargetsQuery;
use super::ApiState;
use crate::auth::{bearer_token, hash_token, Caller, Permission};
use crate::metrics::CONTENT_TYPE;
use crate::{Error, Result};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_types::{query, ErrorBody, Instance, InstanceFilter, InstanceStatus, Node};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The daemon's metrics, in the Prometheus text format. No token is needed unless the
/// daemon was started with `--metrics-token`; then that token, as a bearer token.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text format (version 0.0.4)",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 400, description = "A query parameter: the endpoint takes none", body = ErrorBody),
        (status = 401, description = "With `--metrics-token`: no token, or another one", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub(super) async fn metrics(
    State(app): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let name = url::form_urlencoded::parse(query.as_bytes())
            .next()
            .map_or_else(String::new, |(name, _)| name.into_owned());
        return Err(Error::BadRequest(format!(
            "query parameter {name:?}: /metrics takes no query parameters"
        )));
    }
    if let Some(expected) = &app.metrics_token_hash {
        if hash_token(bearer_token(&headers)?) != *expected {
            return Err(Error::Unauthorized(
                "not the metrics token: /metrics needs the token given to --metrics-token".into(),
            ));
        }
    }
    let text = app.metrics.encode();
    let content_type = HeaderValue::from_static(CONTENT_TYPE);
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// A group of targets as Prometheus' `http_sd_configs` reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TargetGroup {
    /// One `host:port`: the instance's address.
    targets: Vec<String>,
    /// `__meta_registry_*` labels, for relabelling.
    labels: BTreeMap<String, String>,
}

/// Where the labels of a target start; Prometheus drops labels starting with `__` after
/// relabelling, so these are seen only by `relabel_configs`.
const META: &str = "__meta_registry_";

/// A label name Prometheus accepts: every character outside `[a-zA-Z0-9_]` becomes `_`.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl TargetGroup {
    fn of(instance: &Instance, node: Option<&Node>) -> TargetGroup {
        let host = &instance.host;
        let target = if host.contains(':') {
            format!("[{host}]:{}", instance.port)
        } else {
            format!("{host}:{}", instance.port)
        };
        let tags = if instance.tags.is_empty() {
            String::new()
        } else {
            format!(",{},", instance.tags.join(","))
        };
        let node_field = |field: fn(&Node) -> &str| node.map_or("", field).to_string();
        let mut labels: BTreeMap<String, String> = [
            ("instance_id", instance.id.clone()),
            ("slug", instance.slug.clone()),
            ("url", instance.url.clone()),
            ("scheme", instance.scheme.clone()),
            ("path", instance.path.clone()),
            ("status", instance.status.as_str().to_string()),
            ("deployment_id", instance.deployment_id.clone()),
            ("node", instance.node_url.clone()),
            ("region", node_field(|n| n.region.as_str())),
            ("zone", node_field(|n| n.availability_zone.as_str())),
            ("tags", tags),
        ]
        .into_iter()
        .map(|(name, value)| (format!("{META}{name}"), value))
        .collect();
        // Keys that differ only outside the label alphabet meet in one name: the first,
        // in key order, keeps it.
        for (key, value) in &instance.metadata {
            labels
                .entry(format!("{META}metadata_{}", label_name(key)))
                .or_insert_with(|| value.clone());
        }
        TargetGroup {
            targets: vec![target],
            labels,
        }
    }
}

/// The instances that answer their checks (Healthy or Degraded), as targets for
/// Prometheus' HTTP service discovery, in id order.
#[utoipa::path(get, path = "/registry-svc/prometheus/targets", operation_id = "prometheusTargets",
    tag = "instances",
    params(TargetsQuery),
    responses(
        (status = 200, description = "One group per instance, in the shape `http_sd_configs` reads",
            body = Vec<TargetGroup>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn targets(
    State(app): State<ApiState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<TargetGroup>>> {
    caller.require(Permission::InstanceView)?;
    let TargetsQuery { slug, tags } = query::parse(query.as_deref().unwrap_or(""))?;
    let by_slug = InstanceFilter {
        slug,
        ..Default::default()
    };
    // Under the lock only what is cheap: the status is kept beside each instance, and
    // taking one is a reference count. Decoding and the tags wait until it is released.
    let (instances, nodes) = {
        let tables = app.registry.read();
        let instances: Vec<_> = tables
            .instances(&by_slug, None)
            .filter(|(_, i)| {
                matches!(
                    i.status(),
                    InstanceStatus::Healthy | InstanceStatus::Degraded
                )
            })
            .map(|(_, i)| i.clone())
            .collect();
        let nodes: HashMap<String, Arc<Node>> = tables
            .nodes()
            .map(|node| (node.url.clone(), node.clone()))
            .collect();
        (instances, nodes)
    };
    let with_tags = InstanceFilter {
        tags,
        ..Default::default()
    };
    Ok(Json(
        instances
            .iter()
            .map(|stored| stored.decode())
            .filter(|instance| with_tags.matches(instance))
            .map(|instance| TargetGroup::of(&instance, nodes.get(&instance.node_url).map(|n| &**n)))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_host_and_port_with_meta_labels_prometheus_accepts() {
        let instance = Instance {
            id: "inst_1".into(),
            url: "http://[::1]:9100/api".into(),
            slug: "web".into(),
            scheme: "http".into(),
            host: "::1".into(),
            port: 9100,
            path: "/api".into(),
            status: InstanceStatus::Healthy,
            node_url: "http://127.0.0.1:58231".into(),
            tags: vec!["blue".into(), "canary".into()],
            metadata: [("team.name", "core"), ("team-name", "other"), ("9x", "y")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let node = Node {
            url: "http://127.0.0.1:58231".into(),
            region: "eu".into(),
            availability_zone: "eu-1a".into(),
            ..Default::default()
        };
        let group = TargetGroup::of(&instance, Some(&node));
        assert_eq!(group.targets, ["[::1]:9100"]);
        let label = |name: &str| {
            group
                .labels
                .get(&format!("{META}{name}"))
                .map(String::as_str)
        };
        assert_eq!(label("slug"), Some("web"));
        assert_eq!(label("zone"), Some("eu-1a"));
        assert_eq!(label("region"), Some("eu"));
        assert_eq!(label("tags"), Some(",blue,canary,"));
        assert_eq!(label("metadata_9x"), Some("y"));
        // `team-name` sorts before `team.name`, so it keeps the name they share.
        assert_eq!(label("metadata_team_name"), Some("other"));
        assert!(group
            .labels
            .keys()
            .all(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')));
    }
}
