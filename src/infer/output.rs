//! Where ONNX Runtime writes the model output: tensors allocated once per batch size, so a run
//! allocates no output value (ort wraps each output it allocates in two reference-counted
//! handles: two of the daemon's heap allocations per frame, measured).
//!
//! Only the output the decoder reads is computed. An output whose shape is not fixed apart from
//! the batch dimension (or that is not float32) cannot be preallocated: ONNX Runtime allocates
//! it on every run, as before. Batch sizes are preallocated from 1 up while the outputs fit in
//! [`OUTPUT_BUDGET`]; larger batches of a large output are allocated by ONNX Runtime per run.

use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, TensorElementType};

use super::InferError;

/// Bytes of preallocated outputs at most per detector (one per worker), all batch sizes
/// together: a YOLO-sized output
/// (84 × 8400 floats, 2.8 MB a frame) gets batches of up to 4 frames, CenterNet's every size.
const OUTPUT_BUDGET: usize = 32 << 20;

/// The run options of each batch size, with its output.
pub(crate) struct OutputBuffers {
    /// Index `n - 1`: the options of a run on `n` frames.
    runs: Vec<RunOptions<HasSelectedOutputs>>,
    preallocated: bool,
}

impl OutputBuffers {
    /// Options for runs of 1 to `max_batch` frames reading `name`, whose declared shape is
    /// `shape` (-1 for dynamic dimensions).
    pub(crate) fn new(session: &Session, name: &str, shape: &[i64], max_batch: usize) -> Result<Self, InferError> {
        let is_f32 = session
            .outputs()
            .iter()
            .find(|o| o.name() == name)
            .and_then(|o| o.dtype().tensor_type())
            == Some(TensorElementType::Float32);
        let fixed = is_f32 && !shape.is_empty() && shape[1..].iter().all(|&d| d > 0);
        let frame_bytes = shape.iter().skip(1).map(|&d| d.max(0) as usize).product::<usize>() * size_of::<f32>();
        let sizes = if fixed { preallocated_sizes(frame_bytes, max_batch) } else { 0 };
        let mut runs = Vec::with_capacity(max_batch);
        for n in 1..=max_batch {
            let mut select = OutputSelector::no_default().with(name);
            if n <= sizes {
                let mut dims = shape.to_vec();
                dims[0] = n as i64;
                let tensor = Tensor::<f32>::new(&Allocator::default(), dims)?;
                select = select.preallocate(name, tensor);
            }
            runs.push(RunOptions::new()?.with_outputs(select));
        }
        Ok(Self { runs, preallocated: sizes > 0 })
    }

    /// The options of a run on `n` frames (1 to `max_batch`, checked by the caller).
    pub(crate) fn run(&self, n: usize) -> &RunOptions<HasSelectedOutputs> {
        &self.runs[n - 1]
    }

    /// Whether ONNX Runtime writes single-frame runs into a tensor allocated here.
    pub(crate) fn preallocated(&self) -> bool {
        self.preallocated
    }
}

/// How many batch sizes, from 1 up, get a preallocated output of `frame_bytes` a frame.
fn preallocated_sizes(frame_bytes: usize, max_batch: usize) -> usize {
    let mut total = 0;
    (1..=max_batch)
        .take_while(|n| {
            total += n * frame_bytes;
            total <= OUTPUT_BUDGET
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_preallocation_stays_in_budget() {
        // CenterNet: 100 detections × 6 floats.
        assert_eq!(preallocated_sizes(2_400, 1), 1);
        assert_eq!(preallocated_sizes(2_400, 16), 16);
        // YOLOv8: 84 × 8400 floats a frame; 1 + 2 + 3 + 4 frames (28 MB) fit in 32 MiB, 5 more do not.
        assert_eq!(preallocated_sizes(84 * 8400 * 4, 16), 4);
        assert_eq!(preallocated_sizes(OUTPUT_BUDGET + 1, 4), 0);
    }
}
