//! The change feed: `X-Registry-Index` on lists, blocking queries (`?index=N&wait=30s`)
//! and the Server-Sent Events stream `GET /registry-svc/events?since=N`.
//!
//! A blocking query parks on a `watch` of its kind's latest revision: no task, no
//! polling, and a node heartbeat never wakes an instance watcher. The event stream first
//! replays the store's change log after `since`, then follows the writer's
//! announcements; a client whose revision is older than the retained log gets a `reset`
//! event telling it to re-list. Each change event names who made it (`by`), as the
//! store's change log keeps it.

use super::ApiState;
use crate::auth::{Caller, Permission};
use crate::state::{Announcement, Registry, Tables};
use crate::Result;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures_util::stream::{self, Stream};
use rand::Rng;
use registry_store::{op, ChangePage, Kind, Store};
use registry_types::limits;
use registry_types::{ErrorBody, FieldError};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub const INDEX_HEADER: &str = "x-registry-index";
/// Wait of a blocking query that gives `index` but no `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Changes read from the store per page while an event stream catches up.
const CATCH_UP_PAGE: usize = 500;

/// `index` and `wait` of a list request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    pub index: Option<u64>,
    pub wait: Option<Duration>,
}

impl Blocking {
    pub fn from_query(query: &str) -> Result<Blocking> {
        let mut blocking = Blocking::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "index" => blocking.index = Some(parse_revision("index", &value)?),
                "wait" => blocking.wait = Some(limits::BLOCKING_WAIT.parse("wait", &value)?),
                _ => {}
            }
        }
        Ok(blocking)
    }

    /// Returns once a change of `kind` passes `index`, the wait (capped, with up to 1/16
    /// added at random so many watchers do not all come back at once) ends, or the daemon
    /// shuts down. An index from the future (another store, a reset one) does not block.
    pub async fn wait(&self, app: &ApiState, kind: Kind) {
        self.wait_until(app, kind, |_, index| index).await
    }

    /// As [`Blocking::wait`], for a list of the instances of one slug: only a change of
    /// that slug's instances ends the wait, so watchers of other slugs sleep on.
    pub async fn wait_for_slug(&self, app: &ApiState, slug: &str) {
        self.wait_until(app, Kind::Instance, |tables, _| tables.slug_revision(slug))
            .await
    }

    /// Waits until `changed` (given the tables and the latest revision of `kind`) passes
    /// `index`.
    async fn wait_until(&self, app: &ApiState, kind: Kind, changed: impl Fn(&Tables, u64) -> u64) {
        let Some(index) = self.index else { return };
        if index > app.registry.read().revision() {
            return;
        }
        let wait = self.wait.unwrap_or(DEFAULT_WAIT);
        let wait = wait + wait.mul_f64(rand::thread_rng().gen_range(0.0..1.0 / 16.0));
        let mut latest = app.registry.watch(kind);
        // Checked on every change of `kind`. The writer wakes watchers only after it has
        // released the tables, so reading them here cannot deadlock with it.
        let passed =
            |revision: &u64| *revision > index && changed(&app.registry.read(), *revision) > index;
        tokio::select! {
            _ = tokio::time::timeout(wait, latest.wait_for(passed)) => {}
            _ = app.shutdown.cancelled() => {}
        }
    }
}

/// A revision a caller sends (`index`, `since`): a whole number the stores can hold.
fn parse_revision(field: &str, text: &str) -> Result<u64, FieldError> {
    text.parse::<u64>()
        .ok()
        .filter(|revision| *revision <= limits::MAX_REVISION)
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "{text:?} is not a revision: a whole number from 0 to {}",
                    limits::MAX_REVISION
                ),
            )
        })
}

/// `response` with the `X-Registry-Index` header.
pub fn indexed(index: u64, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(index));
    response
}

/// What the event stream sends, as parsed from its query.
struct Selection {
    kinds: Vec<Kind>,
}

impl Selection {
    fn wants(&self, kind: Kind) -> bool {
        // Token changes carry secrets' hashes: never on the feed.
        kind != Kind::Token && (self.kinds.is_empty() || self.kinds.contains(&kind))
    }
}

/// One change as the event stream sends it.
struct Seen<'a> {
    revision: u64,
    kind: Kind,
    key: &'a str,
    /// The actor's JSON, as the store keeps it.
    by: Option<&'a str>,
    body: Option<&'a str>,
}

/// A `change` event. `by` and `body` are JSON text the daemon wrote, put in as they are.
fn change_event(change: &Seen) -> Event {
    let data = format!(
        r#"{{"revision":{},"kind":"{}","op":"{}","id":{},"by":{},"object":{}}}"#,
        change.revision,
        change.kind.as_str(),
        op(change.body.is_some()),
        serde_json::to_string(change.key).expect("strings serialize"),
        change.by.unwrap_or("null"),
        change.body.unwrap_or("null"),
    );
    Event::default()
        .event("change")
        .id(change.revision.to_string())
        .data(data)
}

fn reset_event(asked: u64, current: u64) -> Event {
    let data = serde_json::json!({
        "revision": current,
        "reason": format!(
            "revision {asked} is older than the retained history; re-list, then follow from revision {current}"
        ),
    });
    Event::default()
        .event("reset")
        .id(current.to_string())
        .data(data.to_string())
}

enum Phase {
    /// Reading the store's change log after `after`.
    CatchUp,
    /// Following the writer's announcements.
    Live,
    Done,
}

struct Follower {
    store: Arc<dyn Store>,
    /// The stream ends when the daemon shuts down.
    shutdown: CancellationToken,
    registry: Arc<Registry>,
    live: broadcast::Receiver<Announcement>,
    selection: Selection,
    /// Revision of the last change handled (sent or skipped).
    after: u64,
    phase: Phase,
    ready: VecDeque<Event>,
}

impl Follower {
    fn take(&mut self, change: Seen) {
        if change.revision <= self.after {
            return; // seen in the log already
        }
        self.after = change.revision;
        if self.selection.wants(change.kind) {
            self.ready.push_back(change_event(&change));
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            match self.phase {
                Phase::Done => return None,
                Phase::CatchUp => match self.store.changes_since(self.after, CATCH_UP_PAGE).await {
                    Ok(ChangePage { trimmed: true, .. }) => {
                        let current = self.registry.read().revision();
                        self.ready.push_back(reset_event(self.after, current));
                        self.after = current;
                        self.phase = Phase::Live;
                    }
                    Ok(page) if page.changes.is_empty() => self.phase = Phase::Live,
                    Ok(page) => {
                        for logged in &page.changes {
                            let c = &logged.change;
                            self.take(Seen {
                                revision: logged.revision,
                                kind: c.kind,
                                key: &c.key,
                                by: c.by.as_deref(),
                                body: c.body.as_deref(),
                            });
                        }
                    }
                    Err(e) => {
                        let data = serde_json::to_string(&ErrorBody {
                            error: e.to_string(),
                        })
                        .expect("error bodies serialize");
                        self.phase = Phase::Done;
                        return Some(Event::default().event("error").data(data));
                    }
                },
                Phase::Live => match tokio::select! {
                    received = self.live.recv() => received,
                    _ = self.shutdown.cancelled() => Err(broadcast::error::RecvError::Closed),
                } {
                    Ok(Announcement::Changes(batch)) => {
                        for c in batch.iter() {
                            self.take(Seen {
                                revision: c.revision,
                                kind: c.kind,
                                key: &c.key,
                                by: c.by.as_deref(),
                                body: c.body.as_deref(),
                            });
                        }
                    }
                    // Fell behind the announcements, or the node reloaded everything:
                    // the log has what was missed, or says it is gone (a reset).
                    Ok(Announcement::Reloaded) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.phase = Phase::CatchUp
                    }
                    Err(broadcast::error::RecvError::Closed) => self.phase = Phase::Done,
                },
            }
        }
    }
}

/// `since` and `kind` of an event-stream request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamQuery {
    pub since: Option<u64>,
    pub kinds: Vec<Kind>,
}

impl StreamQuery {
    pub fn from_query(query: &str) -> Result<StreamQuery> {
        let mut stream = StreamQuery::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "since" => stream.since = Some(parse_revision("since", &value)?),
                // An empty value asks for no narrowing, as an empty filter does elsewhere.
                "kind" if value.is_empty() => {}
                "kind" => stream.kinds.push(
                    Kind::parse(&value)
                        .filter(|k| *k != Kind::Token)
                        .ok_or_else(|| {
                            FieldError::new(
                                "kind",
                                format!("{value:?} is not one of definition, instance, node"),
                            )
                        })?,
                ),
                _ => {}
            }
        }
        Ok(stream)
    }
}

/// The revision in a `Last-Event-ID` header; none (the stream starts live) when the
/// header is absent or holds no revision number.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_revision("Last-Event-ID", v.trim()).ok())
}

/// Stream every change after `since` (or the `Last-Event-ID` of a reconnecting
/// EventSource; neither: from now) as Server-Sent Events; `kind` (repeatable) narrows it.
#[utoipa::path(get, path = "/registry-svc/events", tag = "feed",
    params(
        ("since" = Option<u64>, Query, description = "Send the changes after this revision"),
        ("kind" = Option<Vec<String>>, Query, description = "definition, instance or node; repeatable"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `change` events \
            {revision, kind, op, id, by, object} (`by`: who made the change, \
            {tokenId, slug} for a token, {slug: \"registry\", node} for the daemon itself, \
            null for changes older than actors); a `reset` event when `since` is older than the retained history"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn events(
    State(app): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Permission::InstanceView)?;
    let StreamQuery { since, kinds } =
        StreamQuery::from_query(query.as_deref().unwrap_or_default())?;
    let last_event_id = last_event_id(&headers);
    // Subscribe before reading anything, so no change falls between log and live.
    let live = app.registry.subscribe();
    let (after, phase) = match since.or(last_event_id) {
        Some(after) => (after, Phase::CatchUp),
        None => (app.registry.read().revision(), Phase::Live),
    };
    let follower = Follower {
        store: app.store.clone(),
        shutdown: app.shutdown.clone(),
        registry: app.registry.clone(),
        live,
        selection: Selection { kinds },
        after,
        phase,
        ready: VecDeque::new(),
    };
    let events = stream::unfold(follower, |mut follower| async move {
        let event = follower.next_event().await?;
        Some((Ok(event), follower))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
