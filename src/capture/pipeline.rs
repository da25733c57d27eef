//! The GStreamer pipeline of one camera:
//! `rtspsrc ! depay ! parse ! decoder [! nvvidconv] ! (admission: fps cap, refresh) ! videoconvertscale add-borders
//!  ! video/x-raw,format=RGB,width=W,height=H ! appsink max-buffers=1 drop=true sync=false`.
//! With the `cuda` feature and a GPU provider, NVIDIA desktop decoders letterbox on the GPU
//! instead: `nvh264dec ! cudaconvertscale add-borders ! video/x-raw(memory:CUDAMemory),...`, and
//! the frame stays in device memory (see `crate::cuda`).
//!
//! The depayload/parse/decode/scale chain is added when rtspsrc announces its video pad,
//! because only then is the codec known. The appsink callback maps the buffer and leaves it in
//! the camera's mailbox without blocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::admission::{Admission, Decision};
use super::decoder::{self, Codec};
use super::{CaptureError, CaptureShared};
use crate::frame::{Frame, FrameMemory};
use crate::infer::Letterbox;
use crate::publish::unix_micros;
use crate::telemetry::DropReason;

/// State of one pipeline session that its streaming threads update: the control loop reads the
/// liveness fields; the admission probe and the appsink callback share the refresh mark.
#[derive(Debug)]
pub(crate) struct Liveness {
    epoch: Instant,
    /// Milliseconds since `epoch` of the first and the last decoded frame (0: none yet),
    /// counting frames the fps cap drops: a camera under a low cap is alive, not stalled.
    first_frame_ms: AtomicU64,
    last_frame_ms: AtomicU64,
    /// Source width << 32 | height, from the decoder's output caps.
    source_size: AtomicU64,
    /// Source pixel aspect ratio n << 32 | d, from the same caps (0: square).
    source_par: AtomicU64,
    /// Stream time (ns) of the frame admitted last as a refresh (`u64::MAX`: none): it may only
    /// replace a waiting frame, never become one (that would exceed the fps cap).
    refresh_pts: AtomicU64,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            first_frame_ms: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            source_size: AtomicU64::new(0),
            source_par: AtomicU64::new(0),
            refresh_pts: AtomicU64::new(u64::MAX),
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
    let sink = gst_app::AppSink::builder().max_buffers(1).drop(true).sync(false).build();
    pipeline.add_many([&src, sink.upcast_ref()]).map_err(|e| CaptureError::Fatal(e.to_string()))?;
    #[cfg(feature = "cuda")]
    if let Some(device) = shared.device {
        // CUDA elements added later take the bin's contexts: they share ONNX Runtime's.
        pipeline.set_context(device.gst_context());
    }
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
        if let Err(e) = link_video_pad(&pipeline, pad, &sink, &shared, &liveness) {
            // Reported on the bus so the control loop sees it like any other error.
            gst::element_error!(pipeline, gst::StreamError::Decode, ("{}", e));
        }
    });
    Ok(pipeline)
}

/// The letterboxing scaler and the caps of the model input: on the GPU for a frame that stays
/// in device memory, else on the CPU into system memory.
fn make_scaler(shared: &CaptureShared, device_memory: bool) -> Result<[gst::Element; 2], CaptureError> {
    let factory = if device_memory { "cudaconvertscale" } else { "videoconvertscale" };
    let scale = gst::ElementFactory::make(factory)
        .property("add-borders", true)
        .build()
        .map_err(|e| CaptureError::Fatal(format!("{factory} (GStreamer >= 1.22): {e}")))?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", shared.input_width as i32)
        .field("height", shared.input_height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
    let caps = if device_memory { caps.features(["memory:CUDAMemory"]).build() } else { caps.build() };
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(|e| CaptureError::Fatal(format!("capsfilter: {e}")))?;
    Ok([scale, filter])
}

/// Whether frames from `decoder` stay in device memory: the `cuda` feature, a GPU context for
/// the model, and an NVIDIA desktop decoder (whose output `cudaconvertscale` takes as it is).
fn keeps_device_memory(shared: &CaptureShared, decoder: &str) -> bool {
    #[cfg(feature = "cuda")]
    return shared.device.is_some() && matches!(decoder, "nvh264dec" | "nvh265dec");
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (shared, decoder);
        false
    }
}

/// Adds depay ! parse ! decoder [! converter] ! scaler ! caps for the codec on `pad` between it
/// and the appsink.
fn link_video_pad(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    sink: &gst_app::AppSink,
    shared: &Arc<CaptureShared>,
    liveness: &Arc<Liveness>,
) -> Result<(), CaptureError> {
    if sink.static_pad("sink").is_some_and(|p| p.is_linked()) {
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
    let device_memory = keeps_device_memory(shared, &choice.element);
    let [scale, filter] = make_scaler(shared, device_memory)?;
    let decoded = elements.last().expect("chain is never empty").clone();
    install_admission(&decoded, shared, liveness);
    watch_source_size(&scale, liveness);
    let chain: Vec<gst::Element> = elements.into_iter().chain([scale, filter]).collect();
    pipeline.add_many(&chain).map_err(|e| CaptureError::Fatal(e.to_string()))?;
    gst::Element::link_many(&chain).map_err(|e| CaptureError::Fatal(format!("{} → scaler: {e}", choice.element)))?;
    chain.last().expect("the filter ends the chain").link(sink).map_err(|e| CaptureError::Fatal(format!("caps → appsink: {e}")))?;
    for e in &chain {
        e.sync_state_with_parent().map_err(|e| CaptureError::Fatal(e.to_string()))?;
    }
    let depay = chain[0].static_pad("sink").expect("depayloaders have a sink pad");
    pad.link(&depay).map_err(|e| CaptureError::Fatal(format!("rtspsrc → depay: {e:?}")))?;
    let memory = if device_memory { "cuda" } else { "system" };
    tracing::info!(camera = %shared.config.id, stage = "capture", codec = ?codec, decoder = %choice.element, memory, "Video stream linked.");
    Ok(())
}

/// Notes every decoded frame and decides before scaling whether it goes on
/// ([`super::admission`]): those it drops are counted as `rate_limit`.
fn install_admission(decoder_out: &gst::Element, shared: &Arc<CaptureShared>, liveness: &Arc<Liveness>) {
    let Some(pad) = decoder_out.static_pad("src") else { return };
    let admission = Mutex::new(Admission::new(shared.config.fps));
    let shared = Arc::clone(shared);
    let liveness = Arc::clone(liveness);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
        liveness.frame_decoded();
        let pts = buffer.pts().map(gst::ClockTime::nseconds);
        let due = |interval| shared.mailboxes.refresh_due(shared.slot, interval);
        // A frame without a timestamp is placed by its arrival instead.
        let at = pts.map_or_else(|| liveness.epoch.elapsed(), Duration::from_nanos);
        let decision = admission.lock().unwrap_or_else(PoisonError::into_inner).decide(at, due);
        // Without a timestamp a refresh cannot be told apart later: it goes on as is.
        let refresh_pts = pts.filter(|_| decision == Decision::Refresh).unwrap_or(u64::MAX);
        liveness.refresh_pts.store(refresh_pts, Ordering::Relaxed);
        match decision {
            Decision::Admit | Decision::Refresh => gst::PadProbeReturn::Ok,
            Decision::Skip => {
                shared.camera.metrics.drop(DropReason::RateLimit, 1);
                gst::PadProbeReturn::Drop
            }
        }
    });
}

/// Remembers the decoded frame size and pixel aspect ratio (the letterbox's source) from the
/// scaler's input caps.
fn watch_source_size(scale: &gst::Element, liveness: &Arc<Liveness>) {
    let Some(pad) = scale.static_pad("sink") else { return };
    let liveness = Arc::clone(liveness);
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view())
            && let Some(s) = caps.caps().structure(0)
        {
            let (w, h) = (s.get::<i32>("width").unwrap_or(0), s.get::<i32>("height").unwrap_or(0));
            liveness.source_size.store(((w as u64) << 32) | (h as u64 & 0xffff_ffff), Ordering::Relaxed);
            let par = s.get::<gst::Fraction>("pixel-aspect-ratio").map_or((1, 1), |f| (f.numer(), f.denom()));
            liveness.source_par.store(((par.0 as u64) << 32) | (par.1 as u64 & 0xffff_ffff), Ordering::Relaxed);
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

/// Maps the appsink buffer where its memory is: for its device address when it is CUDA memory
/// (`cuda` feature), else readable in system memory.
fn map(shared: &CaptureShared, buffer: gst::Buffer) -> Option<FrameMemory> {
    #[cfg(feature = "cuda")]
    let buffer = match shared.device {
        Some(device) => match crate::cuda::DeviceFrame::map(buffer, device) {
            Ok(frame) => return Some(FrameMemory::Device(frame)),
            Err(buffer) => buffer,
        },
        None => buffer,
    };
    #[cfg(not(feature = "cuda"))]
    let _ = shared;
    buffer.into_mapped_buffer_readable().ok().map(FrameMemory::Host)
}

/// Hands one frame to the mailbox; a frame it replaces is counted as stale.
fn deliver(shared: &CaptureShared, liveness: &Liveness, buffer: gst::Buffer) {
    let arrived = Instant::now();
    let metrics = &shared.camera.metrics;
    let refresh = buffer.pts().is_some_and(|pts| pts.nseconds() == liveness.refresh_pts.load(Ordering::Relaxed));
    if refresh && !shared.mailboxes.is_waiting(shared.slot) {
        // The model took the waiting frame while this one was being scaled: processing this
        // one too would exceed the fps cap. (Should the take fall between this check and the
        // put below, while the frame is mapped, the frame is processed: once, and rarely.)
        metrics.drop(DropReason::RateLimit, 1);
        return;
    }
    metrics.captured.inc();
    let (ts_us, clock) = super::clock::capture_time(&buffer, unix_micros());
    let Some(pixels) = map(shared, buffer) else {
        metrics.drop(DropReason::CaptureError, 1);
        tracing::warn!(camera = %shared.config.id, stage = "capture", "Frame dropped: buffer not mappable.");
        return;
    };
    let size = liveness.source_size.load(Ordering::Relaxed);
    let (src_w, src_h) = ((size >> 32) as u32, (size & 0xffff_ffff) as u32);
    let par = liveness.source_par.load(Ordering::Relaxed);
    let par = ((par >> 32) as u32, (par & 0xffff_ffff) as u32);
    let letterbox = Letterbox::with_pixel_aspect(src_w.max(1), src_h.max(1), par, shared.input_width, shared.input_height);
    metrics.up.set(1);
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let frame = Frame { camera: Arc::clone(&shared.camera), seq, ts_us, clock, arrived, letterbox, pixels };
    match shared.mailboxes.put(shared.slot, frame) {
        Ok(None) => {}
        Ok(Some(_stale)) => metrics.drop(DropReason::Stale, 1),
        Err(_refused) => metrics.drop(DropReason::Shutdown, 1),
    }
}
