//! Supervisor: starts the stages, runs the control loop (watchdog, status, reload) and stops
//! the stages in order.
//!
//! Start-up: model, local Redis, `/metrics`, uplink reconcile, inference, publisher, cameras;
//! then READY. The loop pings the watchdog while the daemon makes progress ([`health`]) and
//! applies a new config on SIGHUP ([`reload`], [`cameras`]). On SIGTERM or SIGINT it drains:
//! capture stops first, inference finishes the frames it holds, the publisher flushes them to
//! Redis (each step bounded), then the process exits. A second signal exits at once.

mod cameras;
mod health;
mod reload;
mod summary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::infer::{self, Detector, Heartbeat, InferError};
use crate::mailbox::Mailboxes;
use crate::publish::{self, EntryContext, LinkError, PublishError, PublishQueue, RedisTarget};
use crate::systemd::Notifier;
use crate::telemetry::{DropReason, LogControl, Metrics, http};
use crate::uplink::{Uplink, UplinkError};
use cameras::CameraSet;
use health::Health;

/// How long inference may take to finish the frames it holds.
const INFER_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the publisher may keep flushing once inference is done. With the capture stop
/// timeout (3 s) a stop takes at most 10 s; the unit's `TimeoutStopSec` is 15 s.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up waits for the local Redis before giving up (exit 69).
const REDIS_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// While the model loads (a TensorRT engine build can take minutes), systemd's start timeout
/// is pushed this far ahead every [`EXTEND_EVERY`]…
const EXTEND_BY: Duration = Duration::from_secs(30);
const EXTEND_EVERY: Duration = Duration::from_secs(5);
/// … for at most this long in total; past it the unit's `TimeoutStartSec` decides.
const EXTEND_MAX: Duration = Duration::from_secs(30 * 60);

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

/// The signals the daemon handles, registered before anything slow starts (SIGHUP's default
/// action would kill the process).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The running uplink task.
struct UplinkTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A stop signal came while a step waited: the daemon goes down instead.
struct Stopping;

impl UplinkTask {
    /// Reconciles (before any camera of `uplink`'s streams writes) and starts forwarding. The
    /// reconcile waits up to 10 s for upstream; a stop signal meanwhile ends it there, with
    /// nothing started, so that a stop keeps to the unit's `TimeoutStopSec`.
    async fn start(uplink: Option<Uplink>, signals: &mut Signals) -> Result<Option<Self>, Stopping> {
        let Some(uplink) = uplink else { return Ok(None) };
        tokio::select! {
            () = uplink.reconcile() => {}
            () = signals.stop() => return Err(Stopping),
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(uplink.run(stop.clone()));
        Ok(Some(Self { stop, task }))
    }

    /// The backlog is safe in local Redis: the uplink just stops.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, logs: LogControl) -> Result<(), RunError> {
    let mut signals = Signals::new()?;
    let notifier = Notifier::from_env();
    let metrics = Metrics::with_classes(config.model.label_names.clone());

    let detectors = tokio::select! {
        loaded = load_model(&config, notifier) => loaded?,
        () = signals.stop() => return Ok(()),
    };
    if let Some(report) = infer::provider_report() {
        metrics.set_providers(&report.listed, report.in_use());
    }
    let shape = detectors[0].shape().clone();
    let max_batch = detectors[0].max_batch();
    tracing::info!(
        stage = "infer", model = %config.model.path.display(), input = ?shape.input, width = shape.width,
        height = shape.height, workers = detectors.len(), max_batch, "Model loaded."
    );

    let target = RedisTarget::new(&config.redis, config.capture.credentials_dir.as_deref())?;
    notifier.status("Waiting for local Redis");
    tokio::select! {
        ready = wait_for_redis(&target) => ready?,
        () = signals.stop() => return Ok(()),
    }

    let stop_metrics = CancellationToken::new();
    if let Some(addr) = config.metrics_listen {
        let (listener, bound) = http::bind(addr)
            .await
            .map_err(|e| RunError::MetricsUnavailable { addr: addr.to_string(), reason: e.to_string() })?;
        tracing::info!(addr = %bound, "Metrics served at /metrics.");
        tokio::spawn(http::serve(listener, Arc::clone(&metrics), stop_metrics.clone()));
    }

    // Before the first XADD: the uplink moves local last IDs past upstream's if needed.
    let Ok(mut uplink) = UplinkTask::start(Uplink::new(&config, &metrics)?, &mut signals).await else {
        return Ok(());
    };

    let mailboxes = Arc::new(Mailboxes::new());
    let queue = Arc::new(PublishQueue::new(config.publish.queue));
    let heartbeat = Arc::new(Heartbeat::new(detectors.len()));
    let workers = infer::spawn(
        detectors,
        Arc::clone(&mailboxes),
        Arc::clone(&queue),
        Arc::clone(&heartbeat),
        metrics.batch_size.clone(),
    )?;

    let run_id = run_id();
    let ctx = EntryContext::new(
        &config.site,
        &run_id,
        &model_name(&config.model.path),
        &config.model.label_names,
        config.publish.encoding,
        config.publish.maxlen,
    );
    let stop_publish = CancellationToken::new();
    let publisher = tokio::spawn(publish::run(
        target,
        ctx,
        Arc::clone(&queue),
        Arc::clone(&metrics),
        stop_publish.clone(),
        DRAIN_TIMEOUT,
    ));

    let shared = cameras::Shared {
        site: config.site.clone(),
        labels: config.model.label_names.clone(),
        defaults: config.capture.clone(),
        input_width: shape.width,
        input_height: shape.height,
        #[cfg(feature = "cuda")]
        device: device_frames(&config.model, &shape),
    };
    let mut cameras = CameraSet::new(shared, Arc::clone(&mailboxes), Arc::clone(&metrics));
    cameras.apply(&config.cameras).await;
    tracing::info!(site = %config.site, run = %run_id, cameras = cameras.len(), "roadsightd running.");

    let mut health = Health::new(notifier, heartbeat);
    let mut running = config;
    notifier.ready(health.status_line(&cameras, &metrics, uplink_ids(&running).as_deref(), Instant::now()));
    let mut tick = tokio::time::interval(health.period());
    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
            _ = signals.hup.recv() => {
                let stopping;
                (running, stopping) = reload(running, &logs, &mut cameras, &mut uplink, &metrics, &mut health, &mut signals).await;
                if stopping {
                    break;
                }
            }
            _ = tick.tick() => health.tick(&cameras, &metrics, uplink_ids(&running).as_deref()),
        }
    }

    notifier.stopping("Stopping: draining inference and publish");
    tracing::info!("Stopping: capture first, then draining inference and publish.");
    tokio::spawn(async move {
        signals.stop().await;
        tracing::warn!("Second stop signal: exiting now.");
        std::process::exit(130);
    });
    // Each step is bounded, so a camera stuck in teardown or a wedged model cannot hold the
    // stop past systemd's timeout; what is left unconfirmed is counted, never silently lost.
    cameras.stop_all().await;
    mailboxes.close();
    let joined = tokio::task::spawn_blocking(move || workers.join());
    if tokio::time::timeout(INFER_STOP_TIMEOUT, joined).await.is_err() {
        tracing::error!(stage = "infer", "Inference workers did not finish their frames in time; going on.");
        queue.close();
    }
    stop_publish.cancel();
    let _ = publisher.await;
    if let Some(uplink) = uplink.take() {
        uplink.stop().await;
    }
    let late = queue.discard(DropReason::Shutdown);
    if late > 0 {
        tracing::warn!(stage = "publish", entries = late, "Results produced after the publisher stopped; dropped.");
    }
    stop_metrics.cancel();
    summary::log_cameras(cameras.cameras());
    if running.uplink.is_some() {
        summary::log_uplink(&running, &metrics);
    }
    Ok(())
}

/// SIGHUP: re-reads the config files and applies what can change live. A config that fails
/// validation, or an uplink that cannot be built from it, changes nothing. Returns the config
/// that runs afterwards, and whether a stop signal came meanwhile (the daemon then stops).
async fn reload(
    running: Config,
    logs: &LogControl,
    cameras: &mut CameraSet,
    uplink: &mut Option<UplinkTask>,
    metrics: &Arc<Metrics>,
    health: &mut Health,
    signals: &mut Signals,
) -> (Config, bool) {
    let notifier = health.notifier();
    notifier.reloading("Reloading configuration");
    tracing::info!(config = %running.file.display(), "Reloading configuration.");
    let outcome = match config::load(&running.file).map_err(|e| e.to_string()).and_then(|new| reload::revalidate_cameras(&running, new)) {
        Ok(new) => {
            let (merged, pending) = reload::merge(&running, new);
            let rebuild = reload::uplink_changed(&running, &merged);
            let next_uplink = if rebuild { Uplink::new(&merged, metrics) } else { Ok(None) };
            next_uplink.map(|next| (merged, pending, rebuild, next)).map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let (merged, pending, rebuild, next_uplink) = match outcome {
        Ok(parts) => parts,
        Err(error) => {
            tracing::error!(error = %error, "Reload refused; the running configuration stays.");
            metrics.reloaded(false);
            health.reloaded(Some(error));
            notifier.ready(health.status_line(cameras, metrics, uplink_ids(&running).as_deref(), Instant::now()));
            return (running, false);
        }
    };
    for section in &pending {
        tracing::warn!(section, "Changes to this section take effect after `systemctl restart roadsightd`.");
    }
    logs.set_level(&merged.log_level);
    if rebuild {
        if let Some(old) = uplink.take() {
            old.stop().await;
        }
        for gone in running.cameras.iter().filter(|c| merged.uplink.is_none() || !merged.cameras.iter().any(|n| n.id == c.id)) {
            metrics.uplink.forget(&gone.id);
        }
        match UplinkTask::start(next_uplink, signals).await {
            Ok(next) => *uplink = next,
            Err(Stopping) => {
                tracing::warn!("Stop signal during the reload: stopping before its cameras start.");
                return (running, true);
            }
        }
    }
    let applied = cameras.apply(&merged.cameras).await;
    tracing::info!(
        added = ?applied.added,
        removed = ?applied.removed,
        changed = ?applied.changed,
        unchanged = applied.unchanged,
        uplink_restarted = rebuild,
        "Configuration reloaded."
    );
    metrics.reloaded(true);
    health.reloaded(None);
    notifier.ready(health.status_line(cameras, metrics, uplink_ids(&merged).as_deref(), Instant::now()));
    (merged, false)
}

/// The cameras the uplink follows, `None` when it is off.
fn uplink_ids(config: &Config) -> Option<Vec<String>> {
    config.uplink.as_ref().map(|_| config.cameras.iter().map(|c| c.id.clone()).collect())
}

/// Loads one session per inference worker ([`infer::open_detectors`]) off the runtime's
/// workers, telling systemd the start is slow but alive.
async fn load_model(config: &Config, notifier: Notifier) -> Result<Vec<Detector>, RunError> {
    let model_config = config.model.clone();
    let cameras = config.cameras.iter().filter(|c| c.enabled).count();
    let mut loading = tokio::task::spawn_blocking(move || {
        // Test hook: a start as slow as a TensorRT engine build.
        #[cfg(feature = "fault-injection")]
        if let Some(ms) = std::env::var("ROADSIGHTD_FAULT_SLOW_MODEL_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        infer::open_detectors(&model_config, cameras)
    });
    let started = Instant::now();
    notifier.status("Loading model");
    loop {
        tokio::select! {
            loaded = &mut loading => {
                return loaded.map_err(|e| RunError::Io(std::io::Error::other(e)))?.map_err(RunError::from);
            }
            () = tokio::time::sleep(EXTEND_EVERY) => {
                let waited = started.elapsed();
                if waited < EXTEND_MAX {
                    notifier.extend_timeout(EXTEND_BY, &format!("Loading model ({} s)", waited.as_secs()));
                }
            }
        }
    }
}

async fn wait_for_redis(target: &RedisTarget) -> Result<(), RunError> {
    let started = tokio::time::Instant::now();
    loop {
        match target.link().await {
            Ok(_) => return Ok(()),
            // A wrong password or database does not fix itself: a config error, at once.
            Err(PublishError::Link(LinkError::Refused { command, message })) => {
                let field = if command == "AUTH" { "redis.credential" } else { "redis.url" };
                return Err(RunError::Publish(PublishError::Config { field, message: format!("{command} refused: {message}") }));
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

/// `<file stem>@<first 8 hex digits of its SHA-256>`, the `model` field. The hash is the one
/// the TensorRT engine key uses (read once per file).
/// The GPU context frames of NVIDIA desktop decoders stay in, or `None` (logged why).
#[cfg(feature = "cuda")]
fn device_frames(model: &crate::config::ModelConfig, shape: &infer::ModelShape) -> Option<&'static crate::cuda::DeviceContext> {
    match crate::cuda::for_model(model, shape.input) {
        Ok(device) => {
            tracing::info!(stage = "capture", device = device.device(), "Frames from nvh264dec/nvh265dec stay in CUDA memory.");
            Some(device)
        }
        Err(why) => {
            tracing::info!(stage = "capture", reason = %why, "Frames go through system memory.");
            None
        }
    }
}

fn model_name(path: &std::path::Path) -> String {
    let stem = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    // The model was just loaded from this file, so it is readable; "unread" only if it vanished.
    let hash = infer::sha256_file(path).unwrap_or_else(|_| "unread".into());
    format!("{stem}@{}", &hash[..hash.len().min(8)])
}

/// An id for this daemon run: start time (µs, hex) and pid.
fn run_id() -> String {
    format!("{:x}-{:x}", publish::unix_micros(), std::process::id())
}
