//! `POST /tokens`, `GET /tokens`, `DELETE /token/{id}` (admin only).

use super::{ApiState, JsonBody};
use crate::auth::{new_token, Caller, Permission};
use crate::state::Command;
use crate::Result;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use registry_types::responses::ListTokensResponse;
use registry_types::{validate_slug, CreateTokenRequest, CreatedToken, ErrorBody};

/// Create a token for an account; the secret is in this answer only.
#[utoipa::path(post, path = "/registry-svc/tokens", operation_id = "createToken", tag = "tokens",
    request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(app): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    caller.require(Permission::TokenManage)?;
    validate_slug("slug", &request.slug)?;
    let role = request.role.unwrap_or_default();
    let (secret, stored) = new_token(&request.slug, role);
    let id = stored.id.clone();
    app.writer
        .submit(&caller.actor, Command::PutToken(stored))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            token: secret,
            slug: request.slug,
            role,
        }),
    ))
}

/// List tokens (never their secrets).
#[utoipa::path(get, path = "/registry-svc/tokens", operation_id = "listTokens", tag = "tokens",
    responses((status = 200, body = ListTokensResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(app): State<ApiState>,
    caller: Caller,
) -> Result<Json<ListTokensResponse>> {
    caller.require(Permission::TokenManage)?;
    let mut tokens: Vec<_> = app.registry.read().tokens().map(|t| t.info()).collect();
    tokens.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(Json(ListTokensResponse { tokens }))
}

/// Revoke a token; it stops working at once. The last admin token cannot be revoked.
#[utoipa::path(delete, path = "/registry-svc/token/{id}", operation_id = "revokeToken", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody),
        (status = 409, description = "The last admin token", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn revoke(
    State(app): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Permission::TokenManage)?;
    app.writer
        .submit(&caller.actor, Command::DeleteToken(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
