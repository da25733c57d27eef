//! Which decoded frames go on to be scaled and handed to inference.
//!
//! Nothing waiting in the camera's mailbox: the fps cap decides ([`RateLimiter`]). A frame
//! waiting behind the model: the new one is scaled and replaces it only when the model is about
//! to take it (a *refresh*, [`crate::mailbox::Mailboxes::refresh_due`]); otherwise it is dropped
//! before scaling, since a fresher one will come in time. So the frame the model gets is
//! usually at most about two source frames old, and few frames are scaled only to be replaced.

use std::time::Duration;

use super::rate::RateLimiter;

/// Source frame intervals outside this range are discontinuities (a seek, a restart), not rates.
const PLAUSIBLE_INTERVAL: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));

/// The weight of the newest interval in the running mean.
const NEWEST_INTERVAL_WEIGHT: f64 = 0.125;

/// What happens to a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Scaled and handed over under the fps cap.
    Admit,
    /// Scaled to replace the frame waiting in the mailbox, which the model is about to take.
    Refresh,
    /// Dropped before scaling (counted as `rate_limit`).
    Skip,
}

#[derive(Debug)]
pub(crate) struct Admission {
    limiter: RateLimiter,
    last_pts: Option<Duration>,
    /// Running mean of the source's frame interval, once two frames were seen.
    interval: Option<Duration>,
}

impl Admission {
    pub(crate) fn new(fps_cap: f64) -> Self {
        Self { limiter: RateLimiter::new(fps_cap), last_pts: None, interval: None }
    }

    /// Decides for the frame at stream time `pts`. `refresh_due` answers, for the source's
    /// frame interval, whether a frame is waiting and due for a refresh (`None`: none waits).
    pub(crate) fn decide(&mut self, pts: Duration, refresh_due: impl FnOnce(Duration) -> Option<bool>) -> Decision {
        self.observe(pts);
        match self.interval.and_then(refresh_due) {
            Some(true) => Decision::Refresh,
            Some(false) => Decision::Skip,
            None if self.limiter.admit(pts) => Decision::Admit,
            None => Decision::Skip,
        }
    }

    fn observe(&mut self, pts: Duration) {
        if let Some(last) = self.last_pts.replace(pts)
            && let Some(delta) = pts.checked_sub(last)
            && (PLAUSIBLE_INTERVAL.0..=PLAUSIBLE_INTERVAL.1).contains(&delta)
        {
            self.interval = Some(match self.interval {
                None => delta,
                Some(mean) => mean.mul_f64(1.0 - NEWEST_INTERVAL_WEIGHT) + delta.mul_f64(NEWEST_INTERVAL_WEIGHT),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn with_nothing_waiting_the_fps_cap_decides() {
        let mut a = Admission::new(10.0);
        let decisions: Vec<_> = (0..10).map(|i| a.decide(i * 40 * MS, |_| None)).collect();
        let admitted = decisions.iter().filter(|d| **d == Decision::Admit).count();
        assert_eq!(admitted, 4, "25 fps capped to 10 over 400 ms: {decisions:?}");
        assert!(!decisions.contains(&Decision::Refresh));
    }

    #[test]
    fn a_waiting_frame_is_refreshed_only_when_due_and_the_cap_is_left_alone() {
        let mut a = Admission::new(10.0);
        // Before the interval is known, the cap decides.
        assert_eq!(a.decide(Duration::ZERO, |_| panic!("no interval yet")), Decision::Admit);
        let mut seen = None;
        let skip = a.decide(40 * MS, |i| {
            seen = Some(i);
            Some(false)
        });
        assert_eq!(skip, Decision::Skip);
        assert_eq!(seen, Some(40 * MS), "asked with the source's frame interval");
        assert_eq!(a.decide(80 * MS, |_| Some(true)), Decision::Refresh);
        // Refreshes did not use up the cap: the next frame with nothing waiting is admitted.
        assert_eq!(a.decide(120 * MS, |_| None), Decision::Admit);
    }

    #[test]
    fn discontinuities_do_not_count_as_intervals() {
        let mut a = Admission::new(0.0);
        a.decide(Duration::ZERO, |_| None);
        a.decide(5 * Duration::from_secs(1), |_| None);
        a.decide(Duration::from_secs(2), |_| None);
        let mut seen = None;
        a.decide(Duration::from_secs(2) + 40 * MS, |i| {
            seen = Some(i);
            None
        });
        assert_eq!(seen, Some(40 * MS));
    }
}
