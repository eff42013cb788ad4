//! Unauthenticated operational endpoints: liveness, readiness, the API document.

use super::ApiState;
use crate::Error;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use registry_types::ErrorBody;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Status {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, body = Status)))]
pub(super) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The store is reachable and every background task (writer, health checker, node
/// heartbeat) is running.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub(super) async fn readyz(State(app): State<ApiState>) -> Result<Json<Status>, Error> {
    let down = app.tasks.down();
    if !down.is_empty() {
        return Err(Error::Unavailable(format!(
            "background task down, restarting: {}",
            down.join(", ")
        )));
    }
    app.store.ping().await?;
    Ok(Json(Status { status: "ready" }))
}

pub(super) async fn openapi_json(document: Arc<String>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.as_str().to_owned(),
    )
        .into_response()
}

/// A self-contained page listing the API from `/openapi.json`: nothing to download.
pub(super) async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
