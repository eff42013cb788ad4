//! What an accept loop (HTTP or DNS over TCP) does when an accept fails.

use std::time::{Duration, Instant};

/// Pause after an accept that failed for want of resources, so the loop does not spin.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(50);
/// Longest silence between two log lines of failed accepts.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The failed accepts of one loop: each is logged (at most once a [`LOG_EVERY`]), and one
/// for want of descriptors or memory pauses the loop.
#[derive(Default)]
pub(crate) struct AcceptErrors {
    logged: Option<Instant>,
}

impl AcceptErrors {
    /// Logs `error` of the listener `what` if a line is due, and waits when retrying at
    /// once would fail again: out of descriptors (or memory) lasts until connections close.
    pub(crate) async fn failed(&mut self, what: &str, error: &std::io::Error) {
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY)
        {
            self.logged = Some(now);
            tracing::warn!(%error, listener = what, "cannot accept a connection");
        }
        if is_resource_exhaustion(error) {
            tokio::time::sleep(EXHAUSTED_PAUSE).await;
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the accept fails again until something is freed.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
