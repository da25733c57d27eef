//! `roadsight-testcam`: an RTSP test camera serving a video file or a still image, looped, as
//! live H.264 or H.265. Prints `roadsight-testcam: serving <url>` on stdout once listening.
//!
//! Exit codes: 0 on SIGINT/SIGTERM, 64 bad usage, 65 source does not decode, 66 source missing,
//! 69 cannot listen, 70 GStreamer failure, 71 signal set-up failure.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use roadsight::testcam::{self, TestCam, TestCamError, TestCamOptions};

/// Serve a video file or still image, looped forever, as a live RTSP/H.264 camera.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Video file (anything decodebin reads) or still image (jpg, png, …).
    #[arg(long, value_name = "FILE")]
    source: PathBuf,
    /// Address to listen on; port 0 picks a free port (the printed URL has the real one).
    #[arg(long, default_value = testcam::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Mount path of the stream.
    #[arg(long, default_value = testcam::DEFAULT_PATH)]
    path: String,
    /// Frames per second of the served stream.
    #[arg(long, default_value_t = testcam::DEFAULT_FPS)]
    fps: u32,
    /// Output width (even); needs --height. Default: the source's.
    #[arg(long, requires = "height")]
    width: Option<u32>,
    /// Output height (even); needs --width.
    #[arg(long, requires = "width")]
    height: Option<u32>,
    /// Bit rate, kbit/s.
    #[arg(long, value_name = "KBPS", default_value_t = testcam::DEFAULT_BITRATE_KBPS)]
    bitrate: u32,
    /// Video codec.
    #[arg(long, value_enum, default_value_t = testcam::VideoCodec::H264)]
    codec: testcam::VideoCodec,
    /// File holding `user:password` that clients must log in with (RTSP basic auth).
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Draw each frame's capture time (µs since the Unix epoch, the time RTCP reports for it)
    /// into its bottom-left corner as black and white blocks, for clients that cannot see RTCP.
    #[arg(long)]
    stamp: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 64 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let auth = match cli.auth_file.as_deref().map(read_login).transpose() {
        Ok(auth) => auth,
        Err(message) => {
            eprintln!("roadsight-testcam: --auth-file: {message}");
            return ExitCode::from(64);
        }
    };
    let opts = TestCamOptions {
        source: cli.source,
        listen: cli.listen,
        path: cli.path,
        fps: cli.fps,
        size: cli.width.zip(cli.height),
        bitrate_kbps: cli.bitrate,
        codec: cli.codec,
        auth,
        stamp: cli.stamp,
    };
    match serve(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "Test camera failed.");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// `user:password` from a file (one trailing newline allowed).
fn read_login(path: &std::path::Path) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err(format!("{}: expected user:password", path.display())),
    }
}

fn serve(opts: TestCamOptions) -> Result<(), TestCamError> {
    let cam = TestCam::bind(opts)?;
    cam.stop_on_signals()?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "roadsight-testcam: serving {}", cam.url());
    let _ = stdout.flush();
    drop(stdout);
    cam.run()
}

/// sysexits(3) codes, so harnesses can tell a wrong call from a busy port.
fn exit_code(err: &TestCamError) -> u8 {
    match err {
        TestCamError::InvalidOption { .. } => 64,
        TestCamError::Undecodable { .. } => 65,
        TestCamError::SourceNotFound { .. } => 66,
        TestCamError::Bind { .. } => 69,
        TestCamError::Gstreamer(_) => 70,
        TestCamError::Signals(_) => 71,
    }
}
