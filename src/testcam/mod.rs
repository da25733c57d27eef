//! RTSP test camera: serves a video file or a still image, looped forever, as a live H.264
//! stream, so the demo, the integration tests and the benchmarks have a camera to point
//! [`capture`](crate::capture) at.
//!
//! Flow: `probe` finds out what the file is → `source` decodes it in an inner pipeline,
//! looping on EOS, and a feeder thread hands one frame per tick to the live `appsrc` of the
//! shared RTSP media → `server` encodes with `x264enc` and serves it. Buffer timestamps are
//! the media pipeline's running time on a wall-clock (`CLOCK_REALTIME`) clock, and RTCP sender
//! reports map them to NTP, so a client's `timestamp/x-ntp` reference metas carry the
//! wall-clock capture time. With `--stamp` each frame also carries that time in its pixels
//! ([`stamp`]), for clients that cannot see RTCP.
//!
//! [`TestCam::bind`] does everything up to listening; [`TestCam::run`] blocks on a glib main
//! loop (on a main context of its own, so several cameras can live in one test process) and
//! [`TestCam::spawn`] runs one on a background thread.

mod camera;
mod options;
mod probe;
mod server;
mod signals;
mod source;
pub mod stamp;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use camera::{RunningTestCam, Stopper, TestCam};
pub use options::{
    DEFAULT_BITRATE_KBPS, DEFAULT_FPS, DEFAULT_LISTEN, DEFAULT_PATH, TestCamOptions, VideoCodec,
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
