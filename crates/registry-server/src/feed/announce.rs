//! The sending side of the feed: what a commit announces, and how watchers and
//! subscribers hear it.

use arcstr::ArcStr;
use registry_store::{Change, Kind};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// One committed change, as announced to subscribers (the health checker, the event
/// stream): its revision, the object's JSON (`None`: deleted) and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) revision: u64,
    pub(crate) kind: Kind,
    pub(crate) key: String,
    pub(crate) body: Option<ArcStr>,
    /// The actor's JSON (`Actor::json` of the auth module); `None` for a change logged
    /// before actors were kept.
    pub(crate) by: Option<ArcStr>,
}

impl Committed {
    /// A change as committed at `revision`.
    pub(crate) fn new(revision: u64, change: Change) -> Committed {
        Committed {
            revision,
            kind: change.kind,
            key: change.key,
            body: change.body,
            by: change.by,
        }
    }
}

/// What subscribers hear: a batch of changes, in revision order, or that the tables were
/// reloaded whole (a node too far behind the shared log), so they must re-read.
#[derive(Debug, Clone)]
pub(crate) enum Announcement {
    Changes(Arc<[Committed]>),
    Reloaded,
}

/// How many committed batches a slow subscriber may fall behind before it must re-read.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// The channels of the feed: one broadcast of every batch, and a watch per kind holding
/// the revision of its latest change.
#[derive(Debug)]
pub(super) struct Channels {
    changes: broadcast::Sender<Announcement>,
    kind_revisions: [watch::Sender<u64>; 4],
}

impl Channels {
    /// Channels for tables loaded at `revision`.
    pub(super) fn new(revision: u64) -> Channels {
        Channels {
            changes: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            kind_revisions: Kind::ALL.map(|_| watch::channel(revision).0),
        }
    }

    /// The latest revision of `kind`, to wait on (`wait_for(|r| *r > index)`). A watch
    /// keeps one value, not a queue, so an idle watcher costs one parked future.
    pub(super) fn watch(&self, kind: Kind) -> watch::Receiver<u64> {
        self.kind_revisions[kind.index()].subscribe()
    }

    /// Blocking queries parked now, on every kind.
    pub(super) fn watchers(&self) -> usize {
        self.kind_revisions
            .iter()
            .map(watch::Sender::receiver_count)
            .sum()
    }

    /// Every committed batch from now on. A receiver that lags is told so
    /// (`RecvError::Lagged`) and must re-read the tables.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.changes.subscribe()
    }

    /// Wakes the watchers of `kind` whose index `revision` passes.
    fn wake_watchers(&self, kind: Kind, revision: u64) {
        self.kind_revisions[kind.index()].send_if_modified(|latest| {
            let newer = revision > *latest;
            *latest = (*latest).max(revision);
            newer
        });
    }

    /// Tells watchers and subscribers of a batch already applied to the tables.
    pub(super) fn announce(&self, batch: &Arc<[Committed]>) {
        if batch.is_empty() {
            return;
        }
        for committed in batch.iter() {
            self.wake_watchers(committed.kind, committed.revision);
        }
        // No subscriber is not an error.
        let _ = self.changes.send(Announcement::Changes(batch.clone()));
    }

    /// Tells watchers and subscribers that the tables were reloaded whole at `revision`.
    pub(super) fn reloaded(&self, revision: u64) {
        for kind in Kind::ALL {
            self.wake_watchers(kind, revision);
        }
        let _ = self.changes.send(Announcement::Reloaded);
    }
}
