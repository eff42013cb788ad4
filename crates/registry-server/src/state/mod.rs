//! The in-memory copy of the store that every read is served from.
//!
//! Tables are indexed the ways readers ask (instances by id, slug and URL; tokens by hash)
//! and change only through [`Registry::apply_committed`], which the writer calls with
//! each committed batch (or [`Registry::reload`]), so memory never runs ahead of the disk.

mod audit;
mod commands;
mod gauges;
mod notes;
mod records;
mod stored;
mod writer;

pub(crate) use commands::{Command, Registration};
pub(crate) use gauges::TablesCollector;
pub(crate) use notes::HealthNotes;
pub(crate) use records::{Mutation, Record};
pub(crate) use stored::StoredInstance;
pub(crate) use writer::Writer;

use crate::auth::{StoredToken, TokenTable};
use crate::feed::{Committed, Revisions};
use arcstr::ArcStr;
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use registry_store::{Kind, Snapshot, StoreError};
use registry_types::{Definition, Instance, InstanceFilter, Node};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub(crate) struct Tables {
    revision: u64,
    /// Revision of the latest change of each kind (indexed by [`Kind::index`]).
    kind_revisions: [u64; 4],
    /// Count of in-memory health updates ([`Registry::touch_instance`]), which change what
    /// an instance list shows without a new revision.
    touches: u64,
    definitions: BTreeMap<String, Arc<Definition>>,
    /// Instances by id. The indexes share each id's one allocation, and an [`ArcStr`]
    /// is one pointer wide: with many instances, copies of ids and wide pointers to them
    /// would be a good part of the daemon's memory.
    instances: BTreeMap<ArcStr, StoredInstance>,
    instances_by_slug: HashMap<Box<str>, BTreeSet<ArcStr>>,
    /// The slugs with capitals, by their lower-case form, for readers that ignore case
    /// (DNS names). Most slugs are lower case and cost nothing here.
    capitalized_slugs: HashMap<Box<str>, Vec<Box<str>>>,
    /// `(hash of the URL, id)` pairs, found by the hash. Not the URL itself, which would
    /// be one more allocation per instance: readers check the URL of what they find, so
    /// a collision costs nothing but a look.
    instances_by_url: HashTable<(u64, ArcStr)>,
    url_hasher: RandomState,
    /// Revision of the latest change to each slug's instances (an instance added,
    /// changed, removed, or moved in or out), so a blocking query on a slug wakes for
    /// that slug only. Slugs are never dropped from it: a slug's last change must be
    /// remembered after its last instance is gone.
    slug_revisions: HashMap<Box<str>, u64>,
    /// Revision of the snapshot the tables were loaded from: no slug's latest change is
    /// known to be older.
    loaded_at: u64,
    nodes: BTreeMap<String, Arc<Node>>,
    tokens: BTreeMap<String, Arc<StoredToken>>,
    tokens_by_hash: HashMap<String, String>,
    /// Where the store's notes written after the snapshot start.
    notes_cursor: u64,
}

/// The range of keys after `after` (all keys, if `None`).
fn after_bound(after: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    match after {
        Some(after) => (Bound::Excluded(after), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

impl Tables {
    fn from_snapshot(snapshot: Snapshot) -> Result<Tables, StoreError> {
        let mut tables = Tables::default();
        let mut instances = Vec::new();
        let mut notes: HashMap<&str, notes::HealthNote> = snapshot
            .notes()
            .filter(|note| note.kind == Kind::Instance)
            .filter_map(|note| Some((note.key, notes::HealthNote::decode(note.body)?)))
            .collect();
        for object in snapshot.objects() {
            // One object the daemon cannot read (written by hand, or by a version with
            // other rules) is left out and reported, instead of keeping every other
            // object from being served.
            let record = match Record::from_stored(object) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(
                        error = &e as &dyn std::error::Error,
                        "left out of the tables: the stored object does not decode"
                    );
                    continue;
                }
            };
            report_if_refused_today(&record);
            match record {
                Record::Instance(mut i) => {
                    if let Some(note) = notes.remove(i.id.as_str()) {
                        note.apply_to(&mut i);
                    }
                    let id = ArcStr::from(i.id.as_str());
                    tables.index_instance(&id, &i);
                    // Serialized anew, so a body an older version stored reads back in
                    // today's form.
                    instances.push((id, StoredInstance::new(&i)));
                }
                other => tables.put(other, None),
            }
        }
        // Built in one go, the tree's nodes are full; inserted in id order one by one,
        // each would be left half empty.
        tables.instances = instances.into_iter().collect();
        tables.revision = snapshot.revision;
        tables.kind_revisions = [snapshot.revision; 4];
        tables.loaded_at = snapshot.revision;
        tables.notes_cursor = snapshot.notes_cursor;
        Ok(tables)
    }

    /// Where the store's notes written after the tables were loaded start.
    pub(crate) fn notes_cursor(&self) -> u64 {
        self.notes_cursor
    }

    /// Revision of the latest change applied.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// What an instance list shows depends on exactly this: equal versions, equal lists.
    pub(crate) fn instances_version(&self) -> (u64, u64) {
        (self.kind_revision(Kind::Instance), self.touches)
    }

    /// Revision of the latest change of `kind` (after a restart, at most the store's
    /// revision: a watcher may wake once for nothing, never miss a change).
    pub(crate) fn kind_revision(&self, kind: Kind) -> u64 {
        self.kind_revisions[kind.index()]
    }

    /// Definitions whose ids sort after `after` (all, if `None`), in id order.
    pub(crate) fn definitions<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Definition>> + 'a {
        self.definitions
            .range::<str, _>(after_bound(after))
            .map(|(_, d)| d)
    }

    pub(crate) fn definition(&self, id: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(id)
    }

    /// The instance `id`, decoded.
    pub(crate) fn instance(&self, id: &str) -> Option<Instance> {
        self.instances.get(id).map(StoredInstance::decode)
    }

    pub(crate) fn has_instance(&self, id: &str) -> bool {
        self.instances.contains_key(id)
    }

    /// Ids of the instances that may be registered at `url` (callers check the URL),
    /// in no particular order.
    pub(crate) fn instance_ids_by_url(&self, url: &str) -> impl Iterator<Item = &str> {
        let hash = self.url_hasher.hash_one(url);
        self.instances_by_url
            .iter_hash(hash)
            .filter(move |(h, _)| *h == hash)
            .map(|(_, id)| id.as_str())
    }

    /// Instances matching `filter` whose ids sort after `after` (all, if `None`), in id
    /// order; a slug filter reads only that slug's index. Lazy, so a page of a long
    /// list costs the page, not the list.
    pub(crate) fn instances<'a>(
        &'a self,
        filter: &'a InstanceFilter,
        after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a StoredInstance)> + 'a> {
        let range = after_bound(after);
        let matching = move |(_, i): &(&str, &StoredInstance)| i.matches(filter);
        match (&filter.id, &filter.slug) {
            (Some(id), _) => Box::new(
                self.instances
                    .get_key_value(id.as_str())
                    .map(|(id, i)| (&**id, i))
                    .filter(move |(id, _)| after.is_none_or(|after| *id > after))
                    .filter(move |(_, i)| filter.matches(&i.decode()))
                    .into_iter(),
            ),
            (None, Some(slug)) => Box::new(
                self.instances_by_slug
                    .get(slug.as_str())
                    .into_iter()
                    .flat_map(move |ids| ids.range::<str, _>(range))
                    .filter_map(|id| self.instances.get(id).map(|i| (&**id, i)))
                    .filter(matching),
            ),
            (None, None) => Box::new(
                self.instances
                    .range::<str, _>(range)
                    .map(|(id, i)| (&**id, i))
                    .filter(matching),
            ),
        }
    }

    /// Instances of every slug equal to `folded` (lower case) when case is ignored: the
    /// slug itself and its spellings with capitals.
    pub(crate) fn instances_of_slug_ignoring_case<'a>(
        &'a self,
        folded: &'a str,
    ) -> impl Iterator<Item = &'a StoredInstance> + 'a {
        let capitalized = self.capitalized_slugs.get(folded).into_iter().flatten();
        std::iter::once(folded)
            .chain(capitalized.map(|slug| &**slug))
            .filter_map(|slug| self.instances_by_slug.get(slug))
            .flatten()
            .filter_map(|id| self.instances.get(id))
    }

    /// Revision of the latest change to the instances of `slug` (after a restart, at
    /// least the loaded revision: a watcher may wake once for nothing, never miss one).
    pub(crate) fn slug_revision(&self, slug: &str) -> u64 {
        self.slug_revisions
            .get(slug)
            .copied()
            .unwrap_or(0)
            .max(self.loaded_at)
    }

    fn slug_changed(&mut self, slug: &str) {
        let revision = self.revision;
        match self.slug_revisions.get_mut(slug) {
            Some(latest) => *latest = revision,
            None => {
                self.slug_revisions.insert(slug.into(), revision);
            }
        }
    }

    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.values()
    }

    pub(crate) fn node(&self, url: &str) -> Option<&Arc<Node>> {
        self.nodes.get(url)
    }

    pub(crate) fn tokens(&self) -> impl Iterator<Item = &Arc<StoredToken>> {
        self.tokens.values()
    }

    pub(crate) fn token(&self, id: &str) -> Option<&Arc<StoredToken>> {
        self.tokens.get(id)
    }

    pub(crate) fn token_by_hash(&self, hash: &str) -> Option<&Arc<StoredToken>> {
        self.tokens_by_hash
            .get(hash)
            .and_then(|id| self.tokens.get(id))
    }

    /// Why a backup may not be restored into these tables, if it may not. A restore needs
    /// an empty registry: no definitions, no instances, and no tokens but the one admin
    /// token of the account `admin` that a daemon makes for itself on first start. Nodes
    /// do not count: every daemon registers its own.
    pub(crate) fn restore_obstacle(&self) -> Option<String> {
        let bootstrap_only = match self.tokens.values().collect::<Vec<_>>().as_slice() {
            [] => true,
            [only] => only.slug == "admin" && only.role == registry_types::Role::Admin,
            _ => false,
        };
        if self.definitions.is_empty() && self.instances.is_empty() && bootstrap_only {
            return None;
        }
        Some(format!(
            "the registry is not empty: it holds {} definitions, {} instances and {} tokens; \
             a backup is restored only into a registry with no definitions, no instances and \
             no token but its first admin token",
            self.definitions.len(),
            self.instances.len(),
            self.tokens.len()
        ))
    }

    /// Applies one committed mutation, keeping every index in step.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, mutation: Mutation, revision: u64) {
        self.apply_committed(mutation, None, revision)
    }

    /// As [`Tables::apply`], given the JSON the store committed for a put (`body`),
    /// which an instance keeps instead of being serialized once more.
    fn apply_committed(&mut self, mutation: Mutation, body: Option<&ArcStr>, revision: u64) {
        self.revision = self.revision.max(revision);
        let kind_revision = &mut self.kind_revisions[mutation.kind().index()];
        *kind_revision = (*kind_revision).max(revision);
        match mutation {
            Mutation::Put(record) => self.put(record, body),
            Mutation::Delete { kind, key } => self.delete(kind, &key),
        }
    }

    fn index_instance(&mut self, id: &ArcStr, instance: &Instance) {
        // Looked up first, so that adding to an existing slug allocates nothing.
        match self.instances_by_slug.get_mut(instance.slug.as_str()) {
            Some(ids) => ids.insert(id.clone()),
            None => {
                let slug = instance.slug.as_str();
                let folded = slug.to_ascii_lowercase();
                if folded != slug {
                    let spellings = self.capitalized_slugs.entry(folded.into()).or_default();
                    spellings.push(slug.into());
                }
                self.instances_by_slug
                    .entry(slug.into())
                    .or_default()
                    .insert(id.clone())
            }
        };
        let hash = self.url_hasher.hash_one(&instance.url);
        self.instances_by_url
            .insert_unique(hash, (hash, id.clone()), |(h, _)| *h);
    }

    fn unindex_instance(&mut self, id: &str, instance: &Instance) {
        let slug = instance.slug.as_str();
        if let Some(ids) = self.instances_by_slug.get_mut(slug) {
            ids.remove(id);
            if ids.is_empty() {
                self.instances_by_slug.remove(slug);
                let folded = slug.to_ascii_lowercase();
                if let Some(spellings) = self.capitalized_slugs.get_mut(folded.as_str()) {
                    spellings.retain(|s| **s != *slug);
                    if spellings.is_empty() {
                        self.capitalized_slugs.remove(folded.as_str());
                    }
                }
            }
        }
        let hash = self.url_hasher.hash_one(&instance.url);
        if let Ok(entry) = self
            .instances_by_url
            .find_entry(hash, |(h, i)| *h == hash && i == id)
        {
            entry.remove();
        }
    }

    fn put(&mut self, record: Record, body: Option<&ArcStr>) {
        self.delete(record.kind(), record.key());
        match record {
            Record::Definition(d) => {
                self.definitions.insert(d.id.clone(), Arc::new(d));
            }
            Record::Instance(i) => {
                let id = ArcStr::from(i.id.as_str());
                self.slug_changed(&i.slug);
                self.index_instance(&id, &i);
                let stored = match body {
                    Some(json) => StoredInstance::with_json(&i, json.clone()),
                    None => StoredInstance::new(&i),
                };
                self.instances.insert(id, stored);
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
                    let old = old.decode();
                    self.slug_changed(&old.slug);
                    self.unindex_instance(key, &old);
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

/// The in-memory registry: the tables every read is served from, behind their lock.
#[derive(Debug)]
pub(crate) struct Registry {
    tables: RwLock<Tables>,
    /// Instances whose health details or last heartbeat changed in memory only; see
    /// [`Registry::touch_instance`].
    unnoted: Mutex<HashSet<String>>,
}

impl Registry {
    /// The tables of a loaded store; fails on an object that does not decode.
    pub(crate) fn from_snapshot(snapshot: Snapshot) -> Result<Self, StoreError> {
        Ok(Registry {
            tables: RwLock::new(Tables::from_snapshot(snapshot)?),
            unnoted: Mutex::default(),
        })
    }

    /// Applies committed changes, in revision order, and returns them for the feed to
    /// announce. Local commits and changes read from a shared store's log both come
    /// through here, so readers cannot tell them apart.
    pub(crate) fn apply_committed(&self, batch: Vec<(Mutation, Committed)>) -> Arc<[Committed]> {
        if batch.is_empty() {
            return Arc::new([]);
        }
        let mut applied = Vec::with_capacity(batch.len());
        let mut tables = self.write();
        for (mutation, committed) in batch {
            tables.apply_committed(mutation, committed.body.as_ref(), committed.revision);
            applied.push(committed);
        }
        applied.into()
    }

    /// Replaces the tables with a fresh snapshot of the store; returns its revision.
    pub(crate) fn reload(&self, snapshot: Snapshot) -> Result<u64, StoreError> {
        let revision = snapshot.revision;
        // Built before taking the lock: readers keep the old tables meanwhile.
        let tables = Tables::from_snapshot(snapshot)?;
        *self.write() = tables;
        Ok(revision)
    }

    /// Records what the last health check or TTL heartbeat saw, in memory only: these
    /// change on every check, and writing each one as a change would mean a commit, a
    /// new revision and a woken watcher per check. They are written as notes (see
    /// [`notes`]) within [`notes::NOTES_EVERY`], and with the next change of the instance.
    /// Ignored if the instance is gone or has moved to another URL since the check began.
    pub(crate) fn touch_instance(
        &self,
        id: &str,
        url: &str,
        details: Option<String>,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> bool {
        let found = self.touch(id, |instance| {
            if instance.url != url {
                return None;
            }
            let mut changed = false;
            if let Some(details) = details.filter(|d| *d != instance.details) {
                instance.details = details;
                changed = true;
            }
            let latest = instance.last_heartbeat.max(last_heartbeat);
            if latest != instance.last_heartbeat {
                instance.last_heartbeat = latest;
                changed = true;
            }
            Some(changed)
        });
        if found == Some(true) {
            self.mark_unnoted(id.to_string());
        }
        found.is_some()
    }

    /// Applies what another daemon's check saw (its note), if the instance still has the
    /// URL and status the note was written with.
    fn apply_note(&self, id: &str, note: notes::HealthNote) {
        self.touch(id, |instance| note.apply_to(instance));
    }

    /// Changes instance `id` in memory with `change`, which says whether it applies
    /// (`None`: left alone) and whether it changed anything; lists made before a change
    /// are stale after it. Returns what `change` said, `None` for an unknown instance.
    fn touch(&self, id: &str, change: impl FnOnce(&mut Instance) -> Option<bool>) -> Option<bool> {
        let mut tables = self.write();
        let current = tables.instances.get_mut(id)?;
        let mut instance = current.decode();
        let changed = change(&mut instance)?;
        if changed {
            *current = StoredInstance::new(&instance);
            tables.touches += 1;
        }
        Some(changed)
    }

    /// Puts an instance back on the list to note (after a failed write of notes).
    pub(crate) fn mark_unnoted(&self, id: String) {
        self.unnoted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Ids of the instances touched in memory since the last call.
    pub(crate) fn take_unnoted(&self) -> Vec<String> {
        let mut unnoted = self.unnoted.lock().unwrap_or_else(|p| p.into_inner());
        unnoted.drain().collect()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half-updated in a way
        // readers care about more than an outage, so keep serving.
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Auth looks tokens up through this, as it sits below the tables.
impl TokenTable for Registry {
    fn tokens_revision(&self) -> u64 {
        self.read().kind_revision(Kind::Token)
    }

    fn token_by_hash(&self, hash: &str) -> (u64, Option<Arc<StoredToken>>) {
        let tables = self.read();
        let token = tables.token_by_hash(hash).cloned();
        (tables.kind_revision(Kind::Token), token)
    }
}

/// The feed reads the revisions of the tables through this, as it sits below them.
impl Revisions for Registry {
    fn revision(&self) -> u64 {
        self.read().revision()
    }

    fn slug_revision(&self, slug: &str) -> u64 {
        self.read().slug_revision(slug)
    }
}

/// Logs a stored object that today's rules would refuse. It is served as it is; the
/// health checks read its durations brought into today's ranges.
fn report_if_refused_today(record: &Record) {
    let problem = match record {
        Record::Instance(i) => i.check().err(),
        Record::Definition(d) => registry_types::DefinitionInput::from(d.clone())
            .into_definition()
            .err(),
        Record::Node(_) | Record::Token(_) => None,
    };
    if let Some(problem) = problem {
        tracing::warn!(kind = record.kind().as_str(), key = record.key(), %problem, "a stored object breaks today's rules; serving it as it is");
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
            t.instances(
                &InstanceFilter {
                    slug: Some(slug.into()),
                    ..Default::default()
                },
                None,
            )
            .map(|(id, _)| id.to_string())
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
        // Ignoring case finds every spelling of a slug, and forgets one with its last
        // instance.
        tables.apply(Mutation::Put(instance("c", "Web", "http://127.0.0.1:4")), 5);
        tables.apply(Mutation::Put(instance("d", "web", "http://127.0.0.1:5")), 6);
        let folded = |t: &Tables| t.instances_of_slug_ignoring_case("web").count();
        assert_eq!(folded(&tables), 2);
        tables.apply(
            Mutation::Delete {
                kind: Kind::Instance,
                key: "c".into(),
            },
            7,
        );
        assert_eq!(folded(&tables), 1);
        assert!(tables.capitalized_slugs.is_empty());
        assert_eq!(tables.revision(), 7);
    }
}
