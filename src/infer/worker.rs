//! Inference workers: mailboxes → detector → publish queue.
//!
//! Each worker owns a detector (its own session) and takes batches of what the cameras have
//! ready now; `model.workers` of them share the cameras. A run that fails for a whole batch is
//! retried frame by frame, so one bad frame costs that frame, not its neighbours.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use super::{Detector, InferError, Input, StageTimes};
use crate::frame::{Detection, Detections, Frame};
use crate::mailbox::{Mailboxes, Take};
use crate::publish::PublishQueue;
use crate::telemetry::{DropReason, LogThrottle};

/// How long a worker waits for a frame before it reports that it is alive anyway.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// Proof of progress for the watchdog: one counter per worker, bumped on every loop turn, busy
/// or idle.
#[derive(Debug)]
pub(crate) struct Heartbeat(Box<[AtomicU64]>);

impl Heartbeat {
    pub(crate) fn new(workers: usize) -> Self {
        Self((0..workers).map(|_| AtomicU64::new(0)).collect())
    }

    fn beat(&self, worker: usize) {
        self.0[worker].fetch_add(1, Ordering::Relaxed);
    }

    /// Each worker's number of turns so far; one that stops changing means a wedged worker.
    pub(crate) fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|c| c.load(Ordering::Relaxed))
    }
}

/// The running workers.
pub(crate) struct Workers(Vec<JoinHandle<()>>);

impl Workers {
    /// Waits for every worker to finish.
    pub(crate) fn join(self) {
        for worker in self.0 {
            let _ = worker.join();
        }
    }
}

/// Starts one worker per detector. They end when the mailboxes are closed and drained; the
/// last one out closes `queue`, after handing it every result.
pub(crate) fn spawn(
    detectors: Vec<Detector>,
    mailboxes: Arc<Mailboxes>,
    queue: Arc<PublishQueue>,
    heartbeat: Arc<Heartbeat>,
    batch_sizes: Histogram,
) -> std::io::Result<Workers> {
    let running = Arc::new(AtomicUsize::new(detectors.len()));
    let mut handles = Vec::with_capacity(detectors.len());
    for (index, detector) in detectors.into_iter().enumerate() {
        let worker = Worker {
            index,
            detector,
            mailboxes: Arc::clone(&mailboxes),
            queue: Arc::clone(&queue),
            heartbeat: Arc::clone(&heartbeat),
            batch_sizes: batch_sizes.clone(),
            running: Arc::clone(&running),
            failures: FailureLog::default(),
            handled: Cell::new(0),
        };
        let name = if index == 0 { "infer".to_owned() } else { format!("infer-{index}") };
        handles.push(std::thread::Builder::new().name(name).spawn(move || worker.run())?);
    }
    Ok(Workers(handles))
}

struct Worker {
    index: usize,
    detector: Detector,
    mailboxes: Arc<Mailboxes>,
    queue: Arc<PublishQueue>,
    heartbeat: Arc<Heartbeat>,
    batch_sizes: Histogram,
    running: Arc<AtomicUsize>,
    failures: FailureLog,
    /// Frames of the current batch already counted (processed or dropped), in batch order: a
    /// panic costs only the rest.
    handled: Cell<usize>,
}

impl Worker {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.detector.max_batch());
        loop {
            self.heartbeat.beat(self.index);
            #[cfg(feature = "fault-injection")]
            wedge_if_asked();
            match self.mailboxes.take_into(self.detector.max_batch(), IDLE_TICK, &mut batch) {
                Take::Ready { started } => {
                    // A bug in post-processing must cost its frames, not the worker.
                    let run = std::panic::AssertUnwindSafe(|| self.process(&batch));
                    if std::panic::catch_unwind(run).is_err() {
                        let lost = &batch[self.handled.get().min(batch.len())..];
                        for frame in lost {
                            frame.camera.metrics.drop(DropReason::InferenceError, 1);
                        }
                        tracing::error!(stage = "infer", frames = lost.len(), "Frames dropped: inference panicked.");
                    }
                    self.mailboxes.run_finished(started);
                    // Releases the GStreamer buffers: they go back to the pool.
                    batch.clear();
                }
                Take::Idle => {}
                Take::Closed => break,
            }
        }
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.close();
        }
        tracing::debug!(stage = "infer", worker = self.index, "Inference worker stopped.");
    }

    fn process(&mut self, batch: &[Frame]) {
        self.batch_sizes.observe(batch.len() as f64);
        for frame in batch {
            frame.camera.metrics.mailbox_wait.observe(frame.arrived.elapsed().as_secs_f64());
        }
        let (queue, failures, handled) = (&self.queue, &self.failures, &self.handled);
        handled.set(0);
        let ran = self.detector.detect_batch(
            batch.len(),
            |i| input(&batch[i]),
            |i, result| {
                finish(&batch[i], result, queue, failures);
                handled.set(i + 1);
            },
        );
        let Err(e) = ran else { return };
        if batch.len() == 1 {
            failures.dropped(&batch[0], &e);
            return handled.set(1);
        }
        tracing::debug!(stage = "infer", frames = batch.len(), error = %e, "Batch failed; running its frames one by one.");
        for (i, frame) in batch.iter().enumerate() {
            if let Err(e) = self.detector.detect_batch(1, |_| input(frame), |_, result| finish(frame, result, queue, failures)) {
                failures.dropped(frame, &e);
            }
            handled.set(i + 1);
        }
    }
}

fn input(frame: &Frame) -> Input<'_> {
    Input {
        pixels: frame.pixels.as_input(),
        letterbox: &frame.letterbox,
        confidence: frame.camera.confidence,
        allowed: frame.camera.classes.as_deref(),
    }
}

/// Hands one frame's detections to the publisher, or counts it as lost.
fn finish(frame: &Frame, result: Result<(&[Detection], StageTimes), InferError>, queue: &PublishQueue, failures: &FailureLog) {
    let camera = &frame.camera;
    let (objects, took) = match result {
        Ok(ok) => ok,
        Err(e) => return failures.dropped(frame, &e),
    };
    camera.metrics.processed.inc();
    camera.metrics.inference.observe(took.inference.as_secs_f64());
    camera.metrics.postprocess.observe(took.postprocess.as_secs_f64());
    if objects.is_empty() && !camera.publish_empty {
        return;
    }
    queue.push(Detections {
        camera: Arc::clone(camera),
        seq: frame.seq,
        ts_us: frame.ts_us,
        clock: frame.clock,
        width: frame.letterbox.src_w,
        height: frame.letterbox.src_h,
        inference_us: took.inference.as_micros() as u64,
        arrived: frame.arrived,
        handed_over: Instant::now(),
        objects: queue.objects(objects),
    });
}

/// Inference failures of one worker: each is counted (`inference_error`), but a model or
/// provider that fails on every frame is logged once per [`FAILURE_LOG_EVERY`], with how many
/// were not logged since, instead of flooding the journal at the frame rate.
struct FailureLog(LogThrottle);

const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog(LogThrottle::new(FAILURE_LOG_EVERY))
    }
}

impl FailureLog {
    fn dropped(&self, frame: &Frame, e: &InferError) {
        frame.camera.metrics.drop(DropReason::InferenceError, 1);
        if let Some(unlogged) = self.0.admit(Instant::now()) {
            tracing::warn!(camera = %frame.camera.id, stage = "infer", seq = frame.seq, error = %e, unlogged, "Frame dropped: inference failed.");
        }
    }
}

/// Test hook (cargo feature `fault-injection`, never in a release build): once the file named
/// by `ROADSIGHTD_FAULT_WEDGE_INFERENCE` exists, the worker hangs like a wedged provider would.
/// (Not `ROADSIGHT_`: that prefix overrides config keys.)
#[cfg(feature = "fault-injection")]
fn wedge_if_asked() {
    let Some(path) = std::env::var_os("ROADSIGHTD_FAULT_WEDGE_INFERENCE") else { return };
    if std::path::Path::new(&path).exists() {
        tracing::warn!(stage = "infer", "Fault injection: inference thread wedged.");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
