//! Telemetry: Prometheus metrics (counted by every stage) and log set-up.

pub mod http;
mod logging;
mod metrics;
mod throttle;
mod uplink;
mod window;

pub use logging::{LogControl, init_logging};
pub use metrics::{CameraMetrics, DropReason, Metrics, PublishedStages};
pub use throttle::LogThrottle;
pub use uplink::{UplinkCameraMetrics, UplinkMetrics};
pub use window::LatencyWindow;
