//! Uplink metrics: per camera forwarding figures, plus connection-level counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

fn rtt_histogram() -> Histogram {
    // 0.1 ms … ~6.6 s: past the 5 s response timeout, so a slow link shows in the buckets.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The uplink's metric families (registered under `roadsight_uplink_*`).
#[derive(Debug)]
pub struct UplinkMetrics {
    forwarded: Family<CameraLabel, Counter>,
    duplicates: Family<CameraLabel, Counter>,
    gaps: Family<CameraLabel, Counter>,
    dropped: Family<CameraLabel, Counter>,
    backlog: Family<CameraLabel, Gauge>,
    oldest_age_ms: Family<CameraLabel, Gauge>,
    /// Failed upstream calls and connection attempts.
    pub errors: Counter,
    /// Upstream connections made after the first.
    pub reconnects: Counter,
    /// Round trip of one append call, seconds.
    pub rtt: Histogram,
}

impl UplinkMetrics {
    pub(crate) fn new() -> Self {
        Self {
            forwarded: Family::default(),
            duplicates: Family::default(),
            gaps: Family::default(),
            dropped: Family::default(),
            backlog: Family::default(),
            oldest_age_ms: Family::default(),
            errors: Counter::default(),
            reconnects: Counter::default(),
            rtt: rtt_histogram(),
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("uplink");
        r.register("forwarded", "Entries appended upstream", self.forwarded.clone());
        r.register("duplicates", "Entries upstream already held (skipped by ID)", self.duplicates.clone());
        r.register("gaps", "Times upstream was found behind what it had confirmed", self.gaps.clone());
        r.register("dropped", "Unforwarded entries dropped past the backlog budget", self.dropped.clone());
        r.register("backlog_entries", "Entries waiting to be forwarded", self.backlog.clone());
        r.register("oldest_age_ms", "Age of the oldest unforwarded entry", self.oldest_age_ms.clone());
        r.register("errors", "Failed upstream calls or connects", self.errors.clone());
        r.register("reconnects", "Upstream reconnections", self.reconnects.clone());
        r.register("rtt_seconds", "Round trip of one upstream append", self.rtt.clone());
    }

    /// Removes the series of a camera the uplink no longer follows.
    pub(crate) fn forget(&self, camera: &str) {
        let l = CameraLabel { camera: camera.to_owned() };
        for family in [&self.forwarded, &self.duplicates, &self.gaps, &self.dropped] {
            family.remove(&l);
        }
        self.backlog.remove(&l);
        self.oldest_age_ms.remove(&l);
    }

    /// One camera's handles.
    pub(crate) fn camera(&self, camera: &str) -> UplinkCameraMetrics {
        let l = CameraLabel { camera: camera.to_owned() };
        UplinkCameraMetrics {
            forwarded: self.forwarded.get_or_create(&l).clone(),
            duplicates: self.duplicates.get_or_create(&l).clone(),
            gaps: self.gaps.get_or_create(&l).clone(),
            dropped: self.dropped.get_or_create(&l).clone(),
            backlog: self.backlog.get_or_create(&l).clone(),
            oldest_age_ms: self.oldest_age_ms.get_or_create(&l).clone(),
        }
    }
}

/// Per camera uplink handles.
#[derive(Debug, Clone)]
pub struct UplinkCameraMetrics {
    pub forwarded: Counter,
    pub duplicates: Counter,
    pub gaps: Counter,
    pub dropped: Counter,
    pub backlog: Gauge,
    pub oldest_age_ms: Gauge,
}
