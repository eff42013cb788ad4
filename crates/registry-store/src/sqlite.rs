//! The embedded store: one SQLite file in the data directory.
//!
//! WAL mode with `synchronous=FULL`: a commit returns only after its log frames are
//! fsynced, so an acknowledged write survives SIGKILL and power loss. One connection writes
//! (the writer task sends whole batches, so one fsync covers many requests); another
//! answers `ping`, so readiness probes never queue behind a commit. The schema and its
//! migrations are those of [`super::rules`].

use super::rules::{
    check_basis, handle_id, missed_trimmed_changes, trim_through, Reliance, SinceBasis,
    CHANGE_LOG_RETAINED, MIGRATIONS, SELECT_NOTES_SEQ, SELECT_OLDEST_CHANGE, SELECT_REVISION,
};
use super::{
    Basis, Change, ChangePage, Kind, LoggedChange, Note, NotePage, Snapshot, Store, StoreError,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Creates the tables if missing and applies the [`MIGRATIONS`] the file lacks, in one
/// transaction, so a file made by an older version opens and is upgraded in place.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let (tables, steps) = MIGRATIONS.split_first().expect("the schema has its tables");
    let tx = conn.transaction().map_err(unavailable)?;
    tx.execute_batch(tables.sqlite).map_err(unavailable)?;
    let version: usize = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unavailable)?;
    if version > steps.len() {
        tracing::warn!(
            database = version,
            known = steps.len(),
            "the SQLite schema is newer than this registry-svc knows; it was written by a newer version"
        );
    }
    for (done, step) in (1..).zip(steps).skip(version) {
        tx.execute_batch(step.sqlite).map_err(unavailable)?;
        // PRAGMA takes no parameters; the value is a number of ours.
        tx.execute_batch(&format!("PRAGMA user_version = {done}"))
            .map_err(unavailable)?;
        tracing::info!(
            version = done,
            purpose = step.purpose,
            "applied a SQLite schema migration"
        );
    }
    tx.commit().map_err(unavailable)
}

/// A SQLite file, for one daemon.
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// Held for the store's life: two daemons on one file would each keep a different
    /// in-memory copy, so the second one is refused.
    lock: std::fs::File,
    /// Changes kept in the log; older ones are trimmed now and then.
    retained: u64,
    /// Who writes notes through this handle.
    handle: String,
}

fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::unavailable_because("SQLite", e)
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::unavailable_because(path.display().to_string(), e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_retention(path, CHANGE_LOG_RETAINED)
    }

    /// As [`SqliteStore::open`], keeping `retained` changes in the log (at least 1).
    pub fn open_with_retention(path: &Path, retained: u64) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::unavailable_because(dir.display().to_string(), e))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| StoreError::unavailable_because(lock_path.display().to_string(), e))?;
        lock.try_lock().map_err(|e| {
            StoreError::unavailable_because(
                format!(
                    "{} is in use by another registry-svc (lock {} is held)",
                    path.display(),
                    lock_path.display()
                ),
                e,
            )
        })?;
        let mut writer = connect(path)?;
        migrate(&mut writer)?;
        let reader = connect(path)?;
        // The reader only pages through the change log; a small page cache will do.
        reader
            .pragma_update(None, "cache_size", -256)
            .map_err(unavailable)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            lock,
            retained: retained.max(1),
            handle: handle_id(),
        })
    }

    /// Runs `work` on a blocking thread with one of the connections.
    async fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::unavailable_because("the store's thread failed", e))?
    }
}

fn commit_changes(
    conn: &mut Connection,
    changes: Vec<Change>,
    basis: Option<Basis>,
    retained: u64,
) -> Result<Vec<u64>, StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let mut revision: u64 = tx
        .query_row(SELECT_REVISION, [], |row| row.get(0))
        .map_err(unavailable)?;
    check_basis(basis.as_ref(), revision, |basis| {
        let reliance = Reliance::new(basis, &changes);
        let mut since = tx
            .prepare_cached(
                "SELECT revision, kind, key, claim FROM changes WHERE revision > ?1
                 ORDER BY revision",
            )
            .map_err(unavailable)?;
        let mut rows = since.query(params![basis.revision]).map_err(unavailable)?;
        let mut found = SinceBasis {
            first: None,
            touched: false,
        };
        while let Some(row) = rows.next().map_err(unavailable)? {
            found.first = found.first.or(Some(row.get(0).map_err(unavailable)?));
            let kind: String = row.get(1).map_err(unavailable)?;
            let key: String = row.get(2).map_err(unavailable)?;
            let claim: Option<String> = row.get(3).map_err(unavailable)?;
            let kind = Kind::parse_stored(&kind, "change", &key)?;
            if reliance.is_touched_by(kind, &key, claim.as_deref()) {
                found.touched = true;
                break;
            }
        }
        Ok(found)
    })?;
    let mut revisions = Vec::with_capacity(changes.len());
    {
        let mut put = tx
            .prepare_cached(
                "INSERT INTO objects (kind, key, revision, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            )
            .map_err(unavailable)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM objects WHERE kind = ?1 AND key = ?2")
            .map_err(unavailable)?;
        let mut forget = tx
            .prepare_cached("DELETE FROM notes WHERE kind = ?1 AND key = ?2")
            .map_err(unavailable)?;
        let mut log = tx
            .prepare_cached(
                "INSERT INTO changes (revision, kind, key, op, body, claim, actor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(unavailable)?;
        for change in &changes {
            revision += 1;
            let kind = change.kind.as_str();
            match &change.body {
                Some(body) => put.execute(params![kind, change.key, revision, body.as_str()]),
                None => delete
                    .execute(params![kind, change.key])
                    .and_then(|_| forget.execute(params![kind, change.key])),
            }
            .map_err(unavailable)?;
            log.execute(params![
                revision,
                kind,
                change.key,
                change.op(),
                change.body.as_deref(),
                change.claim.as_deref(),
                change.by.as_deref()
            ])
            .map_err(unavailable)?;
            revisions.push(revision);
        }
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'revision'",
        params![revision],
    )
    .map_err(unavailable)?;
    let before = revision - changes.len() as u64;
    if let Some(through) = trim_through(before, revision, retained) {
        tx.execute("DELETE FROM changes WHERE revision <= ?1", params![through])
            .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)?;
    Ok(revisions)
}

fn put_notes(conn: &mut Connection, notes: Vec<Note>, handle: &str) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let mut seq: u64 = tx
        .query_row(SELECT_NOTES_SEQ, [], |row| row.get(0))
        .map_err(unavailable)?;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT INTO notes (kind, key, seq, writer, body)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE EXISTS (SELECT 1 FROM objects WHERE kind = ?1 AND key = ?2)
                 ON CONFLICT (kind, key)
                 DO UPDATE SET seq = excluded.seq, writer = excluded.writer, body = excluded.body",
            )
            .map_err(unavailable)?;
        for note in &notes {
            seq += 1;
            put.execute(params![
                note.kind.as_str(),
                note.key,
                seq,
                handle,
                note.body.as_str()
            ])
            .map_err(unavailable)?;
        }
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'notes'",
        params![seq],
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

fn read_notes(
    conn: &mut Connection,
    after: u64,
    limit: usize,
    handle: &str,
) -> Result<NotePage, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, kind, key, CASE WHEN writer = ?3 THEN NULL ELSE body END FROM notes
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(unavailable)?;
    let mut rows = statement
        .query(params![after, limit as i64, handle])
        .map_err(unavailable)?;
    let mut page = NotePage {
        notes: Vec::new(),
        cursor: after,
    };
    while let Some(row) = rows.next().map_err(unavailable)? {
        page.cursor = row.get(0).map_err(unavailable)?;
        let kind: String = row.get(1).map_err(unavailable)?;
        let key: String = row.get(2).map_err(unavailable)?;
        let body: Option<String> = row.get(3).map_err(unavailable)?;
        if let Some(body) = body {
            let kind = Kind::parse_stored(&kind, "note", &key)?;
            page.notes.push(Note {
                kind,
                key,
                body: body.into(),
            });
        }
    }
    Ok(page)
}

fn read_changes(conn: &mut Connection, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
    let oldest: Option<u64> = conn
        .query_row(SELECT_OLDEST_CHANGE, [], |row| row.get(0))
        .map_err(unavailable)?;
    let latest: u64 = conn
        .query_row(SELECT_REVISION, [], |row| row.get(0))
        .map_err(unavailable)?;
    let trimmed = missed_trimmed_changes(after, latest, oldest);
    if trimmed {
        return Ok(ChangePage {
            changes: Vec::new(),
            trimmed,
        });
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT revision, kind, key, body, claim, actor FROM changes
             WHERE revision > ?1 ORDER BY revision LIMIT ?2",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map(params![after, limit as i64], |row| {
            Ok((
                row.get::<_, u64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                [
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ],
            ))
        })
        .map_err(unavailable)?;
    let mut changes = Vec::new();
    for row in rows {
        let (revision, kind, key, texts) = row.map_err(unavailable)?;
        changes.push(LoggedChange::from_row(revision, &kind, key, texts)?);
    }
    Ok(ChangePage {
        changes,
        trimmed: false,
    })
}

fn load_all(conn: &mut Connection) -> Result<Snapshot, StoreError> {
    // One transaction, so one snapshot of objects, notes and counters.
    let tx = conn.transaction().map_err(unavailable)?;
    let revision: Option<u64> = tx
        .query_row(SELECT_REVISION, [], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    let mut snapshot = Snapshot::new(revision.unwrap_or(0));
    snapshot.notes_cursor = tx
        .query_row(SELECT_NOTES_SEQ, [], |row| row.get(0))
        .map_err(unavailable)?;
    for (table, push) in [
        (
            "objects",
            Snapshot::push as fn(&mut Snapshot, Kind, &str, &str),
        ),
        ("notes", Snapshot::push_note),
    ] {
        let mut statement = tx
            .prepare(&format!("SELECT kind, key, body FROM {table}"))
            .map_err(unavailable)?;
        let mut rows = statement.query([]).map_err(unavailable)?;
        while let Some(row) = rows.next().map_err(unavailable)? {
            let kind: String = row.get(0).map_err(unavailable)?;
            let key: String = row.get(1).map_err(unavailable)?;
            let body: String = row.get(2).map_err(unavailable)?;
            let kind = Kind::parse_stored(&kind, "object", &key)?;
            push(&mut snapshot, kind, &key, &body);
        }
    }
    drop(tx);
    Ok(snapshot)
}

#[async_trait]
impl Store for SqliteStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        Self::with(&self.writer, load_all).await
    }

    async fn commit(
        &self,
        changes: Vec<Change>,
        basis: Option<Basis>,
    ) -> Result<Vec<u64>, StoreError> {
        let retained = self.retained;
        Self::with(&self.writer, move |conn| {
            commit_changes(conn, changes, basis, retained)
        })
        .await
    }

    async fn put_notes(&self, notes: Vec<Note>) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        let handle = self.handle.clone();
        Self::with(&self.writer, move |conn| put_notes(conn, notes, &handle)).await
    }

    async fn notes_since(&self, after: u64, limit: usize) -> Result<NotePage, StoreError> {
        let handle = self.handle.clone();
        Self::with(&self.reader, move |conn| {
            read_notes(conn, after, limit, &handle)
        })
        .await
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        Self::with(&self.reader, move |conn| read_changes(conn, after, limit)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Self::with(&self.reader, |conn| {
            conn.query_row(SELECT_REVISION, [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        Self::with(&self.writer, |conn| {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(unavailable)
        })
        .await?;
        // A request still finishing may hold this store a moment longer; the data dir is
        // free for a new daemon as soon as the shutdown says so.
        self.lock.unlock().map_err(unavailable)
    }
}
