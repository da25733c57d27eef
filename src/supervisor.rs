//! Supervisor: wires capture → infer → publish for the configured cameras, waits for a stop
//! signal and drains in order: capture stops first, inference finishes the frames it holds,
//! the publisher flushes them to Redis (bounded by the drain timeout), then the process exits.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{self, CaptureShared};
use crate::config::Config;
use crate::frame::CameraInfo;
use crate::infer::{self, Detector, Heartbeat, InferError};
use crate::mailbox::Mailboxes;
use crate::publish::{self, EntryContext, PublishError, PublishQueue, RedisTarget};
use crate::telemetry::{DropReason, Metrics, http};
use crate::uplink::{Uplink, UplinkError};

/// How long the cameras' pipelines may take to tear down after a stop signal.
const CAPTURE_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long inference may take to finish the frames it holds.
const INFER_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the publisher may keep flushing once inference is done. With the two above, a
/// stop takes at most 10 s (the unit's `TimeoutStopSec` is 15 s).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence of the inference thread after which it is reported as stalled.
const INFER_STALL: Duration = Duration::from_secs(10);
/// How long start-up waits for the local Redis before giving up (exit 69).
const REDIS_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the daemon could not run; `main` maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The model or its runtime could not be loaded.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The local Redis config is unusable.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The uplink settings cannot work (a missing credential…).
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    /// The `/metrics` address cannot be bound (`metrics.listen`).
    #[error("field `metrics.listen`: cannot listen on {addr}: {reason}")]
    MetricsUnavailable { addr: String, reason: String },
    /// The local Redis did not answer at start.
    #[error("local Redis {url} unreachable at start: {reason}")]
    RedisUnavailable { url: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT. A second signal exits at once.
pub async fn run(config: Config) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let model_config = config.model.clone();
    let detector = tokio::task::spawn_blocking(move || Detector::open(&model_config))
        .await
        .map_err(|e| RunError::Io(std::io::Error::other(e)))??;
    let shape = detector.shape().clone();
    tracing::info!(stage = "infer", model = %config.model.path.display(), input = ?shape.input, width = shape.width, height = shape.height, "Model loaded.");

    let target = RedisTarget::new(&config.redis, config.capture.credentials_dir.as_deref())?;
    wait_for_redis(&target).await?;

    let stop_metrics = CancellationToken::new();
    if let Some(addr) = config.metrics_listen {
        let (listener, bound) = http::bind(addr)
            .await
            .map_err(|e| RunError::MetricsUnavailable { addr: addr.to_string(), reason: e.to_string() })?;
        tracing::info!(addr = %bound, "Metrics served at /metrics.");
        tokio::spawn(http::serve(listener, Arc::clone(&metrics), stop_metrics.clone()));
    }

    // Before the first XADD: the uplink moves local last IDs past upstream's if needed.
    let uplink = Uplink::new(&config, &metrics)?;
    if let Some(uplink) = &uplink {
        uplink.reconcile().await;
    }
    let stop_uplink = CancellationToken::new();
    let uplink_task = uplink.map(|u| tokio::spawn(u.run(stop_uplink.clone())));

    let cameras: Vec<_> = config.cameras.iter().filter(|c| c.enabled).cloned().collect();
    let mailboxes = Arc::new(Mailboxes::new(cameras.len()));
    let queue = Arc::new(PublishQueue::new(config.publish.queue));
    let heartbeat = Arc::new(Heartbeat::default());
    let infer_thread = infer::spawn(detector, Arc::clone(&mailboxes), Arc::clone(&queue), Arc::clone(&heartbeat))?;

    let run_id = run_id();
    let ctx = EntryContext::new(
        &config.site,
        &run_id,
        &model_name(&config.model.path),
        &config.model.label_names,
        config.publish.encoding,
        config.publish.maxlen,
    );
    let stop_capture = CancellationToken::new();
    let stop_publish = CancellationToken::new();
    let tracker = TaskTracker::new();
    let publisher = tokio::spawn(publish::run(
        target,
        ctx,
        Arc::clone(&queue),
        Arc::clone(&metrics),
        stop_publish.clone(),
        DRAIN_TIMEOUT,
    ));

    let mut infos = Vec::new();
    for (slot, cam) in cameras.into_iter().enumerate() {
        let info = Arc::new(CameraInfo {
            id: cam.id.clone(),
            stream_key: publish::stream_key(&config.site, &cam.id),
            classes: class_ids(&cam.classes, &config.model.label_names),
            confidence: cam.confidence,
            publish_empty: cam.publish_empty,
            metrics: metrics.camera(&cam.id),
        });
        infos.push(Arc::clone(&info));
        let shared = Arc::new(CaptureShared {
            config: cam,
            defaults: config.capture.clone(),
            camera: info,
            slot,
            mailboxes: Arc::clone(&mailboxes),
            input_width: shape.width,
            input_height: shape.height,
            seq: AtomicU64::new(0),
        });
        tracker.spawn(capture::run(shared, stop_capture.clone()));
    }
    tracker.close();
    let stall_watch = tokio::spawn(watch_inference(heartbeat));
    tracing::info!(site = %config.site, run = %run_id, cameras = infos.len(), "roadsightd running.");

    wait_for_stop_signal().await?;
    tracing::info!("Stopping: capture first, then draining inference and publish.");
    tokio::spawn(async {
        if wait_for_stop_signal().await.is_ok() {
            tracing::warn!("Second stop signal: exiting now.");
            std::process::exit(130);
        }
    });
    stall_watch.abort();
    // Each step is bounded, so a camera stuck in teardown or a wedged model cannot hold the
    // stop past systemd's timeout; what is left unconfirmed is counted, never silently lost.
    stop_capture.cancel();
    if tokio::time::timeout(CAPTURE_STOP_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!(stage = "capture", "Some cameras did not stop in time; going on.");
    }
    mailboxes.close();
    let joined = tokio::task::spawn_blocking(move || infer_thread.join());
    if tokio::time::timeout(INFER_STOP_TIMEOUT, joined).await.is_err() {
        tracing::error!(stage = "infer", "Inference thread did not finish its frames in time; going on.");
        queue.close();
    }
    stop_publish.cancel();
    let _ = publisher.await;
    // The backlog is safe in local Redis: the uplink just stops.
    stop_uplink.cancel();
    if let Some(task) = uplink_task {
        let _ = task.await;
    }
    let late = queue.discard(DropReason::Shutdown);
    if late > 0 {
        tracing::warn!(stage = "publish", entries = late, "Results produced after the publisher stopped; dropped.");
    }
    stop_metrics.cancel();
    log_summary(&infos);
    if config.uplink.is_some() {
        log_uplink_summary(&config, &metrics);
    }
    Ok(())
}

/// One line per configured camera (enabled or not: the uplink follows them all).
fn log_uplink_summary(config: &Config, metrics: &Metrics) {
    for cam in &config.cameras {
        let m = metrics.uplink.camera(&cam.id);
        tracing::info!(
            camera = %cam.id,
            forwarded = m.forwarded.get(),
            duplicates = m.duplicates.get(),
            dropped = m.dropped.get(),
            gaps = m.gaps.get(),
            backlog = m.backlog.get(),
            "Uplink summary."
        );
    }
}

/// The inference thread beats at least every half second, busy or idle; one that stops is
/// wedged (a hung provider, a driver fault). Reported once per episode; issue 4's watchdog
/// will stop pinging systemd on the same signal.
async fn watch_inference(heartbeat: Arc<Heartbeat>) {
    let mut tick = tokio::time::interval(INFER_STALL);
    tick.tick().await; // the first tick is immediate
    let mut last = heartbeat.count();
    let mut reported = false;
    loop {
        tick.tick().await;
        let now = heartbeat.count();
        if now == last && !reported {
            tracing::error!(stage = "infer", stalled_s = INFER_STALL.as_secs(), "Inference thread made no progress.");
        } else if now != last && reported {
            tracing::info!(stage = "infer", "Inference thread is making progress again.");
        }
        reported = now == last;
        last = now;
    }
}

async fn wait_for_redis(target: &RedisTarget) -> Result<(), RunError> {
    let started = tokio::time::Instant::now();
    loop {
        match target.connect().await {
            Ok(_) => return Ok(()),
            // A wrong password or user does not fix itself: a config error, at once.
            Err(PublishError::Redis(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                return Err(RunError::Publish(PublishError::Config { field: "redis.credential", message: e.to_string() }));
            }
            Err(e) if started.elapsed() >= REDIS_STARTUP_TIMEOUT => {
                return Err(RunError::RedisUnavailable { url: target.display().to_owned(), reason: e.to_string() });
            }
            Err(e) => {
                tracing::info!(redis = target.display(), error = %e, "Waiting for local Redis.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn wait_for_stop_signal() -> Result<(), RunError> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Class names of a camera's allow-list → class ids (validated against the labels earlier).
fn class_ids(classes: &Option<Vec<String>>, labels: &[String]) -> Option<Vec<u32>> {
    classes.as_ref().map(|names| {
        names.iter().filter_map(|n| labels.iter().position(|l| l == n).map(|i| i as u32)).collect()
    })
}

/// `<file stem>@<first 8 hex digits of its SHA-256>`, the `model` field.
fn model_name(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let stem = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    if let Ok(mut file) = std::fs::File::open(path) {
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let digest = hasher.finalize();
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{stem}@{short}")
}

/// An id for this daemon run: start time (µs, hex) and pid.
fn run_id() -> String {
    format!("{:x}-{:x}", publish::unix_micros(), std::process::id())
}

fn log_summary(cameras: &[Arc<CameraInfo>]) {
    for cam in cameras {
        let m = &cam.metrics;
        tracing::info!(
            camera = %cam.id,
            captured = m.captured.get(),
            processed = m.processed.get(),
            published = m.published.get(),
            dropped_stale = m.dropped(DropReason::Stale),
            dropped_rate_limit = m.dropped(DropReason::RateLimit),
            dropped_inference_error = m.dropped(DropReason::InferenceError),
            dropped_queue_full = m.dropped(DropReason::QueueFull),
            dropped_redis_error = m.dropped(DropReason::RedisError),
            dropped_rejected = m.dropped(DropReason::Rejected),
            dropped_capture_error = m.dropped(DropReason::CaptureError),
            dropped_shutdown = m.dropped(DropReason::Shutdown),
            reconnects = m.reconnects.get(),
            "Camera summary."
        );
    }
}
