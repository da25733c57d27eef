//! roadsight: the daemon of a roadside camera box.
//!
//! Flow (one way): [`capture`] (GStreamer, one pipeline per camera) → [`infer`] (ONNX Runtime,
//! own thread) → [`publish`] (tokio, Redis Streams). [`supervisor`] wires the stages, handles
//! signals and shutdown; [`config`] parses and validates; [`telemetry`] holds counters and
//! logging set-up. [`testcam`] is the RTSP test camera used by the demo, tests and benchmarks.

#[cfg(feature = "alloc-count")]
pub mod alloc_count;
mod backoff;
pub mod capture;
pub mod check;
pub mod config;
pub mod credentials;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod frame;
pub mod infer;
pub(crate) mod mailbox;
pub mod publish;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod testcam;
pub mod uplink;
pub mod warmup;
pub mod watch;
