//! `GET`, `POST` and `PUT /registry-svc/echo`: 1Backend's endpoints for trying a client
//! against the server. Any valid token may call them.

use super::OptionalJsonBody;
use crate::auth::Caller;
use axum::extract::RawQuery;
use axum::Json;
use registry_types::ErrorBody;
use serde_json::{Map, Value};

/// A JSON object; its keys come back sorted, as the original's do.
type Object = Map<String, Value>;

/// The query parameters as an object: a parameter given once is a string, one given
/// more than once an array of its values in order.
#[utoipa::path(get, path = "/registry-svc/echo", tag = "echo", operation_id = "echoGet",
    responses((status = 200, body = Object, description = "The query parameters"),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get(_caller: Caller, RawQuery(query): RawQuery) -> Json<Object> {
    let mut echoed = Object::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = Value::String(value.into_owned());
        match echoed.get_mut(key.as_ref()) {
            None => {
                echoed.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    Json(echoed)
}

/// The request body, a JSON object, as it came. No body (what the generated clients send,
/// having no way to give one) or `null` is `{}`.
#[utoipa::path(post, path = "/registry-svc/echo", tag = "echo", operation_id = "echoPost",
    request_body(content = Option<Object>, description = "Any JSON object"),
    responses((status = 200, body = Object, description = "The request body"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn post(_caller: Caller, body: OptionalJsonBody<Object>) -> Json<Object> {
    Json(body.0)
}

/// The request body, a JSON object, as it came; as `echoPost`.
#[utoipa::path(put, path = "/registry-svc/echo", tag = "echo", operation_id = "echoPut",
    request_body(content = Option<Object>, description = "Any JSON object"),
    responses((status = 200, body = Object, description = "The request body"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put(caller: Caller, body: OptionalJsonBody<Object>) -> Json<Object> {
    post(caller, body).await
}
