//! A SQLite store wrapped so a test can watch (or break) its commits and pings.

use super::{config, Daemon};
use async_trait::async_trait;
use registry_store::{
    Basis, Change, ChangePage, Note, NotePage, Snapshot, SqliteStore, Store, StoreError,
};
use std::sync::Arc;

/// What a test store does before each commit and ping; the default does nothing.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    async fn before_commit(&self, _changes: &[Change]) -> Result<(), StoreError> {
        Ok(())
    }
    fn before_ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn before_notes(&self, _notes: &[Note]) {}
}

/// A SQLite store that runs `hooks` before it commits or pings.
pub struct Hooked<H> {
    pub inner: SqliteStore,
    pub hooks: H,
}

impl<H: Hooks> Hooked<H> {
    /// Starts a daemon on a fresh hooked store in a new data dir; returns both. The store
    /// is the file a plain daemon on that dir opens, so the dir can be restarted without
    /// the hooks.
    pub async fn start_daemon(hooks: H) -> (Daemon, Arc<Self>) {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(&dir.path().join("registry.db")).unwrap();
        let store = Arc::new(Hooked { inner, hooks });
        let config = config(dir.path());
        let d = Daemon::start_with_store(config, dir, store.clone()).await;
        (d, store)
    }
}

#[async_trait]
impl<H: Hooks> Store for Hooked<H> {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
    async fn commit(
        &self,
        changes: Vec<Change>,
        basis: Option<Basis>,
    ) -> Result<Vec<u64>, StoreError> {
        self.hooks.before_commit(&changes).await?;
        self.inner.commit(changes, basis).await
    }
    async fn put_notes(&self, notes: Vec<Note>) -> Result<(), StoreError> {
        self.hooks.before_notes(&notes);
        self.inner.put_notes(notes).await
    }
    async fn notes_since(&self, after: u64, limit: usize) -> Result<NotePage, StoreError> {
        self.inner.notes_since(after, limit).await
    }
    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        self.inner.changes_since(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.hooks.before_ping()?;
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// Records every change committed and every note written, in order.
#[derive(Default)]
pub struct Recorder {
    pub changes: std::sync::Mutex<Vec<Change>>,
    pub notes: std::sync::Mutex<Vec<Note>>,
}

impl Recorder {
    /// The committed changes with this key, in order.
    pub fn changes_to(&self, key: &str) -> Vec<Change> {
        let changes = self.changes.lock().unwrap();
        changes.iter().filter(|c| c.key == key).cloned().collect()
    }

    /// The notes written about this key, in order.
    pub fn notes_on(&self, key: &str) -> Vec<Note> {
        let notes = self.notes.lock().unwrap();
        notes.iter().filter(|n| n.key == key).cloned().collect()
    }
}

#[async_trait]
impl Hooks for Recorder {
    async fn before_commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.changes.lock().unwrap().extend_from_slice(changes);
        Ok(())
    }
    fn before_notes(&self, notes: &[Note]) {
        self.notes.lock().unwrap().extend_from_slice(notes);
    }
}
