//! Answers worked out once and reused while what they were made from is unchanged.
//!
//! An entry is kept with the version of the tables it was made from and served only for
//! that same version, so a change makes it stale at once, with no invalidation step to
//! forget. Two caches use it: serialized instance lists (watchers woken by one change,
//! and the many callers asking for one slug, share one serialization) and verified
//! tokens (a known token costs a lookup, not a SHA-256).

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before a cache starts over (a bound against many distinct keys).
const MAX_ENTRIES: usize = 4096;

pub(crate) struct VersionedCache<V, Version> {
    entries: Mutex<HashMap<Box<str>, (Version, V)>>,
}

impl<V, Version> Default for VersionedCache<V, Version> {
    fn default() -> Self {
        VersionedCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone, Version: Ord + Copy> VersionedCache<V, Version> {
    /// The value kept for `key`, if it was made from `version`.
    pub(crate) fn get(&self, key: &str, version: Version) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(made_from, _)| *made_from == version)
            .map(|(_, value)| value.clone())
    }

    pub(crate) fn put(&self, key: &str, version: Version, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.clear();
        }
        // Never replace a newer value with an older one made concurrently.
        match entries.get_mut(key) {
            Some(kept) if kept.0 > version => {}
            Some(kept) => *kept = (version, value),
            None => {
                entries.insert(key.into(), (version, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_its_version() {
        let cache = VersionedCache::default();
        cache.put("slug=a", (5, 0), "five");
        assert_eq!(cache.get("slug=a", (5, 0)), Some("five"));
        assert_eq!(
            cache.get("slug=a", (5, 1)),
            None,
            "a health update makes it stale"
        );
        assert_eq!(cache.get("slug=a", (6, 0)), None);
        cache.put("slug=a", (4, 9), "older");
        assert_eq!(cache.get("slug=a", (5, 0)), Some("five"), "kept the newer");
        cache.put("slug=a", (6, 0), "six");
        assert_eq!(cache.get("slug=a", (6, 0)), Some("six"));
    }

    #[test]
    fn it_starts_over_when_full() {
        let cache = VersionedCache::default();
        for n in 0..MAX_ENTRIES {
            cache.put(&n.to_string(), 1, n);
        }
        assert_eq!(cache.get("0", 1), Some(0));
        cache.put("one more", 1, 0);
        assert_eq!(cache.get("0", 1), None);
        assert_eq!(cache.get("one more", 1), Some(0));
    }
}
