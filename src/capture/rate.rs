//! The per-camera `fps` cap, applied to decoded frames before they are scaled.

use std::time::Duration;

/// Admits at most `fps` frames per second of stream time. A quarter period of tolerance keeps
/// a source that runs exactly at the cap from losing frames to timestamp jitter.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    period: Option<Duration>,
    next: Option<Duration>,
}

impl RateLimiter {
    /// `fps` of 0 (or less) admits everything.
    pub(crate) fn new(fps: f64) -> Self {
        let period = (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps));
        Self { period, next: None }
    }

    /// Whether the frame at stream time `now` is processed.
    pub(crate) fn admit(&mut self, now: Duration) -> bool {
        let Some(period) = self.period else { return true };
        match self.next {
            // Stream time went back by more than a period (timestamps restarted): restart the
            // schedule rather than skip every frame until the old time comes round again.
            Some(next) if now + 2 * period < next => {
                self.next = Some(now + period);
                true
            }
            Some(next) if now + period / 4 < next => false,
            // Fell behind by more than a period (a stall, a seek): restart the schedule.
            Some(next) if now > next + period => {
                self.next = Some(now + period);
                true
            }
            Some(next) => {
                self.next = Some(next + period);
                true
            }
            None => {
                self.next = Some(now + period);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(fps_cap: f64, source_fps: f64, seconds: f64, jitter_ms: i64) -> usize {
        let mut r = RateLimiter::new(fps_cap);
        let frames = (source_fps * seconds) as i64;
        (0..frames)
            .filter(|i| {
                let base = (*i as f64 * 1000.0 / source_fps) as i64;
                let jitter = if i % 2 == 0 { jitter_ms } else { -jitter_ms };
                r.admit(Duration::from_millis((base + jitter).max(0) as u64))
            })
            .count()
    }

    #[test]
    fn caps_a_faster_source() {
        assert!((99..=101).contains(&admitted(10.0, 25.0, 10.0, 0)));
        assert!((49..=51).contains(&admitted(5.0, 30.0, 10.0, 3)));
    }

    #[test]
    fn keeps_every_frame_of_a_source_at_the_cap_despite_jitter() {
        assert_eq!(admitted(10.0, 10.0, 10.0, 5), 100);
    }

    #[test]
    fn timestamps_that_restart_restart_the_schedule() {
        let mut r = RateLimiter::new(10.0);
        let ms = Duration::from_millis;
        assert!(r.admit(ms(60_000)));
        assert!(!r.admit(ms(60_040)));
        // Back to 0: admitted at once, then capped as before.
        assert!(r.admit(ms(0)));
        assert!(!r.admit(ms(40)));
        assert!(r.admit(ms(100)));
    }

    #[test]
    fn zero_means_no_cap() {
        assert_eq!(admitted(0.0, 30.0, 2.0, 0), 60);
    }
}
