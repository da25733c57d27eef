//! When will a waiting frame be taken? Estimated from the model runs in flight and the typical
//! length of a run, so that capture can keep a waiting frame fresh: it replaces the frame with
//! a newer one only when the model is about to take it (see `crate::capture`), rather than
//! scaling every decoded frame or letting the frame age behind a long run.

use std::time::{Duration, Instant};

/// The weight of the newest run in the running mean of run lengths.
const NEWEST_RUN_WEIGHT: f64 = 0.125;

#[derive(Debug, Default)]
pub(crate) struct Forecast {
    /// Start times of the runs in flight, oldest first (one per busy worker; the capacity
    /// settles at the number of workers, so pushing does not allocate in steady state).
    in_flight: Vec<Instant>,
    /// Running mean of a run's length (take → results handed on); none before the first run.
    run: Option<Duration>,
    /// Running mean of how far a run's length strays from `run`.
    spread: Duration,
}

impl Forecast {
    /// A worker took a batch and starts its run.
    pub(crate) fn started(&mut self, at: Instant) {
        self.in_flight.push(at);
    }

    /// The run that started at `started` ended after `took`.
    pub(crate) fn finished(&mut self, started: Instant, took: Duration) {
        match self.in_flight.iter().position(|s| *s == started) {
            Some(i) => {
                self.in_flight.remove(i);
            }
            // Not recorded (cannot happen through `Mailboxes`): retire the oldest.
            None if !self.in_flight.is_empty() => {
                self.in_flight.remove(0);
            }
            None => {}
        }
        let Some(mean) = self.run else {
            self.run = Some(took);
            return;
        };
        let off = took.abs_diff(mean);
        self.spread = self.spread.mul_f64(1.0 - NEWEST_RUN_WEIGHT) + off.mul_f64(NEWEST_RUN_WEIGHT);
        self.run = Some(mean.mul_f64(1.0 - NEWEST_RUN_WEIGHT) + took.mul_f64(NEWEST_RUN_WEIGHT));
    }

    /// How soon a worker may take the frame that has `batches_ahead` batches before it in the
    /// round-robin; `None` while no run has finished yet (no estimate). Runs in flight are
    /// expected to end early (mean − 2 × spread: a refresh that comes after the take is wasted
    /// and leaves the old frame to be taken), runs not started yet to take the mean. A run past
    /// its early end is expected to end now; one longer than runs go (mean + 2 × spread: a slow
    /// outlier, a stuck model) gives no estimate, so that not every decoded frame is scaled
    /// for a refresh while it lasts.
    pub(crate) fn until_taken(&self, batches_ahead: usize, now: Instant) -> Option<Duration> {
        let run = self.run?;
        let busy = self.in_flight.len();
        if busy == 0 {
            // A worker is idle: it takes the frame as soon as it wakes.
            return Some(Duration::ZERO);
        }
        // Busy workers free up in the order they started; each then takes the next batch.
        let start = self.in_flight[batches_ahead % busy];
        let spread2 = self.spread * 2;
        if now > start + run + spread2 {
            return None;
        }
        let free_at = (start + run.saturating_sub(spread2)).max(now);
        let later_rounds = u32::try_from(batches_ahead / busy).unwrap_or(u32::MAX);
        Some(free_at + run.saturating_mul(later_rounds) - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A forecast that has seen one run, of `took`, start at `t0` and end.
    fn after_one_run(t0: Instant, took: Duration) -> Forecast {
        let mut f = Forecast::default();
        f.started(t0);
        f.finished(t0, took);
        f
    }

    #[test]
    fn no_estimate_before_the_first_run_ends() {
        let mut f = Forecast::default();
        let t0 = Instant::now();
        f.started(t0);
        assert_eq!(f.until_taken(0, t0), None);
        f.finished(t0, 80 * MS);
        assert!(f.in_flight.is_empty());
    }

    #[test]
    fn a_frame_waits_for_the_running_batch_and_the_batches_ahead_of_it() {
        let t0 = Instant::now();
        let mut f = after_one_run(t0, 80 * MS);
        assert_eq!(f.until_taken(0, t0), Some(Duration::ZERO), "idle worker");
        f.started(t0);
        assert_eq!(f.until_taken(0, t0 + 30 * MS), Some(50 * MS));
        assert_eq!(f.until_taken(2, t0 + 30 * MS), Some(210 * MS), "two more runs first");
        assert_eq!(f.until_taken(0, t0 + 80 * MS), Some(Duration::ZERO), "a run at its end ends now");
        assert_eq!(f.until_taken(0, t0 + 100 * MS), None, "longer than runs go: no estimate");
    }

    #[test]
    fn several_workers_share_the_batches_ahead() {
        let t0 = Instant::now();
        let mut f = after_one_run(t0, 100 * MS);
        f.started(t0);
        f.started(t0 + 50 * MS);
        let now = t0 + 60 * MS;
        assert_eq!(f.until_taken(0, now), Some(40 * MS), "the first worker frees first");
        assert_eq!(f.until_taken(1, now), Some(90 * MS), "then the second");
        assert_eq!(f.until_taken(2, now), Some(140 * MS), "then the first again");
        f.finished(t0 + 50 * MS, 10 * MS);
        assert_eq!(f.in_flight, [t0], "the run that ended was retired, not the oldest");
    }

    #[test]
    fn runs_that_vary_are_expected_to_end_early() {
        let mut f = Forecast::default();
        let t0 = Instant::now();
        for took in [100, 60, 140, 60, 140, 60, 140, 60, 140] {
            f.finished(t0, took * MS);
        }
        f.started(t0);
        let until = f.until_taken(0, t0).unwrap();
        assert!(until < 60 * MS, "{until:?}");
        let next_round = f.until_taken(1, t0).unwrap() - until;
        assert!(next_round > 90 * MS, "later runs take the mean: {next_round:?}");
    }

    #[test]
    fn the_run_length_follows_the_recent_runs() {
        let mut f = Forecast::default();
        let t0 = Instant::now();
        f.finished(t0, 100 * MS);
        for _ in 0..40 {
            f.finished(t0, 50 * MS);
        }
        f.started(t0);
        let run = f.until_taken(1, t0).unwrap() - f.until_taken(0, t0).unwrap();
        assert!(run >= 50 * MS && run < 51 * MS, "{run:?}");
    }
}
