//! The audit log: every change this daemon commits, with who made it.
//!
//! The writer hands each committed batch (the announcement it already made, and the
//! actor of each change) to a task of its own, which writes the lines; so a commit costs
//! the writer one channel send. A line covers a run of changes of one kind and op by one
//! actor, which have consecutive revisions (a batch of registrations by one service is
//! a line or a few, not one per instance: formatting a line costs far more than
//! committing a change, and a line per change would weigh on a registration-heavy
//! daemon). Changes
//! other daemons committed to a shared store are logged by those daemons.
//!
//! Changes made through the API, and removals the daemon makes itself
//! (`deregisterAfter`), are logged at info. The daemon's other own changes (health status
//! flips, TTL expiry, node heartbeats) are logged at debug: they come
//! every heartbeat interval and with every flap of a flaky target, would bury the lines
//! that say who changed what, and the health checker explains each one at debug already.

use crate::auth::Actor;
use crate::feed::Committed;
use registry_store::op;
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::Level;

/// Committed batches waiting to be logged, at most.
const BACKLOG: usize = 1024;

type Batch = (Arc<[Committed]>, Vec<Actor>);

/// The writer's handle on the audit log.
pub(super) struct AuditLog {
    queue: mpsc::Sender<Batch>,
    /// Changes left unlogged because the log fell behind, not yet reported.
    skipped: u64,
}

impl AuditLog {
    /// Starts the logging task; it ends once this handle is dropped and all is logged.
    pub(super) fn start() -> AuditLog {
        let (queue, batches) = mpsc::channel(BACKLOG);
        tokio::spawn(write_lines(batches));
        AuditLog { queue, skipped: 0 }
    }

    /// Logs `changes`, the `i`th made by `authors[i]`. Never waits: when the log falls
    /// behind (its output is stuck), changes go unlogged, and how many is said once it
    /// is moving again. The store's change log keeps every actor regardless.
    pub(super) fn record(&mut self, changes: Arc<[Committed]>, authors: Vec<Actor>) {
        match self.queue.try_send((changes, authors)) {
            Ok(()) if self.skipped > 0 => {
                tracing::warn!(
                    skipped = self.skipped,
                    "the audit log fell behind; changes went unlogged (the event stream still has them)"
                );
                self.skipped = 0;
            }
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((changes, _))) => {
                self.skipped += changes.len() as u64;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

async fn write_lines(mut batches: mpsc::Receiver<Batch>) {
    while let Some((changes, authors)) = batches.recv().await {
        log_batch(&changes, &authors);
    }
}

/// Logs `changes`, the `i`th made by `authors[i]`, a line per run.
fn log_batch(changes: &[Committed], authors: &[Actor]) {
    let mut start = 0;
    while start < changes.len() {
        let first = (&changes[start], &authors[start]);
        let run = changes[start..]
            .iter()
            .zip(&authors[start..])
            .take(MAX_IDS_PER_LINE)
            .take_while(|(change, by)| same_run(first, (change, by)))
            .count();
        log_run(&changes[start..start + run], &authors[start]);
        start += run;
    }
}

/// Most changes named on one line, so lines stay readable.
const MAX_IDS_PER_LINE: usize = 100;

fn same_run((a, a_by): (&Committed, &Actor), (b, b_by): (&Committed, &Actor)) -> bool {
    a.kind == b.kind && a.body.is_some() == b.body.is_some() && a_by == b_by
}

/// The revisions of a run: `N`, or `N-M`.
struct Revisions<'a>(&'a [Committed]);

impl fmt::Display for Revisions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, last) = (self.0[0].revision, self.0[self.0.len() - 1].revision);
        if first == last {
            write!(f, "{first}")
        } else {
            write!(f, "{first}-{last}")
        }
    }
}

/// The ids (or node URLs) of a run, in revision order, separated by spaces.
struct Ids<'a>(&'a [Committed]);

impl fmt::Display for Ids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, change) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&change.key)?;
        }
        Ok(())
    }
}

/// One line for `run`: changes of one kind and op, all made `by` one actor.
fn log_run(run: &[Committed], by: &Actor) {
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                $level,
                revisions = %Revisions(run),
                kind = run[0].kind.as_str(),
                op = op(run[0].body.is_some()),
                ids = %Ids(run),
                token_id = by.token_id(),
                slug = by.slug(),
                node = by.node(),
                "committed"
            )
        };
    }
    let daemon_puts = by.token_id().is_none() && run[0].body.is_some();
    if daemon_puts {
        line!(Level::DEBUG);
    } else {
        line!(Level::INFO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_store::Kind;

    fn change(revision: u64, key: &str, put: bool) -> Committed {
        Committed {
            revision,
            kind: Kind::Instance,
            key: key.into(),
            body: put.then(|| arcstr::literal!("{}")),
            by: None,
        }
    }

    /// The lines `log_batch` writes for `changes` made by `authors`.
    fn lines(changes: &[Committed], authors: &[Actor]) -> Vec<String> {
        let log = tempfile::NamedTempFile::new().unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(std::sync::Mutex::new(log.reopen().unwrap()))
            .finish();
        tracing::subscriber::with_default(subscriber, || log_batch(changes, authors));
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_line_per_run_of_one_actor_kind_and_op() {
        let user = Actor::token("tok_u", "svc");
        let admin = Actor::token("tok_a", "admin");
        let registry = Actor::registry("n1");
        let changes = [
            change(7, "i1", true),
            change(8, "i2", true),
            change(9, "i1", false),
            change(10, "i3", true),
            change(11, "i3", true),
            change(12, "i3", false),
        ];
        let authors = [
            user.clone(),
            user.clone(),
            admin,
            user,
            registry.clone(),
            registry,
        ];
        assert_eq!(
            lines(&changes, &authors),
            [
                r#" INFO committed revisions=7-8 kind="instance" op="put" ids=i1 i2 token_id="tok_u" slug="svc""#,
                r#" INFO committed revisions=9 kind="instance" op="delete" ids=i1 token_id="tok_a" slug="admin""#,
                r#" INFO committed revisions=10 kind="instance" op="put" ids=i3 token_id="tok_u" slug="svc""#,
                r#"DEBUG committed revisions=11 kind="instance" op="put" ids=i3 slug="registry" node="n1""#,
                r#" INFO committed revisions=12 kind="instance" op="delete" ids=i3 slug="registry" node="n1""#,
            ]
        );
    }

    #[test]
    fn long_runs_are_split() {
        let user = Actor::token("tok_u", "svc");
        let count = MAX_IDS_PER_LINE as u64 + 1;
        let changes: Vec<_> = (1..=count)
            .map(|r| change(r, &format!("i{r}"), true))
            .collect();
        let authors = vec![user; changes.len()];
        let lines = lines(&changes, &authors);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(&format!("revisions=1-{}", count - 1)));
        assert!(lines[1].contains(&format!("revisions={count} ")));
    }
}
