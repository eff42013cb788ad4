//! `PUT /definition`, `GET /definitions`, `DELETE /definition/{id}`.

use super::page::list_response;
use super::query::{Definitions, ListQuery};
use super::shape::Shape;
use super::{ApiState, JsonBody};
use crate::auth::{Caller, Permission};
use crate::feed::indexed;
use crate::state::Command;
use crate::{Error, Result};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use registry_store::Kind;
use registry_types::responses::{Empty, ListDefinitionsResponse};
use registry_types::{ErrorBody, FieldError, SaveDefinitionRequest};

/// Save (create or replace) a definition.
#[utoipa::path(put, path = "/registry-svc/definition", operation_id = "saveDefinition", tag = "definitions",
    request_body = SaveDefinitionRequest,
    responses(
        (status = 201, description = "Saved", body = Empty),
        (status = 400, description = "Invalid definition", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn save(
    State(app): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<SaveDefinitionRequest>,
) -> Result<(StatusCode, Json<Empty>)> {
    let input = request
        .definition
        .ok_or_else(|| FieldError::new("definition", "is required"))?;
    let definition = input
        .into_definition()
        .map_err(|e| e.within("definition"))?;
    let exists = app.registry.read().definition(&definition.id).is_some();
    caller.require(if exists {
        Permission::DefinitionEdit
    } else {
        Permission::DefinitionCreate
    })?;
    app.writer
        .submit(&caller.actor, Command::PutDefinition(definition))
        .await?;
    Ok((StatusCode::CREATED, Json(Empty {})))
}

/// List every definition, in id order.
#[utoipa::path(get, path = "/registry-svc/definitions", operation_id = "listDefinitions", tag = "definitions",
    params(ListQuery<Definitions>),
    responses((status = 200, body = ListDefinitionsResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(app): State<ApiState>,
    caller: Caller,
    shape: Shape,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    caller.require(Permission::DefinitionView)?;
    let ListQuery::<Definitions> { page, blocking, .. } =
        ListQuery::parse(&query.unwrap_or_default())?;
    blocking.wait(&app.feed, Kind::Definition).await;
    let ((definitions, next), index) = {
        let tables = app.registry.read();
        let definitions = tables.definitions(page.after.as_deref());
        (
            page.take(definitions.cloned(), |d| &d.id),
            tables.kind_revision(Kind::Definition),
        )
    };
    Ok(indexed(
        index,
        list_response("definitions", definitions, next, shape),
    ))
}

/// Delete a definition.
#[utoipa::path(delete, path = "/registry-svc/definition/{id}", operation_id = "deleteDefinition", tag = "definitions",
    params(("id" = String, Path, description = "Definition id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(app): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    caller.require(Permission::DefinitionDelete)?;
    app.writer
        .submit(&caller.actor, Command::DeleteDefinition(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
