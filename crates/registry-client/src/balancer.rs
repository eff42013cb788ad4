//! Client-side load balancing: how [`Discovery::pick`](crate::Discovery::pick) chooses one
//! instance from a [`Snapshot`], and the [`Picked`] guard that counts requests in flight.

use crate::snapshot::Snapshot;
use rand::Rng;
use registry_types::Instance;
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A strategy for choosing one instance among the callable ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balancer {
    /// Each instance in turn (sorted by id), so `n` picks over `k` instances give each
    /// `n / k`.
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// Two distinct instances at random, then the one with fewer requests in flight (fewer
    /// live [`Picked`] guards): nearly as even as "least loaded" without scanning them all.
    PowerOfTwoChoices,
    /// Prefer instances whose node (`instance.nodeUrl`, matched to `node.url`) is in the
    /// caller's availability `zone`; when none there is callable, use all of them. `fallback`
    /// chooses among the preferred ones, or among all when falling back.
    ZoneAffinity {
        /// The caller's availability zone, as nodes report it (`availabilityZone`).
        zone: String,
        /// The strategy applied to the candidates (local ones, else all).
        fallback: Box<Balancer>,
    },
}

impl Balancer {
    /// [`Balancer::ZoneAffinity`] for `zone`, round-robin within the candidates.
    pub fn zone_affinity(zone: impl Into<String>) -> Balancer {
        Balancer::ZoneAffinity {
            zone: zone.into(),
            fallback: Box::new(Balancer::RoundRobin),
        }
    }

    /// Whether this strategy needs the nodes' zones.
    pub(crate) fn needs_zones(&self) -> bool {
        matches!(self, Balancer::ZoneAffinity { .. })
    }

    /// The zone a snapshot should precompute its local instances for.
    pub(crate) fn preferred_zone(&self) -> Option<&str> {
        match self {
            Balancer::ZoneAffinity { zone, .. } => Some(zone),
            _ => None,
        }
    }

    /// One instance of `snapshot`, counted in flight until the [`Picked`] drops; `None` when
    /// the snapshot is empty. `cursor` is the round-robin position, shared by all picks.
    pub(crate) fn pick(&self, snapshot: &Snapshot, cursor: &AtomicUsize) -> Option<Picked> {
        if snapshot.endpoints.is_empty() {
            return None;
        }
        let chosen = &snapshot.endpoints[self.choose(snapshot, &snapshot.all, cursor)];
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Picked {
            instance: Arc::clone(&chosen.instance),
            in_flight: Arc::clone(&chosen.in_flight),
        })
    }

    /// A position in `snapshot.endpoints` among `candidates` (never empty).
    fn choose(&self, snapshot: &Snapshot, candidates: &[usize], cursor: &AtomicUsize) -> usize {
        let count = candidates.len();
        match self {
            Balancer::RoundRobin => candidates[cursor.fetch_add(1, Ordering::Relaxed) % count],
            Balancer::Random => candidates[rand::thread_rng().gen_range(0..count)],
            Balancer::PowerOfTwoChoices => {
                if count == 1 {
                    return candidates[0];
                }
                let mut rng = rand::thread_rng();
                let first = rng.gen_range(0..count);
                let mut second = rng.gen_range(0..count - 1);
                if second >= first {
                    second += 1;
                }
                let (a, b) = (candidates[first], candidates[second]);
                let load = |i: usize| snapshot.endpoints[i].in_flight.load(Ordering::Relaxed);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
            Balancer::ZoneAffinity { zone, fallback } => {
                let local: Cow<'_, [usize]> = if snapshot.local_zone.as_ref() == Some(zone)
                    && candidates.len() == snapshot.all.len()
                {
                    Cow::Borrowed(&snapshot.local)
                } else {
                    Cow::Owned(
                        candidates
                            .iter()
                            .copied()
                            .filter(|&i| {
                                !zone.is_empty()
                                    && snapshot.endpoints[i].zone.as_ref() == Some(zone)
                            })
                            .collect(),
                    )
                };
                if local.is_empty() {
                    fallback.choose(snapshot, candidates, cursor)
                } else {
                    fallback.choose(snapshot, &local, cursor)
                }
            }
        }
    }
}

/// An instance chosen by [`Discovery::pick`](crate::Discovery::pick). It dereferences to the
/// [`Instance`]; while it lives, the instance counts one more request in flight (which
/// [`Balancer::PowerOfTwoChoices`] avoids), so keep it until the request is done.
pub struct Picked {
    instance: Arc<Instance>,
    in_flight: Arc<AtomicUsize>,
}

impl Picked {
    /// The chosen instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The instance's full address, e.g. `http://10.0.0.7:8080/api`.
    pub fn url(&self) -> &str {
        &self.instance.url
    }

    /// Requests in flight to this instance, this one included.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Deref for Picked {
    type Target = Instance;

    fn deref(&self) -> &Instance {
        &self.instance
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Picked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("id", &self.instance.id)
            .field("url", &self.instance.url)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Inputs;
    use registry_types::InstanceStatus;
    use std::collections::{BTreeMap, HashMap};

    fn instance(id: &str, status: InstanceStatus, node: &str) -> Instance {
        Instance {
            id: id.to_string(),
            url: format!("http://127.0.0.1:1/{id}"),
            slug: "svc".to_string(),
            node_url: node.to_string(),
            status,
            ..Default::default()
        }
    }

    fn healthy(ids: &[&str]) -> Vec<Instance> {
        ids.iter()
            .map(|id| instance(id, InstanceStatus::Healthy, ""))
            .collect()
    }

    fn snapshot_with(
        instances: &[Instance],
        zones: &HashMap<String, String>,
        include_degraded: bool,
        balancer: &Balancer,
    ) -> Snapshot {
        Snapshot::build(
            Inputs {
                index: 1,
                ready: true,
                instances,
                zones,
                include_degraded,
                local_zone: balancer.preferred_zone(),
            },
            &Snapshot::default(),
        )
    }

    fn snapshot(instances: &[Instance], balancer: &Balancer) -> Snapshot {
        snapshot_with(instances, &HashMap::new(), false, balancer)
    }

    /// How often each id is picked in `n` picks, each guard dropped at once.
    fn tally(balancer: &Balancer, snapshot: &Snapshot, n: usize) -> BTreeMap<String, usize> {
        let cursor = AtomicUsize::new(0);
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let picked = balancer.pick(snapshot, &cursor).unwrap();
            *counts.entry(picked.id.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let balancer = Balancer::RoundRobin;
        let snapshot = snapshot(&healthy(&["a", "b", "c"]), &balancer);
        let counts = tally(&balancer, &snapshot, 300);
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [100, 100, 100]
        );
    }

    #[test]
    fn round_robin_visits_each_in_turn() {
        let balancer = Balancer::RoundRobin;
        let snapshot = snapshot(&healthy(&["c", "a", "b"]), &balancer);
        let cursor = AtomicUsize::new(0);
        let order: Vec<String> = (0..6)
            .map(|_| balancer.pick(&snapshot, &cursor).unwrap().id.clone())
            .collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn random_is_roughly_even() {
        let balancer = Balancer::Random;
        let snapshot = snapshot(&healthy(&["a", "b", "c"]), &balancer);
        let counts = tally(&balancer, &snapshot, 3000);
        assert_eq!(counts.len(), 3, "{counts:?}");
        // Expected 1000 each, standard deviation about 26: 800..1200 fails about never.
        for (id, count) in &counts {
            assert!((800..=1200).contains(count), "{id}: {count} of 3000");
        }
    }

    #[test]
    fn power_of_two_choices_avoids_the_busiest() {
        let balancer = Balancer::PowerOfTwoChoices;
        let snapshot = snapshot(&healthy(&["a", "b", "c"]), &balancer);
        let cursor = AtomicUsize::new(0);
        // Load "b" with five requests in flight (round-robin shares the counters).
        let mut held = Vec::new();
        while held.len() < 5 {
            let picked = Balancer::RoundRobin.pick(&snapshot, &cursor).unwrap();
            if picked.id == "b" {
                held.push(picked);
            }
        }
        assert_eq!(snapshot.in_flight("b"), Some(5));
        assert_eq!(snapshot.in_flight("a"), Some(0));
        // Two distinct candidates always include a less busy one than "b".
        let counts = tally(&balancer, &snapshot, 600);
        assert_eq!(counts.get("b"), None, "{counts:?}");
        assert!(counts["a"] > 200 && counts["c"] > 200, "{counts:?}");
        drop(held);
        assert_eq!(snapshot.in_flight("b"), Some(0));
    }

    #[test]
    fn power_of_two_choices_balances_held_requests() {
        let balancer = Balancer::PowerOfTwoChoices;
        let snapshot = snapshot(&healthy(&["a", "b", "c", "d"]), &balancer);
        let cursor = AtomicUsize::new(0);
        let held: Vec<Picked> = (0..400)
            .map(|_| balancer.pick(&snapshot, &cursor).unwrap())
            .collect();
        for id in ["a", "b", "c", "d"] {
            let load = snapshot.in_flight(id).unwrap();
            assert!((80..=120).contains(&load), "{id}: {load} of 400 held");
        }
        assert_eq!(held.len(), 400);
    }

    #[test]
    fn single_instance_and_empty_sets() {
        for balancer in [
            Balancer::RoundRobin,
            Balancer::Random,
            Balancer::PowerOfTwoChoices,
            Balancer::zone_affinity("z1"),
        ] {
            let one = snapshot(&healthy(&["only"]), &balancer);
            let cursor = AtomicUsize::new(0);
            assert_eq!(
                balancer.pick(&one, &cursor).unwrap().url(),
                "http://127.0.0.1:1/only"
            );
            let none = snapshot(&[], &balancer);
            assert!(balancer.pick(&none, &cursor).is_none(), "{balancer:?}");
        }
    }

    fn zoned() -> (Vec<Instance>, HashMap<String, String>) {
        let instances = vec![
            instance("a1", InstanceStatus::Healthy, "http://node-a"),
            instance("a2", InstanceStatus::Healthy, "http://node-a"),
            instance("b1", InstanceStatus::Healthy, "http://node-b"),
            instance("x1", InstanceStatus::Healthy, ""),
        ];
        let zones = HashMap::from([
            ("http://node-a".to_string(), "zone-a".to_string()),
            ("http://node-b".to_string(), "zone-b".to_string()),
        ]);
        (instances, zones)
    }

    #[test]
    fn zone_affinity_keeps_to_the_local_zone() {
        let (instances, zones) = zoned();
        let balancer = Balancer::zone_affinity("zone-a");
        let snapshot = snapshot_with(&instances, &zones, false, &balancer);
        assert_eq!(snapshot.zone_of("a1"), Some("zone-a"));
        assert_eq!(snapshot.zone_of("x1"), None);
        let counts = tally(&balancer, &snapshot, 100);
        assert_eq!(
            counts,
            BTreeMap::from([("a1".into(), 50), ("a2".into(), 50)])
        );

        let nested = Balancer::ZoneAffinity {
            zone: "zone-b".into(),
            fallback: Box::new(Balancer::PowerOfTwoChoices),
        };
        let snapshot = snapshot_with(&instances, &zones, false, &nested);
        let counts = tally(&nested, &snapshot, 50);
        assert_eq!(counts, BTreeMap::from([("b1".into(), 50)]));
    }

    #[test]
    fn zone_affinity_falls_back_when_the_zone_has_none_healthy() {
        let (mut instances, zones) = zoned();
        for i in instances
            .iter_mut()
            .filter(|i| i.node_url == "http://node-a")
        {
            i.status = InstanceStatus::Unreachable;
        }
        let balancer = Balancer::zone_affinity("zone-a");
        let snapshot = snapshot_with(&instances, &zones, false, &balancer);
        let counts = tally(&balancer, &snapshot, 100);
        assert_eq!(
            counts,
            BTreeMap::from([("b1".into(), 50), ("x1".into(), 50)])
        );

        for zone in ["zone-c", ""] {
            let balancer = Balancer::zone_affinity(zone);
            let snapshot = snapshot_with(&instances, &zones, false, &balancer);
            assert_eq!(tally(&balancer, &snapshot, 100).len(), 2, "zone {zone:?}");
        }
    }

    #[test]
    fn only_healthy_unless_degraded_included() {
        let instances = vec![
            instance("h", InstanceStatus::Healthy, ""),
            instance("d", InstanceStatus::Degraded, ""),
            instance("u", InstanceStatus::Unknown, ""),
            instance("r", InstanceStatus::Unreachable, ""),
            instance("e", InstanceStatus::Error, ""),
        ];
        let balancer = Balancer::RoundRobin;
        let strict = snapshot_with(&instances, &HashMap::new(), false, &balancer);
        let ids: Vec<&str> = strict.instances().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["h"]);
        assert_eq!(
            tally(&balancer, &strict, 10).keys().collect::<Vec<_>>(),
            ["h"]
        );

        let lenient = snapshot_with(&instances, &HashMap::new(), true, &balancer);
        let ids: Vec<&str> = lenient.instances().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["d", "h"]);
        assert_eq!(tally(&balancer, &lenient, 10).len(), 2);
    }

    #[test]
    fn in_flight_counts_survive_a_new_snapshot() {
        let balancer = Balancer::RoundRobin;
        let first = snapshot(&healthy(&["a", "b"]), &balancer);
        let cursor = AtomicUsize::new(0);
        let held = balancer.pick(&first, &cursor).unwrap();
        assert_eq!(held.id, "a");
        assert_eq!(held.in_flight(), 1);
        let second = Snapshot::build(
            Inputs {
                index: 2,
                ready: true,
                instances: &healthy(&["a", "b", "c"]),
                zones: &HashMap::new(),
                include_degraded: false,
                local_zone: None,
            },
            &first,
        );
        assert_eq!(second.in_flight("a"), Some(1));
        drop(held);
        assert_eq!(second.in_flight("a"), Some(0));
        assert!(!first.same_choices(&second));
        assert!(second.same_choices(&second));
    }

    #[test]
    fn picked_exposes_the_instance() {
        let balancer = Balancer::Random;
        let snapshot = snapshot(&healthy(&["a"]), &balancer);
        let picked = balancer.pick(&snapshot, &AtomicUsize::new(0)).unwrap();
        assert_eq!(picked.instance().id, "a");
        assert_eq!(picked.slug, "svc");
        assert!(format!("{picked:?}").contains("in_flight: 1"));
    }
}
