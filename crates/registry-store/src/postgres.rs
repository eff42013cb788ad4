//! The shared store: one PostgreSQL database for several daemons.
//!
//! The tables mirror the embedded store's: `objects` holds the current value of each
//! object, `changes` logs every change by revision (trimmed to the last `retained`), and
//! `meta` keeps the latest revision. The schema is created and upgraded by the numbered
//! migrations of `rules.rs`, applied at connect under an advisory lock so daemons
//! starting together do not race.
//!
//! Commits from all daemons lock the row of the latest revision first, so they take
//! turns, and revisions are assigned and become visible strictly in increasing order: a
//! reader that has seen revision R never later finds a smaller one it has not seen. Under
//! that lock a commit with a basis reads what was logged since it (usually nothing, or a
//! few changes of other daemons) to see whether any touched what it relies on. Notes are
//! numbered the same way under a lock of their own (the `notes` row of `meta`), so they
//! never wait for commits, nor commits for them. Each commit sends a `NOTIFY` on
//! [`NOTIFY_CHANNEL`] carrying its last revision; PostgreSQL delivers it at COMMIT, so
//! other daemons can [`PostgresStore::listen`] and catch up with
//! [`Store::changes_since`].

mod hosts;

use super::rules::{
    check_basis, handle_id, missed_trimmed_changes, trim_through, Reliance, SinceBasis,
    CHANGE_LOG_RETAINED, MIGRATIONS, SELECT_NOTES_SEQ, SELECT_REVISION,
};
use super::{
    redact_password, Basis, Change, ChangePage, Kind, LoggedChange, Note, NotePage, Notice,
    Snapshot, Store, StoreError,
};
use async_trait::async_trait;
use hosts::Failover;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The channel every commit notifies, with its last revision (decimal) as the payload.
pub const NOTIFY_CHANNEL: &str = "registry_changes";

/// Advisory lock held while migrating ("registry" in ASCII).
const MIGRATION_LOCK: i64 = 0x7265_6769_7374_7279;

/// Longest a statement may run on a pooled connection.
const STATEMENT_TIMEOUT: &str = "5s";
/// Longest a caller waits for a pooled connection, and for the first connection at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 8;
/// Backoff between attempts to (re)connect the notification listener.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(100);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// A PostgreSQL database, shared by every daemon of a cluster.
///
/// The URL may name several servers, a primary and its standbys (see `hosts.rs`): the
/// store then uses whichever is the primary, and moves to another when a standby is
/// promoted.
#[derive(Clone)]
pub struct PostgresStore {
    /// Connections to the database (to the primary in use, with several servers).
    pool: PgPool,
    /// The servers a multi-host URL names; `None` for one database.
    failover: Option<Arc<Failover>>,
    /// The URL without its password, for messages.
    target: String,
    /// Changes kept in the log; older ones are trimmed now and then.
    retained: u64,
    /// Who writes notes through this handle.
    handle: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("retained", &self.retained)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_retention(url, CHANGE_LOG_RETAINED).await
    }

    /// As [`PostgresStore::connect`], keeping `retained` changes in the log (at least 1).
    pub async fn connect_with_retention(url: &str, retained: u64) -> Result<Self, StoreError> {
        let target = redact_password(url);
        let invalid = |e: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::unavailable_because(format!("invalid PostgreSQL URL {target}"), e)
        };
        let options_for = |url: &str| {
            Ok::<_, StoreError>(
                PgConnectOptions::from_str(url)
                    .map_err(|e| invalid(e.into()))?
                    .options([("statement_timeout", STATEMENT_TIMEOUT)])
                    .application_name("registry-svc")
                    .disable_statement_logging(),
            )
        };

        let (options, mut first, failover) =
            match hosts::candidates(url).map_err(|e| invalid(e.into()))? {
                None => {
                    let options = options_for(url)?;
                    let first = connect_first(&options, &target).await?;
                    (options, first, None)
                }
                // Several servers: the one that is a primary.
                Some(candidates) => {
                    let servers = candidates
                        .into_iter()
                        .map(|c| Ok((c.label, options_for(&c.url)?)))
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    let failover = Arc::new(Failover::new(servers));
                    let first = failover.find().await.map_err(|why| {
                        StoreError::unavailable(format!("no PostgreSQL primary at {target}: {why}"))
                    })?;
                    (failover.current(), first, Some(failover))
                }
            };
        let migrated = migrate(&mut first).await;
        // Best effort: the migration's outcome is what matters.
        let _ = first.close().await;
        migrated.map_err(|e| {
            StoreError::unavailable_because(
                format!("cannot prepare the schema in PostgreSQL at {target}"),
                e,
            )
        })?;

        let mut pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT);
        if let Some(failover) = &failover {
            pool = failover.pool_options(pool);
        }
        Ok(PostgresStore {
            pool: pool.connect_lazy_with(options),
            failover,
            target,
            retained: retained.max(1),
            handle: handle_id(),
        })
    }

    /// A new connection listening on [`NOTIFY_CHANNEL`]: each commit, by any daemon on this
    /// database, sends one notification whose payload is the commit's last revision.
    ///
    /// This daemon's own commits are heard too. The listener reconnects by itself when its
    /// connection drops, but notifications sent meanwhile are lost: use
    /// [`PgListener::try_recv`] (`Ok(None)` means the connection was lost) and catch up
    /// with [`Store::changes_since`] after that, after an error, and now and then.
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        // A pool of one, outside the store's pool, so a listener never takes a connection
        // commits need; the listener uses it to reconnect.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.current_options());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        if self.failover.is_some() {
            // Say at once that the connection dropped, so the store looks for the primary
            // then, instead of after retrying a server that may be gone for good.
            listener.eager_reconnect(false);
        }
        listener
            .listen(NOTIFY_CHANNEL)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(listener)
    }

    /// Follows the notifications of commits into `notices` until nobody watches them,
    /// reconnecting with backoff; each (re)connection counts as an interruption, since
    /// notifications sent meanwhile are lost.
    async fn follow(self, notices: watch::Sender<Notice>) {
        let mut backoff = LISTEN_RETRY_MIN;
        // With several servers: listen again, on the new primary, after each switch.
        let mut switches = self.failover.as_ref().map(|f| f.switches());
        loop {
            if let Some(switches) = &mut switches {
                switches.mark_unchanged();
            }
            let listening = tokio::select! {
                _ = notices.closed() => return,
                _ = switched(&mut switches) => continue,
                listening = self.listen() => listening,
            };
            let mut listener = match listening {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other daemons' changes; retrying");
                    tokio::select! {
                        _ = notices.closed() => return,
                        _ = switched(&mut switches) => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(LISTEN_RETRY_MAX);
                    continue;
                }
            };
            backoff = LISTEN_RETRY_MIN;
            notices.send_modify(|n| n.interruptions += 1);
            loop {
                tokio::select! {
                    _ = notices.closed() => return,
                    _ = switched(&mut switches) => break,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => {
                            let revision = notification.payload().parse().unwrap_or(u64::MAX);
                            notices.send_if_modified(|n| {
                                let newer = revision > n.revision;
                                n.revision = n.revision.max(revision);
                                newer
                            });
                        }
                        // The connection dropped; the next receive reconnects. With
                        // several servers, the primary may have gone: look for it.
                        Ok(None) => {
                            self.look_for_primary();
                            notices.send_modify(|n| n.interruptions += 1)
                        }
                        Err(e) => {
                            let error = self.unavailable(e);
                            tracing::warn!(error = &error as &dyn std::error::Error, "lost the notification listener");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// How to connect to the database now (to the primary in use, with several servers).
    fn current_options(&self) -> PgConnectOptions {
        match &self.failover {
            Some(failover) => failover.current(),
            None => (*self.pool.connect_options()).clone(),
        }
    }

    /// With several servers, looks for the primary in the background (unless already
    /// looking) and moves the store to it; nothing with one database.
    fn look_for_primary(&self) {
        if let Some(failover) = &self.failover {
            failover.search(&self.pool, &self.target);
        }
    }

    fn unavailable(&self, e: sqlx::Error) -> StoreError {
        if hosts::suggests_failover(&e) {
            self.look_for_primary();
        }
        let target = &self.target;
        match e {
            sqlx::Error::PoolTimedOut => StoreError::unavailable(format!(
                "PostgreSQL at {target}: no connection within {}s (is the database reachable?)",
                CONNECT_TIMEOUT.as_secs()
            )),
            sqlx::Error::PoolClosed => {
                StoreError::unavailable(format!("PostgreSQL at {target}: the store is closed"))
            }
            e => StoreError::unavailable_because(format!("PostgreSQL at {target}"), e),
        }
    }
}

/// Resolves when `switches` says the store moved to another server; never without one.
async fn switched(switches: &mut Option<watch::Receiver<u64>>) {
    if let Some(switches) = switches {
        if switches.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// One connection of its own, to migrate with, before the pool: the pool retries a
/// refused connection until its timeout and then reports only that it timed out, which
/// says nothing useful.
async fn connect_first(
    options: &PgConnectOptions,
    target: &str,
) -> Result<PgConnection, StoreError> {
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
        .await
        .map_err(|_| {
            StoreError::unavailable(format!(
                "cannot connect to PostgreSQL at {target}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            StoreError::unavailable_because(format!("cannot connect to PostgreSQL at {target}"), e)
        })
}

/// Applies every one of [`MIGRATIONS`] the database lacks, in one transaction under an
/// advisory lock, so that daemons starting at once migrate one after another.
async fn migrate(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // A migration may take longer than an ordinary statement.
    sqlx::query("SET LOCAL statement_timeout = '5min'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for (version, migration) in (1..).zip(MIGRATIONS) {
        if applied.contains(&version) {
            continue;
        }
        sqlx::raw_sql(migration.postgres).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(
            version,
            purpose = migration.purpose,
            "applied a PostgreSQL schema migration"
        );
    }
    let known = MIGRATIONS.len() as i32;
    if let Some(newest) = applied.iter().max().filter(|v| **v > known) {
        tracing::warn!(
            database = newest,
            known,
            "the PostgreSQL schema is newer than this registry-svc knows; \
             another daemon may run a newer version"
        );
    }
    tx.commit().await
}

/// The positions of the last of each object among `objects` (kind and key), in order.
fn last_of_each<'a>(objects: impl ExactSizeIterator<Item = (Kind, &'a str)>) -> Vec<usize> {
    let mut latest: HashMap<(Kind, &str), usize> = HashMap::with_capacity(objects.len());
    for (i, object) in objects.enumerate() {
        latest.insert(object, i);
    }
    let mut finals: Vec<usize> = latest.into_values().collect();
    finals.sort_unstable();
    finals
}

fn to_db(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

fn from_db(what: &'static str, key: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::corrupt(what, key, format!("negative revision {value}")))
}

impl PostgresStore {
    /// The revisions, or [`StoreError::Stale`] when a change since the basis touched
    /// what the batch relies on.
    async fn commit_changes(
        &self,
        changes: &[Change],
        basis: Option<&Basis>,
    ) -> Result<Result<Vec<u64>, StoreError>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // The lock on the revision row makes commits take turns; the statements after it
        // see what the commits before committed.
        let current: i64 = sqlx::query_scalar(&format!("{SELECT_REVISION} FOR UPDATE"))
            .fetch_one(&mut *tx)
            .await?;
        let current = u64::try_from(current).unwrap_or(0);
        // What changed since the basis, read only when the store moved on since it.
        let mut since = Vec::new();
        if let Some(basis) = basis.filter(|b| b.revision != current) {
            since =
                sqlx::query("SELECT revision, kind, key, claim FROM changes WHERE revision > $1")
                    .bind(to_db(basis.revision))
                    .fetch_all(&mut *tx)
                    .await?;
        }
        let checked = check_basis(basis, current, |basis| {
            let reliance = Reliance::new(basis, changes);
            let mut found = SinceBasis {
                first: None,
                touched: false,
            };
            for row in &since {
                let fail = |e| self.unavailable(e);
                let revision = from_db("change", "revision", row.try_get(0).map_err(fail)?)?;
                found.first = Some(found.first.map_or(revision, |f: u64| f.min(revision)));
                let kind: &str = row.try_get(1).map_err(fail)?;
                let key: &str = row.try_get(2).map_err(fail)?;
                let claim: Option<&str> = row.try_get(3).map_err(fail)?;
                let kind = Kind::parse_stored(kind, "change", key)?;
                found.touched |= reliance.is_touched_by(kind, key, claim);
            }
            Ok(found)
        });
        if let Err(stale) = checked {
            tx.rollback().await?;
            return Ok(Err(stale));
        }
        let revisions: Vec<u64> = (1..=changes.len() as u64).map(|i| current + i).collect();
        let last = current + changes.len() as u64;

        // The log gets every change.
        let log_revisions: Vec<i64> = revisions.iter().map(|r| to_db(*r)).collect();
        let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        let ops: Vec<&str> = changes.iter().map(Change::op).collect();
        let bodies: Vec<Option<&str>> = changes.iter().map(|c| c.body.as_deref()).collect();
        let claims: Vec<Option<&str>> = changes.iter().map(|c| c.claim.as_deref()).collect();
        let actors: Vec<Option<&str>> = changes.iter().map(|c| c.by.as_deref()).collect();
        sqlx::query(
            "INSERT INTO changes (revision, kind, key, op, body, claim, actor)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                                  $6::TEXT[], $7::TEXT[])",
        )
        .bind(&log_revisions)
        .bind(&kinds)
        .bind(&keys)
        .bind(&ops)
        .bind(&bodies)
        .bind(&claims)
        .bind(&actors)
        .execute(&mut *tx)
        .await?;

        // The objects only get the last change to each key: one statement cannot touch a
        // row twice, and the earlier changes would be overwritten anyway.
        let finals = last_of_each(changes.iter().map(|c| (c.kind, c.key.as_str())));
        let (puts, deletes): (Vec<usize>, Vec<usize>) =
            finals.into_iter().partition(|i| changes[*i].body.is_some());
        if !puts.is_empty() {
            let kinds: Vec<&str> = puts.iter().map(|i| changes[*i].kind.as_str()).collect();
            let keys: Vec<&str> = puts.iter().map(|i| changes[*i].key.as_str()).collect();
            let put_revisions: Vec<i64> = puts.iter().map(|i| log_revisions[*i]).collect();
            let bodies: Vec<&str> = puts
                .iter()
                .map(|i| changes[*i].body.as_deref().unwrap_or_default())
                .collect();
            sqlx::query(
                "INSERT INTO objects (kind, key, revision, body)
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[])
                 ON CONFLICT (kind, key)
                 DO UPDATE SET revision = EXCLUDED.revision, body = EXCLUDED.body",
            )
            .bind(&kinds)
            .bind(&keys)
            .bind(&put_revisions)
            .bind(&bodies)
            .execute(&mut *tx)
            .await?;
        }
        if !deletes.is_empty() {
            let kinds: Vec<&str> = deletes.iter().map(|i| changes[*i].kind.as_str()).collect();
            let keys: Vec<&str> = deletes.iter().map(|i| changes[*i].key.as_str()).collect();
            for table in ["objects", "notes"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} o
                     USING UNNEST($1::TEXT[], $2::TEXT[]) AS gone (kind, key)
                     WHERE o.kind = gone.kind AND o.key = gone.key"
                ))
                .bind(&kinds)
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
            }
        }

        if let Some(through) = trim_through(current, last, self.retained) {
            sqlx::query("DELETE FROM changes WHERE revision <= $1")
                .bind(to_db(through))
                .execute(&mut *tx)
                .await?;
        }
        // One statement: the new revision, and the notice, delivered to listeners when
        // (and only if) the transaction commits.
        sqlx::query(
            "WITH moved AS (UPDATE meta SET value = $1 WHERE name = 'revision')
             SELECT pg_notify($2, $3)",
        )
        .bind(to_db(last))
        .bind(NOTIFY_CHANNEL)
        .bind(last.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(revisions))
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        let fail = |e| self.unavailable(e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // One snapshot for the revision and the objects; a large store may take a while.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("SET LOCAL statement_timeout = '2min'")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let revision: Option<i64> = sqlx::query_scalar(SELECT_REVISION)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        let notes_seq: i64 = sqlx::query_scalar(SELECT_NOTES_SEQ)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        let objects = sqlx::query("SELECT kind, key, body FROM objects")
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        let notes = sqlx::query("SELECT kind, key, body FROM notes")
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;

        let mut snapshot = Snapshot::new(from_db("meta", "revision", revision.unwrap_or(0))?);
        snapshot.notes_cursor = from_db("meta", "notes", notes_seq)?;
        for (rows, push) in [
            (
                objects,
                Snapshot::push as fn(&mut Snapshot, Kind, &str, &str),
            ),
            (notes, Snapshot::push_note),
        ] {
            for row in rows {
                let kind_text: &str = row.try_get(0).map_err(fail)?;
                let key: &str = row.try_get(1).map_err(fail)?;
                let body: &str = row.try_get(2).map_err(fail)?;
                let kind = Kind::parse_stored(kind_text, "object", key)?;
                push(&mut snapshot, kind, key, body);
            }
        }
        Ok(snapshot)
    }

    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        let fail = |e| self.unavailable(e);
        // One statement, so one snapshot: the latest revision, the oldest logged one and
        // the page (absent columns when the page is empty).
        let rows: Vec<PgRow> = sqlx::query(
            "SELECT m.value, (SELECT MIN(revision) FROM changes),
                    c.revision, c.kind, c.key, c.body, c.claim, c.actor
             FROM meta m
             LEFT JOIN LATERAL (
                 SELECT revision, kind, key, body, claim, actor FROM changes
                 WHERE revision > $1 ORDER BY revision LIMIT $2
             ) c ON TRUE
             WHERE m.name = 'revision'
             ORDER BY c.revision",
        )
        .bind(to_db(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let Some(first) = rows.first() else {
            return Err(StoreError::corrupt(
                "meta",
                "revision",
                "the revision row is missing",
            ));
        };
        let latest = from_db("meta", "revision", first.try_get(0).map_err(fail)?)?;
        let oldest: Option<i64> = first.try_get(1).map_err(fail)?;
        let oldest = oldest.map(|o| from_db("change", "oldest", o)).transpose()?;
        let trimmed = missed_trimmed_changes(after, latest, oldest);
        if trimmed {
            return Ok(ChangePage {
                changes: Vec::new(),
                trimmed,
            });
        }
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(revision) = row.try_get::<Option<i64>, _>(2).map_err(fail)? else {
                continue;
            };
            let revision = from_db("change", "revision", revision)?;
            let kind: String = row.try_get(3).map_err(fail)?;
            let key: String = row.try_get(4).map_err(fail)?;
            let texts = [
                row.try_get(5).map_err(fail)?,
                row.try_get(6).map_err(fail)?,
                row.try_get(7).map_err(fail)?,
            ];
            changes.push(LoggedChange::from_row(revision, &kind, key, texts)?);
        }
        Ok(ChangePage {
            changes,
            trimmed: false,
        })
    }

    /// Writes notes in one statement. The row of the notes counter is locked for the
    /// transaction, so notes become visible in the order of their sequence numbers, as
    /// the changes do by revision.
    async fn write_notes(&self, notes: &[Note]) -> Result<(), sqlx::Error> {
        // One statement cannot touch a row twice: the last note of each object wins.
        let finals = last_of_each(notes.iter().map(|n| (n.kind, n.key.as_str())));
        let kinds: Vec<&str> = finals.iter().map(|i| notes[*i].kind.as_str()).collect();
        let keys: Vec<&str> = finals.iter().map(|i| notes[*i].key.as_str()).collect();
        let bodies: Vec<&str> = finals.iter().map(|i| notes[*i].body.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        let last: i64 = sqlx::query_scalar(
            "UPDATE meta SET value = value + $1 WHERE name = 'notes' RETURNING value",
        )
        .bind(finals.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO notes (kind, key, seq, writer, body)
             SELECT n.kind, n.key, $4 + n.at, $5, n.body
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS n (kind, key, body, at)
             WHERE EXISTS (SELECT 1 FROM objects o WHERE o.kind = n.kind AND o.key = n.key)
             ON CONFLICT (kind, key)
             DO UPDATE SET seq = EXCLUDED.seq, writer = EXCLUDED.writer, body = EXCLUDED.body",
        )
        .bind(&kinds)
        .bind(&keys)
        .bind(&bodies)
        .bind(last - finals.len() as i64)
        .bind(&self.handle)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn read_notes(&self, after: u64, limit: usize) -> Result<NotePage, StoreError> {
        let fail = |e| self.unavailable(e);
        // This handle's own notes are read without their bodies, to move the cursor on.
        let rows = sqlx::query(
            "SELECT seq, kind, key, CASE WHEN writer = $3 THEN NULL ELSE body END FROM notes
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_db(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(&self.handle)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let mut page = NotePage {
            notes: Vec::new(),
            cursor: after,
        };
        for row in rows {
            page.cursor = from_db("note", "seq", row.try_get(0).map_err(fail)?)?;
            let key: String = row.try_get(2).map_err(fail)?;
            let body: Option<String> = row.try_get(3).map_err(fail)?;
            if let Some(body) = body {
                let kind = Kind::parse_stored(row.try_get(1).map_err(fail)?, "note", &key)?;
                page.notes.push(Note {
                    kind,
                    key,
                    body: body.into(),
                });
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn notifications(&self) -> Option<watch::Receiver<Notice>> {
        let (notices, receiver) = watch::channel(Notice::default());
        tokio::spawn(self.clone().follow(notices));
        Some(receiver)
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.load_all().await
    }

    async fn commit(
        &self,
        changes: Vec<Change>,
        basis: Option<Basis>,
    ) -> Result<Vec<u64>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.commit_changes(&changes, basis.as_ref())
            .await
            .map_err(|e| self.unavailable(e))?
    }

    async fn put_notes(&self, notes: Vec<Note>) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        self.write_notes(&notes)
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn notes_since(&self, after: u64, limit: usize) -> Result<NotePage, StoreError> {
        self.read_notes(after, limit).await
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        self.read_changes(after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.unavailable(e))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.pool.close().await;
        Ok(())
    }
}
