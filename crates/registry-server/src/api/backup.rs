//! `GET /backup` and `POST /restore` (admin only); the format is in [`crate::backup`].

use super::ApiState;
use crate::auth::{Caller, Permission};
use crate::backup::{Backup, Contents, MAX_RESTORE_BYTES};
use crate::feed::indexed;
use crate::{Error, Result};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use registry_types::{BackupHeader, ErrorBody, RestoreSummary};
use std::convert::Infallible;

const NDJSON: &str = "application/x-ndjson";
/// The path of [`restore`], which takes a body larger than any other.
pub(super) const RESTORE_PATH: &str = "/registry-svc/restore";

/// Take a backup: every definition, instance, node and token (tokens as stored: hashes,
/// never secrets) at one revision, as NDJSON. The first line is a `BackupHeader`; each
/// other line is one object under the name of its kind: `{"definition": {...}}`,
/// `{"token": {...}}`, `{"node": {...}}` or `{"instance": {...}}`. `X-Registry-Index`
/// is the revision it was taken at.
#[utoipa::path(get, path = "/registry-svc/backup", operation_id = "takeBackup", tag = "backup",
    responses(
        (status = 200, description = "The backup, streamed: a `BackupHeader` line, then one line per object",
            content_type = "application/x-ndjson", body = BackupHeader),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn backup(State(app): State<ApiState>, caller: Caller) -> Result<Response> {
    caller.require(Permission::Backup)?;
    let contents = Contents::take(&app.registry, &app.this_node.url);
    let revision = contents.revision();
    let chunks = futures_util::stream::iter(contents.into_chunks().map(Ok::<_, Infallible>));
    let response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
        Body::from_stream(chunks),
    )
        .into_response();
    Ok(indexed(revision, response))
}

/// Restore a backup taken by `GET /registry-svc/backup` into an empty registry: one with
/// no definitions, no instances and no token but its first admin token (`409`
/// otherwise). The whole file is checked before anything changes (`400` naming the line
/// and the problem); it is answered once everything is durable. Instance ids, tokens and
/// health settings come back as they were; node records are skipped (every daemon
/// registers its own). At most 256 MiB.
#[utoipa::path(post, path = "/registry-svc/restore", operation_id = "restoreBackup", tag = "backup",
    request_body(
        description = "A backup as `GET /registry-svc/backup` wrote it, at most 268435456 \
                       bytes; read as NDJSON whatever the Content-Type",
        content((String = "application/x-ndjson"), (String = "text/plain"))),
    responses(
        (status = 200, description = "Restored and durable", body = RestoreSummary),
        (status = 400, description = "Not a whole, valid backup; nothing was changed", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The registry is not empty", body = ErrorBody),
        (status = 413, description = "Larger than 256 MiB", body = ErrorBody),
        (status = 503, description = "The store failed", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn restore(
    State(app): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RestoreSummary>> {
    caller.require(Permission::Backup)?;
    // Whether the registry is empty is asked by the writer, once the body is read: an
    // answer sent before the body is read would reach many clients as a broken pipe.
    let text = read_limited(&headers, body).await?;
    let backup = Backup::parse(&text)?;
    drop(text);
    Ok(Json(backup.restore(&app.writer, &caller.actor).await?))
}

fn too_large() -> Error {
    Error::PayloadTooLarge(format!(
        "the backup is larger than {MAX_RESTORE_BYTES} bytes"
    ))
}

/// The body, up to [`MAX_RESTORE_BYTES`]: a larger declared length is refused before
/// reading, a longer body as soon as it passes the limit.
async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_RESTORE_BYTES as u64) {
        return Err(too_large());
    }
    let mut text = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("cannot read the backup: {e}")))?;
        if text.len() + chunk.len() > MAX_RESTORE_BYTES {
            return Err(too_large());
        }
        text.extend_from_slice(&chunk);
    }
    Ok(text)
}
