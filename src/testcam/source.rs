//! The looping source: an inner pipeline decodes the file (`imagefreeze` repeats a still) into
//! raw I420 frames at the served size and rate, and a feeder thread, ticking at `--fps` on the
//! monotonic clock, pulls one frame per tick and pushes it into the live `appsrc` of the
//! current RTSP media, timestamped with the media pipeline's running time at that instant
//! (before the media plays, `do-timestamp=true` lets the `appsrc` do it), so timestamps
//! increase monotonically whatever the file does. With `--stamp` that instant is also drawn
//! into the frame ([`super::stamp`]). On EOS the feeder seeks the inner pipeline back to 0
//! (flushing); a tick that finds no new frame repeats the last one, so the stream never stalls.
//!
//! The inner pipeline runs whether or not anyone watches, like a real camera, and is paced by
//! the feeder: its `appsink` holds one frame and blocks the decoder until that frame is pulled.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::TestCamError;
use super::probe::SourceKind;
use super::stamp;

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The `appsrc` of the RTSP media being served now, if any; set by the server.
pub(crate) type AppSrcTarget = Arc<Mutex<Option<gst_app::AppSrc>>>;

/// Size and rate of the frames handed to the encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameSpec {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: u32,
    /// Draw each frame's capture time into it (`--stamp`).
    pub(crate) stamp: bool,
}

impl FrameSpec {
    fn caps(&self) -> gst::Caps {
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .width(self.width as i32)
            .height(self.height as i32)
            .framerate(gst::Fraction::new(self.fps as i32, 1))
            .pixel_aspect_ratio(gst::Fraction::new(1, 1))
            .build()
    }

    fn period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.fps))
    }
}

/// The inner decoding pipeline and the feeder thread.
pub(crate) struct LoopingSource {
    pipeline: gst::Pipeline,
    caps: gst::Caps,
    target: AppSrcTarget,
    stop: Arc<AtomicBool>,
    feeder: Option<JoinHandle<()>>,
}

impl LoopingSource {
    /// Starts decoding `path` and feeding frames; `on_error` hears of a failure at run time.
    pub(crate) fn start(
        path: &Path,
        kind: SourceKind,
        spec: FrameSpec,
        on_error: impl Fn(TestCamError) + Send + Sync + 'static,
    ) -> Result<Self, TestCamError> {
        let freeze = if kind == SourceKind::Still {
            "imagefreeze ! "
        } else {
            ""
        };
        let line = format!(
            "filesrc name=file ! decodebin ! {freeze}videorate ! videoscale add-borders=false \
             ! videoconvert ! capsfilter name=caps ! appsink name=sink sync=false max-buffers=1 \
             drop=false enable-last-sample=false"
        );
        let pipeline = super::probe::file_pipeline(&line, path, "source")?;
        let by_name = |name| super::probe::named(&pipeline, name);
        let caps = spec.caps();
        by_name("caps").set_property("caps", &caps);
        let sink = by_name("sink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");

        let bus = pipeline.bus().expect("a pipeline has a bus");
        let failed = AtomicBool::new(false);
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(err) = msg.view()
                && !failed.swap(true, Ordering::SeqCst)
            {
                let src = msg.src().map(|s| s.path_string()).unwrap_or_default();
                let debug = err.debug().unwrap_or_default();
                on_error(TestCamError::Gstreamer(format!(
                    "{src}: {} ({debug})",
                    err.error()
                )));
            }
            gst::BusSyncReply::Drop
        });

        let started = pipeline.set_state(gst::State::Playing).is_ok()
            && pipeline
                .state(gst::ClockTime::from_nseconds(
                    START_TIMEOUT.as_nanos() as u64
                ))
                .0
                .is_ok();
        if !started {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(TestCamError::Gstreamer(format!(
                "source pipeline for {} did not start",
                path.display()
            )));
        }

        let target = AppSrcTarget::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stamp = spec
            .stamp
            .then(|| gst_video::VideoInfo::from_caps(&caps))
            .transpose()
            .map_err(|e| TestCamError::Gstreamer(format!("frame layout for --stamp: {e}")))?;
        let feeder = Feeder {
            sink,
            pipeline: pipeline.clone(),
            target: target.clone(),
            stop: stop.clone(),
            period: spec.period(),
            stamp,
        };
        let feeder = std::thread::Builder::new()
            .name("testcam-feeder".into())
            .spawn(move || feeder.run())
            .map_err(|e| TestCamError::Gstreamer(format!("feeder thread: {e}")))?;
        Ok(Self {
            pipeline,
            caps,
            target,
            stop,
            feeder: Some(feeder),
        })
    }

    /// The fixed caps of every frame (for the `appsrc`).
    pub(crate) fn caps(&self) -> &gst::Caps {
        &self.caps
    }

    /// Where the server puts the `appsrc` to feed.
    pub(crate) fn target(&self) -> AppSrcTarget {
        self.target.clone()
    }

    /// Stops the feeder and takes the inner pipeline to `Null`. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        self.target.lock().expect("appsrc target").take();
    }
}

impl Drop for LoopingSource {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Feeder {
    sink: gst_app::AppSink,
    pipeline: gst::Pipeline,
    target: AppSrcTarget,
    stop: Arc<AtomicBool>,
    period: Duration,
    /// The frames' layout when `--stamp` is on.
    stamp: Option<gst_video::VideoInfo>,
}

impl Feeder {
    fn run(self) {
        let duration = gst::ClockTime::from_nseconds(self.period.as_nanos() as u64);
        let mut latest: Option<gst::Buffer> = None;
        let (mut loops, mut repeats) = (0u64, 0u64);
        let mut deadline = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            deadline += self.period;
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            } else if now - deadline > self.period {
                // Stalled (suspended, overloaded): carry on from now rather than burst.
                deadline = now;
            }
            match self.next_frame(&mut loops) {
                Some(frame) => latest = Some(frame),
                None if latest.is_some() => {
                    repeats += 1;
                    tracing::debug!(repeats, "No new frame in time; repeating the last one.");
                }
                None => {}
            }
            let (Some(frame), Some(appsrc)) = (
                latest.as_ref(),
                self.target.lock().expect("appsrc target").clone(),
            ) else {
                continue;
            };
            let out = self.prepare(frame, duration, &appsrc);
            if let Err(err) = appsrc.push_buffer(out) {
                tracing::trace!(?err, "Media appsrc refused a frame.");
            }
        }
    }

    /// A copy of `frame` to push now, timestamped with the media's running time (the capture
    /// time RTCP sender reports give clients) and, under `--stamp`, carrying that instant.
    fn prepare(
        &self,
        frame: &gst::Buffer,
        duration: gst::ClockTime,
        appsrc: &gst_app::AppSrc,
    ) -> gst::Buffer {
        // Shallow (memory shared with the decoded frame) unless the stamp writes into it: then
        // a deep copy, W×H×1.5 bytes per frame (0.7 MB at 800×600), a test camera's luxury.
        let mut out = match self.stamp {
            Some(_) => frame.copy_deep().unwrap_or_else(|_| frame.copy()),
            None => frame.copy(),
        };
        let now = media_time(appsrc);
        {
            let out = out.get_mut().expect("a fresh copy is writable");
            // Set here rather than by `do-timestamp` when the appsrc's streaming thread takes
            // the frame, which is later whenever the encoder is still busy with the last one.
            let running = now.map(|(running, _)| running);
            out.set_pts(running);
            out.set_dts(running);
            out.set_duration(duration);
            out.unset_flags(gst::BufferFlags::DISCONT);
        }
        match (&self.stamp, now) {
            (Some(info), Some((_, wall))) => stamp::stamp_i420(out, info, wall.useconds())
                .unwrap_or_else(|unstamped| {
                    tracing::trace!("Frame could not be stamped.");
                    unstamped
                }),
            _ => out,
        }
    }

    /// A new frame if one is ready; on EOS, loops the file and waits up to half a tick.
    fn next_frame(&self, loops: &mut u64) -> Option<gst::Buffer> {
        if let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
            return sample.buffer_owned();
        }
        if !self.sink.is_eos() {
            return None;
        }
        *loops += 1;
        tracing::debug!(loops = *loops, "Source reached its end; looping.");
        let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT;
        if let Err(err) = self.pipeline.seek_simple(flags, gst::ClockTime::ZERO) {
            tracing::warn!(%err, "Seeking the source back to its start failed.");
            return None;
        }
        let wait = gst::ClockTime::from_nseconds(self.period.as_nanos() as u64 / 2);
        self.sink
            .try_pull_sample(wait)
            .and_then(|sample| sample.buffer_owned())
    }
}

/// The media clock now, as (running time, clock time), once the media is playing. The clock is
/// the wall clock (`server::wall_clock`), so the clock time is the Unix time.
fn media_time(appsrc: &gst_app::AppSrc) -> Option<(gst::ClockTime, gst::ClockTime)> {
    if appsrc.current_state() != gst::State::Playing {
        return None;
    }
    let now = appsrc.clock()?.time();
    Some((now.checked_sub(appsrc.base_time()?)?, now))
}
