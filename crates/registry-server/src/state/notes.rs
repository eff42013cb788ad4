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

/// Writes this daemon's notes every [`NOTES_EVERY`] and, when other daemons share the
/// store, applies theirs, until `shutdown` (after which the daemon writes what is left
/// once the checks have stopped).
pub(crate) async fn run(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    shared: bool,
    shutdown: CancellationToken,
) {
    let mut cursor = registry.read().notes_cursor();
    let mut every = tokio::time::interval(NOTES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        write(store.as_ref(), &registry).await;
        if shared {
            cursor = read(store.as_ref(), &registry, cursor).await;
        }
    }
}

/// Writes the notes of the instances touched since the last write; on failure they are
/// kept for the next one.
pub(crate) async fn write(store: &dyn Store, registry: &Registry) {
    let ids = registry.take_unnoted();
    if ids.is_empty() {
        return;
    }
    let notes: Vec<Note> = {
        let tables = registry.read();
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
    if let Err(e) = store.put_notes(notes).await {
        tracing::warn!(
            error = &e as &dyn std::error::Error,
            "could not write health details; will retry"
        );
        for id in ids {
            registry.mark_unnoted(id);
        }
    }
}

/// Applies the notes other daemons wrote after `cursor`; returns where to read on from.
async fn read(store: &dyn Store, registry: &Registry, mut cursor: u64) -> u64 {
    loop {
        let page = match store.notes_since(cursor, NOTES_PAGE).await {
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
                registry.apply_note(&note.key, health);
            }
        }
        if page.cursor == cursor {
            return cursor;
        }
        cursor = page.cursor;
    }
}
