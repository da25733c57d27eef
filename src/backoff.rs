//! Capped exponential backoff for reconnect loops, reset once a session was healthy, with
//! jitter: boxes that lost the same server at the same moment do not all retry in step.

use std::time::Duration;

/// Delays between reconnect attempts: `initial`, doubling, never above `max`; each delay
/// handed out is a random point in its upper half ("equal jitter").
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self { initial, max, next: initial, rng: fastrand::Rng::new() }
    }

    /// The delay to wait now, between half the scheduled one and all of it; the schedule
    /// doubles, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let scheduled = self.next;
        self.next = (self.next * 2).min(self.max);
        scheduled / 2 + scheduled.mul_f64(self.rng.f64() / 2.0)
    }

    /// Back to the initial delay, after a session that worked.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_each_delay_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        for (delay, scheduled) in got.iter().zip([500, 1000, 2000, 3000, 3000]) {
            assert!((scheduled / 2..=scheduled).contains(delay), "{got:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn two_boxes_do_not_retry_in_step() {
        let delays = |seed| {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            b.rng = fastrand::Rng::with_seed(seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(delays(1), delays(2));
    }
}
