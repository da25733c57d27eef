//! How many inference workers run: `model.workers`, or with 0 (the default) one per core, up to
//! the number of cameras, when the model runs on the CPU, and one on a GPU.
//!
//! On the CPU one session's intra-op threads scale poorly past one core on this model, and
//! sessions of one thread each run side by side without waiting on each other: on the 2-core
//! box two workers of one thread served 20.8 and 20.9 fps at 4 and 8 cameras, one worker of two
//! threads 14.8 and 14.8, at 90 vs 113 ms CPU per frame (`bench-results/pipeline.md`). One
//! camera is served sooner by one worker using every core. A GPU runs one session's frames back
//! to back, batched where the model allows; more sessions only hold more memory.

use super::{Detector, InferError};
use crate::config::ModelConfig;

/// Opens the sessions of the inference workers for `cameras` enabled cameras. With
/// `model.workers = 0` the first session decides: more follow only if it runs on the CPU. A GPU
/// session opened this way keeps the CPU plan's intra-op threads (cores / workers), which only
/// the operators TensorRT or CUDA leave to the CPU use. The count is fixed at start; cameras
/// added by a reload share the workers there are.
///
/// # Errors
/// As [`Detector::open`].
pub fn open_detectors(config: &ModelConfig, cameras: usize) -> Result<Vec<Detector>, InferError> {
    let auto = config.workers == 0;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut config = config.clone();
    if auto {
        config.workers = cpu_workers(cores, cameras);
    }
    // What every session opens with, the first included.
    let threads = super::session::intra_threads(&config);
    let first = Detector::open(&config)?;
    let provider = super::provider_report().map_or("cpu", |r| r.in_use());
    if auto && provider != "cpu" {
        config.workers = 1;
    }
    let mut detectors = Vec::with_capacity(config.workers);
    detectors.push(first);
    for _ in 1..config.workers {
        detectors.push(Detector::open(&config)?);
    }
    tracing::info!(
        stage = "infer",
        workers = config.workers,
        intra_threads = %threads.map_or_else(|| "onnxruntime-default".into(), |t| t.to_string()),
        decided = if auto { "auto" } else { "config" },
        provider,
        cameras,
        cores,
        "Inference workers."
    );
    Ok(detectors)
}

/// Workers for a model on the CPU: one per core, no more than there are cameras to keep busy.
fn cpu_workers(cores: usize, cameras: usize) -> usize {
    cores.min(cameras).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_core_up_to_the_cameras() {
        assert_eq!(cpu_workers(2, 1), 1);
        assert_eq!(cpu_workers(2, 4), 2);
        assert_eq!(cpu_workers(8, 3), 3);
        assert_eq!(cpu_workers(1, 8), 1);
        assert_eq!(cpu_workers(4, 0), 1, "a daemon started with no camera still loads one");
    }
}
