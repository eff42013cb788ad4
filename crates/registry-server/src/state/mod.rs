//! The in-memory copy of the store that every read is served from.
//!
//! Tables are indexed the ways readers ask (instances by id, slug and URL; tokens by hash)
//! and change only through [`Tables::apply`], which the writer calls with each committed
//! batch, so memory never runs ahead of the disk.

mod commands;
mod writer;

pub use commands::Command;
pub use writer::{Applied, Writer};

use crate::auth::StoredToken;
use crate::store::{Kind, Mutation, Record, Snapshot};
use chrono::{DateTime, Utc};
use registry_types::{Definition, Instance, InstanceFilter, Node};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{broadcast, watch};

/// One committed change, as announced to subscribers (the health checker, the event
/// stream): its revision and the object's JSON (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub revision: u64,
    pub kind: Kind,
    pub key: String,
    pub body: Option<Arc<str>>,
}

/// What subscribers hear: a batch of changes, in revision order, or that the tables were
/// reloaded whole (a node too far behind the shared log), so they must re-read.
#[derive(Debug, Clone)]
pub enum Announcement {
    Changes(Arc<[Committed]>),
    Reloaded,
}

/// How many committed batches a slow subscriber may fall behind before it must re-read.
const SUBSCRIBER_BACKLOG: usize = 4096;

#[derive(Debug, Default)]
pub struct Tables {
    revision: u64,
    /// Revision of the latest change of each kind (indexed by [`Kind::index`]).
    kind_revisions: [u64; 4],
    /// Count of in-memory health updates ([`State::touch_instance`]), which change what
    /// an instance list shows without a new revision.
    touches: u64,
    definitions: BTreeMap<String, Arc<Definition>>,
    instances: BTreeMap<String, Arc<Instance>>,
    instances_by_slug: HashMap<String, BTreeSet<String>>,
    instances_by_url: HashMap<String, BTreeSet<String>>,
    nodes: BTreeMap<String, Arc<Node>>,
    tokens: BTreeMap<String, Arc<StoredToken>>,
    tokens_by_hash: HashMap<String, String>,
}

fn unindex(index: &mut HashMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

impl Tables {
    fn from_snapshot(snapshot: Snapshot) -> Tables {
        let mut tables = Tables::default();
        for record in snapshot.records {
            tables.put(record);
        }
        tables.revision = snapshot.revision;
        tables.kind_revisions = [snapshot.revision; 4];
        tables
    }

    /// Revision of the latest change applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What an instance list shows depends on exactly this: equal versions, equal lists.
    pub fn instances_version(&self) -> (u64, u64) {
        (self.kind_revision(Kind::Instance), self.touches)
    }

    /// Revision of the latest change of `kind` (after a restart, at most the store's
    /// revision: a watcher may wake once for nothing, never miss a change).
    pub fn kind_revision(&self, kind: Kind) -> u64 {
        self.kind_revisions[kind.index()]
    }

    pub fn definitions(&self) -> impl Iterator<Item = &Arc<Definition>> {
        self.definitions.values()
    }

    pub fn definition(&self, id: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(id)
    }

    pub fn instance(&self, id: &str) -> Option<&Arc<Instance>> {
        self.instances.get(id)
    }

    /// Ids of the instances registered at `url`, in id order.
    pub fn instance_ids_by_url(&self, url: &str) -> impl Iterator<Item = &String> {
        self.instances_by_url.get(url).into_iter().flatten()
    }

    /// Instances matching `filter`, in id order; a slug filter reads only that slug's index.
    pub fn instances(&self, filter: &InstanceFilter) -> Vec<Arc<Instance>> {
        let matching = |i: &&Arc<Instance>| filter.matches(i);
        match (&filter.id, &filter.slug) {
            (Some(id), _) => self
                .instances
                .get(id)
                .filter(matching)
                .cloned()
                .into_iter()
                .collect(),
            (None, Some(slug)) => self
                .instances_by_slug
                .get(slug)
                .into_iter()
                .flatten()
                .filter_map(|id| self.instances.get(id))
                .filter(matching)
                .cloned()
                .collect(),
            (None, None) => self.instances.values().filter(matching).cloned().collect(),
        }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.values()
    }

    pub fn node(&self, url: &str) -> Option<&Arc<Node>> {
        self.nodes.get(url)
    }

    pub fn tokens(&self) -> impl Iterator<Item = &Arc<StoredToken>> {
        self.tokens.values()
    }

    pub fn token(&self, id: &str) -> Option<&Arc<StoredToken>> {
        self.tokens.get(id)
    }

    pub fn token_by_hash(&self, hash: &str) -> Option<&Arc<StoredToken>> {
        self.tokens_by_hash
            .get(hash)
            .and_then(|id| self.tokens.get(id))
    }

    /// Applies one committed mutation, keeping every index in step.
    pub fn apply(&mut self, mutation: Mutation, revision: u64) {
        self.revision = self.revision.max(revision);
        let kind_revision = &mut self.kind_revisions[mutation.kind().index()];
        *kind_revision = (*kind_revision).max(revision);
        match mutation {
            Mutation::Put(record) => self.put(record),
            Mutation::Delete { kind, key } => self.delete(kind, &key),
        }
    }

    fn put(&mut self, record: Record) {
        self.delete(record.kind(), record.key());
        match record {
            Record::Definition(d) => {
                self.definitions.insert(d.id.clone(), Arc::new(d));
            }
            Record::Instance(i) => {
                self.instances_by_slug
                    .entry(i.slug.clone())
                    .or_default()
                    .insert(i.id.clone());
                self.instances_by_url
                    .entry(i.url.clone())
                    .or_default()
                    .insert(i.id.clone());
                self.instances.insert(i.id.clone(), Arc::new(i));
            }
            Record::Node(n) => {
                self.nodes.insert(n.url.clone(), Arc::new(n));
            }
            Record::Token(t) => {
                self.tokens_by_hash.insert(t.hash.clone(), t.id.clone());
                self.tokens.insert(t.id.clone(), Arc::new(t));
            }
        }
    }

    fn delete(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::Definition => {
                self.definitions.remove(key);
            }
            Kind::Instance => {
                if let Some(old) = self.instances.remove(key) {
                    unindex(&mut self.instances_by_slug, &old.slug, key);
                    unindex(&mut self.instances_by_url, &old.url, key);
                }
            }
            Kind::Node => {
                self.nodes.remove(key);
            }
            Kind::Token => {
                if let Some(old) = self.tokens.remove(key) {
                    self.tokens_by_hash.remove(&old.hash);
                }
            }
        }
    }
}

/// The shared, lock-protected tables.
#[derive(Debug)]
pub struct State {
    tables: RwLock<Tables>,
    changes: broadcast::Sender<Announcement>,
    kind_revisions: [watch::Sender<u64>; 4],
    /// Instances whose health details or last heartbeat changed in memory only; see
    /// [`State::touch_instance`].
    unflushed: Mutex<HashSet<String>>,
}

impl State {
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let revision = snapshot.revision;
        State {
            tables: RwLock::new(Tables::from_snapshot(snapshot)),
            changes: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            kind_revisions: Kind::ALL.map(|_| watch::channel(revision).0),
            unflushed: Mutex::default(),
        }
    }

    /// The latest revision of `kind`, to wait on (`wait_for(|r| *r > index)`). A watch
    /// keeps one value, not a queue, so an idle watcher costs one parked future.
    pub fn watch(&self, kind: Kind) -> watch::Receiver<u64> {
        self.kind_revisions[kind.index()].subscribe()
    }

    /// Every committed batch from now on. A receiver that lags is told so
    /// (`RecvError::Lagged`) and must re-read the tables.
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.changes.subscribe()
    }

    fn wake_watchers(&self, kind: Kind, revision: u64) {
        self.kind_revisions[kind.index()].send_if_modified(|latest| {
            let newer = revision > *latest;
            *latest = (*latest).max(revision);
            newer
        });
    }

    /// Applies committed changes, in revision order, then tells watchers and
    /// subscribers. Local commits and changes read from a shared store's log both come
    /// through here, so readers cannot tell them apart.
    pub(crate) fn apply_committed(&self, batch: Vec<(Mutation, Committed)>) {
        if batch.is_empty() {
            return;
        }
        let mut announced = Vec::with_capacity(batch.len());
        {
            let mut tables = self.write();
            for (mutation, committed) in batch {
                tables.apply(mutation, committed.revision);
                announced.push(committed);
            }
        }
        for committed in &announced {
            self.wake_watchers(committed.kind, committed.revision);
        }
        // No subscriber is not an error.
        let _ = self.changes.send(Announcement::Changes(announced.into()));
    }

    /// Replaces the tables with a fresh snapshot of the store.
    pub(crate) fn reload(&self, snapshot: Snapshot) {
        let revision = snapshot.revision;
        *self.write() = Tables::from_snapshot(snapshot);
        for kind in Kind::ALL {
            self.wake_watchers(kind, revision);
        }
        let _ = self.changes.send(Announcement::Reloaded);
    }

    /// Records what the last health check or TTL heartbeat saw, in memory only: these
    /// change on every check, and writing each one durably would mean a commit per
    /// check. They reach the store with the next durable change of the instance, or
    /// with [`Command::FlushHealth`]. Ignored if the instance is gone or has moved to
    /// another URL since the check began.
    pub fn touch_instance(
        &self,
        id: &str,
        url: &str,
        details: Option<String>,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> bool {
        let mut tables = self.write();
        let Some(current) = tables.instances.get_mut(id) else {
            return false;
        };
        if current.url != url {
            return false;
        }
        let instance = Arc::make_mut(current);
        if let Some(details) = details {
            instance.details = details;
        }
        if last_heartbeat.is_some() {
            instance.last_heartbeat = instance.last_heartbeat.max(last_heartbeat);
        }
        tables.touches += 1;
        drop(tables);
        self.mark_unflushed(id.to_string());
        true
    }

    /// Puts an instance back on the list to flush (after a failed flush).
    pub fn mark_unflushed(&self, id: String) {
        self.unflushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Ids of the instances touched in memory since the last call.
    pub fn take_unflushed(&self) -> Vec<String> {
        let mut unflushed = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
        unflushed.drain().collect()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half-updated in a way
        // readers care about more than an outage, so keep serving.
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, slug: &str, url: &str) -> Record {
        Record::Instance(Instance {
            id: id.into(),
            slug: slug.into(),
            url: url.into(),
            ..Default::default()
        })
    }

    #[test]
    fn indexes_follow_puts_and_deletes() {
        let mut tables = Tables::default();
        tables.apply(Mutation::Put(instance("a", "s1", "http://127.0.0.1:1")), 1);
        tables.apply(Mutation::Put(instance("b", "s1", "http://127.0.0.1:2")), 2);
        let by_slug = |t: &Tables, slug: &str| {
            t.instances(&InstanceFilter {
                slug: Some(slug.into()),
                ..Default::default()
            })
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
        };
        assert_eq!(by_slug(&tables, "s1"), ["a", "b"]);
        // Moving an instance to another slug and URL moves it in both indexes.
        tables.apply(Mutation::Put(instance("a", "s2", "http://127.0.0.1:3")), 3);
        assert_eq!(by_slug(&tables, "s1"), ["b"]);
        assert_eq!(by_slug(&tables, "s2"), ["a"]);
        assert_eq!(tables.instance_ids_by_url("http://127.0.0.1:1").count(), 0);
        tables.apply(
            Mutation::Delete {
                kind: Kind::Instance,
                key: "b".into(),
            },
            4,
        );
        assert!(by_slug(&tables, "s1").is_empty());
        assert!(!tables.instances_by_slug.contains_key("s1"));
        assert_eq!(tables.revision(), 4);
    }
}
