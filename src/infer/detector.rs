//! The detector: one ONNX Runtime session plus the buffers it reuses from frame to frame.

use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;

use super::decode::{DecodeParams, check_output_shape, decode};
use super::input::{InputBuffers, Pixels, unpadded_rows};
use super::output::OutputBuffers;
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

/// A loaded model, ready to run on letterboxed RGB frames, one at a time or in batches.
pub struct Detector {
    session: Session,
    /// Kept alive for the session's lifetime.
    _env: Environment,
    shape: ModelShape,
    decoder: DecoderKind,
    num_classes: usize,
    nms_iou: f32,
    /// Most frames per run: `model.max_batch` for a dynamic batch dimension, else 1.
    max_batch: usize,
    /// Model input for conversions and batches, sized for `max_batch` frames once.
    buffers: InputBuffers,
    /// Where runs of each batch size write the output.
    outputs: OutputBuffers,
    out: Vec<Detection>,
}

/// One frame of a batch, as the detector reads it.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// Packed RGB, model width × height.
    pub pixels: Pixels<'a>,
    pub letterbox: &'a Letterbox,
    pub confidence: f32,
    /// Class indices kept; `None`: all.
    pub allowed: Option<&'a [u32]>,
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
        unpadded_rows(shape.width).map_err(|reason| InferError::Model { field: "model.path", path: config.path.clone(), reason })?;
        check_output_shape(config.decoder, &shape.output_shape, num_classes).map_err(|reason| {
            InferError::Model { field: "model.decoder", path: config.path.clone(), reason: format!("output `{}`: {reason}", shape.output_name) }
        })?;
        let max_batch = if shape.dynamic_batch { config.max_batch } else { 1 };
        let buffers = InputBuffers::new(shape.input, shape.height, shape.width, max_batch);
        let outputs = OutputBuffers::new(&session, &shape.output_name, &shape.output_shape, max_batch)?;
        if !outputs.preallocated() {
            tracing::info!(stage = "infer", output = %shape.output_name, shape = ?shape.output_shape, "Model output not preallocated (dynamic dimensions, not float32, or over the budget); ONNX Runtime allocates it on every run.");
        }
        Ok(Detector {
            session,
            _env: env,
            shape,
            decoder: config.decoder,
            num_classes,
            nms_iou: config.nms_iou,
            max_batch,
            buffers,
            outputs,
            out: Vec::with_capacity(128),
        })
    }

    /// What the model takes and gives.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// Most frames [`Detector::detect_batch`] takes in one run.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Where the data of the last input tensor handed to ONNX Runtime lives: for a uint8 NHWC
    /// model run on one frame, the frame's own buffer (host or device memory).
    pub fn last_input_address(&self) -> usize {
        self.buffers.last_address()
    }

    /// How many input tensor handles ONNX Runtime was asked to make so far: one per input
    /// address and shape seen, not one per run.
    pub fn input_handles_made(&self) -> u64 {
        self.buffers.handles_made()
    }

    /// Runs the model on one packed RGB frame of the model's input size and returns the
    /// detections in source pixels, with where the time went.
    ///
    /// # Errors
    /// [`InferError::Run`] if the frame has the wrong size, ONNX Runtime fails or the output
    /// does not decode.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        letterbox: &Letterbox,
        confidence: f32,
        allowed: Option<&[u32]>,
    ) -> Result<(&[Detection], StageTimes), InferError> {
        let input = Input { pixels: Pixels::Host(rgb), letterbox, confidence, allowed };
        let mut outcome = None;
        self.detect_batch(1, |_| input, |_, result| outcome = Some(result.map(|(_, times)| times)))?;
        let times = outcome.unwrap_or_else(|| Err(InferError::Run("no output".into())))?;
        Ok((&self.out, times))
    }

    /// Runs the model once on `n` frames (1 to [`Detector::max_batch`]), `input(i)` being
    /// frame `i`, and calls `each(i, result)` for every frame in order: its detections in
    /// source pixels, or why its output did not decode (that frame alone is lost).
    ///
    /// # Errors
    /// [`InferError::Run`] when `n` is out of range, a frame has the wrong size or ONNX
    /// Runtime fails: nothing was decoded, and the caller may retry the frames one by one.
    pub fn detect_batch<'f>(
        &mut self,
        n: usize,
        input: impl Fn(usize) -> Input<'f>,
        mut each: impl FnMut(usize, Result<(&[Detection], StageTimes), InferError>),
    ) -> Result<(), InferError> {
        if n == 0 || n > self.max_batch {
            return Err(InferError::Run(format!("batch of {n}, the model takes 1 to {}", self.max_batch)));
        }
        let size = (self.shape.height * self.shape.width * 3) as usize;
        if let Some(bad) = (0..n).map(|i| input(i).pixels.len()).find(|&len| len != size) {
            return Err(InferError::Run(format!("frame has {bad} bytes, the model takes {size}")));
        }
        let started = Instant::now();
        let tensor = self.buffers.tensor(n, |i| input(i).pixels)?;
        let outputs = self
            .session
            // Positional: the model has exactly one input (checked at load), and the array form
            // saves the Vec the named form allocates on every run.
            .run_with_options(ort::inputs![tensor], self.outputs.run(n))
            .map_err(|e| InferError::Run(e.to_string()))?;
        let inference = started.elapsed();
        let (out_shape, data) = outputs[self.shape.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| InferError::Run(e.to_string()))?;
        let items = per_frame(out_shape, data.len(), n).map_err(InferError::Run)?;
        for i in 0..n {
            let decoding = Instant::now();
            let frame = input(i);
            let params = DecodeParams {
                confidence: frame.confidence,
                nms_iou: self.nms_iou,
                allowed: frame.allowed,
                num_classes: self.num_classes,
            };
            let chunk = &data[i * items.len..(i + 1) * items.len];
            let result = decode(self.decoder, items.shape(), chunk, &params, frame.letterbox, &mut self.out)
                .map_err(|e| InferError::Run(e.to_string()))
                .map(|()| (self.out.as_slice(), StageTimes { inference, postprocess: decoding.elapsed() }));
            each(i, result);
        }
        Ok(())
    }
}

/// The shape and length of one frame's slice of a batched output.
struct ItemShape {
    dims: [i64; MAX_OUTPUT_RANK],
    rank: usize,
    len: usize,
}

impl ItemShape {
    fn shape(&self) -> &[i64] {
        &self.dims[..self.rank]
    }
}

const MAX_OUTPUT_RANK: usize = 6;

/// Splits an output of `n` frames along its first dimension.
fn per_frame(shape: &[i64], values: usize, n: usize) -> Result<ItemShape, String> {
    let rank = shape.len();
    if rank == 0 || rank > MAX_OUTPUT_RANK || shape[0] != n as i64 || !values.is_multiple_of(n) {
        return Err(format!("output shape {shape:?} does not hold a batch of {n}"));
    }
    let mut dims = [0; MAX_OUTPUT_RANK];
    dims[..rank].copy_from_slice(shape);
    dims[0] = 1;
    Ok(ItemShape { dims, rank, len: values / n })
}
