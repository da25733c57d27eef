//! Inference: the second stage. Workers (OS threads, `model.workers`, each with its own
//! session) take batches of the newest frame of each ready camera from the
//! [`Mailboxes`](crate::mailbox::Mailboxes), run the detector through ONNX Runtime, decode
//! the output into [`Detections`](crate::frame::Detections) and hand them to the publisher.
//! It never waits for Redis: the publish queue drops its oldest entry when full.

mod decode;
mod detector;
mod input;
mod letterbox;
mod nms;
mod session;
mod worker;

use std::path::PathBuf;

pub use detector::{Detector, Input, StageTimes};
pub use input::InputKind;
pub use letterbox::Letterbox;
pub use session::ModelShape;
pub(crate) use worker::{Heartbeat, spawn};

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
    /// A provider marked `required` could not be registered.
    #[error("execution provider {provider} is required but unavailable: {reason}")]
    ProviderUnavailable { provider: &'static str, reason: String },
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
