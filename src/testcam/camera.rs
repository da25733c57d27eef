//! [`TestCam`]: wires probe → source → server on a main context of its own, and runs it in
//! the caller's thread ([`TestCam::run`]) or on a thread of its own ([`TestCam::spawn`]).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::glib;

use super::{TestCamError, TestCamOptions, options, probe, server, signals, source, stamp};

/// Upper bound on main-context iterations spent letting the server tidy up after a stop.
const SHUTDOWN_ITERATIONS: usize = 100;

/// A bound, ready test camera. Nothing is served until [`TestCam::run`] turns the main loop.
pub struct TestCam {
    url: String,
    port: u16,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    fatal: Arc<Mutex<Option<TestCamError>>>,
    signals: Mutex<Option<signals::SignalWatch>>,
    // Field order is drop order: stop serving before the source goes away.
    server: server::Server,
    source: source::LoopingSource,
}

impl TestCam {
    /// Checks the options, probes and starts decoding the source, and binds the RTSP server.
    ///
    /// # Errors
    /// [`TestCamError::InvalidOption`], [`TestCamError::SourceNotFound`],
    /// [`TestCamError::Undecodable`], [`TestCamError::Bind`] or [`TestCamError::Gstreamer`].
    pub fn bind(opts: TestCamOptions) -> Result<Self, TestCamError> {
        opts.validate()?;
        if !opts.source.is_file() {
            return Err(TestCamError::SourceNotFound {
                path: opts.source.clone(),
            });
        }
        gst::init().map_err(|e| TestCamError::Gstreamer(format!("init: {e}")))?;

        let info = probe::probe(&opts.source)?;
        let (width, height) = opts.size.unwrap_or_else(|| info.natural_size());
        tracing::info!(
            source = %opts.source.display(), kind = ?info.kind, width, height, fps = opts.fps,
            "Source probed."
        );

        if opts.stamp && stamp::Layout::for_frame(width, height).is_none() {
            return Err(TestCamError::InvalidOption {
                option: "--stamp",
                reason: format!(
                    "the stamp needs frames at least {}×{} pixels, these are {width}×{height}",
                    stamp::COLUMNS * 8,
                    stamp::ROWS * 8
                ),
            });
        }

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let fatal = Arc::new(Mutex::new(None));
        let stopper = Stopper {
            context: context.clone(),
            main_loop: main_loop.clone(),
        };

        let on_error = {
            let fatal = fatal.clone();
            let stopper = stopper.clone();
            move |err: TestCamError| {
                tracing::error!(error = %err, "Test camera source failed.");
                fatal.lock().expect("fatal slot").get_or_insert(err);
                stopper.stop();
            }
        };
        let frames = source::FrameSpec {
            width,
            height,
            fps: opts.fps,
            stamp: opts.stamp,
        };
        let source = source::LoopingSource::start(&opts.source, info.kind, frames, on_error)?;
        let server = server::Server::start(&opts, source.caps(), source.target(), &context)?;
        let url = options::rtsp_url(opts.listen.ip(), server.port(), &opts.path);

        Ok(Self {
            url,
            port: server.port(),
            context,
            main_loop,
            fatal,
            signals: Mutex::new(None),
            server,
            source,
        })
    }

    /// The URL clients connect to, with the port actually bound (`--listen …:0` included).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the RTSP server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that makes [`TestCam::run`] return, from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            context: self.context.clone(),
            main_loop: self.main_loop.clone(),
        }
    }

    /// Stops the camera on SIGINT or SIGTERM (for the binary; tests use [`TestCam::stopper`]).
    ///
    /// # Errors
    /// [`TestCamError::Signals`] if the handlers cannot be installed.
    pub fn stop_on_signals(&self) -> Result<(), TestCamError> {
        let watch = signals::SignalWatch::install(self.stopper()).map_err(TestCamError::Signals)?;
        *self.signals.lock().expect("signal slot") = Some(watch);
        Ok(())
    }

    /// Serves on a thread of its own (for tests and benchmarks); stops when the handle drops.
    pub fn spawn(self) -> RunningTestCam {
        let (url, port) = (self.url.clone(), self.port);
        let stopper = self.stopper();
        let thread = std::thread::Builder::new()
            .name("testcam".into())
            .spawn(move || self.run())
            .expect("spawn the test camera thread");
        RunningTestCam {
            url,
            port,
            stopper,
            thread: Some(thread),
        }
    }

    /// Serves until stopped (returns `Ok`) or until the source pipeline fails.
    ///
    /// # Errors
    /// [`TestCamError::Gstreamer`] when the source fails at run time or the main context is
    /// already running on another thread.
    pub fn run(mut self) -> Result<(), TestCamError> {
        // Client connections attach to the thread-default context: make it ours.
        let turned = self.context.with_thread_default(|| self.main_loop.run());
        tracing::info!("Test camera is stopping.");
        self.server.stop();
        self.source.stop();
        // Let the server's sources see their removal before the context goes.
        for _ in 0..SHUTDOWN_ITERATIONS {
            if !self.context.iteration(false) {
                break;
            }
        }
        self.signals.lock().expect("signal slot").take();
        turned.map_err(|e| TestCamError::Gstreamer(format!("main context: {e}")))?;
        match self.fatal.lock().expect("fatal slot").take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Makes a [`TestCam::run`] return; cheap to clone, usable from any thread or a signal.
#[derive(Clone)]
pub struct Stopper {
    context: glib::MainContext,
    main_loop: glib::MainLoop,
}

impl Stopper {
    /// Asks the main loop to quit. Safe to call before `run` has started: the quit is queued
    /// on the camera's context rather than lost.
    pub fn stop(&self) {
        let main_loop = self.main_loop.clone();
        let quit = glib::idle_source_new(Some("testcam-stop"), glib::Priority::HIGH, move || {
            main_loop.quit();
            glib::ControlFlow::Break
        });
        quit.attach(Some(&self.context));
    }
}

/// A [`TestCam`] serving on its own thread; dropping it stops the camera and waits for it.
pub struct RunningTestCam {
    url: String,
    port: u16,
    stopper: Stopper,
    thread: Option<JoinHandle<Result<(), TestCamError>>>,
}

impl RunningTestCam {
    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the RTSP server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the camera from elsewhere.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Stops the camera and reports how it ended.
    ///
    /// # Errors
    /// What [`TestCam::run`] returned, e.g. a source failure before the stop.
    pub fn stop(mut self) -> Result<(), TestCamError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TestCamError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.stopper.stop();
        thread.join().unwrap_or_else(|_| {
            Err(TestCamError::Gstreamer(
                "test camera thread panicked".into(),
            ))
        })
    }
}

impl Drop for RunningTestCam {
    fn drop(&mut self) {
        if let Err(err) = self.finish() {
            tracing::warn!(error = %err, "Test camera ended with an error.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::Path;

    use gstreamer::prelude::*;

    use super::*;

    /// A 64×48 PNG made with GStreamer, so the test needs no fixture.
    fn write_png(path: &Path) {
        gst::init().unwrap();
        let line = format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! pngenc ! filesink location={}",
            path.display()
        );
        let pipeline = gst::parse::launch(&line).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("png written within 10 s");
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn ephemeral_port_answers_rtsp_options_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("still.png");
        write_png(&png);
        let mut opts = TestCamOptions::new(&png);
        opts.listen = "127.0.0.1:0".parse().unwrap();
        let cam = TestCam::bind(opts).unwrap().spawn();
        let port = cam.port();
        assert_ne!(port, 0);
        assert_eq!(cam.url(), format!("rtsp://127.0.0.1:{port}/cam"));

        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            .unwrap();
        let mut reply = [0u8; 15];
        conn.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"RTSP/1.0 200 OK");

        cam.stop().unwrap();
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "still listening after stop"
        );
    }

    #[test]
    fn stop_before_run_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("still.png");
        write_png(&png);
        let mut opts = TestCamOptions::new(&png);
        opts.listen = "127.0.0.1:0".parse().unwrap();
        let cam = TestCam::bind(opts).unwrap();
        cam.stopper().stop();
        cam.run().unwrap();
    }

    #[test]
    fn missing_source_is_reported_as_such() {
        let err = TestCam::bind(TestCamOptions::new("/nonexistent/clip.avi"))
            .err()
            .unwrap();
        assert!(matches!(err, TestCamError::SourceNotFound { .. }), "{err}");
    }
}
