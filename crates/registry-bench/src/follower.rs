//! What the driver of `registry-bench watch` shares with its followers: the blocking
//! watchers (`watch.rs`) and the event-stream subscribers (`sse.rs`). Each follower is
//! given a [`Follower`], reads the daemon's answers or events, and reports a [`Seen`] once
//! one meets what the driver [`Expect`]s.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// No change is timed yet.
pub(crate) const NO_CHANGE: u64 = u64::MAX;

/// The tag that marks timed change `change`, as it appears (quoted) in an answer.
pub(crate) fn tag(change: u64) -> String {
    format!("bench-change-{change}")
}

/// What the driver currently waits for; see `watch::measure`.
pub(crate) struct Expect {
    pub appear: AtomicU64,
    pub gone: AtomicU64,
    /// The number and id of the instance `gone` names, set before `gone` (subscribers
    /// look for its delete event, which carries only the id).
    pub gone_id: std::sync::Mutex<(u64, String)>,
}

/// What each watcher (or SSE subscriber) is given.
pub(crate) struct Follower {
    /// How long to wait before connecting.
    pub delay: Duration,
    pub address: String,
    pub token: String,
    pub expect: Arc<Expect>,
    /// Where to report what it saw: (what, when its answer was in, answer size).
    pub seen: mpsc::UnboundedSender<(Seen, Instant, usize)>,
    /// Connections made, and followers that have had their first answer.
    pub connects: Arc<AtomicU64>,
    pub ready: Arc<AtomicU64>,
}

/// What a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// An answer held the instance numbered so.
    Appeared(u64),
    /// An answer no longer held the instance numbered so.
    Gone(u64),
}

/// Where `needle` (a short ASCII delimiter) first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(at) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + at;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}
