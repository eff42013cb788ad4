//! What the health checks see between status changes: the details and heartbeat time of
//! each instance, kept as store [notes](registry_store::Note) rather than changes.
//!
//! They change with every check, so writing each as a change would mean a new revision,
//! a feed event and a woken watcher per check. Instead the tables take them in memory
//! ([`Registry::touch_instance`]) and every [`NOTES_EVERY`] the instances touched since are
//! written as notes in one transaction. Daemons sharing the store read each other's
//! notes at the same pace and apply them to their own tables, again without a revision:
//! a watcher that asked for a change sleeps on. Only a status change is a change.
//!
//! A note applies to an instance only while it still has the URL and status the note
//! was written with: a note that crossed a status change (or a move) in flight is older
//! than what the tables hold, and the next check writes a new one anyway.

use super::Registry;
use crate::metrics::{Counter, Metrics};
use chrono::{DateTime, Utc};
use registry_store::{Kind, Note, Store};
use registry_types::{Instance, InstanceStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the notes of touched instances are written, and others' read.
pub(crate) const NOTES_EVERY: Duration = Duration::from_secs(2);
/// Most notes read from the store in one step.
const NOTES_PAGE: usize = 10_000;

/// What a note about an instance says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthNote {
    /// The address checked.
    pub(super) url: String,
    /// The status the instance had when the note was written.
    pub(super) status: InstanceStatus,
    pub(super) details: String,
    pub(super) last_heartbeat: Option<DateTime<Utc>>,
}

impl HealthNote {
    /// Puts what the note says into `instance` (the heartbeat only ever moves forward),
    /// if it still has the note's URL and status; returns whether that changed anything,
    /// `None` when the note does not apply.
    pub(super) fn apply_to(self, instance: &mut Instance) -> Option<bool> {
        if instance.url != self.url || instance.status != self.status {
            return None;
        }
        let heartbeat = instance.last_heartbeat.max(self.last_heartbeat);
        let changed = instance.details != self.details || heartbeat != instance.last_heartbeat;
        instance.details = self.details;
        instance.last_heartbeat = heartbeat;
        Some(changed)
    }

    pub(super) fn decode(note: &str) -> Option<HealthNote> {
        serde_json::from_str(note)
            .inspect_err(|e| tracing::warn!(error = %e, "a health note does not decode; ignored"))
            .ok()
    }
}

/// What the notes task counts, for `/metrics`.
struct NotesMetrics {
    written: Counter,
    writes: Counter,
    applied: Counter,
}

/// This daemon's side of the health notes: writing its own, applying others'.
pub(crate) struct HealthNotes {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    counts: NotesMetrics,
}

impl HealthNotes {
    pub(crate) fn new(store: Arc<dyn Store>, registry: Arc<Registry>, metrics: &Metrics) -> Self {
        let counts = NotesMetrics {
            written: metrics.register(
                "health_notes_written",
                "Health notes (an instance's details and heartbeat time) written to the store",
                Counter::default(),
            ),
            writes: metrics.register(
                "health_notes_writes",
                "Store transactions that wrote health notes",
                Counter::default(),
            ),
            applied: metrics.register(
                "health_notes_applied",
                "Health notes of other nodes applied to this node's tables",
                Counter::default(),
            ),
        };
        HealthNotes {
            store,
            registry,
            counts,
        }
    }

    /// Writes this daemon's notes every [`NOTES_EVERY`] and, when other daemons share
    /// the store, applies theirs, until `shutdown` (after which the daemon writes what is
    /// left once the checks have stopped).
    pub(crate) async fn run(&self, shared: bool, shutdown: CancellationToken) {
        let mut cursor = self.registry.read().notes_cursor();
        let mut every = tokio::time::interval(NOTES_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            self.write().await;
            if shared {
                cursor = self.read(cursor).await;
            }
        }
    }

    /// Writes the notes of the instances touched since the last write; on failure they
    /// are kept for the next one.
    pub(crate) async fn write(&self) {
        let ids = self.registry.take_unnoted();
        if ids.is_empty() {
            return;
        }
        let notes: Vec<Note> = {
            let tables = self.registry.read();
            ids.iter()
                .filter_map(|id| {
                    let instance = tables.instance(id)?;
                    let note = HealthNote {
                        url: instance.url,
                        status: instance.status,
                        details: instance.details,
                        last_heartbeat: instance.last_heartbeat,
                    };
                    Some(Note {
                        kind: Kind::Instance,
                        key: id.clone(),
                        body: serde_json::to_string(&note)
                            .expect("a note always serializes")
                            .into(),
                    })
                })
                .collect()
        };
        let count = notes.len() as u64;
        match self.store.put_notes(notes).await {
            Ok(()) => {
                self.counts.writes.inc();
                self.counts.written.inc_by(count);
            }
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "could not write health details; will retry"
                );
                for id in ids {
                    self.registry.mark_unnoted(id);
                }
            }
        }
    }

    /// Applies the notes other daemons wrote after `cursor`; returns where to read on
    /// from.
    async fn read(&self, mut cursor: u64) -> u64 {
        loop {
            let page = match self.store.notes_since(cursor, NOTES_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "could not read other nodes' health details; will retry"
                    );
                    return cursor;
                }
            };
            for note in page.notes.iter().filter(|n| n.kind == Kind::Instance) {
                if let Some(health) = HealthNote::decode(&note.body) {
                    self.registry.apply_note(&note.key, health);
                    self.counts.applied.inc();
                }
            }
            if page.cursor == cursor {
                return cursor;
            }
            cursor = page.cursor;
        }
    }
}
