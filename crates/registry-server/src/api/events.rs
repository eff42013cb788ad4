//! `GET /events`: the change feed as Server-Sent Events (the stream is made by
//! [`crate::feed`]).

use super::ApiState;
use crate::auth::{Caller, Permission};
use crate::feed::StreamQuery;
use crate::Result;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use registry_types::ErrorBody;
use std::convert::Infallible;

/// Stream every change after `since` (or the `Last-Event-ID` of a reconnecting
/// EventSource; neither: from now) as Server-Sent Events; `kind` (repeatable) narrows it.
#[utoipa::path(get, path = "/registry-svc/events", operation_id = "streamEvents", tag = "feed",
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream: `change` events \
            {revision, kind, op, id, by, object} (`by`: who made the change, \
            {tokenId, slug} for a token, {slug: \"registry\", node} for the daemon itself, \
            null for changes older than actors); a `reset` event when `since` is older than the retained history"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn events(
    State(app): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Permission::InstanceView)?;
    let events = app
        .feed
        .events(query.as_deref().unwrap_or_default(), &headers)?;
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
