//! Prometheus metrics. Every stage resolves its per-camera handles once ([`CameraMetrics`]), so
//! counting a frame is an atomic add, with no label look-up or allocation per frame.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
struct ClassLabels {
    camera: String,
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
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

/// For the stages of a frame, from tens of µs (post-processing) to seconds (a Redis stall):
/// 50 µs … ~3.3 s in steps of √2, fine enough for the benchmark's quantiles.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, std::f64::consts::SQRT_2, 33))
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
    mailbox_wait: Family<CameraLabel, Histogram, fn() -> Histogram>,
    postprocess: Family<CameraLabel, Histogram, fn() -> Histogram>,
    publish: Family<CameraLabel, Histogram, fn() -> Histogram>,
    overhead: Family<CameraLabel, Histogram, fn() -> Histogram>,
    detections: Family<ClassLabels, Counter>,
    /// Class names by class id, for the `class` label.
    classes: Arc<[String]>,
    reloads: Family<ReloadLabel, Counter>,
    last_reload_ok: Gauge,
    providers: Family<ProviderLabel, Gauge>,
    /// Frames per model run, across all cameras and workers.
    pub batch_size: Histogram,
    /// The latest latencies of all cameras, for `STATUS=`.
    pub recent_latency: Arc<super::LatencyWindow>,
    /// Failed Redis commands and connection attempts.
    pub redis_errors: Counter,
    /// Store-and-forward figures.
    pub uplink: super::UplinkMetrics,
    rss_bytes: Gauge,
    /// Set from the counting allocator at each scrape (feature `alloc-count`).
    #[cfg(feature = "alloc-count")]
    allocations: Counter,
}

impl Metrics {
    /// Metrics without class names (`class` labels are then class ids).
    pub fn new() -> Arc<Self> {
        Self::with_classes(Vec::new())
    }

    /// Metrics whose `detections_total` series are labelled with these class names.
    pub fn with_classes(classes: Vec<String>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("roadsight");
        let m = Metrics {
            captured: Family::default(),
            processed: Family::default(),
            published: Family::default(),
            dropped: Family::default(),
            up: Family::default(),
            reconnects: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            inference: Family::new_with_constructor(stage_histogram),
            mailbox_wait: Family::new_with_constructor(stage_histogram),
            postprocess: Family::new_with_constructor(stage_histogram),
            publish: Family::new_with_constructor(stage_histogram),
            overhead: Family::new_with_constructor(stage_histogram),
            detections: Family::default(),
            classes: classes.into(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            providers: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            recent_latency: Arc::default(),
            redis_errors: Counter::default(),
            uplink: super::UplinkMetrics::new(),
            rss_bytes: Gauge::default(),
            #[cfg(feature = "alloc-count")]
            allocations: Counter::default(),
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
        registry.register("mailbox_wait_seconds", "Capture hand-over to inference start", m.mailbox_wait.clone());
        registry.register("postprocess_seconds", "Output decoding, NMS and box mapping per frame", m.postprocess.clone());
        registry.register("publish_seconds", "Inference end to the XADD reply", m.publish.clone());
        registry.register(
            "overhead_seconds",
            "What the daemon adds: appsink arrival to the XADD reply, minus the model run",
            m.overhead.clone(),
        );
        registry.register(
            "inference_provider",
            "1 for the execution provider the model runs on, 0 for a listed one it does not (skipped, or behind it)",
            m.providers.clone(),
        );
        registry.register("inference_batch_size", "Frames per model run (what was ready, one per camera)", m.batch_size.clone());
        registry.register("detections", "Objects published, by class", m.detections.clone());
        registry.register("config_reloads", "Config reloads (SIGHUP), by result", m.reloads.clone());
        registry.register(
            "config_last_reload_successful",
            "0 while the last reload was refused and the previous config runs",
            m.last_reload_ok.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Always 1; the daemon's version as a label", build_info);
        registry.register("redis_errors", "Failed local Redis commands or connects", m.redis_errors.clone());
        m.uplink.register(&mut registry);
        registry.register("process_resident_memory_bytes", "Resident set size of the daemon", m.rss_bytes.clone());
        #[cfg(feature = "alloc-count")]
        registry.register("heap_allocations", "Rust heap allocations since start (benchmark builds only)", m.allocations.clone());
        m.last_reload_ok.set(1);
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts a reload (SIGHUP) and whether its config was taken.
    pub fn reloaded(&self, ok: bool) {
        self.reloads.get_or_create(&ReloadLabel { result: if ok { "ok" } else { "failed" } }).inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Which execution provider the model runs on: `in_use` 1, the other `listed` ones and
    /// the CPU (always there, behind every other) 0.
    pub fn set_providers(&self, listed: &[&'static str], in_use: &'static str) {
        for provider in listed.iter().copied().chain(["cpu"]) {
            self.providers.get_or_create(&ProviderLabel { provider }).set(i64::from(provider == in_use));
        }
    }

    /// Removes a camera's series (it was taken out of the config): a camera that no longer
    /// exists must not show as down. Handles still held elsewhere keep counting into nothing.
    pub fn forget_camera(&self, camera: &str) {
        let label = CameraLabel { camera: camera.to_owned() };
        for family in [&self.captured, &self.processed, &self.published, &self.reconnects] {
            family.remove(&label);
        }
        self.up.remove(&label);
        self.latency.remove(&label);
        for family in [&self.inference, &self.mailbox_wait, &self.postprocess, &self.publish, &self.overhead] {
            family.remove(&label);
        }
        for reason in DROP_REASONS {
            self.dropped.remove(&DropLabels { camera: camera.to_owned(), reason });
        }
        for class in self.classes.iter() {
            self.detections.remove(&ClassLabels { camera: camera.to_owned(), class: class.clone() });
        }
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
            mailbox_wait: self.mailbox_wait.get_or_create(&label).clone(),
            postprocess: self.postprocess.get_or_create(&label).clone(),
            publish: self.publish.get_or_create(&label).clone(),
            overhead: self.overhead.get_or_create(&label).clone(),
            dropped,
            detections: Detections::new(camera, &self.detections, &self.classes),
            recent_latency: Arc::clone(&self.recent_latency),
        }
    }

    /// The text exposition of every metric (the RSS gauge is read now).
    pub fn encode(&self) -> String {
        self.rss_bytes.set(resident_bytes());
        #[cfg(feature = "alloc-count")]
        self.allocations.inc_by(crate::alloc_count::allocations().saturating_sub(self.allocations.get()));
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
    pub mailbox_wait: Histogram,
    pub postprocess: Histogram,
    pub publish: Histogram,
    pub overhead: Histogram,
    dropped: [Counter; DROP_REASONS.len()],
    detections: Detections,
    recent_latency: Arc<super::LatencyWindow>,
}

/// Where a published entry's time went after capture handed it over.
#[derive(Debug, Clone, Copy)]
pub struct PublishedStages {
    /// Inference end to the XADD reply.
    pub publish: Duration,
    /// Appsink arrival to the XADD reply, minus the model run.
    pub overhead: Duration,
}

/// `detections_total` of one camera: a series for every class of the labels file from the start
/// (0 until the class is seen), so that counting is an atomic add and a class seen for the first
/// time an hour in allocates nothing. A class id past the labels (a model with more outputs
/// than names) gets its series when first seen.
#[derive(Debug, Clone)]
struct Detections {
    camera: String,
    family: Family<ClassLabels, Counter>,
    names: Arc<[String]>,
    by_class: Arc<[OnceLock<Counter>]>,
}

impl Detections {
    fn new(camera: &str, family: &Family<ClassLabels, Counter>, names: &Arc<[String]>) -> Self {
        let detections = Detections {
            camera: camera.to_owned(),
            family: family.clone(),
            names: Arc::clone(names),
            by_class: (0..names.len()).map(|_| OnceLock::new()).collect(),
        };
        for (class, name) in names.iter().enumerate() {
            let counter = family.get_or_create(&ClassLabels { camera: camera.to_owned(), class: name.clone() }).clone();
            let _ = detections.by_class[class].set(counter);
        }
        detections
    }

    fn count(&self, class: u32) {
        let make = || {
            let name = self.names.get(class as usize).cloned().unwrap_or_else(|| class.to_string());
            self.family.get_or_create(&ClassLabels { camera: self.camera.clone(), class: name }).clone()
        };
        match self.by_class.get(class as usize) {
            Some(cell) => cell.get_or_init(make).inc(),
            None => make().inc(),
        };
    }
}

impl CameraMetrics {
    /// Counts an entry Redis stored: its capture → publish latency, its publish stage, the
    /// daemon's overhead on it and the objects it carries.
    pub fn record_published(&self, latency: Duration, stages: PublishedStages, classes: impl Iterator<Item = u32>) {
        self.published.inc();
        self.latency.observe(latency.as_secs_f64());
        self.publish.observe(stages.publish.as_secs_f64());
        self.overhead.observe(stages.overhead.as_secs_f64());
        self.recent_latency.record(latency);
        for class in classes {
            self.detections.count(class);
        }
    }

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

    #[test]
    fn a_skipped_gpu_provider_shows_as_0_beside_the_cpu_at_1() {
        let metrics = Metrics::new();
        metrics.set_providers(&["tensorrt", "cuda"], "cpu");
        let text = metrics.encode();
        for line in [
            r#"roadsight_inference_provider{provider="tensorrt"} 0"#,
            r#"roadsight_inference_provider{provider="cuda"} 0"#,
            r#"roadsight_inference_provider{provider="cpu"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
