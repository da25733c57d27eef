//! Where ONNX Runtime writes the model output: tensors allocated once per batch size, so a run
//! allocates no output value (ort wraps each output it allocates in two reference-counted
//! handles: two of the daemon's heap allocations per frame, measured).
//!
//! Only the output the decoder reads is computed. An output whose shape is not fixed apart from
//! the batch dimension (or that is not float32) cannot be preallocated: ONNX Runtime allocates
//! it on every run, as before.

use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, TensorElementType};

use super::InferError;

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
        let mut runs = Vec::with_capacity(max_batch);
        for n in 1..=max_batch {
            let mut select = OutputSelector::no_default().with(name);
            if fixed {
                let mut dims = shape.to_vec();
                dims[0] = n as i64;
                let tensor = Tensor::<f32>::new(&Allocator::default(), dims)?;
                select = select.preallocate(name, tensor);
            }
            runs.push(RunOptions::new()?.with_outputs(select));
        }
        Ok(Self { runs, preallocated: fixed })
    }

    /// The options of a run on `n` frames (1 to `max_batch`, checked by the caller).
    pub(crate) fn run(&self, n: usize) -> &RunOptions<HasSelectedOutputs> {
        &self.runs[n - 1]
    }

    /// Whether ONNX Runtime writes into tensors allocated here.
    pub(crate) fn preallocated(&self) -> bool {
        self.preallocated
    }
}
