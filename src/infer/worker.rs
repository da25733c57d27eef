//! The inference thread: mailbox → detector → publish queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Detector;
use crate::frame::{Detections, Frame};
use crate::mailbox::{Mailboxes, Take};
use crate::publish::PublishQueue;
use crate::telemetry::DropReason;

/// How long the thread waits for a frame before it reports that it is alive anyway.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// Proof of progress for the watchdog: bumped on every loop turn, busy or idle.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat(AtomicU64);

impl Heartbeat {
    fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of turns so far; a value that stops changing means a wedged thread.
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Starts the inference thread. It ends when the mailboxes are closed and drained, after
/// handing every result to `queue`.
pub(crate) fn spawn(
    mut detector: Detector,
    mailboxes: Arc<Mailboxes>,
    queue: Arc<PublishQueue>,
    heartbeat: Arc<Heartbeat>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("infer".into()).spawn(move || {
        loop {
            heartbeat.beat();
            #[cfg(feature = "fault-injection")]
            wedge_if_asked();
            match mailboxes.take(IDLE_TICK) {
                Take::Frame(frame) => {
                    let camera = Arc::clone(&frame.camera);
                    // A bug in post-processing must cost one frame, not the daemon's only
                    // inference thread.
                    let run = std::panic::AssertUnwindSafe(|| process(&mut detector, frame, &queue));
                    if std::panic::catch_unwind(run).is_err() {
                        camera.metrics.drop(DropReason::InferenceError, 1);
                        tracing::error!(camera = %camera.id, stage = "infer", "Frame dropped: inference panicked.");
                    }
                }
                Take::Idle => {}
                Take::Closed => break,
            }
        }
        queue.close();
        tracing::debug!(stage = "infer", "Inference thread stopped.");
    })
}

/// Test hook (cargo feature `fault-injection`, never in a release build): once the file named
/// by `ROADSIGHTD_FAULT_WEDGE_INFERENCE` exists, the thread hangs like a wedged provider would.
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

fn process(detector: &mut Detector, frame: Frame, queue: &PublishQueue) {
    let camera = &frame.camera;
    camera.metrics.mailbox_wait.observe(frame.arrived.elapsed().as_secs_f64());
    let result = detector.detect(&frame.pixels, &frame.letterbox, camera.confidence, camera.classes.as_deref());
    match result {
        Ok((objects, took)) => {
            camera.metrics.processed.inc();
            camera.metrics.inference.observe(took.inference.as_secs_f64());
            camera.metrics.postprocess.observe(took.postprocess.as_secs_f64());
            if objects.is_empty() && !camera.publish_empty {
                return;
            }
            let detections = Detections {
                camera: Arc::clone(camera),
                seq: frame.seq,
                ts_us: frame.ts_us,
                clock: frame.clock,
                width: frame.letterbox.src_w,
                height: frame.letterbox.src_h,
                inference_us: took.inference.as_micros() as u64,
                arrived: frame.arrived,
                handed_over: Instant::now(),
                objects: objects.to_vec(),
            };
            // Release the GStreamer buffer before queueing: it goes back to the pool.
            drop(frame);
            queue.push(detections);
        }
        Err(e) => {
            camera.metrics.drop(DropReason::InferenceError, 1);
            tracing::warn!(camera = %camera.id, stage = "infer", seq = frame.seq, error = %e, "Frame dropped: inference failed.");
        }
    }
}

