//! Exponential backoff with jitter, for retrying a registry that is unreachable or failing.

use rand::Rng;
use std::time::Duration;

/// Delays between retries: from `min`, doubling after each failure up to `max`, each delay
/// drawn at random from its upper half so that many clients do not retry in step.
///
/// ```
/// use registry_client::Backoff;
/// use std::time::Duration;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// backoff.reset(); // after a success
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and never above `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay before the next retry: a random point in the upper half of the current step,
    /// which then doubles (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let low = step / 2;
        low + step.mul_f64(rand::thread_rng().gen_range(0.0..=0.5))
    }

    /// Starts again from `min`; call it after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let steps = [100, 200, 400, 800, 800, 800];
        for step in steps {
            let step = Duration::from_millis(step);
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn max_below_min_is_raised() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_millis(1));
        assert!(backoff.next_delay() <= Duration::from_secs(1));
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }
}
