//! Inference: the second stage. Workers (OS threads, `model.workers`, each with its own
//! session) take batches of the newest frame of each ready camera from the
//! [`Mailboxes`](crate::mailbox::Mailboxes), run the detector through ONNX Runtime, decode
//! the output into [`Detections`](crate::frame::Detections) and hand them to the publisher.
//! It never waits for Redis: the publish queue drops its oldest entry when full.

mod decode;
mod detector;
mod engine_cache;
mod handles;
mod input;
mod letterbox;
mod nms;
mod output;
mod platform;
mod providers;
mod session;
mod sizing;
mod worker;

use std::path::PathBuf;

pub use detector::{Detector, Input, StageTimes};
pub use engine_cache::EngineCache;
pub(crate) use engine_cache::sha256_file;
pub use input::{InputKind, Pixels};
pub use letterbox::Letterbox;
pub use providers::{ProviderReport, Skipped, last_report as provider_report, tensorrt_built_in};
pub use session::ModelShape;
pub use sizing::open_detectors;
pub(crate) use session::load_runtime;
pub(crate) use worker::{Heartbeat, spawn};

/// ONNX Runtime's version (of the library loaded; `unknown` before), TensorRT's (`none` without
/// libnvinfer) and the GPU (`none`), as the engine cache key reads them.
pub fn platform_summary() -> (String, String, String) {
    (platform::onnxruntime(), platform::tensorrt(), platform::gpu())
}

/// Errors of the inference stage.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// `libonnxruntime.so` could not be loaded or initialised.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file is unreadable or does not fit the configured decoder; `field` is the
    /// config key to look at (`model.path` or `model.decoder`).
    #[error("field `{field}`: model {path}: {reason}")]
    Model { field: &'static str, path: PathBuf, reason: String },
    /// A provider marked `required` could not be registered: `provider` is its config name
    /// (`tensorrt`), `ep` ONNX Runtime's (`TensorrtExecutionProvider`).
    #[error(
        "execution provider `{provider}` ({ep}) is required but unavailable: {reason} \
         (model.providers marks it `required = true`)"
    )]
    ProviderUnavailable { provider: &'static str, ep: &'static str, reason: String },
    /// A single run failed; the frame is dropped, the thread goes on.
    #[error("inference failed: {0}")]
    Run(String),
}

impl InferError {
    /// Whether an operator fixes this in the config or the model file (exit 78) rather than
    /// by installing or starting something (exit 69).
    pub fn is_config(&self) -> bool {
        matches!(self, InferError::Model { .. })
    }
}

impl From<ort::Error> for InferError {
    fn from(e: ort::Error) -> Self {
        InferError::Runtime(e.to_string())
    }
}
