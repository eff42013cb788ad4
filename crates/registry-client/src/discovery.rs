//! Service discovery: a live, in-memory set of one slug's callable instances, kept current
//! by blocking queries, and client-side load balancing over it.
//!
//! [`Discovery::start`] spawns one background task that follows the slug with an
//! [`InstanceWatch`](crate::InstanceWatch): it lists the slug's instances, then loops on
//! blocking queries (`GET /registry-svc/instances?slug=S&index=N&wait=W`), re-reading the
//! slug whenever the registry reports a change. Each answer becomes a new [`Snapshot`],
//! swapped in whole; [`Discovery::pick`] reads only that, never the network. When the
//! registry is unreachable or fails, the last known set stays in service and the task retries
//! with exponential [`Backoff`]. For [`Balancer::ZoneAffinity`] the task also lists the nodes
//! (their availability zones) at start, periodically, and when an instance names a node it
//! does not know.

use crate::backoff::Backoff;
use crate::balancer::{Balancer, Picked};
use crate::snapshot::{zones_of, Inputs, Snapshot};
use crate::watch::{InstanceWatch, DEFAULT_WAIT, NO_CHANGE_PAUSE};
use crate::{Error, RegistryClient};
use registry_types::{Instance, InstanceFilter, Node};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How a [`Discovery`] chooses and refreshes. `Default` gives round-robin over Healthy
/// instances, 5-minute blocking queries, node zones refreshed every 30 s, and retries from
/// 100 ms doubling to 10 s.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// How [`Discovery::pick`] chooses.
    pub balancer: Balancer,
    /// Also pick Degraded instances (slow but answering), not only Healthy ones.
    pub include_degraded: bool,
    /// Only instances carrying every one of these tags.
    pub tags: Vec<String>,
    /// How long each blocking query may wait for a change (the registry caps it at 10 min).
    pub wait: Duration,
    /// How often node zones are re-read, for [`Balancer::ZoneAffinity`].
    pub node_refresh: Duration,
    /// First delay before retrying a failed request.
    pub min_retry: Duration,
    /// Longest delay between retries.
    pub max_retry: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            balancer: Balancer::RoundRobin,
            include_degraded: false,
            tags: Vec::new(),
            wait: DEFAULT_WAIT,
            node_refresh: Duration::from_secs(30),
            min_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(10),
        }
    }
}

impl DiscoveryOptions {
    /// These options with `balancer`.
    pub fn with_balancer(mut self, balancer: Balancer) -> Self {
        self.balancer = balancer;
        self
    }
}

/// Why [`Discovery`] could not give an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The registry has not answered the first list yet (or [`Discovery::wait_ready`] timed
    /// out); `last_error` says why when a request failed.
    #[error("no answer from the registry yet about {slug:?}{}", describe_last(.last_error))]
    NotReady {
        /// The slug followed.
        slug: String,
        /// The latest request error, if a request failed.
        last_error: Option<String>,
    },
    /// The registry answered, and no instance of the slug is callable (Healthy, or Degraded
    /// where accepted).
    #[error("no healthy instance of {slug:?}")]
    NoInstance {
        /// The slug followed.
        slug: String,
    },
    /// The discovery was stopped before it became ready.
    #[error("discovery of {slug:?} was stopped")]
    Stopped {
        /// The slug followed.
        slug: String,
    },
}

fn describe_last(last_error: &Option<String>) -> String {
    last_error
        .as_deref()
        .map(|e| format!(" (last error: {e})"))
        .unwrap_or_default()
}

/// A live set of one slug's callable instances with a load balancer over it.
///
/// A cheap, cloneable handle: clones share the set, the balancer's state and the background
/// task, which stops when the last handle is dropped or on [`stop`](Discovery::stop).
///
/// ```no_run
/// use registry_client::{Balancer, Discovery, DiscoveryOptions, RegistryClient};
/// use std::time::Duration;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = RegistryClient::new("http://127.0.0.1:58231", Some("my-token".into()));
/// let options = DiscoveryOptions::default().with_balancer(Balancer::PowerOfTwoChoices);
/// let users = Discovery::start(client, "user-svc", options);
/// users.wait_ready(Duration::from_secs(5)).await?;
///
/// let instance = users.pick()?; // from memory; counts one request in flight until dropped
/// let body = reqwest::get(format!("{}/users/1", instance.url())).await?.text().await?;
/// drop(instance);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    slug: String,
    balancer: Balancer,
    /// Round-robin position, shared by every pick.
    cursor: AtomicUsize,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    last_error: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Discovery")
            .field("slug", &self.inner.slug)
            .field("balancer", &self.inner.balancer)
            .field("ready", &snapshot.is_ready())
            .field("index", &snapshot.index())
            .field("instances", &snapshot.len())
            .finish()
    }
}

impl Discovery {
    /// Starts following `slug`'s instances through `client`. Returns at once; the set fills
    /// in the background (await [`ready`](Discovery::ready) before relying on it).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn start(
        client: RegistryClient,
        slug: impl Into<String>,
        options: DiscoveryOptions,
    ) -> Discovery {
        let slug = slug.into();
        let (sender, receiver) = watch::channel(Arc::new(Snapshot::default()));
        let last_error = Arc::new(Mutex::new(None));
        let balancer = options.balancer.clone();
        let follower = Follower {
            client,
            filter: InstanceFilter {
                slug: Some(slug.clone()),
                tags: options.tags.clone(),
                ..Default::default()
            },
            options,
            sender,
            last_error: Arc::clone(&last_error),
            known: Mutex::new(Known::default()),
            unknown_node: Notify::new(),
        };
        let task = tokio::spawn(async move { follower.run().await });
        Discovery {
            inner: Arc::new(Inner {
                slug,
                balancer,
                cursor: AtomicUsize::new(0),
                snapshot: receiver,
                last_error,
                task,
            }),
        }
    }

    /// The slug followed.
    pub fn slug(&self) -> &str {
        &self.inner.slug
    }

    /// Waits until the registry has answered the first list (the set may still be empty:
    /// that is an answer). Fails only if the discovery is stopped first.
    pub async fn ready(&self) -> Result<(), DiscoveryError> {
        let mut receiver = self.inner.snapshot.clone();
        let waited = receiver.wait_for(|s| s.is_ready()).await.map(drop);
        if waited.is_ok() || self.snapshot().is_ready() {
            Ok(())
        } else {
            Err(DiscoveryError::Stopped {
                slug: self.inner.slug.clone(),
            })
        }
    }

    /// [`ready`](Discovery::ready), giving up after `timeout` with
    /// [`DiscoveryError::NotReady`], which carries the last request error.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), DiscoveryError> {
        match tokio::time::timeout(timeout, self.ready()).await {
            Ok(result) => result,
            Err(_) => Err(self.not_ready()),
        }
    }

    /// One callable instance, chosen by the balancer from the set in memory (no network).
    /// The [`Picked`] counts a request in flight to it until dropped.
    pub fn pick(&self) -> Result<Picked, DiscoveryError> {
        let snapshot = self.snapshot();
        if !snapshot.is_ready() {
            return Err(self.not_ready());
        }
        self.inner
            .balancer
            .pick(&snapshot, &self.inner.cursor)
            .ok_or_else(|| DiscoveryError::NoInstance {
                slug: self.inner.slug.clone(),
            })
    }

    /// The current set, as last listed.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner.snapshot.borrow())
    }

    /// The instances that can be picked now, sorted by id.
    pub fn instances(&self) -> Vec<Instance> {
        self.snapshot().instances().cloned().collect()
    }

    /// A receiver notified whenever the callable set changes (an instance comes, goes,
    /// changes status or address, or its zone is learnt), and once when the discovery first
    /// becomes ready. Its `changed()` fails once the discovery has stopped.
    ///
    /// ```no_run
    /// # async fn example(discovery: registry_client::Discovery) {
    /// let mut changes = discovery.subscribe();
    /// while changes.changed().await.is_ok() {
    ///     let urls: Vec<String> = changes.borrow().instances().map(|i| i.url.clone()).collect();
    ///     println!("now {urls:?}");
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshot.clone()
    }

    /// The error of the latest failed request to the registry, `None` once one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the background task for every handle. The last set stays readable and pickable.
    pub fn stop(&self) {
        self.inner.task.abort();
    }

    fn not_ready(&self) -> DiscoveryError {
        DiscoveryError::NotReady {
            slug: self.inner.slug.clone(),
            last_error: self.last_error(),
        }
    }
}

/// The background task's state.
struct Follower {
    client: RegistryClient,
    filter: InstanceFilter,
    options: DiscoveryOptions,
    sender: watch::Sender<Arc<Snapshot>>,
    last_error: Arc<Mutex<Option<String>>>,
    known: Mutex<Known>,
    /// Wakes the node refresh early when an instance names a node whose zone is unknown.
    unknown_node: Notify,
}

/// What the registry said last.
#[derive(Default)]
struct Known {
    /// The slug's instances and their index; `None` before the first answer.
    instances: Option<(Vec<Instance>, u64)>,
    /// Node URL to availability zone.
    zones: HashMap<String, String>,
    /// Whether nodes were listed (or tried) once; zone affinity waits for it.
    nodes_tried: bool,
}

impl Follower {
    async fn run(self) {
        if self.options.balancer.needs_zones() {
            tokio::join!(self.follow_instances(), self.follow_nodes());
        } else {
            self.follow_instances().await;
        }
    }

    /// The slug's [`InstanceWatch`], forever; failures keep the set.
    async fn follow_instances(&self) {
        let mut watch = InstanceWatch::new(self.client.clone(), self.filter.clone())
            .with_wait(self.options.wait)
            .with_backoff(Backoff::new(self.options.min_retry, self.options.max_retry));
        loop {
            match watch.next().await {
                Ok(mut list) => {
                    self.clear_error();
                    list.instances.retain(|i| self.filter.matches(i));
                    self.set_instances(list.instances, list.index);
                }
                Err(failure) => self.record_error(&failure.error),
            }
        }
    }

    /// Node zones at start, then every `node_refresh` or when an unknown node turns up.
    async fn follow_nodes(&self) {
        let mut backoff = Backoff::new(self.options.min_retry, self.options.max_retry);
        loop {
            match self.client.list_nodes(&[]).await {
                Ok(nodes) => {
                    backoff.reset();
                    self.clear_error();
                    self.set_nodes(&nodes);
                    tokio::time::sleep(NO_CHANGE_PAUSE).await;
                    let refresh = self.options.node_refresh.saturating_sub(NO_CHANGE_PAUSE);
                    tokio::select! {
                        () = tokio::time::sleep(refresh) => {}
                        () = self.unknown_node.notified() => {}
                    }
                }
                Err(err) => {
                    self.record_error(&err);
                    self.mark_nodes_tried();
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    fn set_instances(&self, instances: Vec<Instance>, index: u64) {
        let mut known = self.lock_known();
        let unknown = instances
            .iter()
            .any(|i| !i.node_url.is_empty() && !known.zones.contains_key(&i.node_url));
        known.instances = Some((instances, index));
        self.publish(&known);
        if unknown && self.options.balancer.needs_zones() {
            self.unknown_node.notify_one();
        }
    }

    fn set_nodes(&self, nodes: &[Node]) {
        let mut known = self.lock_known();
        known.zones = zones_of(nodes);
        known.nodes_tried = true;
        self.publish(&known);
    }

    fn mark_nodes_tried(&self) {
        let mut known = self.lock_known();
        if !known.nodes_tried {
            known.nodes_tried = true;
            self.publish(&known);
        }
    }

    /// Builds the snapshot of `known` and swaps it in, notifying subscribers only when the
    /// callable set (or readiness) changed.
    fn publish(&self, known: &Known) {
        let Some((instances, index)) = &known.instances else {
            return;
        };
        let ready = known.nodes_tried || !self.options.balancer.needs_zones();
        self.sender.send_if_modified(|current| {
            let next = Snapshot::build(
                Inputs {
                    index: *index,
                    ready,
                    instances,
                    zones: &known.zones,
                    include_degraded: self.options.include_degraded,
                    local_zone: self.options.balancer.preferred_zone(),
                },
                current,
            );
            let notify = !current.same_choices(&next);
            *current = Arc::new(next);
            notify
        });
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_error(&self, err: &Error) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(crate::describe(err));
    }

    fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
