//! The configuration exactly as written on disk: serde structs, unknown keys rejected, every
//! default beside its `DEFAULT_*` constant. [`super::validate`] turns these into [`super::Config`].
//!
//! Relative paths in the global file resolve against that file's folder.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};

pub(crate) const DEFAULT_CAMERAS_DIR: &str = "cameras.d";
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub(crate) const DEFAULT_MODEL_PATH: &str = "models/centernet_mnv3_coco_512_u8.onnx";
pub(crate) const DEFAULT_MODEL_LABELS: &str = "models/coco80.names";
pub(crate) const DEFAULT_DECODER: &str = "detections";
pub(crate) const DEFAULT_CONFIDENCE: f32 = 0.35;
pub(crate) const DEFAULT_NMS_IOU: f32 = 0.45;
pub(crate) const DEFAULT_PROVIDERS: &[&str] = &["cpu"];
pub(crate) const DEFAULT_THREADS: usize = 0;
pub(crate) const DEFAULT_SPIN: bool = false;
pub(crate) const DEFAULT_WORKERS: usize = 0;
pub(crate) const DEFAULT_MAX_BATCH: usize = 8;
pub(crate) const DEFAULT_TENSORRT_FP16: bool = false;
pub(crate) const DEFAULT_TENSORRT_INT8: bool = false;
pub(crate) const DEFAULT_TENSORRT_NATIVE_CALIBRATION_TABLE: bool = false;
pub(crate) const DEFAULT_TENSORRT_ENGINE_CACHE: &str = "/var/cache/roadsight";
pub(crate) const DEFAULT_CUDA_DEVICE_ID: i32 = 0;
pub(crate) const DEFAULT_PROVIDER_REQUIRED: bool = false;
pub(crate) const DEFAULT_PUBLISH_QUEUE: usize = 256;
pub(crate) const DEFAULT_PUBLISH_MAXLEN: u64 = 250_000;
pub(crate) const DEFAULT_ENCODING: &str = "json";
pub(crate) const DEFAULT_STALL_TIMEOUT_MS: u64 = 5_000;
pub(crate) const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
pub(crate) const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
pub(crate) const DEFAULT_FPS: f64 = 10.0;
pub(crate) const DEFAULT_TRANSPORT: &str = "tcp";
pub(crate) const DEFAULT_LATENCY_MS: u32 = 50;
pub(crate) const DEFAULT_PUBLISH_EMPTY: bool = true;
pub(crate) const DEFAULT_ENABLED: bool = true;

/// `roadsight.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    /// Site id, part of every stream key: `[A-Za-z0-9_.-]+`. Required.
    pub site: String,
    /// Folder holding one `<camera>.toml` per camera. Default: [`DEFAULT_CAMERAS_DIR`].
    #[serde(default = "default_cameras_dir")]
    pub cameras_dir: PathBuf,
    /// The box's local Redis. Default: every key of [`RawRedis`] at its default.
    #[serde(default)]
    pub redis: RawRedis,
    /// The detector. Default: every key of [`RawModel`] at its default.
    #[serde(default)]
    pub model: RawModel,
    /// Writing to the local streams. Default: every key of [`RawPublish`] at its default.
    #[serde(default)]
    pub publish: RawPublish,
    /// Reconnect policy shared by all cameras. Default: every key of [`RawCapture`] at its default.
    #[serde(default)]
    pub capture: RawCapture,
    /// Store-and-forward to a central Redis. Default: disabled.
    #[serde(default)]
    pub uplink: super::uplink::RawUplink,
    /// The Prometheus endpoint. Default: every key of [`super::metrics::RawMetrics`] at its default.
    #[serde(default)]
    pub metrics: super::metrics::RawMetrics,
    /// Log level. Default: every key of [`super::logging::RawLogging`] at its default.
    #[serde(default)]
    pub logging: super::logging::RawLogging,
}

/// `[redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    /// `redis://` or `unix://` URL (no TLS: it is on this box), without user info. Default: [`DEFAULT_REDIS_URL`].
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// ACL user name. Default: none (the `default` user).
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the credential holding the password. Default: none (no password).
    #[serde(default)]
    pub credential: Option<String>,
}

/// `[model]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    /// ONNX model file. Default: [`DEFAULT_MODEL_PATH`].
    #[serde(default = "default_model_path")]
    pub path: PathBuf,
    /// Class names, one per line, line number = class id. Default: [`DEFAULT_MODEL_LABELS`].
    #[serde(default = "default_model_labels")]
    pub labels: PathBuf,
    /// Output layout: `detections`, `yolov8` or `yolov5`. Default: [`DEFAULT_DECODER`].
    #[serde(default = "default_decoder")]
    pub decoder: String,
    /// Minimum score of a detection, in (0, 1]. Default: [`DEFAULT_CONFIDENCE`].
    #[serde(default = "default_confidence")]
    pub confidence: f32,
    /// IoU above which the lower-scored box of a class is dropped, in (0, 1].
    /// Default: [`DEFAULT_NMS_IOU`].
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Execution providers in order of preference. Default: [`DEFAULT_PROVIDERS`].
    #[serde(default = "default_providers")]
    pub providers: Vec<RawProvider>,
    /// `libonnxruntime.so`. Default: none (`ORT_DYLIB_PATH`, then the system library).
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads, 0 for ORT's choice. Default: [`DEFAULT_THREADS`].
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Let ONNX Runtime's intra-op threads spin between runs. Default: [`DEFAULT_SPIN`] (off:
    /// spinning buys no latency at a camera's frame rate and burns the CPU decoding needs).
    #[serde(default)]
    pub spin: bool,
    /// Inference workers, each with its own session, sharing the cameras; 0 for one per core
    /// (up to the number of cameras) when the model runs on the CPU, else one. Default:
    /// [`DEFAULT_WORKERS`].
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Most frames per run for a model with a dynamic batch dimension (a fixed-batch model runs
    /// one frame at a time). Default: [`DEFAULT_MAX_BATCH`].
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

/// One entry of `model.providers`: a bare name or a table with options.
#[derive(Debug, PartialEq)]
pub(crate) enum RawProvider {
    /// `"tensorrt"`, `"cuda"` or `"cpu"`, every option at its default.
    Name(String),
    Table(RawProviderTable),
}

/// `{ name = "tensorrt", fp16 = true }` and the like.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProviderTable {
    /// `tensorrt`, `cuda` or `cpu`. Required.
    pub name: String,
    /// TensorRT only: build FP16 engines. Default: [`DEFAULT_TENSORRT_FP16`].
    #[serde(default)]
    pub fp16: Option<bool>,
    /// TensorRT only: build INT8 engines; needs `calibration_table`. Default:
    /// [`DEFAULT_TENSORRT_INT8`].
    #[serde(default)]
    pub int8: Option<bool>,
    /// TensorRT only, with `int8`: the INT8 calibration table, an existing file. Default: none.
    #[serde(default)]
    pub calibration_table: Option<PathBuf>,
    /// TensorRT only, with `calibration_table`: the table is in TensorRT's own format rather
    /// than ONNX Runtime's. Default: [`DEFAULT_TENSORRT_NATIVE_CALIBRATION_TABLE`].
    #[serde(default)]
    pub native_calibration_table: Option<bool>,
    /// TensorRT only: run on this DLA core (0, 1, …; Jetson Xavier/Orin), with `fp16` or
    /// `int8`. Default: none (the GPU).
    #[serde(default)]
    pub dla_core: Option<i64>,
    /// TensorRT only: root of the engine and timing caches; each engine goes in a folder
    /// named by its key below it. Default: [`DEFAULT_TENSORRT_ENGINE_CACHE`].
    #[serde(default)]
    pub engine_cache: Option<PathBuf>,
    /// CUDA only: GPU ordinal. Default: [`DEFAULT_CUDA_DEVICE_ID`].
    #[serde(default)]
    pub device_id: Option<i32>,
    /// Fail start-up when the provider cannot load, instead of skipping it.
    /// Default: [`DEFAULT_PROVIDER_REQUIRED`].
    #[serde(default)]
    pub required: Option<bool>,
}

/// `[publish]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPublish {
    /// Frames waiting for Redis, at least 1. Default: [`DEFAULT_PUBLISH_QUEUE`].
    #[serde(default = "default_publish_queue")]
    pub queue: usize,
    /// Approximate cap on each local stream (`MAXLEN ~`), at least 1000.
    /// Default: [`DEFAULT_PUBLISH_MAXLEN`].
    #[serde(default = "default_publish_maxlen")]
    pub maxlen: u64,
    /// `det` encoding: `json` or `json+lz4`. Default: [`DEFAULT_ENCODING`].
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

/// `[capture]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapture {
    /// A camera with no frame for this long is reconnected, at least 500.
    /// Default: [`DEFAULT_STALL_TIMEOUT_MS`].
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// First reconnect delay, at least 1. Default: [`DEFAULT_BACKOFF_INITIAL_MS`].
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Cap on the doubling reconnect delay, at least `backoff_initial_ms`.
    /// Default: [`DEFAULT_BACKOFF_MAX_MS`].
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Credential files when `$CREDENTIALS_DIRECTORY` is unset (development).
    /// Default: none.
    #[serde(default)]
    pub credentials_dir: Option<PathBuf>,
}

/// `cameras.d/<camera>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCamera {
    /// Camera id, `[a-z0-9_-]+`, unique on the box. Required.
    pub id: String,
    /// `rtsp://` or `rtsps://` URL without user info. Required.
    pub url: String,
    /// Name of the credential holding `user:password`. Default: none.
    #[serde(default)]
    pub credential: Option<String>,
    /// Cap on processed frames per second, 0 for no cap. Default: [`DEFAULT_FPS`].
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// RTSP lower transport: `tcp` or `udp`. Default: [`DEFAULT_TRANSPORT`].
    #[serde(default = "default_transport")]
    pub transport: String,
    /// RTSP jitter buffer, at most 5000. Default: [`DEFAULT_LATENCY_MS`].
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u32,
    /// Class names to publish, each one from the labels file. Default: none (all).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Confidence threshold, in (0, 1]. Default: `model.confidence`.
    #[serde(default)]
    pub confidence: Option<f32>,
    /// Publish frames without detections. Default: [`DEFAULT_PUBLISH_EMPTY`].
    #[serde(default = "default_publish_empty")]
    pub publish_empty: bool,
    /// Run this camera. Default: [`DEFAULT_ENABLED`].
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// GStreamer decoder element instead of the probed one. Default: none (probe).
    #[serde(default)]
    pub decoder: Option<String>,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            username: None,
            credential: None,
        }
    }
}

impl Default for RawModel {
    fn default() -> Self {
        Self {
            path: default_model_path(),
            labels: default_model_labels(),
            decoder: default_decoder(),
            confidence: DEFAULT_CONFIDENCE,
            nms_iou: DEFAULT_NMS_IOU,
            providers: default_providers(),
            ort_library: None,
            threads: DEFAULT_THREADS,
            spin: DEFAULT_SPIN,
            workers: DEFAULT_WORKERS,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

impl Default for RawPublish {
    fn default() -> Self {
        Self {
            queue: DEFAULT_PUBLISH_QUEUE,
            maxlen: DEFAULT_PUBLISH_MAXLEN,
            encoding: default_encoding(),
        }
    }
}

impl Default for RawCapture {
    fn default() -> Self {
        Self {
            stall_timeout_ms: DEFAULT_STALL_TIMEOUT_MS,
            backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            credentials_dir: None,
        }
    }
}

// A provider is either a string or a table. `#[serde(untagged)]` would hide the real mistake
// (an unknown option, a wrong type) behind "did not match any variant", so dispatch by hand.
impl<'de> Deserialize<'de> for RawProvider {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProviderVisitor;

        impl<'de> Visitor<'de> for ProviderVisitor {
            type Value = RawProvider;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a provider name or a table with `name`")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<RawProvider, E> {
                Ok(RawProvider::Name(name.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawProvider, A::Error> {
                RawProviderTable::deserialize(MapAccessDeserializer::new(map))
                    .map(RawProvider::Table)
            }
        }

        deserializer.deserialize_any(ProviderVisitor)
    }
}

fn default_cameras_dir() -> PathBuf {
    DEFAULT_CAMERAS_DIR.into()
}
fn default_redis_url() -> String {
    DEFAULT_REDIS_URL.into()
}
fn default_model_path() -> PathBuf {
    DEFAULT_MODEL_PATH.into()
}
fn default_model_labels() -> PathBuf {
    DEFAULT_MODEL_LABELS.into()
}
fn default_decoder() -> String {
    DEFAULT_DECODER.into()
}
fn default_confidence() -> f32 {
    DEFAULT_CONFIDENCE
}
fn default_nms_iou() -> f32 {
    DEFAULT_NMS_IOU
}
fn default_providers() -> Vec<RawProvider> {
    DEFAULT_PROVIDERS
        .iter()
        .map(|name| RawProvider::Name((*name).into()))
        .collect()
}
fn default_threads() -> usize {
    DEFAULT_THREADS
}
fn default_workers() -> usize {
    DEFAULT_WORKERS
}
fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}
fn default_publish_queue() -> usize {
    DEFAULT_PUBLISH_QUEUE
}
fn default_publish_maxlen() -> u64 {
    DEFAULT_PUBLISH_MAXLEN
}
fn default_encoding() -> String {
    DEFAULT_ENCODING.into()
}
fn default_stall_timeout_ms() -> u64 {
    DEFAULT_STALL_TIMEOUT_MS
}
fn default_backoff_initial_ms() -> u64 {
    DEFAULT_BACKOFF_INITIAL_MS
}
fn default_backoff_max_ms() -> u64 {
    DEFAULT_BACKOFF_MAX_MS
}
fn default_fps() -> f64 {
    DEFAULT_FPS
}
fn default_transport() -> String {
    DEFAULT_TRANSPORT.into()
}
fn default_latency_ms() -> u32 {
    DEFAULT_LATENCY_MS
}
fn default_publish_empty() -> bool {
    DEFAULT_PUBLISH_EMPTY
}
fn default_enabled() -> bool {
    DEFAULT_ENABLED
}
