//! The lines logged when the daemon stops: what each camera and the uplink did in this run.

use std::sync::Arc;

use crate::config::Config;
use crate::frame::CameraInfo;
use crate::telemetry::{DropReason, Metrics};

/// One line per running camera.
pub(super) fn log_cameras<'a>(cameras: impl Iterator<Item = &'a Arc<CameraInfo>>) {
    for cam in cameras {
        let m = &cam.metrics;
        tracing::info!(
            camera = %cam.id,
            captured = m.captured.get(),
            processed = m.processed.get(),
            published = m.published.get(),
            dropped_stale = m.dropped(DropReason::Stale),
            dropped_rate_limit = m.dropped(DropReason::RateLimit),
            dropped_inference_error = m.dropped(DropReason::InferenceError),
            dropped_queue_full = m.dropped(DropReason::QueueFull),
            dropped_redis_error = m.dropped(DropReason::RedisError),
            dropped_rejected = m.dropped(DropReason::Rejected),
            dropped_capture_error = m.dropped(DropReason::CaptureError),
            dropped_shutdown = m.dropped(DropReason::Shutdown),
            reconnects = m.reconnects.get(),
            "Camera summary."
        );
    }
}

/// One line per configured camera (enabled or not: the uplink follows them all).
pub(super) fn log_uplink(config: &Config, metrics: &Metrics) {
    for cam in &config.cameras {
        let m = metrics.uplink.camera(&cam.id);
        tracing::info!(
            camera = %cam.id,
            forwarded = m.forwarded.get(),
            duplicates = m.duplicates.get(),
            dropped = m.dropped.get(),
            gaps = m.gaps.get(),
            backlog = m.backlog.get(),
            "Uplink summary."
        );
    }
}
