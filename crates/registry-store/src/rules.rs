//! The rules both stores keep, written once: the schema and its migrations, how long the
//! change log is kept and when it is trimmed, when a commit conflicts with what others
//! committed since its basis, and when a reader has fallen behind the retained log. [`super::sqlite`] and [`super::postgres`] only say
//! how each database runs them.

use super::{Basis, Change, Kind, Read, StoreError};
use std::collections::HashSet;

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
    Migration {
        purpose: "the value each change claims (an instance's URL), for conflicts",
        sqlite: ADD_CLAIM,
        postgres: ADD_CLAIM,
    },
    Migration {
        purpose: "notes: soft state beside each object, outside the change log",
        sqlite: "
CREATE TABLE notes (
    kind   TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    writer TEXT    NOT NULL,
    body   TEXT    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX notes_by_seq ON notes (seq);
INSERT INTO meta (name, value) VALUES ('notes', 0);
",
        postgres: "
CREATE TABLE notes (
    kind   TEXT   NOT NULL,
    key    TEXT   NOT NULL,
    seq    BIGINT NOT NULL,
    writer TEXT   NOT NULL,
    body   TEXT   NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX notes_by_seq ON notes (seq);
INSERT INTO meta (name, value) VALUES ('notes', 0);
",
    },
];

const ADD_ACTOR: &str = "ALTER TABLE changes ADD COLUMN actor TEXT;";
const ADD_CLAIM: &str = "ALTER TABLE changes ADD COLUMN claim TEXT;";

/// The oldest revision still in the change log (none when it is empty).
pub(super) const SELECT_OLDEST_CHANGE: &str = "SELECT MIN(revision) FROM changes";

/// A name for one handle on a store, unique enough to tell apart the daemons sharing it:
/// notes are read back by the others only.
pub(super) fn handle_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

/// The sequence number of the latest note, as both schemas keep it.
pub(super) const SELECT_NOTES_SEQ: &str = "SELECT value FROM meta WHERE name = 'notes'";

/// The latest revision, as both schemas keep it.
pub(super) const SELECT_REVISION: &str = "SELECT value FROM meta WHERE name = 'revision'";

/// What a batch relies on: the reads of its basis, and the objects and claims of its own
/// changes (writing an object relies on no one else having just written it).
pub(super) struct Reliance<'a> {
    objects: HashSet<(Kind, &'a str)>,
    kinds: [bool; 4],
    claims: HashSet<&'a str>,
}

impl<'a> Reliance<'a> {
    pub(super) fn new(basis: &'a Basis, changes: &'a [Change]) -> Reliance<'a> {
        let mut reliance = Reliance {
            objects: HashSet::new(),
            kinds: [false; 4],
            claims: HashSet::new(),
        };
        for read in &basis.reads {
            match read {
                Read::Object(kind, key) => {
                    reliance.objects.insert((*kind, key));
                }
                Read::Kind(kind) => reliance.kinds[kind.index()] = true,
                Read::Claim(claim) => {
                    reliance.claims.insert(claim);
                }
            }
        }
        for change in changes {
            reliance.objects.insert((change.kind, &change.key));
            reliance.claims.extend(change.claim.as_deref());
        }
        reliance
    }

    /// Whether a change logged since the basis touched what the batch relies on.
    pub(super) fn is_touched_by(&self, kind: Kind, key: &str, claim: Option<&str>) -> bool {
        self.kinds[kind.index()]
            || self.objects.contains(&(kind, key))
            || claim.is_some_and(|claim| self.claims.contains(claim))
    }
}

/// What a store found in its log after a basis.
pub(super) struct SinceBasis {
    /// The first revision logged after the basis, if any: anything but the one right
    /// after it means the changes in between were trimmed.
    pub(super) first: Option<u64>,
    /// Whether a change logged after the basis touched what the batch relies on.
    pub(super) touched: bool,
}

/// Whether a batch planned on `basis` must be planned again, the store being at revision
/// `current`: when changes after the basis are no longer logged (it cannot tell what they
/// touched), or when one logged after it touched what the batch relies on. The store is
/// asked to `look` only when it moved on since the basis.
pub(super) fn check_basis(
    basis: Option<&Basis>,
    current: u64,
    look: impl FnOnce(&Basis) -> Result<SinceBasis, StoreError>,
) -> Result<(), StoreError> {
    let Some(basis) = basis.filter(|b| b.revision != current) else {
        return Ok(());
    };
    let since = look(basis)?;
    if since.first != Some(basis.revision + 1) || since.touched {
        return Err(StoreError::Stale { latest: current });
    }
    Ok(())
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
    fn a_commit_conflicts_only_with_later_changes_to_what_it_relies_on() {
        let basis = |revision| Basis {
            revision,
            reads: vec![
                Read::Object(Kind::Instance, "a".into()),
                Read::Claim("http://127.0.0.1:1".into()),
                Read::Kind(Kind::Token),
            ],
        };
        let never_asked = |_: &Basis| -> Result<SinceBasis, StoreError> { panic!("nothing moved") };
        let found = |first, touched| move |_: &Basis| Ok(SinceBasis { first, touched });
        assert!(check_basis(None, 7, never_asked).is_ok());
        assert!(check_basis(Some(&basis(7)), 7, never_asked).is_ok());
        assert!(check_basis(Some(&basis(6)), 7, found(Some(7), false)).is_ok());
        assert!(matches!(
            check_basis(Some(&basis(6)), 7, found(Some(7), true)),
            Err(StoreError::Stale { latest: 7 })
        ));
        assert!(
            check_basis(Some(&basis(2)), 7, found(Some(5), false)).is_err(),
            "revisions 3 and 4 are no longer logged: anything may have changed"
        );
        assert!(
            check_basis(Some(&basis(2)), 7, found(None, false)).is_err(),
            "all trimmed"
        );

        let own = Change {
            kind: Kind::Definition,
            key: "d".into(),
            body: None,
            claim: Some("http://127.0.0.1:2".into()),
            by: None,
        };
        let basis = basis(6);
        let own = [own];
        let reliance = Reliance::new(&basis, &own);
        assert!(reliance.is_touched_by(Kind::Instance, "a", None));
        assert!(!reliance.is_touched_by(Kind::Instance, "b", None));
        assert!(reliance.is_touched_by(Kind::Instance, "b", Some("http://127.0.0.1:1")));
        assert!(reliance.is_touched_by(Kind::Instance, "c", Some("http://127.0.0.1:2")));
        assert!(!reliance.is_touched_by(Kind::Instance, "c", Some("http://127.0.0.1:3")));
        assert!(reliance.is_touched_by(Kind::Token, "any", None));
        assert!(
            reliance.is_touched_by(Kind::Definition, "d", None),
            "its own object"
        );
        assert!(!reliance.is_touched_by(Kind::Definition, "e", None));
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
