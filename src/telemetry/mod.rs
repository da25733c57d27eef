//! Telemetry: Prometheus metrics (counted by every stage) and log set-up.

pub mod http;
mod logging;
mod metrics;
mod uplink;

pub use logging::init_logging;
pub use metrics::{CameraMetrics, DropReason, Metrics};
pub use uplink::{UplinkCameraMetrics, UplinkMetrics};
