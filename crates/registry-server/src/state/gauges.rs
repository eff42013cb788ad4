//! What the tables hold, counted at scrape time for `/metrics`: instances by slug and
//! status, definitions, tokens. Nothing is counted on the write path.

use super::{Registry, Tables};
use crate::metrics::{encode_gauge, encode_gauges};
use arcstr::ArcStr;
use hashbrown::HashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use registry_types::InstanceStatus;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The slug the instances of every slug past the largest ones are counted under.
pub(crate) const OTHER_SLUGS: &str = "_other";

/// Instances of each status, in the order of [`InstanceStatus::ALL`].
type ByStatus = [u64; InstanceStatus::ALL.len()];

fn status_index(status: InstanceStatus) -> usize {
    InstanceStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("ALL has every status")
}

impl Tables {
    /// Instances by status for each slug: the `max_slugs` slugs with the most instances
    /// (ties by name), then, when there are more, the rest summed under [`OTHER_SLUGS`].
    fn instances_by_slug(&self, max_slugs: usize) -> Vec<(String, ByStatus)> {
        let mut slugs: Vec<(&str, &BTreeSet<ArcStr>)> = self
            .instances_by_slug
            .iter()
            .map(|(slug, ids)| (&**slug, ids))
            .collect();
        slugs.sort_unstable_by(|(a, x), (b, y)| y.len().cmp(&x.len()).then(a.cmp(b)));
        let counted = max_slugs.min(slugs.len());
        // The slug index and the id tree share each id's one allocation, so an id of the
        // tree is found among the counted slugs' by its address: one pass over the tree,
        // with no string compared or hashed per instance.
        let mut place: HashMap<usize, usize> =
            HashMap::with_capacity(slugs[..counted].iter().map(|(_, ids)| ids.len()).sum());
        for (index, (_, ids)) in slugs[..counted].iter().enumerate() {
            place.extend(ids.iter().map(|id| (id.as_ptr() as usize, index)));
        }
        // One more for the rest.
        let mut counts = vec![ByStatus::default(); counted + 1];
        for (id, stored) in &self.instances {
            let index = place.get(&(id.as_ptr() as usize)).copied();
            counts[index.unwrap_or(counted)][status_index(stored.status())] += 1;
        }
        let rest = counts.pop().expect("one more than the counted slugs");
        let mut by_slug: Vec<(String, ByStatus)> = slugs[..counted]
            .iter()
            .map(|(slug, _)| slug.to_string())
            .zip(counts)
            .collect();
        if slugs.len() > counted {
            by_slug.push((OTHER_SLUGS.to_string(), rest));
        }
        by_slug
    }
}

/// Counts the tables at each scrape.
#[derive(Debug)]
pub(crate) struct TablesCollector {
    pub(crate) registry: Arc<Registry>,
    /// Slugs with a series of their own; see [`Tables::instances_by_slug`].
    pub(crate) max_slugs: usize,
}

impl Collector for TablesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (by_slug, definitions, tokens) = {
            let tables = self.registry.read();
            (
                tables.instances_by_slug(self.max_slugs),
                tables.definitions.len(),
                tables.tokens.len(),
            )
        };
        encode_gauges(
            &mut encoder,
            "instances",
            "Instances by slug and status (past the largest slugs, the rest under slug=\"_other\")",
            by_slug.iter().flat_map(|(slug, counts)| {
                InstanceStatus::ALL
                    .iter()
                    .zip(counts)
                    .map(|(status, count)| {
                        (
                            [("slug", slug.as_str()), ("status", status.as_str())],
                            *count,
                        )
                    })
            }),
        )?;
        encode_gauge(
            &mut encoder,
            "definitions",
            "Service definitions",
            definitions as u64,
        )?;
        encode_gauge(&mut encoder, "tokens", "API tokens", tokens as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Mutation, Record};
    use registry_types::Instance;

    #[test]
    fn the_largest_slugs_are_counted_apart_and_the_rest_together() {
        let mut tables = Tables::default();
        let mut revision = 0;
        let mut add = |slug: &str, status: InstanceStatus| {
            revision += 1;
            tables.apply(
                Mutation::Put(Record::Instance(Instance {
                    id: format!("i{revision}"),
                    slug: slug.into(),
                    url: format!("http://127.0.0.1:{revision}"),
                    status,
                    ..Default::default()
                })),
                revision,
            );
        };
        for _ in 0..3 {
            add("big", InstanceStatus::Healthy);
        }
        add("big", InstanceStatus::Unreachable);
        add("mid", InstanceStatus::Healthy);
        add("mid", InstanceStatus::Healthy);
        add("b-small", InstanceStatus::Unknown);
        add("a-small", InstanceStatus::Error);
        // Unknown, Healthy, Degraded, Unreachable, Error
        assert_eq!(
            tables.instances_by_slug(2),
            [
                ("big".to_string(), [0, 3, 0, 1, 0]),
                ("mid".to_string(), [0, 2, 0, 0, 0]),
                (OTHER_SLUGS.to_string(), [1, 0, 0, 0, 1]),
            ]
        );
        // Ties go by name; no `_other` when every slug fits.
        let all = tables.instances_by_slug(10);
        let names: Vec<&str> = all.iter().map(|(slug, _)| slug.as_str()).collect();
        assert_eq!(names, ["big", "mid", "a-small", "b-small"]);
        assert_eq!(
            tables.instances_by_slug(0),
            [(OTHER_SLUGS.to_string(), [1, 5, 0, 1, 1])]
        );
    }
}
