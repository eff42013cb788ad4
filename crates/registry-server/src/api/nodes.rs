//! `POST /nodes`, `GET /node/self`, `DELETE /node/{url}`.

use super::page::list_response;
use super::query::{ListQuery, Nodes};
use super::shape::{Shape, Shaped};
use super::{ApiState, OptionalJsonBody};
use crate::auth::{Caller, Permission};
use crate::feed::indexed;
use crate::state::Command;
use crate::Result;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use registry_store::Kind;
use registry_types::responses::{ListNodesResponse, NodeSelfResponse};
use registry_types::{ErrorBody, ListNodesRequest};

/// List nodes, all of them or those with the given ids.
#[utoipa::path(post, path = "/registry-svc/nodes", operation_id = "listNodes", tag = "nodes",
    request_body(content = Option<ListNodesRequest>, description = "Empty, or ids to select"),
    params(ListQuery<Nodes>),
    responses((status = 200, body = ListNodesResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(app): State<ApiState>,
    caller: Caller,
    shape: Shape,
    RawQuery(query): RawQuery,
    OptionalJsonBody(request): OptionalJsonBody<ListNodesRequest>,
) -> Result<Response> {
    caller.require(Permission::NodeView)?;
    request.validate()?;
    ListQuery::<Nodes>::parse(&query.unwrap_or_default())?
        .blocking
        .wait(&app.feed, Kind::Node)
        .await;
    let now = chrono::Utc::now();
    let (nodes, index) = {
        let tables = app.registry.read();
        let nodes: Vec<_> = tables
            .nodes()
            .filter(|n| request.ids.is_empty() || request.ids.contains(&n.id))
            .map(|n| app.this_node.with_liveness(n, now))
            .collect();
        (nodes, tables.kind_revision(Kind::Node))
    };
    Ok(indexed(index, list_response("nodes", nodes, None, shape)))
}

/// The node of the daemon answering.
#[utoipa::path(get, path = "/registry-svc/node/self", operation_id = "selfNode", tag = "nodes",
    responses((status = 200, body = NodeSelfResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn this_node(
    State(app): State<ApiState>,
    caller: Caller,
    shape: Shape,
) -> Result<Json<serde_json::Value>> {
    caller.require(Permission::NodeView)?;
    let node = app.this_node.latest();
    let node = app.this_node.with_liveness(&node, chrono::Utc::now());
    Ok(Json(serde_json::json!({ "node": Shaped(&node, shape) })))
}

/// Remove a node by its URL (percent-encoded). A live node comes back at its next heartbeat.
#[utoipa::path(delete, path = "/registry-svc/node/{url}", operation_id = "deleteNode", tag = "nodes",
    params(("url" = String, Path, description = "Node URL, percent-encoded")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(app): State<ApiState>,
    caller: Caller,
    Path(url): Path<String>,
) -> Result<StatusCode> {
    caller.require(Permission::NodeDelete)?;
    app.writer
        .submit(&caller.actor, Command::DeleteNode(url))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
