//! The detector: one ONNX Runtime session plus the buffers it reuses from frame to frame.

use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use super::decode::{DecodeParams, check_output_shape, decode};
use super::input::{self, InputKind};
use super::session::{self, ModelShape};
use super::{InferError, Letterbox};

/// Where one frame's time went inside the detector.
#[derive(Debug, Clone, Copy)]
pub struct StageTimes {
    /// Input conversion (if any) and the model run.
    pub inference: Duration,
    /// Decoding the output: thresholds, NMS, mapping boxes back to the source.
    pub postprocess: Duration,
}
use crate::config::{DecoderKind, ModelConfig};
use crate::frame::Detection;

/// A loaded model, ready to run on letterboxed RGB frames.
pub struct Detector {
    session: Session,
    /// Kept alive for the session's lifetime.
    _env: Environment,
    shape: ModelShape,
    decoder: DecoderKind,
    num_classes: usize,
    nms_iou: f32,
    /// Conversion target for models that do not take uint8 NHWC (allocated once).
    scratch_f32: Vec<f32>,
    scratch_u8: Vec<u8>,
    out: Vec<Detection>,
}

impl Detector {
    /// Loads ONNX Runtime and the model, registers the providers and checks that the model's
    /// input is an RGB image and its output fits the configured decoder.
    ///
    /// # Errors
    /// [`InferError::Runtime`] when the library cannot be loaded, [`InferError::Model`] when the
    /// model cannot be read or does not fit, [`InferError::ProviderUnavailable`] for a missing
    /// required provider.
    pub fn open(config: &ModelConfig) -> Result<Self, InferError> {
        let env = session::load_runtime(config)?;
        let session = session::open(&env, config)?;
        let shape = session::model_shape(&session, &config.path)?;
        let num_classes = config.label_names.len();
        check_output_shape(config.decoder, &shape.output_shape, num_classes).map_err(|reason| {
            InferError::Model { field: "model.decoder", path: config.path.clone(), reason: format!("output `{}`: {reason}", shape.output_name) }
        })?;
        let pixels = (shape.height * shape.width * 3) as usize;
        let (scratch_f32, scratch_u8) = match shape.input {
            InputKind::U8Nhwc => (Vec::new(), Vec::new()),
            InputKind::U8Nchw => (Vec::new(), vec![0; pixels]),
            InputKind::F32Nhwc | InputKind::F32Nchw => (vec![0.0; pixels], Vec::new()),
        };
        Ok(Detector {
            session,
            _env: env,
            shape,
            decoder: config.decoder,
            num_classes,
            nms_iou: config.nms_iou,
            scratch_f32,
            scratch_u8,
            out: Vec::with_capacity(128),
        })
    }

    /// What the model takes and gives.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// Runs the model on one packed RGB frame of the model's input size and returns the
    /// detections in source pixels, with where the time went.
    ///
    /// # Errors
    /// [`InferError::Run`] if the frame has the wrong size or ONNX Runtime fails.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        letterbox: &Letterbox,
        confidence: f32,
        allowed: Option<&[u32]>,
    ) -> Result<(&[Detection], StageTimes), InferError> {
        let (h, w) = (self.shape.height, self.shape.width);
        let expected = (h * w * 3) as usize;
        if rgb.len() != expected {
            return Err(InferError::Run(format!("frame has {} bytes, the model takes {expected}", rgb.len())));
        }
        let dims = self.shape.input.shape(h, w);
        let plane = (h * w) as usize;
        let started = Instant::now();
        // The uint8 NHWC case borrows the mapped GStreamer buffer: no copy.
        let input = match self.shape.input {
            InputKind::U8Nhwc => TensorRef::from_array_view((dims, rgb))?.into_dyn(),
            InputKind::U8Nchw => {
                input::to_nchw(rgb, plane, &mut self.scratch_u8, |v| v);
                TensorRef::from_array_view((dims, self.scratch_u8.as_slice()))?.into_dyn()
            }
            InputKind::F32Nhwc => {
                input::to_f32_nhwc(rgb, &mut self.scratch_f32);
                TensorRef::from_array_view((dims, self.scratch_f32.as_slice()))?.into_dyn()
            }
            InputKind::F32Nchw => {
                input::to_nchw(rgb, plane, &mut self.scratch_f32, |v| f32::from(v) / 255.0);
                TensorRef::from_array_view((dims, self.scratch_f32.as_slice()))?.into_dyn()
            }
        };
        let outputs = self
            .session
            // Positional: the model has exactly one input (checked at load), and the array form
            // saves the Vec the named form allocates on every run.
            .run(ort::inputs![input])
            .map_err(|e| InferError::Run(e.to_string()))?;
        let ran = Instant::now();
        let (out_shape, data) = outputs[self.shape.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| InferError::Run(e.to_string()))?;
        let params = DecodeParams { confidence, nms_iou: self.nms_iou, allowed, num_classes: self.num_classes };
        decode(self.decoder, out_shape, data, &params, letterbox, &mut self.out)
            .map_err(|e| InferError::Run(e.to_string()))?;
        let times = StageTimes { inference: ran - started, postprocess: ran.elapsed() };
        Ok((&self.out, times))
    }
}
