//! Configuration: the global `roadsight.toml` plus one file per camera in `cameras.d/`.
//!
//! Loading happens in two stages (see STYLE.md): `raw` holds the serde structs exactly as they
//! are written on disk (`deny_unknown_fields`, every default documented beside a `DEFAULT_*`
//! constant), `validate` turns them into the [`Config`] below, which is what the stages receive.
//! Stages never parse. Environment variables prefixed `ROADSIGHT_` override global keys
//! (`ROADSIGHT_REDIS__URL` → `redis.url`).

use std::path::PathBuf;
use std::time::Duration;

mod load;
mod logging;
mod metrics;
mod providers;
mod raw;
mod uplink;
mod validate;

pub use load::{cameras as load_cameras, load};
pub use uplink::{TlsFiles, UplinkConfig};

/// Any problem with the configuration. Always names the file and, where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Field { file: PathBuf, field: String, message: String },
    #[error("{file}: cannot read: {source}")]
    Io { file: PathBuf, source: std::io::Error },
}

/// The validated configuration of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Global config file it was read from.
    pub file: PathBuf,
    pub site: String,
    pub cameras_dir: PathBuf,
    pub redis: RedisConfig,
    pub model: ModelConfig,
    pub publish: PublishConfig,
    pub capture: CaptureDefaults,
    /// Store-and-forward to a central Redis; `None` when disabled.
    pub uplink: Option<UplinkConfig>,
    /// Address of the `/metrics` endpoint; `None` when turned off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `tracing` filter from `[logging] level`.
    pub log_level: String,
    /// Enabled and disabled cameras, sorted by id.
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`, `unix:///path.sock`; never holds a password.
    pub url: String,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Name of the credential holding the Redis password.
    pub credential: Option<String>,
}

/// Which output layout the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    /// `[1, N, 6]`: x1 y1 x2 y2 score class, in model input pixels.
    Detections,
    /// `[1, 4 + classes, anchors]`: cx cy w h, then one score per class.
    Yolov8,
    /// `[1, anchors, 5 + classes]`: cx cy w h objectness, then one score per class.
    Yolov5,
}

/// An execution provider, in order of preference.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    TensorRt(TensorRtConfig),
    Cuda { device_id: i32, required: bool },
    Cpu,
}

impl Provider {
    /// The name the config uses: `tensorrt`, `cuda` or `cpu`.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::TensorRt(_) => "tensorrt",
            Provider::Cuda { .. } => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// Whether start-up fails when the provider cannot be registered.
    pub fn required(&self) -> bool {
        match self {
            Provider::TensorRt(t) => t.required,
            Provider::Cuda { required, .. } => *required,
            Provider::Cpu => false,
        }
    }
}

/// TensorRT options: each one changes the engine TensorRT builds, so each is part of the
/// engine cache key (see `infer::engine_cache`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRtConfig {
    /// Let TensorRT pick FP16 kernels.
    pub fp16: bool,
    /// INT8 kernels, calibrated with this table; `None`: no INT8.
    pub int8: Option<Int8Calibration>,
    /// Deep Learning Accelerator core (Jetson Xavier/Orin); needs `fp16` or `int8`.
    pub dla_core: Option<u32>,
    /// Root of the engine cache: engines and timing caches go in `<engine_cache>/<key>/`.
    pub engine_cache: PathBuf,
    pub required: bool,
}

/// The INT8 calibration table of a TensorRT provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Calibration {
    /// Absolute path of an existing file (ONNX Runtime resolves a relative one against the
    /// engine cache folder, so it is made absolute at load).
    pub table: PathBuf,
    /// The table is TensorRT's own format (trtexec, a TensorRT calibrator) rather than the
    /// one ONNX Runtime's quantization tools write.
    pub native: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub labels: PathBuf,
    /// Class names, index = class id, read from `labels`.
    pub label_names: Vec<String>,
    pub decoder: DecoderKind,
    pub confidence: f32,
    /// IoU above which a lower-scored box of the same class is suppressed.
    pub nms_iou: f32,
    pub providers: Vec<Provider>,
    /// `libonnxruntime.so`; `None`: `ORT_DYLIB_PATH`, then the system library.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0: ORT's default).
    pub threads: usize,
    /// Whether intra-op threads spin between runs.
    pub spin: bool,
    /// Inference workers (sessions); 0: decided at start ([`crate::infer::open_detectors`]).
    pub workers: usize,
    /// Most frames per run when the model's batch dimension is dynamic, at least 1.
    pub max_batch: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishConfig {
    /// Frames waiting for Redis; past it the oldest is dropped (`reason="queue_full"`).
    pub queue: usize,
    /// Approximate cap on each local stream (`MAXLEN ~`).
    pub maxlen: u64,
    /// `det` encoding.
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    JsonLz4,
}

/// Capture settings shared by all cameras (reconnect policy).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureDefaults {
    /// A camera with no frame for this long is reconnected.
    pub stall_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Directory with credential files when `$CREDENTIALS_DIRECTORY` is unset.
    pub credentials_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// File it was read from.
    pub file: PathBuf,
    pub id: String,
    /// `rtsp://` or `rtsps://` URL without user info.
    pub url: String,
    /// Name of the credential holding `user:password`.
    pub credential: Option<String>,
    /// Cap on processed frames per second (0: no cap).
    pub fps: f64,
    pub transport: Transport,
    pub latency_ms: u32,
    /// Class names to publish (`None`: all the model knows).
    pub classes: Option<Vec<String>>,
    /// Confidence threshold for this camera (defaults to the model's).
    pub confidence: f32,
    pub publish_empty: bool,
    pub enabled: bool,
    /// Decoder element to use instead of the probed one.
    pub decoder: Option<String>,
}
