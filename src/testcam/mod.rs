//! RTSP test camera: serves a video file or a still image, looped forever, as a live H.264
//! stream, so the demo, the integration tests and the benchmarks have a camera to point
//! [`capture`](crate::capture) at.
//!
//! Flow: [`probe`] finds out what the file is → [`source`] decodes it in an inner pipeline,
//! looping on EOS, and a feeder thread hands one frame per tick to the live `appsrc` of the
//! shared RTSP media → [`server`] encodes with `x264enc` and serves it. Buffer timestamps are
//! the media pipeline's running time on a wall-clock (`CLOCK_REALTIME`) clock, and RTCP sender
//! reports map them to NTP, so a client's `timestamp/x-ntp` reference metas carry the
//! wall-clock capture time.
//!
//! [`TestCam::bind`] does everything up to listening; [`TestCam::run`] blocks on a glib main
//! loop (its own [`glib::MainContext`], so several cameras can live in one test process).

mod options;
mod probe;
mod server;
mod signals;
mod source;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;

pub use options::{
    DEFAULT_BITRATE_KBPS, DEFAULT_FPS, DEFAULT_LISTEN, DEFAULT_PATH, TestCamOptions,
};

/// Why the test camera could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TestCamError {
    /// An option is out of range or malformed (the CLI maps this to exit code 64).
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name, as on the command line.
        option: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The source file does not exist (exit code 66).
    #[error("source file {} does not exist", path.display())]
    SourceNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The source file exists but does not decode to video (exit code 65).
    #[error("source file {} cannot be decoded as video or image: {reason}", path.display())]
    Undecodable {
        /// The path given.
        path: PathBuf,
        /// GStreamer's account of the failure.
        reason: String,
    },
    /// The RTSP server cannot listen on the address (exit code 69).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// GStreamer failed: initialisation, a missing plugin, or the source pipeline at run time.
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    /// The SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Serves `opts.source` until SIGINT or SIGTERM; logs the URL once listening.
///
/// # Errors
/// See [`TestCamError`]; a signal ends it with `Ok(())`.
pub fn run(opts: TestCamOptions) -> Result<(), TestCamError> {
    let cam = TestCam::bind(opts)?;
    cam.stop_on_signals()?;
    tracing::info!(url = %cam.url(), "Test camera is serving.");
    cam.run()
}

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
            return Err(TestCamError::SourceNotFound { path: opts.source.clone() });
        }
        gst::init().map_err(|e| TestCamError::Gstreamer(format!("init: {e}")))?;

        let info = probe::probe(&opts.source)?;
        let (width, height) = opts.size.unwrap_or_else(|| info.natural_size());
        tracing::info!(
            source = %opts.source.display(), kind = ?info.kind, width, height, fps = opts.fps,
            "Source probed."
        );

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let fatal = Arc::new(Mutex::new(None));
        let stopper = Stopper { context: context.clone(), main_loop: main_loop.clone() };

        let on_error = {
            let fatal = fatal.clone();
            let stopper = stopper.clone();
            move |err: TestCamError| {
                tracing::error!(error = %err, "Test camera source failed.");
                fatal.lock().expect("fatal slot").get_or_insert(err);
                stopper.stop();
            }
        };
        let frames = source::FrameSpec { width, height, fps: opts.fps };
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
        Stopper { context: self.context.clone(), main_loop: self.main_loop.clone() }
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
        while self.context.iteration(false) {}
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
