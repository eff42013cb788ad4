//! Durable storage of Registry Svc behind one interface: the bottom layer of the daemon.
//!
//! The store is the truth; the daemon's in-memory registry is a copy of it. A store only
//! needs three things: load everything at start, commit a batch of changes atomically and
//! durably (assigning each a store-wide increasing revision), and say whether it is
//! reachable. Objects travel as opaque JSON text under a [`Kind`] and a key, so a store
//! never knows the shape of a definition or an instance (that vocabulary belongs to the
//! layer above); so does the actor of each change (who made it), which the change log
//! keeps beside the change.
//!
//! The schema, its migrations and the rules of the change log are in `rules.rs`, once for
//! both backends.
//!
//! Two implementations: [`SqliteStore`], one file for one daemon, and [`PostgresStore`],
//! one database shared by several daemons.
//!
//! A commit may name what it was planned on (a [`Basis`]): it then goes through only if no
//! other writer has since changed what it read, so writers sharing a store conflict only
//! over the objects they both touch.
//!
//! ```no_run
//! # async fn example() -> Result<(), registry_store::StoreError> {
//! use registry_store::{Change, Kind, SqliteStore, Store};
//!
//! let store = SqliteStore::open(std::path::Path::new("registry-data/registry.db"))?;
//! let put = Change {
//!     kind: Kind::Definition,
//!     key: "user-svc".into(),
//!     body: Some(r#"{"id":"user-svc"}"#.into()),
//!     claim: None,
//!     by: None,
//! };
//! let revisions = store.commit(vec![put], None).await?;
//! let page = store.changes_since(revisions[0] - 1, 100).await?;
//! assert_eq!(page.changes[0].revision, revisions[0]);
//! # Ok(())
//! # }
//! ```

pub mod postgres;
mod rules;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// The four kinds of stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A service definition, keyed by its id.
    Definition,
    /// A service instance, keyed by its id.
    Instance,
    /// A node (a daemon), keyed by its URL.
    Node,
    /// An API token (its hash, never its secret), keyed by its id.
    Token,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub const ALL: [Kind; 4] = [Kind::Definition, Kind::Instance, Kind::Node, Kind::Token];

    /// Position in [`Kind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind as stores write it: `definition`, `instance`, `node` or `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Definition => "definition",
            Kind::Instance => "instance",
            Kind::Node => "node",
            Kind::Token => "token",
        }
    }

    /// The kind [`Kind::as_str`] writes as `text`, if any.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// A kind as a store wrote it; `what` and `key` say where, should it be unknown.
    pub(crate) fn parse_stored(
        text: &str,
        what: &'static str,
        key: &str,
    ) -> Result<Kind, StoreError> {
        Kind::parse(text)
            .ok_or_else(|| StoreError::corrupt(what, key, format!("unknown kind {text:?}")))
    }
}

/// A mutation as a store sees it: kind, key and the JSON body (`None` deletes). The body
/// is shared with the change feed, which announces it after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The kind of the object changed.
    pub kind: Kind,
    /// Its key (an id, or a node's URL).
    pub key: String,
    /// The object's JSON after a put; `None` for a delete.
    pub body: Option<arcstr::ArcStr>,
    /// A value the object takes that at most one object should hold (an instance's URL),
    /// for conflicts: a plan that looked the value up ([`Read::Claim`]) conflicts with a
    /// later change that claims it.
    pub claim: Option<arcstr::ArcStr>,
    /// Who made the change, as JSON written by the daemon, kept in the change log only;
    /// `None` for changes logged before actors were kept.
    pub by: Option<arcstr::ArcStr>,
}

impl Change {
    /// `"put"` or `"delete"`, as the change log writes it.
    pub fn op(&self) -> &'static str {
        op(self.body.is_some())
    }
}

/// `"put"` for a change with a body, else `"delete"`.
pub fn op(has_body: bool) -> &'static str {
    if has_body {
        "put"
    } else {
        "delete"
    }
}

/// Word from a shared store that other daemons may have committed: the highest revision
/// announced, and how many times the announcements were interrupted (after which
/// anything may have been missed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notice {
    /// The highest revision announced.
    pub revision: u64,
    /// How many times the announcements were interrupted.
    pub interruptions: u64,
}

/// A change read back from the store's change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    /// The revision the change was committed at.
    pub revision: u64,
    /// The change.
    pub change: Change,
}

impl LoggedChange {
    /// A change-log row as a store reads it: the kind as written, body, claim and actor
    /// as text.
    pub(crate) fn from_row(
        revision: u64,
        kind: &str,
        key: String,
        [body, claim, by]: [Option<String>; 3],
    ) -> Result<LoggedChange, StoreError> {
        Ok(LoggedChange {
            revision,
            change: Change {
                kind: Kind::parse_stored(kind, "change", &revision.to_string())?,
                key,
                body: body.map(Into::into),
                claim: claim.map(Into::into),
                by: by.map(Into::into),
            },
        })
    }
}

/// A page of the change log.
#[derive(Debug, Default)]
pub struct ChangePage {
    /// Changes after the revision asked for, oldest first.
    pub changes: Vec<LoggedChange>,
    /// Whether changes right after the revision asked for were already trimmed from the
    /// log, so a reader cannot catch up from it and must re-read everything.
    pub trimmed: bool,
}

/// Something a plan read from the tables, and so relies on not having changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Read {
    /// One object, present or not.
    Object(Kind, String),
    /// Every object of a kind (such as "is there any token at all").
    Kind(Kind),
    /// Which object, if any, holds a claimed value (see [`Change::claim`]).
    Claim(String),
}

/// What a batch of changes was planned on: the revision of the tables it was worked out
/// from, and what of them it read. Its own changes count as read too: their objects and
/// their claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Basis {
    /// The store revision the tables were at.
    pub revision: u64,
    /// What the plan read.
    pub reads: Vec<Read>,
}

/// Soft state about an object, such as what the last health check of an instance saw:
/// kept durably beside the object, but outside the change log, so it takes no revision
/// and announces no change. Each object has at most one note, the latest; a note about
/// an object that is not stored is dropped, and so is an object's note when the object is
/// deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The kind of the object it is about.
    pub kind: Kind,
    /// The object's key.
    pub key: String,
    /// What it says, as JSON written by the daemon.
    pub body: arcstr::ArcStr,
}

/// Notes written through other handles of a shared store, oldest first.
#[derive(Debug, Default)]
pub struct NotePage {
    /// The notes.
    pub notes: Vec<Note>,
    /// Where to read on from: pass it as `after` next time.
    pub cursor: u64,
}

/// Everything in the store, as loaded at start: the stored JSON of every object, decoded
/// one at a time as the tables are built, so that 100,000 instances are never held
/// decoded all at once. The text of all objects sits in one buffer: one large
/// allocation, handed back to the system whole when the snapshot is dropped, where
/// 100,000 small ones would leave the allocator's heap riddled with holes for good.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Revision of the latest committed change; 0 for an empty store.
    pub revision: u64,
    /// Where notes written after this snapshot start: the `after` of the first
    /// [`Store::notes_since`].
    pub notes_cursor: u64,
    objects: Vec<(Kind, Range<usize>, Range<usize>)>,
    notes: Vec<(Kind, Range<usize>, Range<usize>)>,
    text: String,
}

/// One object as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct StoredObject<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its key.
    pub key: &'a str,
    /// Its JSON, as committed.
    pub body: &'a str,
}

impl Snapshot {
    /// An empty snapshot of a store at `revision`.
    pub fn new(revision: u64) -> Self {
        Snapshot {
            revision,
            ..Default::default()
        }
    }

    /// Adds one object, as a store reads it.
    pub fn push(&mut self, kind: Kind, key: &str, body: &str) {
        let object = self.append(kind, key, body);
        self.objects.push(object);
    }

    /// Adds one note, as a store reads it.
    pub fn push_note(&mut self, kind: Kind, key: &str, body: &str) {
        let note = self.append(kind, key, body);
        self.notes.push(note);
    }

    fn append(&mut self, kind: Kind, key: &str, body: &str) -> (Kind, Range<usize>, Range<usize>) {
        let mut append = |part: &str| {
            let start = self.text.len();
            self.text.push_str(part);
            start..self.text.len()
        };
        (kind, append(key), append(body))
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object, in the order the store read them.
    pub fn objects(&self) -> impl Iterator<Item = StoredObject<'_>> {
        self.read(&self.objects)
    }

    /// Every note, each about an object of the snapshot (its `body` is the note's).
    pub fn notes(&self) -> impl Iterator<Item = StoredObject<'_>> {
        self.read(&self.notes)
    }

    fn read<'a>(
        &'a self,
        entries: &'a [(Kind, Range<usize>, Range<usize>)],
    ) -> impl Iterator<Item = StoredObject<'a>> + 'a {
        entries.iter().map(|(kind, key, body)| StoredObject {
            kind: *kind,
            key: &self.text[key.clone()],
            body: &self.text[body.clone()],
        })
    }
}

/// Why a store error happened: the database's own error (or the sentence that stands for
/// it), kept so that the daemon can log the whole chain. Shared, so an error handed to
/// every request of a failed batch costs a reference count.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store. Each error keeps its cause as its `source`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another daemon changed what the changes were planned on, after their basis.
    #[error(
        "another writer changed what this write relied on (the store is at revision {latest})"
    )]
    Stale {
        /// The store's latest revision.
        latest: u64,
    },
    /// The store cannot be reached, or failed to do what was asked; nothing was changed.
    #[error("store unavailable: {context}")]
    Unavailable {
        /// Which store, and what it was doing.
        context: String,
        /// Why, when the store said.
        #[source]
        source: Option<Cause>,
    },
    /// A stored value does not read back.
    #[error("stored {kind} {key:?} cannot be read")]
    Corrupt {
        /// What was stored: a kind of object, or a table of the store.
        kind: &'static str,
        /// Its key.
        key: String,
        /// Why it does not read.
        #[source]
        source: Cause,
    },
}

impl StoreError {
    /// The store is unavailable; `context` says which store and what happened.
    pub fn unavailable(context: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// The store is unavailable because of `source`; `context` says which store and
    /// what it was doing.
    pub fn unavailable_because(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// The stored `kind` (or table) `key` does not read back, because of `source`.
    pub fn corrupt(
        kind: &'static str,
        key: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Corrupt {
            kind,
            key: key.into(),
            source: Arc::from(source.into()),
        }
    }
}

/// What the daemon asks of a store; see the crate's documentation.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads every stored object and the latest revision.
    async fn load(&self) -> Result<Snapshot, StoreError>;

    /// Applies `changes` in order, in one transaction, and returns only once they are
    /// durable. Each change gets the next store-wide revision; the revisions are returned
    /// in the same order. On error nothing was applied. With a `basis`, the commit
    /// happens only if no change logged after its revision touched what it read (an
    /// object, a whole kind or a claim), else it fails with [`StoreError::Stale`]: the
    /// changes were worked out from tables that another daemon has since changed, and
    /// writing them could undo its work. Changes to other objects do not count.
    async fn commit(
        &self,
        changes: Vec<Change>,
        basis: Option<Basis>,
    ) -> Result<Vec<u64>, StoreError>;

    /// Replaces the notes of these objects, durably, in one transaction; notes about
    /// objects the store does not hold are dropped.
    async fn put_notes(&self, notes: Vec<Note>) -> Result<(), StoreError>;

    /// Up to `limit` notes written through other handles of the store (other daemons)
    /// after `after` (a [`NotePage::cursor`] or [`Snapshot::notes_cursor`]), oldest first.
    /// A note rewritten meanwhile is read once, as it is now.
    async fn notes_since(&self, after: u64, limit: usize) -> Result<NotePage, StoreError>;

    /// Up to `limit` logged changes with a revision above `after`, oldest first.
    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError>;

    /// Notices of commits made through other handles on the same store (other daemons),
    /// for stores that can be shared; `None` for a store only this daemon writes.
    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<Notice>> {
        None
    }

    /// Whether the store answers at all (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything committed so far easy to open again (e.g. checkpoints a log).
    async fn close(&self) -> Result<(), StoreError>;
}

/// A database URL safe to print: any password, in the credentials or in a `password=`
/// query parameter, replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The credentials end at the last `@`: a password may hold an unescaped `@`, `:` or
    // `/`, and an odd database name garbled in a message is better than a leaked secret.
    let rest = match rest.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_are_never_printed() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db:5432/registry"),
            "postgres://app:***@db:5432/registry"
        );
        assert_eq!(
            redact_password("postgres://app:p@ss:w@db/registry?sslmode=require"),
            "postgres://app:***@db/registry?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://app@db/registry"),
            "postgres://app@db/registry"
        );
        assert_eq!(
            redact_password("postgres://app:pa/ss@db/registry"),
            "postgres://app:***@db/registry"
        );
        assert_eq!(
            redact_password("postgres://db/registry?user=app&password=s3cret&sslmode=require"),
            "postgres://db/registry?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_password(
                "postgres://app:s3cret@db1:5432,db2:5433/registry?target_session_attrs=read-write"
            ),
            "postgres://app:***@db1:5432,db2:5433/registry?target_session_attrs=read-write"
        );
        assert_eq!(
            redact_password("postgres://db/r?host=db1,db2&port=1,2&password=s3cret"),
            "postgres://db/r?host=db1,db2&port=1,2&password=***"
        );
        assert_eq!(redact_password("not a url"), "not a url");
    }
}
