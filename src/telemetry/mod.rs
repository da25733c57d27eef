//! Telemetry: Prometheus metrics (counted by every stage) and log set-up.

mod logging;
mod metrics;

pub use logging::init_logging;
pub use metrics::{CameraMetrics, DropReason, Metrics};
