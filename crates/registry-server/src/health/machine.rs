//! The status machine: a status changes only after enough consecutive checks agree.

use registry_types::InstanceStatus;
use std::time::Instant;

/// Whether a status means the instance answered.
pub(super) fn is_alive(status: InstanceStatus) -> bool {
    matches!(status, InstanceStatus::Healthy | InstanceStatus::Degraded)
}

#[derive(Debug, Clone)]
pub(super) struct Machine {
    status: InstanceStatus,
    /// The status the latest checks suggest, and how many in a row did.
    streak: Option<(InstanceStatus, u32)>,
    unreachable_since: Option<Instant>,
}

impl Machine {
    pub(super) fn new(status: InstanceStatus) -> Machine {
        let mut machine = Machine {
            status,
            streak: None,
            unreachable_since: None,
        };
        machine.set(status);
        machine
    }

    pub(super) fn status(&self) -> InstanceStatus {
        self.status
    }

    /// Since when the instance has been Unreachable, if it is.
    pub(super) fn unreachable_since(&self) -> Option<Instant> {
        self.unreachable_since
    }

    /// Takes the status as the store has it (after a change made elsewhere, such as a
    /// TTL heartbeat), keeping the streak.
    pub(super) fn set(&mut self, status: InstanceStatus) {
        if status == InstanceStatus::Unreachable {
            self.unreachable_since.get_or_insert_with(Instant::now);
        } else {
            self.unreachable_since = None;
        }
        self.status = status;
    }

    /// Counts one check that suggests `seen`; returns the new status when the streak
    /// reaches the threshold (`healthy` for answers, `unhealthy` for failures). A failure
    /// of an instance still Unknown counts at once: there is no good status to keep from
    /// flapping, and the caller learns at its first check that the address is dead.
    pub(super) fn observe(
        &mut self,
        seen: InstanceStatus,
        healthy: u32,
        unhealthy: u32,
    ) -> Option<InstanceStatus> {
        let count = match self.streak {
            Some((status, count)) if status == seen => count + 1,
            _ => 1,
        };
        self.streak = Some((seen, count));
        let threshold = match (is_alive(seen), self.status) {
            (true, _) => healthy,
            (false, InstanceStatus::Unknown) => 1,
            (false, _) => unhealthy,
        };
        if seen != self.status && count >= threshold {
            self.set(seen);
            Some(seen)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceStatus::*;

    #[test]
    fn one_failure_does_not_flap_a_service() {
        let mut m = Machine::new(Healthy);
        assert_eq!(m.observe(Unreachable, 1, 2), None);
        assert_eq!(
            m.observe(Healthy, 1, 2),
            None,
            "still healthy, the streak restarts"
        );
        assert_eq!(m.observe(Unreachable, 1, 2), None);
        assert_eq!(m.observe(Unreachable, 1, 2), Some(Unreachable));
        assert!(m.unreachable_since().is_some());
        assert_eq!(m.observe(Unreachable, 1, 2), None, "no change, no report");
        assert_eq!(m.observe(Healthy, 1, 2), Some(Healthy));
        assert!(m.unreachable_since().is_none());
    }

    #[test]
    fn thresholds_count_consecutive_agreeing_checks() {
        let mut m = Machine::new(Unknown);
        assert_eq!(m.observe(Healthy, 3, 1), None);
        assert_eq!(m.observe(Healthy, 3, 1), None);
        assert_eq!(m.observe(Healthy, 3, 1), Some(Healthy));
        assert_eq!(m.observe(Error, 3, 1), Some(Error));
        assert_eq!(m.observe(Degraded, 1, 1), Some(Degraded));
    }

    #[test]
    fn an_unknown_instance_fails_at_its_first_failed_check() {
        let mut m = Machine::new(Unknown);
        assert_eq!(m.observe(Unreachable, 1, 3), Some(Unreachable));
        let mut m = Machine::new(Unknown);
        assert_eq!(m.observe(Error, 1, 3), Some(Error));
        // Success still needs its threshold: Unknown is not served either.
        let mut m = Machine::new(Unknown);
        assert_eq!(m.observe(Healthy, 2, 3), None);
        assert_eq!(m.observe(Healthy, 2, 3), Some(Healthy));
    }
}
