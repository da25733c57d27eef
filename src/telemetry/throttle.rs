//! Log lines for events that can repeat at the frame rate (a model failing on every frame, a
//! Redis refusing every entry): the first is logged, then at most one per interval, carrying
//! how many were not logged since. Every event is still counted in the metrics.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// One kind of repeated event, for one thread or task.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    next_log: Cell<Option<Instant>>,
    unlogged: Cell<u64>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self { every, next_log: Cell::new(None), unlogged: Cell::new(0) }
    }

    /// Whether an event at `now` gets a log line: `Some(events not logged since the last
    /// line)`, or `None` within `every` of it.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        if self.next_log.get().is_some_and(|next| now < next) {
            self.unlogged.set(self.unlogged.get() + 1);
            return None;
        }
        self.next_log.set(Some(now + self.every));
        Some(self.unlogged.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_once_per_interval_with_the_count_in_between() {
        let every = Duration::from_secs(10);
        let log = LogThrottle::new(every);
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0), "the first is logged");
        let frame = Duration::from_millis(100);
        assert!((1..=99).all(|i| log.admit(t0 + frame * i).is_none()), "10 per second for 10 s: quiet");
        assert_eq!(log.admit(t0 + every), Some(99), "then one line with the count");
        assert_eq!(log.admit(t0 + every * 3), Some(0));
    }
}
