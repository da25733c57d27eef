//! Inference: runs the detector on each frame on its own thread (ONNX Runtime via `ort`).

mod decode;
mod letterbox;
mod nms;

pub use letterbox::Letterbox;
