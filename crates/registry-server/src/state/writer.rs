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
/// How often a batch is planned again after other daemons' commits got in first.
const MAX_REPLANS: usize = 16;
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
            state.reload(store.load().await?)?;
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

/// Per job: the key it touched and its last mutation (if any), or why it is refused.
type Outcome = Result<(String, Option<usize>), Error>;

/// What planning a batch against the tables gave.
struct Plan {
    mutations: Vec<crate::store::Mutation>,
    outcomes: Vec<Outcome>,
    /// Revision of the tables it was planned against.
    planned_on: u64,
}

fn plan(state: &State, commands: &[Command]) -> Plan {
    let tables = state.read();
    let mut overlay = Overlay::new(&tables);
    let outcomes = commands
        .iter()
        .map(|command| {
            let before = overlay.mutations.len();
            overlay.plan(command.clone()).map(|key| {
                let made = overlay.mutations.len();
                (key, (made > before).then(|| made - 1))
            })
        })
        .collect();
    Plan {
        mutations: overlay.mutations,
        outcomes,
        planned_on: tables.revision(),
    }
}

fn answer(replies: Vec<Reply>, outcomes: Vec<Outcome>, planned_on: u64, revisions: &[u64]) {
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome.map(|(key, index)| Applied {
            key,
            revision: index.map_or(planned_on, |i| revisions[i]),
        }));
    }
}

/// Commits one batch and answers its requests. Returns `false` when the tables are left
/// behind the store (another daemon's changes could not be read), so the caller catches
/// up before anything else.
///
/// A batch is planned against the tables and committed only if the store is still at
/// the tables' revision; when another daemon committed in between, the writer applies
/// that change and plans the batch again, so no write is based on what another daemon
/// already changed.
async fn commit_batch(
    store: &dyn Store,
    state: &State,
    jobs: impl Iterator<Item = (Command, Reply)>,
) -> bool {
    let (commands, replies): (Vec<Command>, Vec<Reply>) = jobs.unzip();
    let mut attempts = 0;
    loop {
        let Plan {
            mutations,
            outcomes,
            planned_on,
        } = plan(state, &commands);
        if mutations.is_empty() {
            answer(replies, outcomes, planned_on, &[]);
            return true;
        }
        let changes: Vec<_> = mutations.iter().map(|m| m.encode()).collect();
        match store.commit(changes.clone(), Some(planned_on)).await {
            Ok(revisions) => {
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
                answer(replies, outcomes, planned_on, &revisions);
                return true;
            }
            Err(StoreError::Stale { latest }) if attempts < MAX_REPLANS => {
                attempts += 1;
                if let Err(e) = catch_up(store, state, Some(latest)).await {
                    tracing::warn!(error = %e, "cannot read the changes of other daemons");
                    refuse(replies, &e);
                    return false;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; {} writes refused", replies.len());
                refuse(replies, &e);
                return true;
            }
        }
    }
}

fn refuse(replies: Vec<Reply>, error: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(Error::from(error.clone())));
    }
}
