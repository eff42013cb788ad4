//! Turning errors into responses: the status code of the spec and `{"error": "..."}`.

use crate::Error;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use registry_types::ErrorBody;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Store(_) | Error::Unavailable(_) | Error::RestoreStopped { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message }).expect("error body serializes");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = &self as &dyn std::error::Error, "request failed");
        }
        let retry_after = match &self {
            Error::TooManyRequests {
                retry_after_secs, ..
            } => Some(HeaderValue::from(*retry_after_secs)),
            _ => None,
        };
        let mut response = json_error(status, self.to_string());
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

/// Answer for paths that match no route.
pub(super) async fn no_route() -> Error {
    Error::NotFound("no such endpoint; see /openapi.json for the API".into())
}

/// Rewrites error responses that are not JSON (axum's own rejections: a method not
/// allowed, a malformed path parameter, ...) into the `{"error": ...}` shape, keeping
/// their status and their text when they have one.
///
/// Synchronous, so that the layer gives no request a boxed future of its own: axum's
/// rejections hold their text in memory, so reading it never waits (a body that would
/// is replaced by the status's reason).
pub(super) fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .now_or_never()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            match parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
            {
                Some(allow) => format!("{reason}; this path allows {allow}"),
                None => reason,
            }
        } else {
            reason
        }
    } else {
        text
    };
    let mut rewritten = json_error(status, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// A panic in a handler answers 500 with a JSON error; the stack stays in the log.
pub(super) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_store::StoreError;

    #[tokio::test]
    async fn a_store_error_answers_in_general_words_and_keeps_its_cause() {
        let disk = std::io::Error::other("disk unplugged");
        let error = Error::from(StoreError::unavailable_because("SQLite", disk));
        let causes: Vec<String> =
            std::iter::successors(std::error::Error::source(&error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        assert_eq!(causes, ["store unavailable: SQLite", "disk unplugged"]);

        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":"the store is unavailable; see the daemon log"}"#
        );
    }
}
