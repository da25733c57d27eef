//! The most recent capture → publish latencies, for the one-line `STATUS=` that
//! `systemctl status` shows. Prometheus gets the full histograms; this answers "what is p95
//! right now" without bucket rounding. Fixed size, lock-free, no allocation when recording.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// How many of the latest entries (all cameras together) the window holds.
const WINDOW: usize = 1024;

/// A ring of the latest latencies in microseconds.
#[derive(Debug)]
pub struct LatencyWindow {
    samples: [AtomicU32; WINDOW],
    recorded: AtomicUsize,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self { samples: std::array::from_fn(|_| AtomicU32::new(0)), recorded: AtomicUsize::new(0) }
    }
}

impl LatencyWindow {
    pub fn record(&self, latency: Duration) {
        let slot = self.recorded.fetch_add(1, Ordering::Relaxed) % WINDOW;
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.samples[slot].store(us, Ordering::Relaxed);
    }

    /// The `q` quantile (0..=1) of the window; `None` before the first entry.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let filled = self.recorded.load(Ordering::Relaxed).min(WINDOW);
        if filled == 0 {
            return None;
        }
        // On the stack (4 KiB): the status line asks every few seconds, with no allocation.
        let mut sorted = [0u32; WINDOW];
        let sorted = &mut sorted[..filled];
        for (dst, s) in sorted.iter_mut().zip(&self.samples) {
            *dst = s.load(Ordering::Relaxed);
        }
        sorted.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * filled as f64).ceil() as usize).clamp(1, filled);
        Some(Duration::from_micros(u64::from(sorted[rank - 1])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_latest_window_only() {
        let w = LatencyWindow::default();
        assert_eq!(w.quantile(0.95), None);
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.quantile(0.95), Some(Duration::from_millis(95)));
        assert_eq!(w.quantile(0.5), Some(Duration::from_millis(50)));
        // A full window of fast entries pushes the old slow ones out.
        for _ in 0..WINDOW {
            w.record(Duration::from_millis(2));
        }
        assert_eq!(w.quantile(0.99), Some(Duration::from_millis(2)));
    }
}
