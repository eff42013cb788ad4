//! Request body extraction: JSON whatever the Content-Type says, with errors naming the field.

use crate::Error;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body. A request body is read as JSON whatever its Content-Type (as `curl -d`
/// sends a form type); an empty body is an error.
pub(crate) struct JsonBody<T>(pub T);

/// A JSON body that may be absent: an empty body, or `null` (what a Go client sends for
/// no body), reads as `T::default()`.
pub(crate) struct OptionalJsonBody<T>(pub T);

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge(format!(
                    "request body is larger than {MAX_BODY_BYTES} bytes"
                ))
            } else {
                Error::BadRequest(format!(
                    "cannot read request body: {}",
                    rejection.body_text()
                ))
            }
        })
}

fn malformed(e: serde_json::Error) -> Error {
    Error::BadRequest(format!("malformed JSON: {e}"))
}

/// Whether `bytes` is JSON at all, whatever its shape.
fn check_well_formed(bytes: &[u8]) -> Result<(), Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
    Ok(())
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // serde reads a struct from an array positionally; a request body is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        check_well_formed(bytes)?;
        return Err(Error::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    // The plain parse first: tracking the path allocates a string per key read, on every
    // request. Only a body that fails is read again, tracking it, to name the field.
    serde_json::from_slice(bytes).or_else(|_| parse_naming_the_field(bytes))
}

fn parse_naming_the_field<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        // serde_json reports some type mismatches (a number where an enum is expected) as
        // syntax errors; only input that is not JSON at all is called malformed. This second
        // look happens on the error path only.
        if let Err(not_json) = check_well_formed(bytes) {
            return not_json;
        }
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::BadRequest(format!("invalid request body: {inner}"))
        } else {
            Error::BadRequest(format!("invalid field `{path}`: {inner}"))
        }
    })?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::BadRequest(
                "request body is empty; expected a JSON object".into(),
            ));
        }
        parse(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse(&bytes).map(OptionalJsonBody)
    }
}
