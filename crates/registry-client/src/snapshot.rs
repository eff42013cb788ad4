//! An immutable view of one slug's callable instances, as a [`Discovery`] last saw them.
//!
//! A new [`Snapshot`] is built on every change and swapped in whole, so picking reads it
//! without locks held across the choice. Each instance's in-flight counter lives on from one
//! snapshot to the next, keyed by instance id, so load survives a refresh.
//!
//! [`Discovery`]: crate::Discovery

use registry_types::{Instance, InstanceStatus, Node};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The instances a [`Discovery`](crate::Discovery) picks from: those of its slug that are
/// Healthy (or Degraded too, with [`include_degraded`]), sorted by id, and the registry
/// index they were listed at.
///
/// [`include_degraded`]: crate::DiscoveryOptions::include_degraded
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(crate) index: u64,
    pub(crate) ready: bool,
    pub(crate) endpoints: Vec<Endpoint>,
    /// Every position in `endpoints`: the candidates when no zone narrows them.
    pub(crate) all: Vec<usize>,
    /// The zone `local` was computed for, if any.
    pub(crate) local_zone: Option<String>,
    /// Positions of the endpoints whose node is in `local_zone`.
    pub(crate) local: Vec<usize>,
}

/// One callable instance, its node's zone, and its in-flight counter.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) instance: Arc<Instance>,
    /// The availability zone of the instance's node; `None` when unknown or empty.
    pub(crate) zone: Option<String>,
    pub(crate) in_flight: Arc<AtomicUsize>,
}

/// What a snapshot is built from, besides the previous one.
pub(crate) struct Inputs<'a> {
    pub(crate) index: u64,
    pub(crate) ready: bool,
    pub(crate) instances: &'a [Instance],
    /// Node URL to its availability zone.
    pub(crate) zones: &'a HashMap<String, String>,
    pub(crate) include_degraded: bool,
    pub(crate) local_zone: Option<&'a str>,
}

impl Snapshot {
    /// The callable subset of `inputs.instances`, reusing `previous`'s in-flight counters.
    pub(crate) fn build(inputs: Inputs<'_>, previous: &Snapshot) -> Snapshot {
        let counters: HashMap<&str, &Arc<AtomicUsize>> = previous
            .endpoints
            .iter()
            .map(|e| (e.instance.id.as_str(), &e.in_flight))
            .collect();
        let mut callable: Vec<&Instance> = inputs
            .instances
            .iter()
            .filter(|i| accepts(i.status, inputs.include_degraded))
            .collect();
        callable.sort_by(|a, b| a.id.cmp(&b.id));
        callable.dedup_by(|a, b| a.id == b.id);
        let endpoints: Vec<Endpoint> = callable
            .into_iter()
            .map(|instance| Endpoint {
                zone: inputs
                    .zones
                    .get(&instance.node_url)
                    .filter(|zone| !zone.is_empty())
                    .cloned(),
                in_flight: counters
                    .get(instance.id.as_str())
                    .map(|c| Arc::clone(c))
                    .unwrap_or_default(),
                instance: Arc::new(instance.clone()),
            })
            .collect();
        let local_zone = inputs
            .local_zone
            .filter(|z| !z.is_empty())
            .map(str::to_string);
        let local = match &local_zone {
            Some(zone) => (0..endpoints.len())
                .filter(|&i| endpoints[i].zone.as_ref() == Some(zone))
                .collect(),
            None => Vec::new(),
        };
        Snapshot {
            index: inputs.index,
            ready: inputs.ready,
            all: (0..endpoints.len()).collect(),
            endpoints,
            local_zone,
            local,
        }
    }

    /// Whether `other` offers the same instances in the same zones (the index aside).
    pub(crate) fn same_choices(&self, other: &Snapshot) -> bool {
        self.ready == other.ready
            && self.endpoints.len() == other.endpoints.len()
            && self
                .endpoints
                .iter()
                .zip(&other.endpoints)
                .all(|(a, b)| a.instance == b.instance && a.zone == b.zone)
    }

    /// The registry's `X-Registry-Index` when these instances were listed (0 before the first
    /// list, or from a registry that sends none).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Whether the registry has answered at least once; before that the snapshot is empty
    /// because nothing is known yet, not because nothing is healthy.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// How many instances can be picked.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no instance can be picked.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The instances that can be picked, sorted by id.
    pub fn instances(&self) -> impl ExactSizeIterator<Item = &Instance> + '_ {
        self.endpoints.iter().map(|e| e.instance.as_ref())
    }

    /// Requests in flight to the instance `id` (picks whose [`Picked`](crate::Picked) is
    /// still alive); `None` if it is not in this snapshot.
    pub fn in_flight(&self, id: &str) -> Option<usize> {
        self.endpoints
            .iter()
            .find(|e| e.instance.id == id)
            .map(|e| e.in_flight.load(Ordering::Relaxed))
    }

    /// The availability zone of the node the instance `id` runs on, when known.
    pub fn zone_of(&self, id: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.instance.id == id)
            .and_then(|e| e.zone.as_deref())
    }
}

/// Whether an instance with `status` may be picked.
pub(crate) fn accepts(status: InstanceStatus, include_degraded: bool) -> bool {
    status == InstanceStatus::Healthy || (include_degraded && status == InstanceStatus::Degraded)
}

/// Node URL to availability zone.
pub(crate) fn zones_of(nodes: &[Node]) -> HashMap<String, String> {
    nodes
        .iter()
        .map(|n| (n.url.clone(), n.availability_zone.clone()))
        .collect()
}
