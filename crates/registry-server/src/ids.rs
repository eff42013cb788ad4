//! Every id the daemon makes, in one place: instance ids (ordered by creation time),
//! token ids, node ids, and the random text of token secrets.

use chrono::{DateTime, Utc};
use rand::Rng;

/// Base62 digits in ASCII order, so that ids compare as their numbers do.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters (`[0-9A-Za-z]`).
pub(crate) fn random_base62(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(BASE62[rng.gen_range(0..62)]))
        .collect()
}

/// A new instance id made at `now`: `inst_` and ten base62 characters (see
/// [`time_ordered_id`]).
pub(crate) fn instance_id(now: DateTime<Utc>) -> String {
    time_ordered_id("inst_", now)
}

/// A new token id: `tok_` and ten random base62 characters.
pub(crate) fn token_id() -> String {
    format!("tok_{}", random_base62(10))
}

/// A new node id: `node_` and ten random base62 characters.
pub(crate) fn node_id() -> String {
    format!("node_{}", random_base62(10))
}

/// `prefix` and ten base62 characters: seven of milliseconds since 2020 (enough for 111
/// years), then three random ones. New ids sort after older ones, so the store appends
/// them to the end of its key index instead of touching a random page of it per
/// registration, which is most of what a durable registration costs. Not a secret:
/// ownership is checked by token. Built in place: the writer makes one per registration.
fn time_ordered_id(prefix: &str, now: DateTime<Utc>) -> String {
    const EPOCH_2020_MS: i64 = 1_577_836_800_000;
    let mut millis = (now.timestamp_millis() - EPOCH_2020_MS).max(0) as u64;
    let mut digits = [0u8; 10];
    for digit in digits[..7].iter_mut().rev() {
        *digit = BASE62[(millis % 62) as usize];
        millis /= 62;
    }
    let mut rng = rand::thread_rng();
    for digit in &mut digits[7..] {
        *digit = BASE62[rng.gen_range(0..62)];
    }
    let mut id = String::with_capacity(prefix.len() + digits.len());
    id.push_str(prefix);
    id.push_str(std::str::from_utf8(&digits).expect("base62 digits are ASCII"));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_sort_by_creation_time() {
        let earlier = instance_id("2026-11-30T08:00:00.000Z".parse().unwrap());
        let later = instance_id("2026-11-30T08:00:00.001Z".parse().unwrap());
        let much_later = instance_id("2090-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(earlier.len(), 15);
        assert!(earlier.starts_with("inst_"));
        assert!(earlier[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(earlier[..12] < later[..12], "{earlier} {later}");
        assert!(later < much_later, "{later} {much_later}");
    }

    #[test]
    fn random_ids_are_base62() {
        let id = token_id();
        assert!(id.starts_with("tok_") && id.len() == 14, "{id}");
        assert!(id[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_ne!(node_id(), node_id());
    }
}
