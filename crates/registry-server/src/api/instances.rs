//! `PUT /instance`, `GET /instances`, `DELETE /instance/{id}`.

use super::page::{list_body, list_response, STREAM_CHUNK};
use super::query::{Instances, ListQuery};
use super::shape::{Shape, Shaped};
use super::{json_response, ApiState, JsonBody};
use crate::auth::{Caller, Permission};
use crate::feed::indexed;
use crate::state::{Command, Registration};
use crate::{Error, Result};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_store::Kind;
use registry_types::responses::{ListInstancesResponse, RegisterInstanceResponse};
use registry_types::{ErrorBody, InstanceStatus, RegisterInstanceRequest};

/// Register an instance, or update the one with the same id (else the same URL).
#[utoipa::path(put, path = "/registry-svc/instance", operation_id = "registerInstance", tag = "instances",
    request_body = RegisterInstanceRequest,
    responses(
        (status = 201, description = "Registered", body = RegisterInstanceResponse),
        (status = 400, description = "An invalid field, or an address outside `--check-allow`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Owned by another account", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn register(
    State(app): State<ApiState>,
    caller: Caller,
    shape: Shape,
    JsonBody(request): JsonBody<RegisterInstanceRequest>,
) -> Result<Response> {
    caller.require(Permission::InstanceEdit)?;
    if let Some(allowed) = &app.check_allow {
        allowed.admit_registration(&request)?;
    }
    let registration = Registration::new(request)?;
    let by = caller.actor.clone();
    let applied = app
        .writer
        .submit(
            &by,
            Command::RegisterInstance {
                caller,
                registration,
            },
        )
        .await?;
    let answer = RegisterInstanceResponse { id: applied.key };
    Ok((StatusCode::CREATED, Json(Shaped(&answer, shape))).into_response())
}

/// List instances, in id order; every filter given must match.
#[utoipa::path(get, path = "/registry-svc/instances", operation_id = "listInstances", tag = "instances",
    params(ListQuery<Instances>),
    responses((status = 200, body = ListInstancesResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(app): State<ApiState>,
    caller: Caller,
    shape: Shape,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    caller.require(Permission::InstanceView)?;
    // Cached answers are kept apart by shape: the query string follows the shape's name.
    let query_key = format!("{}?{}", shape.cache_key(), query.as_deref().unwrap_or(""));
    let query = &query_key[shape.cache_key().len() + 1..];
    // A query string cached before was parsed then and found to ask for a whole list
    // without blocking: a hot lookup answers without parsing it again.
    let version = app.registry.read().instances_version();
    if let Some(body) = app.instance_queries.get(&query_key, version) {
        return Ok(indexed(version.0, json_response(body)));
    }
    let ListQuery::<Instances> {
        filter,
        page,
        blocking,
    } = ListQuery::parse(query)?;
    match &filter.slug {
        Some(slug) => blocking.wait_for_slug(&app.feed, slug).await,
        None => blocking.wait(&app.feed, Kind::Instance).await,
    }
    let key = format!("{}?{}", shape.cache_key(), filter.to_query());
    // A whole list is also kept under the query as sent, unless it blocked (the same
    // string must block again), for the lookup at the top.
    let whole = |version: (u64, u64), body: Bytes| {
        if blocking.index.is_none() {
            app.instance_queries.put(&query_key, version, body.clone());
        }
        indexed(version.0, json_response(body))
    };
    let ((instances, next), version) = {
        let tables = app.registry.read();
        let version = tables.instances_version();
        if !page.is_partial() {
            if let Some(body) = app.instance_lists.get(&key, version) {
                return Ok(whole(version, body));
            }
        }
        let matching = tables.instances(&filter, page.after.as_deref());
        let (instances, next) = page.take(matching, |(id, _)| id);
        let instances: Vec<_> = instances.into_iter().map(|(_, i)| i.clone()).collect();
        ((instances, next), version)
    };
    // Serialized outside the lock. Whole lists short enough for one buffer (discovery
    // answers, one slug's instances, are far shorter) are cached under the version read
    // with them; pages and streamed long lists are made per request.
    if page.is_partial() || instances.len() > STREAM_CHUNK {
        return Ok(indexed(
            version.0,
            list_response("instances", instances, next, shape),
        ));
    }
    let body = list_body("instances", &instances, None, shape);
    app.instance_lists.put(&key, version, body.clone());
    Ok(whole(version, body))
}

/// Remove an instance (its owner, an admin or a trusted slug).
#[utoipa::path(delete, path = "/registry-svc/instance/{id}", operation_id = "removeInstance", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(app): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Permission::InstanceEdit)?;
    let by = caller.actor.clone();
    app.writer
        .submit(&by, Command::DeleteInstance { caller, id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tell the registry an instance is alive. For an instance with a `ttl` this keeps it
/// Healthy (and makes it Healthy again); for others it only records the heartbeat.
#[utoipa::path(put, path = "/registry-svc/instance/{id}/heartbeat", operation_id = "heartbeatInstance", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 204, description = "Recorded"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn heartbeat(
    State(app): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Permission::InstanceEdit)?;
    let instance = app
        .registry
        .read()
        .instance(&id)
        .ok_or_else(|| Error::NotFound(format!("instance {id:?} not found")))?;
    caller.ensure_manages(&id, &instance.slug)?;
    let now = chrono::Utc::now();
    let details = "heartbeat received".to_string();
    if instance.ttl.is_none() || instance.status == InstanceStatus::Healthy {
        app.registry.touch_instance(
            &id,
            &instance.url,
            instance.ttl.is_some().then_some(details),
            Some(now),
        );
    } else {
        app.writer
            .submit(
                &caller.actor,
                Command::SetHealth {
                    id,
                    url: instance.url.clone(),
                    status: InstanceStatus::Healthy,
                    details,
                    last_heartbeat: Some(now),
                },
            )
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
