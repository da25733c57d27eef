//! Prometheus metrics. Every stage resolves its per-camera handles once ([`CameraMetrics`]), so
//! counting a frame is an atomic add, with no label look-up or allocation per frame.

use std::sync::Arc;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a frame or an entry was dropped (`frames_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Replaced in the mailbox by a newer frame before inference took it.
    Stale,
    /// Above the camera's `fps` cap; dropped before scaling.
    RateLimit,
    /// The model failed on this frame.
    InferenceError,
    /// The publish queue was full (local Redis slow or down); the oldest entry went.
    QueueFull,
    /// The XADD failed after it was sent (connection lost): it may or may not be stored.
    RedisError,
    /// Redis answered the XADD with an error (OOM under `noeviction`, NOPERM…): not stored.
    Rejected,
    /// The decoded buffer could not be mapped for reading (capture).
    CaptureError,
    /// Not confirmed by Redis (queued or in flight) when the stop timeout ran out.
    Shutdown,
}

const DROP_REASONS: [DropReason; 8] = [
    DropReason::Stale,
    DropReason::RateLimit,
    DropReason::InferenceError,
    DropReason::QueueFull,
    DropReason::RedisError,
    DropReason::Rejected,
    DropReason::CaptureError,
    DropReason::Shutdown,
];

impl DropReason {
    /// The `reason` label value, as DESIGN.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Stale => "stale",
            DropReason::RateLimit => "rate_limit",
            DropReason::InferenceError => "inference_error",
            DropReason::QueueFull => "queue_full",
            DropReason::RedisError => "redis_error",
            DropReason::Rejected => "rejected",
            DropReason::CaptureError => "capture_error",
            DropReason::Shutdown => "shutdown",
        }
    }
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    camera: String,
    reason: DropReason,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~4 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

/// The daemon's metric families, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    captured: Family<CameraLabel, Counter>,
    processed: Family<CameraLabel, Counter>,
    published: Family<CameraLabel, Counter>,
    dropped: Family<DropLabels, Counter>,
    up: Family<CameraLabel, Gauge>,
    reconnects: Family<CameraLabel, Counter>,
    latency: Family<CameraLabel, Histogram, fn() -> Histogram>,
    inference: Family<CameraLabel, Histogram, fn() -> Histogram>,
    /// Failed Redis commands and connection attempts.
    pub redis_errors: Counter,
    /// Store-and-forward figures.
    pub uplink: super::UplinkMetrics,
    rss_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("roadsight");
        let m = Metrics {
            captured: Family::default(),
            processed: Family::default(),
            published: Family::default(),
            dropped: Family::default(),
            up: Family::default(),
            reconnects: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            inference: Family::new_with_constructor(latency_histogram),
            redis_errors: Counter::default(),
            uplink: super::UplinkMetrics::new(),
            rss_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("frames_captured", "Decoded frames delivered by capture", m.captured.clone());
        registry.register("frames_processed", "Frames the model ran on", m.processed.clone());
        registry.register("entries_published", "Stream entries stored by local Redis", m.published.clone());
        registry.register("frames_dropped", "Frames or entries dropped, by reason", m.dropped.clone());
        registry.register("camera_up", "1 while the camera delivers frames", m.up.clone());
        registry.register("camera_reconnects", "Capture pipeline restarts", m.reconnects.clone());
        registry.register(
            "capture_to_publish_seconds",
            "Capture time to XADD reply",
            m.latency.clone(),
        );
        registry.register("inference_seconds", "Model run time per frame", m.inference.clone());
        registry.register("redis_errors", "Failed local Redis commands or connects", m.redis_errors.clone());
        m.uplink.register(&mut registry);
        registry.register("process_resident_memory_bytes", "Resident set size of the daemon", m.rss_bytes.clone());
        Arc::new(Metrics { registry, ..m })
    }

    /// Resolves the handles of one camera.
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        let label = CameraLabel { camera: camera.to_owned() };
        let dropped = DROP_REASONS.map(|reason| {
            self.dropped.get_or_create(&DropLabels { camera: camera.to_owned(), reason }).clone()
        });
        CameraMetrics {
            captured: self.captured.get_or_create(&label).clone(),
            processed: self.processed.get_or_create(&label).clone(),
            published: self.published.get_or_create(&label).clone(),
            up: self.up.get_or_create(&label).clone(),
            reconnects: self.reconnects.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            inference: self.inference.get_or_create(&label).clone(),
            dropped,
        }
    }

    /// The text exposition of every metric (the RSS gauge is read now).
    pub fn encode(&self) -> String {
        self.rss_bytes.set(resident_bytes());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's resident set size from `/proc/self/status` (0 where unreadable).
fn resident_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .unwrap_or(0);
    kib * 1024
}

/// One camera's metric handles (cheap clones of the registered series).
#[derive(Debug, Clone)]
pub struct CameraMetrics {
    pub captured: Counter,
    pub processed: Counter,
    pub published: Counter,
    pub up: Gauge,
    pub reconnects: Counter,
    pub latency: Histogram,
    pub inference: Histogram,
    dropped: [Counter; DROP_REASONS.len()],
}

impl CameraMetrics {
    /// Counts `n` dropped frames or entries.
    pub fn drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].inc_by(n);
    }

    /// Drops so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_index_their_own_counter() {
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let m = Metrics::new().camera("a");
        m.drop(DropReason::Rejected, 2);
        assert_eq!((m.dropped(DropReason::Rejected), m.dropped(DropReason::RedisError)), (2, 0));
        let metrics = Metrics::new();
        metrics.camera("north").drop(DropReason::QueueFull, 3);
        let text = metrics.encode();
        assert!(text.contains(r#"roadsight_frames_dropped_total{camera="north",reason="queue_full"} 3"#), "{text}");
    }
}
