//! The single writer: group commit of every change.
//!
//! Requests queue their commands on a channel. The writer takes whatever has queued
//! (up to [`MAX_BATCH`]), plans each against the tables, commits all the resulting
//! mutations in one store transaction (one fsync), applies them to the tables, and only
//! then answers each request. Under load, many requests share one fsync; idle, a lone
//! request commits at once.
//!
//! Commits overlap with applying: the moment a batch is durable, the requests that
//! queued meanwhile are planned against the tables *plus* that batch and sent to the
//! store, and only then is the durable batch applied and answered, while the next one
//! commits. Nothing is applied or answered before its own commit.
//!
//! When other daemons share the store, the writer is also the only one to apply their
//! changes: on each notice from the store, when no commit of its own is in flight, it
//! reads the change log after the tables' revision and applies it, and before applying
//! its own commit it applies whatever the log holds before it. So the tables always
//! follow the log's order.
//!
//! Each batch goes to the store with its basis: the revision of the tables it was planned
//! on and what it read of them. The store refuses it only if another daemon has since
//! changed one of those objects (or a claimed URL); the writer then catches up and plans
//! the batch again. Writes to different objects on different nodes never wait for each
//! other.
//!
//! Every command comes with its [`Actor`], which each change it makes carries into the
//! store's change log, the announcements and the [audit log](super::audit).

use super::audit::AuditLog;
use super::commands::{Command, Overlay};
use super::Mutation;
use super::Registry;
use crate::auth::Actor;
use crate::feed::{Committed, Feed};
use crate::metrics::{self, Counter, Histogram, Metrics};
use crate::supervisor::{supervise, Task, Tasks};
use crate::Error;
use registry_store::{Basis, Change, Notice, Read, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
pub(crate) struct Applied {
    /// Id (or URL, for nodes) of the object.
    pub key: String,
    /// Revision of the change.
    pub revision: u64,
}

type Reply = oneshot::Sender<Result<Applied, Error>>;

/// A command and who gave it.
type Order = (Command, Actor);

/// What the writer counts, for `/metrics`.
struct WriterMetrics {
    batch_size: Histogram,
    commit_duration: Histogram,
    commits_failed: Counter,
    replans: Counter,
}

impl WriterMetrics {
    fn register(metrics: &Metrics) -> WriterMetrics {
        WriterMetrics {
            batch_size: metrics.register(
                "writer_batch_size",
                "Commands committed together in one store transaction",
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    1.0, 2.0, 11,
                )),
            ),
            commit_duration: metrics.register_seconds(
                "writer_commit_duration",
                "Time from sending a batch to the store to its being durable",
                metrics::latency_histogram(),
            ),
            commits_failed: metrics.register(
                "writer_commits_failed",
                "Commits that failed (the store unavailable, or other nodes' changes \
                 unreadable): their writes were answered with an error",
                Counter::default(),
            ),
            replans: metrics.register(
                "writer_replans",
                "Batches planned again because another node had changed what they read",
                Counter::default(),
            ),
        }
    }
}

/// The commands queued for the writer, counted at scrape time. It holds a weak handle,
/// so it never keeps the writer from ending.
#[derive(Debug)]
struct QueueDepth(mpsc::WeakSender<(Order, Reply)>);

impl prometheus_client::collector::Collector for QueueDepth {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let depth = self
            .0
            .upgrade()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity());
        metrics::encode_gauge(
            &mut encoder,
            "writer_queue_depth",
            "Commands waiting for the writer",
            depth as u64,
        )
    }
}

/// A handle for submitting commands; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<(Order, Reply)>,
}

impl Writer {
    /// Starts the writer task, supervised: should it fail, it starts again on the same
    /// queue, catching up with the store first. It ends, after committing everything
    /// queued, once every `Writer` handle is dropped.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        feed: Arc<Feed>,
        tasks: Arc<Tasks>,
        metrics: &Metrics,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * 4);
        metrics.register_collector(QueueDepth(queue.downgrade()));
        let counts = Arc::new(WriterMetrics::register(metrics));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let task = tokio::spawn(supervise(Task::Writer, tasks, move || {
            let (store, registry, feed) = (store.clone(), registry.clone(), feed.clone());
            let (receiver, counts) = (receiver.clone(), counts.clone());
            async move {
                let receiver = &mut *receiver.lock_owned().await;
                run(store, registry, feed, receiver, counts).await
            }
        }));
        (Writer { queue }, task)
    }

    /// Submits a command made `by` an actor and waits until it is durable and visible
    /// to readers.
    pub(crate) async fn submit(&self, by: &Actor, command: Command) -> Result<Applied, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(((command, by.clone()), reply))
            .await
            .map_err(|_| Error::Unavailable("the registry is shutting down".into()))?;
        // The writer dropped the request: it is shutting down, or failed and restarts.
        answer.await.map_err(|_| {
            Error::Unavailable("the registry stopped before answering; the write may or may not have been made, retry it".into())
        })?
    }
}

async fn run(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    feed: Arc<Feed>,
    receiver: &mut mpsc::Receiver<(Order, Reply)>,
    counts: Arc<WriterMetrics>,
) {
    let mut others = store.notifications();
    // Only other daemons can change what a plan read.
    let shared = others.is_some();
    let mut audit = AuditLog::start();
    let mut interruptions = 0;
    // Anything committed by others between loading and listening.
    let mut behind = true;
    let mut open = true;
    // The batch in the store, and the requests that queued up meanwhile.
    let mut in_flight: Option<InFlight> = None;
    let mut waiting: Vec<(Order, Reply)> = Vec::new();
    loop {
        let idle = in_flight.is_none();
        if behind && idle {
            behind = match catch_up(store.as_ref(), &registry, &feed, None).await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot read the shared change log; retrying"
                    );
                    true
                }
            };
        }
        if idle && !waiting.is_empty() {
            let (orders, replies) = waiting.drain(..).unzip();
            in_flight = start(&store, &registry, orders, replies, None, shared, &counts);
            continue;
        }
        if !open && idle {
            return;
        }
        let room = MAX_BATCH - waiting.len();
        tokio::select! {
            received = receiver.recv_many(&mut waiting, room), if open && room > 0 => {
                if received == 0 {
                    open = false;
                }
            }
            done = async { (&mut in_flight.as_mut().expect("guarded").commit).await }, if !idle => {
                let done_batch = in_flight.take().expect("guarded").batch;
                let done = done.unwrap_or_else(|e| {
                    Err(StoreError::unavailable_because("the store's commit task failed", e))
                });
                match done {
                    Ok(revisions) => {
                        // Other daemons' commits that came before this one are applied
                        // first; failing that, it is answered and applied later, from the log.
                        if !catch_up_before(store.as_ref(), &registry, &feed, &revisions).await {
                            done_batch.answer_unapplied(&revisions, &mut audit);
                            behind = true;
                            continue;
                        }
                        // What queued meanwhile goes to the store, planned on this batch,
                        // before this one is applied and answered.
                        if !waiting.is_empty() {
                            let (orders, replies) = waiting.drain(..).unzip();
                            let before = (&done_batch, revisions.last().copied().unwrap_or_default());
                            in_flight = start(&store, &registry, orders, replies, Some(before), shared, &counts);
                        }
                        done_batch.apply_and_answer(&registry, &feed, &revisions, &mut audit);
                    }
                    Err(error) => {
                        behind |= !recommit(store.as_ref(), &registry, &feed, done_batch, error, &mut audit, &counts).await;
                    }
                }
            }
            notice = next_notice(&mut others), if idle => {
                if let Some(notice) = notice {
                    behind |= notice.interruptions != interruptions || notice.revision > registry.read().revision();
                    interruptions = notice.interruptions;
                }
            }
            _ = tokio::time::sleep(RETRY_CATCH_UP), if behind && idle => {}
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
async fn catch_up(
    store: &dyn Store,
    registry: &Registry,
    feed: &Feed,
    until: Option<u64>,
) -> Result<(), StoreError> {
    loop {
        let after = registry.read().revision();
        let limit = match until {
            Some(until) if until <= after => return Ok(()),
            Some(until) => ((until - after) as usize).min(CATCH_UP_PAGE),
            None => CATCH_UP_PAGE,
        };
        let page = store.changes_since(after, limit).await?;
        if page.trimmed {
            tracing::warn!(after, "too far behind the change log; reloading everything");
            feed.reloaded(registry.reload(store.load().await?)?);
            continue;
        }
        if page.changes.is_empty() {
            return Ok(());
        }
        let batch = page
            .changes
            .into_iter()
            .map(|logged| {
                let mutation = Mutation::decode(&logged.change)?;
                Ok((mutation, Committed::new(logged.revision, logged.change)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        feed.announce(&registry.apply_committed(batch));
    }
}

/// Applies the changes other daemons committed before `revisions` (a commit of this
/// writer's, not yet applied), so the tables follow the log's order. `false` when they
/// cannot be read.
async fn catch_up_before(
    store: &dyn Store,
    registry: &Registry,
    feed: &Feed,
    revisions: &[u64],
) -> bool {
    let Some(first) = revisions.first() else {
        return true;
    };
    match catch_up(store, registry, feed, Some(first - 1)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot read the changes other daemons committed before this one's; its writes are answered and applied once they can be read"
            );
            false
        }
    }
}

/// Per job: the key it touched and its last mutation (if any), or why it is refused.
type Outcome = Result<(String, Option<usize>), Error>;

/// A batch of requests, planned: what it would change, and what each request is told.
struct Planned {
    orders: Vec<Order>,
    replies: Vec<Reply>,
    mutations: Vec<Mutation>,
    /// Who made each mutation: the actor of the command that planned it.
    authors: Vec<Actor>,
    changes: Vec<Change>,
    outcomes: Vec<Outcome>,
    /// The store revision it counts on: the tables', plus the batch before it.
    planned_on: u64,
    /// What it read of the tables.
    reads: Vec<Read>,
}

/// A planned batch whose commit is under way.
struct InFlight {
    batch: Planned,
    commit: JoinHandle<Result<Vec<u64>, StoreError>>,
}

impl Planned {
    /// Plans `orders` against the tables, plus `before` (a batch committed up to the
    /// revision given, right after the tables' revision, and not yet applied) as if it
    /// were already applied. With a `shared` store, it notes what it reads.
    fn new(
        registry: &Registry,
        orders: Vec<Order>,
        replies: Vec<Reply>,
        before: Option<(&Planned, u64)>,
        shared: bool,
    ) -> Planned {
        let tables = registry.read();
        let (overlay, planned_on) = match before {
            Some((before, last)) => (Overlay::new(&tables, &before.mutations), last),
            None => (Overlay::new(&tables, &[]), tables.revision()),
        };
        let mut overlay = if shared {
            overlay.noting_reads()
        } else {
            overlay
        };
        let mut authors = Vec::new();
        let outcomes = orders
            .iter()
            .map(|(command, by)| {
                let before = overlay.mutations.len();
                let outcome = overlay.plan(command.clone()).map(|key| {
                    let made = overlay.mutations.len();
                    (key, (made > before).then(|| made - 1))
                });
                authors.resize(overlay.mutations.len(), by.clone());
                outcome
            })
            .collect();
        let reads = overlay.reads();
        let mutations = overlay.mutations;
        Planned {
            changes: mutations
                .iter()
                .zip(&authors)
                .map(|(mutation, by)| mutation.encode(Some(by.json())))
                .collect(),
            orders,
            replies,
            mutations,
            authors,
            outcomes,
            planned_on,
            reads,
        }
    }

    /// What the store must find unchanged to commit it (taking what it read, which
    /// nothing else needs).
    fn take_basis(&mut self) -> Basis {
        Basis {
            revision: self.planned_on,
            reads: std::mem::take(&mut self.reads),
        }
    }

    /// Takes the mutations out of the committed batch, each with its change as the feed
    /// and the audit log tell it.
    fn take_committed(&mut self, revisions: &[u64]) -> Vec<(Mutation, Committed)> {
        std::mem::take(&mut self.mutations)
            .into_iter()
            .zip(std::mem::take(&mut self.changes))
            .zip(revisions)
            .map(|((mutation, change), revision)| (mutation, Committed::new(*revision, change)))
            .collect()
    }

    /// Answers a committed batch that could not be applied yet (the tables lag behind
    /// other daemons' changes that could not be read); the writer's catch-up applies it
    /// from the log.
    fn answer_unapplied(mut self, revisions: &[u64], audit: &mut AuditLog) {
        let committed = self.take_committed(revisions);
        let committed: Arc<[Committed]> = committed.into_iter().map(|(_, c)| c).collect();
        answer(self.replies, self.outcomes, self.planned_on, revisions);
        audit.record(committed, self.authors);
    }

    /// Applies the committed batch to the tables, announces it on the feed, answers its
    /// requests, then logs it.
    fn apply_and_answer(
        mut self,
        registry: &Registry,
        feed: &Feed,
        revisions: &[u64],
        audit: &mut AuditLog,
    ) {
        let batch = self.take_committed(revisions);
        let announced = registry.apply_committed(batch);
        feed.announce(&announced);
        answer(self.replies, self.outcomes, self.planned_on, revisions);
        audit.record(announced, self.authors);
    }
}

/// Plans a batch on the tables (plus `before`, just committed but not yet applied) and
/// sends it to the store. Returns the commit under way, if any.
fn start(
    store: &Arc<dyn Store>,
    registry: &Registry,
    orders: Vec<Order>,
    replies: Vec<Reply>,
    before: Option<(&Planned, u64)>,
    shared: bool,
    counts: &Arc<WriterMetrics>,
) -> Option<InFlight> {
    send(
        store,
        Planned::new(registry, orders, replies, before, shared),
        counts,
    )
}

/// Sends a planned batch to the store. The batch it was planned on, if any, is already
/// committed, so a batch that changes nothing can be answered at once.
fn send(
    store: &Arc<dyn Store>,
    mut batch: Planned,
    counts: &Arc<WriterMetrics>,
) -> Option<InFlight> {
    if batch.mutations.is_empty() {
        answer(batch.replies, batch.outcomes, batch.planned_on, &[]);
        return None;
    }
    let (store, changes, basis) = (store.clone(), batch.changes.clone(), batch.take_basis());
    let (counts, commands) = (counts.clone(), batch.replies.len());
    let commit = tokio::spawn(async move {
        counts
            .timed_commit(commands, store.commit(changes, Some(basis)))
            .await
    });
    Some(InFlight { batch, commit })
}

impl WriterMetrics {
    /// Runs the commit of a batch of `commands`, counting it.
    async fn timed_commit(
        &self,
        commands: usize,
        commit: impl std::future::Future<Output = Result<Vec<u64>, StoreError>>,
    ) -> Result<Vec<u64>, StoreError> {
        self.batch_size.observe(commands as f64);
        let started = Instant::now();
        let committed = commit.await;
        self.commit_duration
            .observe(started.elapsed().as_secs_f64());
        committed
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

/// After a pipelined commit failed with `error`: when another daemon's commit got in
/// first, applies it and commits the batch again, planned anew, one step at a time;
/// otherwise refuses the batch. Returns `false` when the tables are left behind the
/// store (another daemon's changes could not be read), so the caller catches up first.
///
/// A batch is committed only if nothing it read changed since the revision it was
/// planned on, so no write is based on what another daemon already changed.
async fn recommit(
    store: &dyn Store,
    registry: &Registry,
    feed: &Feed,
    mut failed: Planned,
    mut error: StoreError,
    audit: &mut AuditLog,
    counts: &WriterMetrics,
) -> bool {
    let mut attempts = 0;
    loop {
        match error {
            StoreError::Stale { latest } if attempts < MAX_REPLANS => {
                attempts += 1;
                counts.replans.inc();
                if let Err(e) = catch_up(store, registry, feed, Some(latest)).await {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot read the changes of other daemons"
                    );
                    refuse(failed.replies, &e, counts);
                    return false;
                }
            }
            e => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "commit failed; {} writes refused",
                    failed.replies.len()
                );
                refuse(failed.replies, &e, counts);
                return true;
            }
        }
        // Only a shared store reports a conflict, so the plan notes its reads.
        let mut batch = Planned::new(registry, failed.orders, failed.replies, None, true);
        if batch.mutations.is_empty() {
            answer(batch.replies, batch.outcomes, batch.planned_on, &[]);
            return true;
        }
        let commit = store.commit(batch.changes.clone(), Some(batch.take_basis()));
        match counts.timed_commit(batch.replies.len(), commit).await {
            Ok(revisions) => {
                if !catch_up_before(store, registry, feed, &revisions).await {
                    batch.answer_unapplied(&revisions, audit);
                    return false;
                }
                batch.apply_and_answer(registry, feed, &revisions, audit);
                return true;
            }
            Err(e) => (error, failed) = (e, batch),
        }
    }
}

/// Answers a failed commit's requests with its error, and counts it.
fn refuse(replies: Vec<Reply>, error: &StoreError, counts: &WriterMetrics) {
    counts.commits_failed.inc();
    for reply in replies {
        let _ = reply.send(Err(Error::from(error.clone())));
    }
}
