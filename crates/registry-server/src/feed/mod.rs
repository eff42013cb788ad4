//! The change feed: everything that tells a reader what changed, in one place.
//!
//! - The sending side ([`announce`]): after the writer applies a committed batch to the
//!   tables, it hands the batch to [`Feed::announce`], which wakes the blocking queries
//!   of each kind it changed and tells every subscriber (the health checker, event
//!   streams). A node that reloads everything says so with [`Feed::reloaded`].
//! - `X-Registry-Index` on lists, and blocking queries (`?index=N&wait=30s`) on every
//!   list ([`Blocking`]).
//! - The Server-Sent Events stream `GET /registry-svc/events?since=N` ([`Feed::events`]).
//!
//! A blocking query parks on a `watch` of its kind's latest revision: no task, no
//! polling, and a node heartbeat never wakes an instance watcher. The event stream first
//! replays the store's change log after `since`, then follows the writer's
//! announcements; a client whose revision is older than the retained log gets a `reset`
//! event telling it to re-list. Each change event names who made it (`by`), as the
//! store's change log keeps it.
//!
//! The feed sits below the registry's tables: it reads their revisions through
//! [`Revisions`], which the registry implements.

mod announce;

pub(crate) use announce::{Announcement, Committed};

use crate::Result;
use announce::Channels;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::Event;
use axum::response::Response;
use futures_util::stream::{self, Stream};
use rand::Rng;
use registry_store::{op, ChangePage, Kind, Notice, Store};
use registry_types::{limits, query};
use registry_types::{ErrorBody, FieldError};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// What the feed reads of the tables whose changes it announces. They sit in the layer
/// above, which implements this.
pub(crate) trait Revisions: Send + Sync {
    /// Revision of the latest change applied to the tables.
    fn revision(&self) -> u64;
    /// Revision of the latest change to the instances of `slug`.
    fn slug_revision(&self, slug: &str) -> u64;
}

/// The change feed of one daemon.
pub(crate) struct Feed {
    channels: Channels,
    tables: Arc<dyn Revisions>,
    /// The change log, which event streams replay.
    store: Arc<dyn Store>,
    /// Cancelled when the daemon shuts down: ends blocking queries and event streams.
    shutdown: CancellationToken,
    /// Event streams open now.
    subscribers: AtomicUsize,
}

impl Feed {
    /// The feed of `tables` (as loaded from `store`), until `shutdown`.
    pub(crate) fn new(
        tables: Arc<dyn Revisions>,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Feed {
        Feed {
            channels: Channels::new(tables.revision()),
            tables,
            store,
            shutdown,
            subscribers: AtomicUsize::new(0),
        }
    }

    /// Tells watchers and subscribers of a batch the writer has just applied.
    pub(crate) fn announce(&self, batch: &Arc<[Committed]>) {
        self.channels.announce(batch)
    }

    /// Tells watchers and subscribers that the tables were reloaded whole at `revision`.
    pub(crate) fn reloaded(&self, revision: u64) {
        self.channels.reloaded(revision)
    }

    /// Every committed batch from now on. A receiver that lags is told so
    /// (`RecvError::Lagged`) and must re-read the tables.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.channels.subscribe()
    }

    fn watch(&self, kind: Kind) -> watch::Receiver<u64> {
        self.channels.watch(kind)
    }
}

pub(crate) use registry_types::constants::INDEX_HEADER;
/// Wait of a blocking query that gives `index` but no `wait`.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Changes read from the store per page while an event stream catches up.
const CATCH_UP_PAGE: usize = 500;

/// `index` and `wait` of a list request, read as `api::query` declares them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocking {
    pub(crate) index: Option<u64>,
    pub(crate) wait: Option<Duration>,
}

impl Blocking {
    /// Returns once a change of `kind` passes `index`, the wait (capped, with up to 1/16
    /// added at random so many watchers do not all come back at once) ends, or the daemon
    /// shuts down. An index from the future (another store, a reset one) does not block.
    pub(crate) async fn wait(&self, feed: &Feed, kind: Kind) {
        self.wait_until(feed, kind, |index| index).await
    }

    /// As [`Blocking::wait`], for a list of the instances of one slug: only a change of
    /// that slug's instances ends the wait, so watchers of other slugs sleep on.
    pub(crate) async fn wait_for_slug(&self, feed: &Feed, slug: &str) {
        self.wait_until(feed, Kind::Instance, |_| feed.tables.slug_revision(slug))
            .await
    }

    /// Waits until `changed` (given the latest revision of `kind`) passes `index`.
    async fn wait_until(&self, feed: &Feed, kind: Kind, changed: impl Fn(u64) -> u64) {
        let Some(index) = self.index else { return };
        if index > feed.tables.revision() {
            return;
        }
        let wait = self.wait.unwrap_or(DEFAULT_WAIT);
        let wait = wait + wait.mul_f64(rand::thread_rng().gen_range(0.0..1.0 / 16.0));
        let mut latest = feed.watch(kind);
        // Checked on every change of `kind`. The writer wakes watchers only after it has
        // released the tables, so reading them here cannot deadlock with it.
        let passed = |revision: &u64| *revision > index && changed(*revision) > index;
        tokio::select! {
            _ = tokio::time::timeout(wait, latest.wait_for(passed)) => {}
            _ = feed.shutdown.cancelled() => {}
        }
    }
}

/// A revision a caller sends (`index`, `since`): a whole number the stores can hold.
pub(super) fn parse_revision(field: &str, text: &str) -> Result<u64, FieldError> {
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
pub(crate) fn indexed(index: u64, mut response: Response) -> Response {
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
    /// Where the changes come from; the stream ends when the daemon shuts down.
    feed: Arc<Feed>,
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
                Phase::CatchUp => match self
                    .feed
                    .store
                    .changes_since(self.after, CATCH_UP_PAGE)
                    .await
                {
                    Ok(ChangePage { trimmed: true, .. }) => {
                        let current = self.feed.tables.revision();
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
                        tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "an event stream cannot read the change log; ending it"
                        );
                        let data = serde_json::to_string(&ErrorBody {
                            error: crate::Error::from(e).to_string(),
                        })
                        .expect("error bodies serialize");
                        self.phase = Phase::Done;
                        return Some(Event::default().event("error").data(data));
                    }
                },
                Phase::Live => match tokio::select! {
                    received = self.live.recv() => received,
                    _ = self.feed.shutdown.cancelled() => Err(broadcast::error::RecvError::Closed),
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

impl Drop for Follower {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `since` and `kind` of an event-stream request, read as `api::query` declares them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamQuery {
    pub(crate) since: Option<u64>,
    pub(crate) kinds: Vec<Kind>,
}

/// The revision in a `Last-Event-ID` header; none (the stream starts live) when the
/// header is absent or holds no revision number.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_revision("Last-Event-ID", v.trim()).ok())
}

impl Feed {
    /// Every change after `since` (or the `Last-Event-ID` of a reconnecting
    /// EventSource; neither: from now) as Server-Sent Events, of the kinds the query
    /// names (all but tokens if none).
    pub(crate) fn events(
        self: &Arc<Self>,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<impl Stream<Item = Result<Event, Infallible>>> {
        let StreamQuery { since, kinds } = query::parse(query)?;
        let last_event_id = last_event_id(headers);
        // Subscribe before reading anything, so no change falls between log and live.
        let live = self.subscribe();
        let (after, phase) = match since.or(last_event_id) {
            Some(after) => (after, Phase::CatchUp),
            None => (self.tables.revision(), Phase::Live),
        };
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        let follower = Follower {
            feed: self.clone(),
            live,
            selection: Selection { kinds },
            after,
            phase,
            ready: VecDeque::new(),
        };
        Ok(stream::unfold(follower, |mut follower| async move {
            let event = follower.next_event().await?;
            Some((Ok(event), follower))
        }))
    }
}

/// The feed's figures, read at each scrape for `/metrics`.
pub(crate) struct FeedCollector {
    feed: Arc<Feed>,
    /// The revisions a shared store announces; `None` for a store of this daemon's own.
    notices: Option<watch::Receiver<Notice>>,
}

impl FeedCollector {
    pub(crate) fn new(feed: Arc<Feed>) -> FeedCollector {
        let notices = feed.store.notifications();
        FeedCollector { feed, notices }
    }
}

impl std::fmt::Debug for FeedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for FeedCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use crate::metrics::encode_gauge;
        let revision = self.feed.tables.revision();
        encode_gauge(
            &mut encoder,
            "feed_revision",
            "Revision of the latest change applied to this node's tables",
            revision,
        )?;
        encode_gauge(
            &mut encoder,
            "feed_blocking_watchers",
            "Blocking queries waiting for a change now",
            self.feed.channels.watchers() as u64,
        )?;
        encode_gauge(
            &mut encoder,
            "feed_event_subscribers",
            "Event streams open now",
            self.feed.subscribers.load(Ordering::Relaxed) as u64,
        )?;
        if let Some(notices) = &self.notices {
            let announced = notices.borrow().revision;
            encode_gauge(
                &mut encoder,
                "feed_store_revision",
                "Latest revision the shared store announced",
                announced,
            )?;
            encode_gauge(
                &mut encoder,
                "feed_behind_revisions",
                "Revisions the shared store announced that this node has not applied yet",
                announced.saturating_sub(revision),
            )?;
        }
        Ok(())
    }
}
