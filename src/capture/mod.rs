//! Capture: the first stage. One GStreamer pipeline per camera decodes the RTSP stream,
//! letterboxes it to the model's input size and leaves the newest frame in the camera's
//! mailbox for inference. A tokio task per camera watches the pipeline's bus and its frame
//! flow, and rebuilds the pipeline with capped exponential backoff whenever the camera is
//! unreachable, drops the connection or stalls, forever, independently of other cameras.

mod admission;
mod clock;
mod decoder;
mod pipeline;
mod rate;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{CameraConfig, CaptureDefaults};
use crate::credentials;
use crate::frame::{CameraInfo, CameraSlot};
use crate::mailbox::Mailboxes;

/// How often the control loop checks for a stall.
const STALL_CHECK: Duration = Duration::from_millis(250);
/// Bus messages (errors, end of stream, warnings) waiting for the session task at most; more are dropped.
const BUS_MESSAGES: usize = 16;

/// Errors of one capture session.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The camera cannot be set up at all (missing element, bad credential): retried with the
    /// longest backoff, since only an operator can fix it.
    #[error("{0}")]
    Fatal(String),
}

/// How one capture session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The daemon is stopping.
    Shutdown,
    /// Unreachable, dropped, stalled or ended: reconnect after backoff.
    Disconnected(String),
    /// Set-up failed in a way a retry will not fix soon.
    Fatal(String),
}

/// What a camera's pipeline callbacks share with its control task.
pub(crate) struct CaptureShared {
    pub config: CameraConfig,
    pub defaults: CaptureDefaults,
    pub camera: Arc<CameraInfo>,
    pub slot: CameraSlot,
    pub mailboxes: Arc<Mailboxes>,
    pub input_width: u32,
    pub input_height: u32,
    /// Next `seq`; continues across reconnects.
    pub seq: AtomicU64,
    /// The GPU context frames from NVIDIA desktop decoders stay in (`None`: system memory).
    #[cfg(feature = "cuda")]
    pub device: Option<&'static crate::cuda::DeviceContext>,
}

/// Runs a camera until `shutdown`: connect, watch, reconnect.
pub(crate) async fn run(shared: Arc<CaptureShared>, shutdown: CancellationToken) {
    let id = shared.config.id.clone();
    let url = credentials::redact_url(&shared.config.url);
    let mut backoff = Backoff::new(shared.defaults.backoff_initial, shared.defaults.backoff_max);
    let mut first = true;
    loop {
        if !first {
            shared.camera.metrics.reconnects.inc();
        }
        first = false;
        let (end, healthy) = session(&shared, &shutdown).await;
        shared.camera.metrics.up.set(0);
        if healthy {
            backoff.reset();
        }
        let delay = match end {
            SessionEnd::Shutdown => break,
            SessionEnd::Disconnected(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(camera = %id, stage = "capture", url = %url, reason = %reason, retry_ms = delay.as_millis() as u64, "Camera disconnected; reconnecting.");
                delay
            }
            SessionEnd::Fatal(reason) => {
                tracing::error!(camera = %id, stage = "capture", url = %url, reason = %reason, "Camera cannot be set up; retrying later.");
                shared.defaults.backoff_max
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(camera = %id, stage = "capture", "Capture stopped.");
}

/// One pipeline's life. Returns how it ended and whether it delivered frames.
async fn session(shared: &Arc<CaptureShared>, shutdown: &CancellationToken) -> (SessionEnd, bool) {
    let user = match &shared.config.credential {
        Some(name) => match credentials::read_user_password(name, shared.defaults.credentials_dir.as_deref()) {
            Ok((user, pass)) => Some((user, pass)),
            Err(e) => return (SessionEnd::Fatal(e.to_string()), false),
        },
        None => None,
    };
    let liveness = Arc::new(pipeline::Liveness::new());
    let creds = user.as_ref().map(|(u, p)| (u.as_str(), p.expose()));
    let pipeline = match pipeline::build(shared, &liveness, creds) {
        Ok(p) => p,
        Err(CaptureError::Fatal(e)) => return (SessionEnd::Fatal(e), false),
    };
    let end = watch(&pipeline, &liveness, shared, shutdown).await;
    // Only a session that streamed for a while resets the backoff: a camera that sends one
    // frame and drops must not be hammered at the initial delay forever.
    let healthy = liveness.streamed_for() >= shared.defaults.stall_timeout;
    // Going to Null can block while rtspsrc tears down the RTSP session: keep it off the workers.
    let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    (end, healthy)
}

async fn watch(
    pipeline: &gst::Pipeline,
    liveness: &pipeline::Liveness,
    shared: &CaptureShared,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let Some(bus) = pipeline.bus() else { return SessionEnd::Fatal("pipeline without a bus".into()) };
    // Only errors, end of stream and warnings come through; every other message (QoS, stream
    // status, state changes) is dropped where it is posted, so that none costs an allocation
    // on its way to this task. The channel only fills if this task stops reading.
    let (sender, mut messages) = tokio::sync::mpsc::channel::<gst::Message>(BUS_MESSAGES);
    bus.set_sync_handler(move |_, msg| {
        if matches!(msg.type_(), gst::MessageType::Error | gst::MessageType::Eos | gst::MessageType::Warning) {
            let _ = sender.try_send(msg.clone());
        }
        gst::BusSyncReply::Drop
    });
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        return SessionEnd::Disconnected(format!("cannot start: {e}"));
    }
    let stall = shared.defaults.stall_timeout;
    let mut tick = tokio::time::interval(STALL_CHECK);
    let mut announced = false;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return SessionEnd::Shutdown,
            msg = messages.recv() => {
                let Some(msg) = msg else { return SessionEnd::Disconnected("bus closed".into()) };
                match msg.view() {
                    gst::MessageView::Error(err) => {
                        let detail = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                        return SessionEnd::Disconnected(format!("{}{detail}", err.error()));
                    }
                    gst::MessageView::Eos(_) => return SessionEnd::Disconnected("end of stream".into()),
                    gst::MessageView::Warning(w) => {
                        tracing::debug!(camera = %shared.config.id, stage = "capture", warning = %w.error(), "GStreamer warning.");
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let quiet = liveness.quiet_for();
                if quiet > stall {
                    return SessionEnd::Disconnected(format!("no frame for {} ms", quiet.as_millis()));
                }
                if !announced && liveness.has_frames() {
                    announced = true;
                    tracing::info!(camera = %shared.config.id, stage = "capture", "Camera live.");
                }
            }
        }
    }
}

/// The decoders capture would use for H.264 and H.265 on this machine, for `check`.
/// Whether GStreamer has an element named `name` (a camera's `decoder`).
pub fn decoder_exists(name: &str) -> bool {
    gst::init().is_ok() && decoder::element_exists(name)
}

pub fn decoder_summary(override_element: Option<&str>) -> String {
    if gst::init().is_err() {
        return "GStreamer unavailable".into();
    }
    let pick = |codec| {
        decoder::choose(codec, override_element, decoder::element_exists)
            .map_or_else(|| "none available".to_owned(), |c| c.element)
    };
    format!("H.264 → {}, H.265 → {}", pick(decoder::Codec::H264), pick(decoder::Codec::H265))
}
