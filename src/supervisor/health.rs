//! Health: the watchdog pings and the one-line status that `systemctl status` shows.
//!
//! The supervisor calls [`Health::tick`] from its own loop, so a ping proves the supervisor
//! is turning; a ping is sent only if the inference thread also made progress recently (it
//! beats every loop turn, busy or idle). An offline camera does not matter here: it is
//! degraded, and the status line says so; a wedged inference thread stops the pings and
//! systemd restarts the daemon.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::infer::Heartbeat;
use crate::systemd::Notifier;
use crate::telemetry::Metrics;

use super::cameras::CameraSet;

/// Without a systemd watchdog, inference silent this long is still logged as stalled.
const INFER_STALL: Duration = Duration::from_secs(10);
/// How often the status line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Room for the longest status line: the counts, and a reload error cut to its limit.
const STATUS_LINE_CAPACITY: usize = 512;
/// Tick period without a watchdog.
const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Longest part of an error kept in the status line.
const STATUS_ERROR_CHARS: usize = 160;

pub(super) struct Health {
    notifier: Notifier,
    heartbeat: Arc<Heartbeat>,
    /// Inference silent for longer than this is wedged.
    stall_limit: Duration,
    /// Per inference worker: its last heartbeat count and when that count last changed.
    beats: Vec<(u64, Instant)>,
    stalled: bool,
    status_at: Instant,
    processed_at_status: u64,
    /// Why the last reload was refused, until a reload succeeds.
    reload_error: Option<String>,
    /// The status line, rewritten in place every few seconds.
    line: String,
}

impl Health {
    pub(super) fn new(notifier: Notifier, heartbeat: Arc<Heartbeat>) -> Self {
        let half_watchdog = notifier.watchdog_interval().map_or(INFER_STALL, |w| w / 2);
        let now = Instant::now();
        Self {
            notifier,
            beats: heartbeat.counts().map(|count| (count, now)).collect(),
            heartbeat,
            stall_limit: half_watchdog.min(INFER_STALL),
            stalled: false,
            status_at: now,
            processed_at_status: 0,
            reload_error: None,
            line: String::with_capacity(STATUS_LINE_CAPACITY),
        }
    }

    /// How often [`Health::tick`] must run: four pings per watchdog interval.
    pub(super) fn period(&self) -> Duration {
        self.notifier.watchdog_interval().map_or(DEFAULT_TICK, |w| (w / 4).max(Duration::from_millis(10)))
    }

    /// Checks inference progress, pings the watchdog if all is well, refreshes the status.
    pub(super) fn tick(&mut self, cameras: &CameraSet, metrics: &Metrics, uplink: Option<&[String]>) {
        let now = Instant::now();
        let mut silent = Duration::ZERO;
        for ((last, changed), count) in self.beats.iter_mut().zip(self.heartbeat.counts()) {
            if count != *last {
                (*last, *changed) = (count, now);
            }
            silent = silent.max(now.duration_since(*changed));
        }
        // One wedged worker is enough: its cameras' frames would wait for it.
        let stalled = silent > self.stall_limit;
        if stalled && !self.stalled {
            tracing::error!(stage = "infer", silent_ms = silent.as_millis() as u64, "An inference worker made no progress; watchdog pings stopped.");
        } else if !stalled && self.stalled {
            tracing::info!(stage = "infer", "Inference workers are making progress again.");
        }
        self.stalled = stalled;
        if !stalled {
            self.notifier.watchdog();
        }
        if now.duration_since(self.status_at) >= STATUS_EVERY {
            let notifier = self.notifier;
            notifier.status(self.status_line(cameras, metrics, uplink, now));
        }
    }

    /// `2/3 cameras live, 19.8 fps, p95 71 ms, uplink backlog 0` (+ a stall or reload note).
    /// Computed over the time since the previous line; never holds a URL or a secret.
    pub(super) fn status_line(
        &mut self,
        cameras: &CameraSet,
        metrics: &Metrics,
        uplink: Option<&[String]>,
        now: Instant,
    ) -> &str {
        let live = cameras.cameras().filter(|c| c.metrics.up.get() == 1).count();
        let processed: u64 = cameras.cameras().map(|c| c.metrics.processed.get()).sum();
        let elapsed = now.duration_since(self.status_at).as_secs_f64().max(1e-3);
        let fps = processed.saturating_sub(self.processed_at_status) as f64 / elapsed;
        (self.status_at, self.processed_at_status) = (now, processed);
        let line = &mut self.line;
        line.clear();
        write!(line, "{live}/{} cameras live, {fps:.1} fps, p95 ", cameras.len()).ok();
        match metrics.recent_latency.quantile(0.95) {
            Some(p95) => write!(line, "{:.0} ms", p95.as_secs_f64() * 1e3),
            None => write!(line, "-"),
        }
        .ok();
        match uplink {
            Some(ids) => {
                let backlog: i64 = ids.iter().map(|id| metrics.uplink.camera(id).backlog.get()).sum();
                write!(line, ", uplink backlog {backlog}").ok();
            }
            None => line.push_str(", uplink off"),
        }
        if self.stalled {
            line.push_str("; INFERENCE STALLED");
        }
        if let Some(error) = &self.reload_error {
            write!(line, "; reload refused: {error}").ok();
        }
        line
    }

    /// Records the outcome of a reload for the status line.
    pub(super) fn reloaded(&mut self, error: Option<String>) {
        self.reload_error = error.map(|e| {
            let flat = e.replace('\n', " ");
            match flat.char_indices().nth(STATUS_ERROR_CHARS) {
                Some((cut, _)) => format!("{}…", &flat[..cut]),
                None => flat,
            }
        });
    }

    pub(super) fn notifier(&self) -> Notifier {
        self.notifier
    }
}
