//! Serialized answers of instance lists, so watchers woken by one change, and the many
//! callers asking for the same slug, share one serialization instead of each making it.
//!
//! An entry is keyed by the canonical filter and valid for one
//! [`Tables::instances_version`](crate::state::Tables::instances_version): any committed
//! instance change or in-memory health update makes every entry stale.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache starts over (a bound against many distinct filters).
const MAX_ENTRIES: usize = 4096;

type Version = (u64, u64);

#[derive(Default)]
pub struct ListCache {
    entries: Mutex<HashMap<String, (Version, Bytes)>>,
}

impl ListCache {
    pub fn get(&self, key: &str, version: Version) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(cached, _)| *cached == version)
            .map(|(_, body)| body.clone())
    }

    pub fn put(&self, key: String, version: Version, body: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        // Never replace a newer answer with an older one computed concurrently.
        if entries
            .get(&key)
            .is_none_or(|(cached, _)| *cached <= version)
        {
            entries.insert(key, (version, body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_its_version() {
        let cache = ListCache::default();
        cache.put("slug=a".into(), (5, 0), Bytes::from_static(b"five"));
        assert_eq!(cache.get("slug=a", (5, 0)).as_deref(), Some(&b"five"[..]));
        assert_eq!(
            cache.get("slug=a", (5, 1)),
            None,
            "a health update makes it stale"
        );
        assert_eq!(cache.get("slug=a", (6, 0)), None);
        cache.put("slug=a".into(), (4, 9), Bytes::from_static(b"older"));
        assert_eq!(
            cache.get("slug=a", (5, 0)).as_deref(),
            Some(&b"five"[..]),
            "kept the newer"
        );
    }
}
