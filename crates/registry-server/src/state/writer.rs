//! The single writer: group commit of every change.
//!
//! Requests queue their commands on a channel. The writer takes whatever has queued
//! (up to [`MAX_BATCH`]), plans each against the tables, commits all the resulting
//! mutations in one store transaction (one fsync), applies them to the tables, and only
//! then answers each request. Under load, many requests share one fsync; idle, a lone
//! request commits at once.
//!
//! When other daemons share the store, the writer is also the only one to apply their
//! changes: on each notice from the store it reads the change log after the tables'
//! revision and applies it, and before applying its own commit it applies whatever the
//! log holds before it. So the tables always follow the log's order.

use super::commands::{Command, Overlay};
use super::{Committed, State};
use crate::store::{Notice, Store, StoreError};
use crate::Error;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Changes read from the log per step of a catch-up.
const CATCH_UP_PAGE: usize = 1000;
/// How soon a failed catch-up is tried again.
const RETRY_CATCH_UP: Duration = Duration::from_secs(1);

/// What a committed command touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Id (or URL, for nodes) of the object.
    pub key: String,
    /// Revision of the change.
    pub revision: u64,
}

type Reply = oneshot::Sender<Result<Applied, Error>>;

/// A handle for submitting commands; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl Writer {
    /// Starts the writer task. It ends, after committing everything queued, once every
    /// `Writer` handle is dropped.
    pub fn start(store: Arc<dyn Store>, state: Arc<State>) -> (Writer, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * 4);
        let task = tokio::spawn(run(store, state, receiver));
        (Writer { queue }, task)
    }

    /// Submits a command and waits until it is durable and visible to readers.
    pub async fn submit(&self, command: Command) -> Result<Applied, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((command, reply))
            .await
            .map_err(|_| Error::Unavailable("the registry is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the registry is shutting down".into()))?
    }
}

async fn run(
    store: Arc<dyn Store>,
    state: Arc<State>,
    mut receiver: mpsc::Receiver<(Command, Reply)>,
) {
    let mut others = store.notifications();
    let mut interruptions = 0;
    // Anything committed by others between loading and listening.
    let mut behind = true;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if behind {
            behind = match catch_up(store.as_ref(), &state, None).await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the shared change log; retrying");
                    true
                }
            };
        }
        tokio::select! {
            received = receiver.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
                behind |= !commit_batch(store.as_ref(), &state, batch.drain(..)).await;
            }
            notice = next_notice(&mut others) => {
                if let Some(notice) = notice {
                    behind |= notice.interruptions != interruptions || notice.revision > state.read().revision();
                    interruptions = notice.interruptions;
                }
            }
            _ = tokio::time::sleep(RETRY_CATCH_UP), if behind => {}
        }
    }
}

/// Waits for word that another daemon may have committed; `None` once no word can come.
async fn next_notice(others: &mut Option<watch::Receiver<Notice>>) -> Option<Notice> {
    match others {
        Some(notices) => {
            if notices.changed().await.is_ok() {
                return Some(*notices.borrow_and_update());
            }
            *others = None;
            None
        }
        None => std::future::pending().await,
    }
}

/// Applies the log's changes after the tables' revision, up to `until` (all, if `None`).
/// A log trimmed past that revision means the tables are reloaded whole.
async fn catch_up(store: &dyn Store, state: &State, until: Option<u64>) -> Result<(), StoreError> {
    loop {
        let after = state.read().revision();
        let limit = match until {
            Some(until) if until <= after => return Ok(()),
            Some(until) => ((until - after) as usize).min(CATCH_UP_PAGE),
            None => CATCH_UP_PAGE,
        };
        let page = store.changes_since(after, limit).await?;
        if page.trimmed {
            tracing::warn!(after, "too far behind the change log; reloading everything");
            state.reload(store.load().await?);
            continue;
        }
        if page.changes.is_empty() {
            return Ok(());
        }
        let batch = page
            .changes
            .into_iter()
            .map(|logged| {
                let mutation = logged.change.decode()?;
                let committed = Committed {
                    revision: logged.revision,
                    kind: logged.change.kind,
                    key: logged.change.key,
                    body: logged.change.body,
                };
                Ok((mutation, committed))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        state.apply_committed(batch);
    }
}

/// Commits one batch and answers its requests. Returns `false` when the tables are left
/// behind the store (another daemon's changes came first and could not be read), so the
/// caller catches up before anything else.
async fn commit_batch(
    store: &dyn Store,
    state: &State,
    jobs: impl Iterator<Item = (Command, Reply)>,
) -> bool {
    // Plan every command; refused ones are answered at once. `index` is the command's
    // last mutation, if it made any (a health report on a removed instance makes none).
    let mut accepted: Vec<(Reply, String, Option<usize>)> = Vec::new();
    let (mutations, revision_now) = {
        let tables = state.read();
        let mut overlay = Overlay::new(&tables);
        for (command, reply) in jobs {
            let before = overlay.mutations.len();
            match overlay.plan(command) {
                Ok(key) => {
                    let made = overlay.mutations.len();
                    accepted.push((reply, key, (made > before).then(|| made - 1)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        (overlay.mutations, tables.revision())
    };
    let mut in_step = true;
    let mut revisions = Vec::new();
    if !mutations.is_empty() {
        let changes: Vec<_> = mutations.iter().map(|m| m.encode()).collect();
        revisions = match store.commit(changes.clone()).await {
            Ok(revisions) => revisions,
            Err(e) => {
                tracing::error!(error = %e, "commit failed; {} writes refused", accepted.len());
                for (reply, _, _) in accepted {
                    let _ = reply.send(Err(Error::from(e.clone())));
                }
                return true;
            }
        };
        // On a shared store, other daemons' changes may have taken the revisions
        // before ours: apply those first, so the tables follow the log's order.
        if let Err(e) = catch_up(store, state, Some(revisions[0] - 1)).await {
            tracing::warn!(error = %e, "cannot read the changes before this commit");
            in_step = false;
        }
        if in_step {
            let batch = mutations
                .into_iter()
                .zip(changes)
                .zip(&revisions)
                .map(|((mutation, change), revision)| {
                    let committed = Committed {
                        revision: *revision,
                        kind: change.kind,
                        key: change.key,
                        body: change.body,
                    };
                    (mutation, committed)
                })
                .collect();
            state.apply_committed(batch);
        }
    }
    // Durable either way; when not yet applied, the catch-up brings it in order.
    for (reply, key, index) in accepted {
        let revision = index.map_or(revision_now, |i| revisions[i]);
        let _ = reply.send(Ok(Applied { key, revision }));
    }
    in_step
}
