//! The audit log: one line per change this daemon commits, naming who made it.
//!
//! The writer hands each committed batch (the announcement it already made, and the
//! actor of each change) to a task of its own, which writes the lines; so a batch of a
//! thousand registrations costs the writer one channel send, not a thousand formatted
//! lines. Changes other daemons committed to a shared store are logged by those daemons.
//!
//! Changes made through the API, and removals the daemon makes itself
//! (`deregisterAfter`), are logged at info. The daemon's other own changes (health status
//! flips, TTL expiry, health flushes, node heartbeats) are logged at debug: they come
//! every heartbeat interval and with every flap of a flaky target, would bury the lines
//! that say who changed what, and the health checker explains each one at debug already.

use super::Committed;
use crate::auth::Actor;
use crate::store::op;
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
        for (change, by) in changes.iter().zip(&authors) {
            log_change(change, by);
        }
    }
}

fn log_change(change: &Committed, by: &Actor) {
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                $level,
                revision = change.revision,
                kind = change.kind.as_str(),
                op = op(change.body.is_some()),
                id = change.key.as_str(),
                token_id = by.token_id(),
                slug = by.slug(),
                node = by.node(),
                "committed"
            )
        };
    }
    let daemon_put = by.token_id().is_none() && change.body.is_some();
    if daemon_put {
        line!(Level::DEBUG);
    } else {
        line!(Level::INFO);
    }
}
