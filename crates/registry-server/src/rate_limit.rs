//! Rate limits per caller: per token and per source address, in memory.
//!
//! Each key (a token, an address) has one cell of the generic cell rate algorithm (GCRA):
//! the time at which its next request would be "on schedule" at the sustained rate. A
//! request is admitted while that time runs no further ahead of now than the burst
//! allows, and moves it on by one interval. The cell is one atomic, so the hot path is a
//! read lock on one of many shards and a compare-and-swap, with no allocation once the
//! key is known.
//!
//! A cell whose time has passed holds nothing a new cell would not: such cells are the
//! ones dropped when a shard is full, so a caller rotating through addresses or tokens
//! costs a bounded table. If a shard is still full of callers that are ahead of
//! schedule, the one least ahead goes first, so the callers being throttled are the last
//! to be forgotten.

use crate::Error;
use hashbrown::HashTable;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The most requests a second a limit may allow, and the largest burst.
pub(crate) const MAX_RATE: u32 = 10_000_000;

/// Keys a limiter keeps at most (tokens or addresses seen recently).
const MAX_KEYS: usize = 65_536;

/// Shards of a limiter's table, so many keys rarely share a lock.
const SHARDS: usize = 64;
const _: () = assert!(SHARDS.is_power_of_two(), "shard_of takes the top bits");

/// A configured limit: off, or a sustained rate with a burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// No limit.
    Off,
    /// At most `rate` requests a second sustained, and `burst` at once.
    PerSecond {
        /// Requests a second, sustained.
        rate: u32,
        /// Requests at once, above the sustained rate.
        burst: u32,
    },
}

impl RateLimit {
    /// Parses `RATE[:BURST]` (requests a second; the burst defaults to one second's
    /// worth), or `off` / `0`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(RateLimit::Off);
        }
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_RATE).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{what} {part:?} is not a whole number from 1 to {MAX_RATE} \
                         (expected RATE[:BURST] in requests a second, or `off`)"
                    )
                })
        };
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (number(rate, "rate")?, number(burst, "burst")?),
            None => {
                let rate = number(text, "rate")?;
                (rate, rate)
            }
        };
        Ok(RateLimit::PerSecond { rate, burst })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimit::Off => f.write_str("off"),
            RateLimit::PerSecond { rate, burst } => write!(f, "{rate}:{burst}"),
        }
    }
}

/// Which limit a request ran into, and when the caller may try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `token` or `source address`.
    per: &'static str,
    rate: u32,
    burst: u32,
    retry_after: Duration,
}

impl From<Limited> for Error {
    fn from(limited: Limited) -> Error {
        // Retry-After is in whole seconds; rounding down could send the caller back early.
        let retry_after_secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        Error::TooManyRequests {
            message: format!(
                "rate limit per {} exceeded ({} requests a second, bursts of {}); \
                 retry in {retry_after_secs}s",
                limited.per, limited.rate, limited.burst,
            ),
            retry_after_secs,
        }
    }
}

/// The daemon's rate limits.
pub(crate) struct RateLimits {
    origin: Instant,
    per_token: Option<Limiter<u64>>,
    per_address: Option<Limiter<IpAddr>>,
    /// Keys tokens by a keyed hash of the secret: no SHA-256 per request, and the
    /// secret itself is kept nowhere here.
    token_keys: std::hash::RandomState,
}

impl RateLimits {
    pub(crate) fn new(per_token: RateLimit, per_address: RateLimit) -> RateLimits {
        RateLimits {
            origin: Instant::now(),
            per_token: Limiter::new("token", per_token, MAX_KEYS),
            per_address: Limiter::new("source address", per_address, MAX_KEYS),
            token_keys: std::hash::RandomState::new(),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Counts a request made with the token `secret` (one that authenticated).
    pub(crate) fn admit_token(&self, secret: &str) -> Result<(), Limited> {
        match &self.per_token {
            Some(limiter) => limiter.admit(self.token_keys.hash_one(secret), self.now()),
            None => Ok(()),
        }
    }

    /// Counts a request from `address`. IPv6 addresses count by their /64, the block a
    /// single host is usually given, so a host cannot take a fresh budget per address.
    pub(crate) fn admit_address(&self, address: IpAddr) -> Result<(), Limited> {
        match &self.per_address {
            Some(limiter) => limiter.admit(address_key(address), self.now()),
            None => Ok(()),
        }
    }
}

fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The shard of a key's hash. The table inside a shard places keys by the hash's low
/// bits and tags them with its top ones, so the shard is taken from a multiplicative
/// mix of all of them (the bits in between alone are unevenly spread for some keys).
fn shard_of(hash: u64) -> usize {
    (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// Per key, the time (ns since the origin) its next request is on schedule.
type Schedules<K> = HashTable<(K, AtomicU64)>;

/// One limit over many keys.
struct Limiter<K> {
    per: &'static str,
    rate: u32,
    burst: u32,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now a key's schedule may run: the burst.
    tolerance: u64,
    hasher: hashbrown::DefaultHashBuilder,
    shards: Box<[RwLock<Schedules<K>>]>,
    keys_per_shard: usize,
}

impl<K: Hash + Eq + Copy> Limiter<K> {
    fn new(per: &'static str, limit: RateLimit, max_keys: usize) -> Option<Limiter<K>> {
        let RateLimit::PerSecond { rate, burst } = limit else {
            return None;
        };
        let interval = 1_000_000_000 / u64::from(rate);
        Some(Limiter {
            per,
            rate,
            burst,
            interval,
            tolerance: interval * u64::from(burst),
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Default::default()).collect(),
            keys_per_shard: (max_keys / SHARDS).max(1),
        })
    }

    fn admit(&self, key: K, now: u64) -> Result<(), Limited> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[shard_of(hash)];
        let is_key = |(k, _): &(K, AtomicU64)| *k == key;
        if let Some((_, next)) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(hash, is_key)
        {
            return self.take(next, now);
        }
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= self.keys_per_shard && table.find(hash, is_key).is_none() {
            self.make_room(&mut table, now);
        }
        let entry = table
            .entry(hash, is_key, |(k, _)| self.hasher.hash_one(k))
            .or_insert_with(|| (key, AtomicU64::new(0)));
        self.take(&entry.get().1, now)
    }

    /// One request against a key's schedule.
    fn take(&self, next: &AtomicU64, now: u64) -> Result<(), Limited> {
        let mut seen = next.load(Ordering::Relaxed);
        loop {
            let moved = seen.max(now) + self.interval;
            if moved > now + self.tolerance {
                return Err(Limited {
                    per: self.per,
                    rate: self.rate,
                    burst: self.burst,
                    retry_after: Duration::from_nanos(moved - now - self.tolerance),
                });
            }
            match next.compare_exchange_weak(seen, moved, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Frees at least one slot in a full shard: keys back on schedule are dropped
    /// (they hold nothing), else the key least ahead of it.
    fn make_room(&self, table: &mut Schedules<K>, now: u64) {
        table.retain(|(_, next)| *next.get_mut() > now);
        if table.len() < self.keys_per_shard {
            return;
        }
        let least_ahead = table
            .iter()
            .min_by_key(|(_, next)| next.load(Ordering::Relaxed))
            .map(|(key, _)| *key);
        if let Some(key) = least_ahead {
            if let Ok(entry) = table.find_entry(self.hasher.hash_one(key), |(k, _)| *k == key) {
                entry.remove();
            }
        }
    }

    #[cfg(test)]
    fn contains(&self, key: K) -> bool {
        let hash = self.hasher.hash_one(key);
        self.shards[shard_of(hash)]
            .read()
            .unwrap()
            .find(hash, |(k, _)| *k == key)
            .is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap().len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limiter(rate: u32, burst: u32, max_keys: usize) -> Limiter<u32> {
        Limiter::new("token", RateLimit::PerSecond { rate, burst }, max_keys).unwrap()
    }

    #[test]
    fn parses_rate_burst_and_off() {
        assert_eq!(
            RateLimit::parse("100"),
            Ok(RateLimit::PerSecond {
                rate: 100,
                burst: 100
            })
        );
        assert_eq!(
            RateLimit::parse(" 5:20 "),
            Ok(RateLimit::PerSecond { rate: 5, burst: 20 })
        );
        assert_eq!(RateLimit::parse("off"), Ok(RateLimit::Off));
        assert_eq!(RateLimit::parse("OFF"), Ok(RateLimit::Off));
        assert_eq!(RateLimit::parse("0"), Ok(RateLimit::Off));
        for bad in [
            "", "-1", "1.5", "ten", "5:0", "5:", ":5", "10000001", "1:2:3",
        ] {
            let error = RateLimit::parse(bad).unwrap_err();
            assert!(error.contains("RATE[:BURST]"), "{bad:?}: {error}");
        }
        let limit = RateLimit::parse("7:9").unwrap();
        assert_eq!(RateLimit::parse(&limit.to_string()), Ok(limit));
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = limiter(10, 3, 64);
        for _ in 0..3 {
            assert_eq!(limiter.admit(1, 0), Ok(()));
        }
        let limited = limiter.admit(1, 0).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(100));
        assert_eq!(
            limiter.admit(2, 0),
            Ok(()),
            "another key has its own budget"
        );
        // One interval later there is room for one more, not two.
        assert_eq!(limiter.admit(1, SECOND / 10), Ok(()));
        assert!(limiter.admit(1, SECOND / 10).is_err());
        // Idle for long enough, the whole burst is back.
        for _ in 0..3 {
            assert_eq!(limiter.admit(1, 10 * SECOND), Ok(()));
        }
        assert!(limiter.admit(1, 10 * SECOND).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let error = |millis| {
            Error::from(Limited {
                per: "token",
                rate: 1,
                burst: 1,
                retry_after: Duration::from_millis(millis),
            })
        };
        for (millis, secs) in [(1, 1), (999, 1), (1000, 1), (1001, 2), (2500, 3)] {
            match error(millis) {
                Error::TooManyRequests {
                    retry_after_secs,
                    message,
                } => {
                    assert_eq!(retry_after_secs, secs, "{millis} ms");
                    assert!(message.contains("per token"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_table_stays_bounded_under_rotating_keys() {
        let max_keys = SHARDS * 4;
        let limiter = limiter(1, 2, max_keys);
        // A throttled key, then a flood of keys seen once each while it is still ahead
        // of its schedule (a caller rotating through addresses or bogus tokens).
        assert!(limiter.admit(0, 0).is_ok());
        assert!(limiter.admit(0, 0).is_ok());
        assert!(limiter.admit(0, 0).is_err());
        for key in 1..100_000 {
            assert!(limiter.admit(key, SECOND / 2).is_ok());
            assert!(limiter.len() <= max_keys, "{} keys", limiter.len());
        }
        assert!(
            limiter.admit(0, SECOND / 2).is_err(),
            "the throttled key was forgotten, its budget renewed"
        );
        // Long after, every old key is back on schedule: the next new key of each full
        // shard clears it of them.
        for key in 200_000..200_000 + SHARDS as u32 * 16 {
            assert!(limiter.admit(key, 100 * SECOND).is_ok());
        }
        assert!(limiter.len() <= max_keys);
        assert!(
            (0..100_000).all(|key| !limiter.contains(key)),
            "idle keys were kept"
        );
    }

    #[test]
    fn addresses_count_by_host_or_v6_block() {
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
    }

    #[test]
    fn off_admits_everything() {
        let limits = RateLimits::new(RateLimit::Off, RateLimit::Off);
        for _ in 0..10_000 {
            assert!(limits.admit_token("secret").is_ok());
            assert!(limits.admit_address([127, 0, 0, 1].into()).is_ok());
        }
        let limits = RateLimits::new(RateLimit::parse("1:1").unwrap(), RateLimit::Off);
        assert!(limits.admit_token("a").is_ok());
        assert!(limits.admit_token("a").is_err());
        assert!(limits.admit_token("b").is_ok());
    }
}
