//! How the tables hold an instance: as its wire JSON.
//!
//! A decoded [`Instance`] (a dozen `String`s, a map, options, each its own allocation)
//! takes several times the memory of its JSON, and with many instances that is most of
//! the daemon's memory. The JSON is what the store committed (so the tables keep that
//! same allocation), and it is what every list answer is made of, so a list is a copy
//! of bytes rather than a serialization. Readers that need fields decode, which is
//! cheap next to a request; the status, which discovery filters on, is kept beside the
//! JSON.

use arcstr::ArcStr;
use registry_types::{Instance, InstanceFilter, InstanceStatus};
use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// One instance in the tables (its id is the key it is kept under). Cheap to clone: one
/// reference count.
#[derive(Debug, Clone)]
pub(crate) struct StoredInstance {
    status: InstanceStatus,
    /// The very text the store committed, shared with the change announced to
    /// subscribers: one allocation per write, not one more for the tables.
    json: ArcStr,
}

impl StoredInstance {
    pub(super) fn new(instance: &Instance) -> Self {
        let json = serde_json::to_string(instance).expect("model types always serialize");
        Self::with_json(instance, json.into())
    }

    /// `json` must be `instance` as serialized (the body a store committed for it).
    pub(super) fn with_json(instance: &Instance, json: ArcStr) -> Self {
        StoredInstance {
            status: instance.status,
            json,
        }
    }

    /// What the latest checks found, without decoding.
    pub(crate) fn status(&self) -> InstanceStatus {
        self.status
    }

    /// The instance, decoded.
    pub(crate) fn decode(&self) -> Instance {
        // Made from an `Instance` by the same serde code, so it always reads back.
        serde_json::from_str(&self.json).expect("a stored instance decodes")
    }

    /// Whether it passes `filter`, decoding only for filters on fields not kept beside
    /// the JSON (id and slug are answered by the indexes before this).
    pub(crate) fn matches(&self, filter: &InstanceFilter) -> bool {
        if filter.status.is_some_and(|wanted| wanted != self.status) {
            return false;
        }
        filter.only_id_slug_status() || filter.matches(&self.decode())
    }
}

/// Serializes as the instance itself: its JSON, verbatim (checked as it is borrowed,
/// which costs a fraction of serializing it anew).
impl Serialize for StoredInstance {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.json).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_and_serializes_as_the_instance() {
        let instance = Instance {
            id: "i".into(),
            url: "http://127.0.0.1:9/x".into(),
            slug: "svc".into(),
            host: "127.0.0.1".into(),
            status: InstanceStatus::Healthy,
            tags: vec!["blue".into()],
            ..Default::default()
        };
        let stored = StoredInstance::new(&instance);
        assert_eq!(stored.decode(), instance);
        assert_eq!(
            serde_json::to_string(&[&stored]).unwrap(),
            serde_json::to_string(&[&instance]).unwrap()
        );
        let filter = |query: &str| registry_types::query::parse::<InstanceFilter>(query).unwrap();
        assert!(stored.matches(&filter("slug=svc&status=Healthy")));
        assert!(!stored.matches(&filter("status=Unreachable")));
        assert!(stored.matches(&filter("tag=blue&host=127.0.0.1")));
        assert!(!stored.matches(&filter("tag=green")));
    }
}
