//! Test camera options, their defaults and checks, and the URL the camera announces.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::TestCamError;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8554";
/// Default mount path.
pub const DEFAULT_PATH: &str = "/cam";
/// Default frame rate of the served stream, frames per second.
pub const DEFAULT_FPS: u32 = 10;
/// Default bit rate, kbit/s.
pub const DEFAULT_BITRATE_KBPS: u32 = 2000;

const MAX_FPS: u32 = 120;
const MAX_SIDE: u32 = 8192;
const MAX_BITRATE_KBPS: u32 = 100_000;

/// The video codec the camera sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VideoCodec {
    /// H.264 (`x264enc`), what most IP cameras send.
    #[default]
    H264,
    /// H.265 / HEVC (`x265enc`).
    H265,
}

impl VideoCodec {
    /// The encoder and payloader elements, for the launch line and the install check.
    pub(crate) fn elements(self) -> [&'static str; 2] {
        match self {
            VideoCodec::H264 => ["x264enc", "rtph264pay"],
            VideoCodec::H265 => ["x265enc", "rtph265pay"],
        }
    }
}

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct TestCamOptions {
    /// A video file (anything `decodebin` reads) or a still image.
    pub source: PathBuf,
    /// Address to listen on; port 0 picks a free one ([`super::TestCam::url`] tells which).
    pub listen: SocketAddr,
    /// Mount path, starting with `/` (default [`DEFAULT_PATH`]).
    pub path: String,
    /// Frame rate of the stream, 1–120 (default [`DEFAULT_FPS`]).
    pub fps: u32,
    /// Output width × height, both even; `None` keeps the source's size (rounded down to even).
    pub size: Option<(u32, u32)>,
    /// Bit rate in kbit/s (default [`DEFAULT_BITRATE_KBPS`]).
    pub bitrate_kbps: u32,
    /// Codec of the stream (default H.264).
    pub codec: VideoCodec,
    /// `(user, password)` a client must present (RTSP basic auth); `None`: open.
    pub auth: Option<(String, String)>,
    /// Draw each frame's capture time into its bottom-left corner (`--stamp`, layout in
    /// [`super::stamp`]); default off.
    pub stamp: bool,
}

impl TestCamOptions {
    /// Options with every default, serving `source`.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            path: DEFAULT_PATH.to_owned(),
            fps: DEFAULT_FPS,
            size: None,
            bitrate_kbps: DEFAULT_BITRATE_KBPS,
            codec: VideoCodec::default(),
            auth: None,
            stamp: false,
        }
    }

    /// Checks ranges and shapes (not the file: [`super::TestCam::bind`] does that).
    pub(crate) fn validate(&self) -> Result<(), TestCamError> {
        let invalid = |option, reason: String| Err(TestCamError::InvalidOption { option, reason });
        if !(1..=MAX_FPS).contains(&self.fps) {
            return invalid(
                "--fps",
                format!("expected 1 to {MAX_FPS}, got {}", self.fps),
            );
        }
        if let Some((width, height)) = self.size {
            for (option, side) in [("--width", width), ("--height", height)] {
                if !(2..=MAX_SIDE).contains(&side) || side % 2 != 0 {
                    return invalid(
                        option,
                        format!(
                            "expected an even number from 2 to {MAX_SIDE} (H.264 4:2:0), got {side}"
                        ),
                    );
                }
            }
        }
        if !(1..=MAX_BITRATE_KBPS).contains(&self.bitrate_kbps) {
            let got = self.bitrate_kbps;
            return invalid(
                "--bitrate",
                format!("expected 1 to {MAX_BITRATE_KBPS} kbit/s, got {got}"),
            );
        }
        if !valid_mount_path(&self.path) {
            let reason = format!(
                "expected a path like /cam (letters, digits, - _ . /), got {:?}",
                self.path
            );
            return invalid("--path", reason);
        }
        Ok(())
    }
}

/// A mount path the server matches literally and a URL can carry unescaped.
fn valid_mount_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// `rtsp://ip:port/path`, with brackets around an IPv6 address.
pub(crate) fn rtsp_url(ip: IpAddr, port: u16, path: &str) -> String {
    match ip {
        IpAddr::V4(ip) => format!("rtsp://{ip}:{port}{path}"),
        IpAddr::V6(ip) => format!("rtsp://[{ip}]:{port}{path}"),
    }
}

/// Keyframe interval in frames: one second of video, so a client joining the shared stream
/// waits at most a second for a picture.
pub(crate) fn key_int_max(fps: u32) -> u32 {
    fps.max(1)
}

/// Round a size down to even sides (x264 needs them for 4:2:0), never below 2.
pub(crate) fn even_size(width: u32, height: u32) -> (u32, u32) {
    ((width & !1).max(2), (height & !1).max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TestCamOptions::new("/x.avi").validate().unwrap();
    }

    #[test]
    fn odd_width_is_rejected_naming_the_option() {
        let opts = TestCamOptions {
            size: Some((641, 480)),
            ..TestCamOptions::new("/x.avi")
        };
        let err = opts.validate().unwrap_err();
        assert!(
            matches!(
                err,
                TestCamError::InvalidOption {
                    option: "--width",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zero_fps_is_rejected() {
        let opts = TestCamOptions {
            fps: 0,
            ..TestCamOptions::new("/x.avi")
        };
        assert!(matches!(
            opts.validate(),
            Err(TestCamError::InvalidOption {
                option: "--fps",
                ..
            })
        ));
    }

    #[test]
    fn mount_paths() {
        assert!(valid_mount_path("/cam"));
        assert!(valid_mount_path("/cams/front-1"));
        for bad in ["cam", "/", "/cam/", "//cam", "/cam?x=1", "/ca m", ""] {
            assert!(!valid_mount_path(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn url_brackets_ipv6() {
        assert_eq!(
            rtsp_url("127.0.0.1".parse().unwrap(), 8554, "/cam"),
            "rtsp://127.0.0.1:8554/cam"
        );
        assert_eq!(
            rtsp_url("::1".parse().unwrap(), 1, "/c"),
            "rtsp://[::1]:1/c"
        );
    }

    #[test]
    fn odd_sizes_round_down_to_even() {
        assert_eq!(even_size(950, 245), (950, 244));
        assert_eq!(even_size(1, 1), (2, 2));
    }
}
