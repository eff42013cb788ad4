//! The rules both stores keep, written once: the schema and its migrations, how long the
//! change log is kept and when it is trimmed, when a commit is stale, and when a reader
//! has fallen behind the retained log. [`super::sqlite`] and [`super::postgres`] only say
//! how each database runs them.

use super::StoreError;

/// How many past changes are kept in the change log for readers catching up.
pub(super) const CHANGE_LOG_RETAINED: u64 = 100_000;

/// One step of the schema, in the SQL of each database.
pub(super) struct Migration {
    /// What the step adds.
    pub(super) purpose: &'static str,
    pub(super) sqlite: &'static str,
    pub(super) postgres: &'static str,
}

/// The schema, step by step: appended to, never edited once released, since databases
/// in use have run the steps as they were.
///
/// The step at position `n` (from 0) is PostgreSQL's migration `n + 1` in its
/// `schema_migrations` table. SQLite runs the first step at every open (its statements
/// are idempotent, as the first release ran them before it counted versions) and keeps in
/// `PRAGMA user_version` how many of the later steps a file has had: the step at
/// position `n` takes it to `n`.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        purpose: "objects (each object's current value), changes (every change by revision) \
                  and meta (the latest revision)",
        sqlite: "
CREATE TABLE IF NOT EXISTS objects (
    kind     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    revision INTEGER NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    op       TEXT NOT NULL,
    body     TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
",
        postgres: "
CREATE TABLE objects (
    kind     TEXT   NOT NULL,
    key      TEXT   NOT NULL,
    revision BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE changes (
    revision BIGINT PRIMARY KEY,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    op       TEXT NOT NULL,
    body     TEXT
);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 0);
",
    },
    Migration {
        purpose: "who made each change (the JSON of an actor); older changes have none",
        sqlite: ADD_ACTOR,
        postgres: ADD_ACTOR,
    },
];

const ADD_ACTOR: &str = "ALTER TABLE changes ADD COLUMN actor TEXT;";

/// The latest revision, as both schemas keep it.
pub(super) const SELECT_REVISION: &str = "SELECT value FROM meta WHERE name = 'revision'";

/// A batch planned on the tables at revision `planned_on` commits only if the store is
/// still at it (`current`); otherwise another writer came first and it must be planned
/// again.
pub(super) fn check_planned(planned_on: Option<u64>, current: u64) -> Result<(), StoreError> {
    match planned_on {
        Some(planned) if planned != current => Err(StoreError::Stale { latest: current }),
        _ => Ok(()),
    }
}

/// The most changes between two trims of the log.
const TRIM_EVERY_MAX: u64 = 1024;

/// After a commit took the store from revision `before` to `after`: the revision up to
/// which the change log is to be trimmed now, keeping the last `retained`. The log is
/// trimmed each time the revision crosses a multiple of a quarter of what is kept (at
/// most [`TRIM_EVERY_MAX`]), rather than on every commit.
pub(super) fn trim_through(before: u64, after: u64, retained: u64) -> Option<u64> {
    let every = (retained / 4).clamp(1, TRIM_EVERY_MAX);
    (after / every != before / every && after > retained).then(|| after - retained)
}

/// Whether a reader that has seen revision `after` has missed changes the log no longer
/// holds, given the latest revision and the oldest one logged. The log starts at
/// revision 1; anything between `after` and its oldest row is gone.
pub(super) fn missed_trimmed_changes(after: u64, latest: u64, oldest: Option<u64>) -> bool {
    after < latest && oldest.is_none_or(|oldest| oldest > after + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_trimmed_when_the_revision_crosses_a_quarter_of_what_is_kept() {
        assert_eq!(trim_through(0, 3, 8), None, "not past what is kept");
        assert_eq!(trim_through(8, 9, 8), None, "no multiple of 2 crossed");
        assert_eq!(trim_through(9, 10, 8), Some(2));
        assert_eq!(trim_through(5, 12, 8), Some(4), "a batch crossing several");
        assert_eq!(trim_through(0, 1, 1), None);
        assert_eq!(trim_through(1, 2, 1), Some(1), "keeping one: every commit");
        let kept = CHANGE_LOG_RETAINED;
        assert_eq!(trim_through(kept, kept + 1, kept), None);
        // Past what is kept, the log is trimmed at every multiple of TRIM_EVERY_MAX.
        let crossing = (kept / TRIM_EVERY_MAX + 1) * TRIM_EVERY_MAX;
        assert_eq!(
            trim_through(crossing - 1, crossing, kept),
            Some(crossing - kept)
        );
        assert_eq!(
            trim_through(crossing, crossing + TRIM_EVERY_MAX - 1, kept),
            None
        );
    }

    #[test]
    fn a_commit_planned_on_an_older_revision_is_stale() {
        assert!(check_planned(None, 7).is_ok());
        assert!(check_planned(Some(7), 7).is_ok());
        assert!(matches!(
            check_planned(Some(6), 7),
            Err(StoreError::Stale { latest: 7 })
        ));
    }

    #[test]
    fn a_reader_behind_the_oldest_logged_change_has_missed_some() {
        assert!(!missed_trimmed_changes(5, 5, None), "up to date");
        assert!(!missed_trimmed_changes(0, 3, Some(1)), "the log is whole");
        assert!(!missed_trimmed_changes(4, 9, Some(5)), "the next is logged");
        assert!(missed_trimmed_changes(3, 9, Some(5)), "revision 4 is gone");
        assert!(missed_trimmed_changes(3, 9, None), "all trimmed");
    }
}
