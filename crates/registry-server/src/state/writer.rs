//! The single writer: group commit of every change.
//!
//! Requests queue their commands on a channel. The writer takes whatever has queued
//! (up to [`MAX_BATCH`]), plans each against the tables, commits all the resulting
//! mutations in one store transaction (one fsync), applies them to the tables, and only
//! then answers each request. Under load, many requests share one fsync; idle, a lone
//! request commits at once.

use super::commands::{Command, Overlay};
use super::{Committed, State};
use crate::store::Store;
use crate::Error;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 1024;

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
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(store.as_ref(), &state, batch.drain(..)).await;
    }
}

async fn commit_batch(
    store: &dyn Store,
    state: &State,
    jobs: impl Iterator<Item = (Command, Reply)>,
) {
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
    let changes: Vec<_> = mutations.iter().map(|m| m.encode()).collect();
    let revisions = if mutations.is_empty() {
        Vec::new()
    } else {
        match store.commit(changes.clone()).await {
            Ok(revisions) => revisions,
            Err(e) => {
                tracing::error!(error = %e, "commit failed; {} writes refused", accepted.len());
                for (reply, _, _) in accepted {
                    let _ = reply.send(Err(Error::from(e.clone())));
                }
                return;
            }
        }
    };
    let mut announced = Vec::with_capacity(mutations.len());
    {
        let mut tables = state.write();
        for ((mutation, change), revision) in mutations.into_iter().zip(changes).zip(&revisions) {
            announced.push(Committed {
                revision: *revision,
                kind: change.kind,
                key: change.key,
                body: change.body,
            });
            tables.apply(mutation, *revision);
        }
    }
    if !announced.is_empty() {
        state.announce(announced);
    }
    for (reply, key, index) in accepted {
        let revision = index.map_or(revision_now, |i| revisions[i]);
        let _ = reply.send(Ok(Applied { key, revision }));
    }
}
