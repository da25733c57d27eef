//! The GStreamer pipeline of one camera:
//! `rtspsrc ! depay ! parse ! decoder [! nvvidconv] ! (fps cap) ! videoconvertscale add-borders
//!  ! video/x-raw,format=RGB,width=W,height=H ! appsink max-buffers=1 drop=true sync=false`.
//!
//! The depayload/parse/decode chain is added when rtspsrc announces its video pad, because
//! only then is the codec known. The appsink callback maps the buffer and leaves it in the
//! camera's mailbox without blocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::decoder::{self, Codec};
use super::rate::RateLimiter;
use super::{CaptureError, CaptureShared};
use crate::frame::Frame;
use crate::infer::Letterbox;
use crate::publish::unix_micros;
use crate::telemetry::DropReason;

/// State the streaming threads update and the control loop reads.
#[derive(Debug)]
pub(crate) struct Liveness {
    epoch: Instant,
    /// Milliseconds since `epoch` of the first and the last decoded frame (0: none yet),
    /// counting frames the fps cap drops: a camera under a low cap is alive, not stalled.
    first_frame_ms: AtomicU64,
    last_frame_ms: AtomicU64,
    /// Source width << 32 | height, from the decoder's output caps.
    source_size: AtomicU64,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            first_frame_ms: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            source_size: AtomicU64::new(0),
        }
    }

    /// Records a decoded frame.
    fn frame_decoded(&self) {
        let ms = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.last_frame_ms.store(ms, Ordering::Relaxed);
        let _ = self.first_frame_ms.compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Time since the last decoded frame, or since the session started if none came yet.
    pub(crate) fn quiet_for(&self) -> Duration {
        match self.last_frame_ms.load(Ordering::Relaxed) {
            0 => self.epoch.elapsed(),
            ms => self.epoch.elapsed().saturating_sub(Duration::from_millis(ms)),
        }
    }

    /// Whether any frame was decoded in this session.
    pub(crate) fn has_frames(&self) -> bool {
        self.last_frame_ms.load(Ordering::Relaxed) != 0
    }

    /// How long frames have been flowing: from the first to the last decoded frame.
    pub(crate) fn streamed_for(&self) -> Duration {
        let first = self.first_frame_ms.load(Ordering::Relaxed);
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        Duration::from_millis(last.saturating_sub(first))
    }
}

/// Builds the pipeline (not started). Credentials are set on rtspsrc, never in the URL.
pub(crate) fn build(
    shared: &Arc<CaptureShared>,
    liveness: &Arc<Liveness>,
    user: Option<(&str, &str)>,
) -> Result<gst::Pipeline, CaptureError> {
    let cam = &shared.config;
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", cam.id));
    let src = gst::ElementFactory::make("rtspsrc")
        .property("location", &cam.url)
        .property("latency", cam.latency_ms)
        .property("add-reference-timestamp-meta", true)
        .property("drop-on-latency", true)
        .property("tcp-timeout", shared.defaults.stall_timeout.as_micros() as u64)
        .property_from_str("protocols", match cam.transport {
            crate::config::Transport::Tcp => "tcp",
            crate::config::Transport::Udp => "udp",
        })
        .build()
        .map_err(|e| CaptureError::Fatal(format!("rtspsrc: {e}")))?;
    if let Some((id, pw)) = user {
        src.set_property("user-id", id);
        src.set_property("user-pw", pw);
    }
    let scale = make_scaler()?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", shared.input_width as i32)
        .field("height", shared.input_height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(|e| CaptureError::Fatal(format!("capsfilter: {e}")))?;
    let sink = gst_app::AppSink::builder().max_buffers(1).drop(true).sync(false).build();
    pipeline
        .add_many([&src, &scale, &filter, sink.upcast_ref()])
        .map_err(|e| CaptureError::Fatal(e.to_string()))?;
    gst::Element::link_many([&scale, &filter, sink.upcast_ref()]).map_err(|e| CaptureError::Fatal(e.to_string()))?;

    watch_source_size(&scale, liveness);
    install_sink_callback(&sink, shared, liveness);
    // Only the video stream is set up; audio and metadata streams are not even requested.
    src.connect("select-stream", false, |args| {
        let caps = args[2].get::<gst::Caps>().ok()?;
        let video = caps.structure(0).and_then(|s| s.get::<&str>("media").ok()) == Some("video");
        Some(video.to_value())
    });
    let weak = pipeline.downgrade();
    let shared = Arc::clone(shared);
    let liveness = Arc::clone(liveness);
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        if let Err(e) = link_video_pad(&pipeline, pad, &scale, &shared, &liveness) {
            // Reported on the bus so the control loop sees it like any other error.
            gst::element_error!(pipeline, gst::StreamError::Decode, ("{}", e));
        }
    });
    Ok(pipeline)
}

fn make_scaler() -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make("videoconvertscale")
        .property("add-borders", true)
        .build()
        .map_err(|e| CaptureError::Fatal(format!("videoconvertscale (gst-plugins-base >= 1.22): {e}")))
}

/// Adds depay ! parse ! decoder for the codec on `pad` and links it into the scaler.
fn link_video_pad(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    scale: &gst::Element,
    shared: &Arc<CaptureShared>,
    liveness: &Arc<Liveness>,
) -> Result<(), CaptureError> {
    if scale.static_pad("sink").is_some_and(|p| p.is_linked()) {
        return Ok(());
    }
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let encoding = caps.structure(0).and_then(|s| s.get::<&str>("encoding-name").ok()).unwrap_or("").to_owned();
    let codec = Codec::from_encoding_name(&encoding)
        .ok_or_else(|| CaptureError::Fatal(format!("unsupported video encoding `{encoding}` (need H264 or H265)")))?;
    let choice = decoder::choose(codec, shared.config.decoder.as_deref(), decoder::element_exists).ok_or_else(|| {
        CaptureError::Fatal(format!("no decoder for {codec:?} (override: {:?})", shared.config.decoder))
    })?;
    let mut names = vec![codec.depayloader(), codec.parser(), choice.element.as_str()];
    names.extend(choice.converter);
    let elements = names
        .iter()
        .map(|n| gst::ElementFactory::make(n).build().map_err(|e| CaptureError::Fatal(format!("{n}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    pipeline.add_many(&elements).map_err(|e| CaptureError::Fatal(e.to_string()))?;
    gst::Element::link_many(&elements).map_err(|e| CaptureError::Fatal(e.to_string()))?;
    let last = elements.last().expect("chain is never empty");
    install_rate_limit(last, shared, liveness);
    last.link(scale).map_err(|e| CaptureError::Fatal(format!("{} → scaler: {e}", choice.element)))?;
    for e in &elements {
        e.sync_state_with_parent().map_err(|e| CaptureError::Fatal(e.to_string()))?;
    }
    let sink = elements[0].static_pad("sink").expect("depayloaders have a sink pad");
    pad.link(&sink).map_err(|e| CaptureError::Fatal(format!("rtspsrc → depay: {e:?}")))?;
    tracing::info!(camera = %shared.config.id, stage = "capture", codec = ?codec, decoder = %choice.element, "Video stream linked.");
    Ok(())
}

/// Notes every decoded frame, and drops those above the camera's fps cap before they are
/// scaled (counted).
fn install_rate_limit(decoder_out: &gst::Element, shared: &Arc<CaptureShared>, liveness: &Arc<Liveness>) {
    let Some(pad) = decoder_out.static_pad("src") else { return };
    let limiter = Mutex::new(RateLimiter::new(shared.config.fps));
    let metrics = shared.camera.metrics.clone();
    let liveness = Arc::clone(liveness);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
        liveness.frame_decoded();
        let at = buffer.pts().map_or_else(|| Duration::from_nanos(0), |t| Duration::from_nanos(t.nseconds()));
        let admit = limiter.lock().unwrap_or_else(PoisonError::into_inner).admit(at);
        if admit {
            gst::PadProbeReturn::Ok
        } else {
            metrics.drop(DropReason::RateLimit, 1);
            gst::PadProbeReturn::Drop
        }
    });
}

/// Remembers the decoded frame size (the letterbox's source size) from the scaler's input caps.
fn watch_source_size(scale: &gst::Element, liveness: &Arc<Liveness>) {
    let Some(pad) = scale.static_pad("sink") else { return };
    let liveness = Arc::clone(liveness);
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) {
            if let Some(s) = caps.caps().structure(0) {
                let (w, h) = (s.get::<i32>("width").unwrap_or(0), s.get::<i32>("height").unwrap_or(0));
                liveness.source_size.store(((w as u64) << 32) | (h as u64 & 0xffff_ffff), Ordering::Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

fn install_sink_callback(sink: &gst_app::AppSink, shared: &Arc<CaptureShared>, liveness: &Arc<Liveness>) {
    let shared = Arc::clone(shared);
    let liveness = Arc::clone(liveness);
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let buffer = sample.buffer_owned().ok_or(gst::FlowError::Error)?;
            deliver(&shared, &liveness, buffer);
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    sink.set_callbacks(callbacks);
}

/// Hands one frame to the mailbox; a frame it replaces is counted as stale.
fn deliver(shared: &CaptureShared, liveness: &Liveness, buffer: gst::Buffer) {
    let arrived = Instant::now();
    let metrics = &shared.camera.metrics;
    metrics.captured.inc();
    let (ts_us, clock) = super::clock::capture_time(&buffer, unix_micros());
    let Ok(pixels) = buffer.into_mapped_buffer_readable() else {
        metrics.drop(DropReason::CaptureError, 1);
        tracing::warn!(camera = %shared.config.id, stage = "capture", "Frame dropped: buffer not mappable.");
        return;
    };
    let size = liveness.source_size.load(Ordering::Relaxed);
    let (src_w, src_h) = ((size >> 32) as u32, (size & 0xffff_ffff) as u32);
    let letterbox = Letterbox::centered(src_w.max(1), src_h.max(1), shared.input_width, shared.input_height);
    metrics.up.set(1);
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let frame = Frame { camera: Arc::clone(&shared.camera), seq, ts_us, clock, arrived, letterbox, pixels };
    match shared.mailboxes.put(shared.slot, frame) {
        Ok(None) => {}
        Ok(Some(_stale)) => metrics.drop(DropReason::Stale, 1),
        Err(_refused) => metrics.drop(DropReason::Shutdown, 1),
    }
}
