//! Raw → validated: names, ranges, URLs, paths and the labels file. Every error names the file,
//! the field in dotted form and what was expected. URLs are never echoed back, as they may hold
//! a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{self, RawCamera, RawGlobal, RawProvider, RawProviderTable};
use super::{
    CameraConfig, CaptureDefaults, Config, ConfigError, DecoderKind, Encoding, ModelConfig,
    Provider, PublishConfig, RedisConfig, Transport,
};

const MAX_LATENCY_MS: u32 = 5_000;
const MIN_STALL_TIMEOUT_MS: u64 = 500;
const MIN_MAXLEN: u64 = 1_000;

/// Validates the global file; `cameras` is left empty for the caller to fill.
pub(super) fn global(raw: RawGlobal, file: &Path) -> Result<Config, ConfigError> {
    let err = |field: &str, message: String| field_error(file, field, message);
    let dir = folder_of(file);

    if !is_name(&raw.site, |c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(err("site", format!("`{}` is not a site id, expected [A-Za-z0-9_.-]+", raw.site)));
    }

    let redis = RedisConfig {
        url: redis_url(&raw.redis.url).map_err(|m| err("redis.url", m))?,
        username: raw.redis.username,
        credential: credential(raw.redis.credential).map_err(|m| err("redis.credential", m))?,
    };

    let m = raw.model;
    let path = resolve(&dir, &m.path);
    if !path.is_file() {
        return Err(err("model.path", format!("no model file at {}", path.display())));
    }
    let labels = resolve(&dir, &m.labels);
    let label_names = read_labels(&labels).map_err(|m| err("model.labels", m))?;
    let decoder = match m.decoder.as_str() {
        "detections" => DecoderKind::Detections,
        "yolov8" => DecoderKind::Yolov8,
        "yolov5" => DecoderKind::Yolov5,
        other => {
            let expected = "expected `detections`, `yolov8` or `yolov5`";
            return Err(err("model.decoder", format!("unknown decoder `{other}`, {expected}")));
        }
    };
    let model = ModelConfig {
        path,
        labels,
        label_names,
        decoder,
        confidence: unit_interval(m.confidence).map_err(|m| err("model.confidence", m))?,
        nms_iou: unit_interval(m.nms_iou).map_err(|m| err("model.nms_iou", m))?,
        providers: providers(m.providers, file, &dir)?,
        ort_library: m.ort_library.map(|p| resolve(&dir, &p)),
        threads: m.threads,
    };

    let p = raw.publish;
    if p.queue < 1 {
        return Err(err("publish.queue", "0 is too small, expected at least 1".into()));
    }
    if p.maxlen < MIN_MAXLEN {
        let message = format!("{} is too small, expected at least {MIN_MAXLEN}", p.maxlen);
        return Err(err("publish.maxlen", message));
    }
    let encoding = match p.encoding.as_str() {
        "json" => Encoding::Json,
        "json+lz4" => Encoding::JsonLz4,
        other => {
            let message = format!("unknown encoding `{other}`, expected `json` or `json+lz4`");
            return Err(err("publish.encoding", message));
        }
    };

    let c = raw.capture;
    if c.stall_timeout_ms < MIN_STALL_TIMEOUT_MS {
        let message =
            format!("{} is too small, expected at least {MIN_STALL_TIMEOUT_MS}", c.stall_timeout_ms);
        return Err(err("capture.stall_timeout_ms", message));
    }
    if c.backoff_initial_ms < 1 {
        return Err(err("capture.backoff_initial_ms", "0 is too small, expected at least 1".into()));
    }
    if c.backoff_max_ms < c.backoff_initial_ms {
        let message = format!(
            "{} is below `capture.backoff_initial_ms` ({}), expected at least that",
            c.backoff_max_ms, c.backoff_initial_ms
        );
        return Err(err("capture.backoff_max_ms", message));
    }

    Ok(Config {
        file: file.to_path_buf(),
        site: raw.site,
        cameras_dir: resolve(&dir, &raw.cameras_dir),
        redis,
        model,
        publish: PublishConfig { queue: p.queue, maxlen: p.maxlen, encoding },
        capture: CaptureDefaults {
            stall_timeout: Duration::from_millis(c.stall_timeout_ms),
            backoff_initial: Duration::from_millis(c.backoff_initial_ms),
            backoff_max: Duration::from_millis(c.backoff_max_ms),
            credentials_dir: c.credentials_dir.map(|p| resolve(&dir, &p)),
        },
        cameras: Vec::new(),
    })
}

/// Validates one camera file against the already validated model.
pub(super) fn camera(
    raw: RawCamera,
    file: &Path,
    model: &ModelConfig,
) -> Result<CameraConfig, ConfigError> {
    let err = |field: &str, message: String| field_error(file, field, message);

    if !is_name(&raw.id, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)) {
        return Err(err("id", format!("`{}` is not a camera id, expected [a-z0-9_-]+", raw.id)));
    }
    let url = camera_url(&raw.url).map_err(|m| err("url", m))?;
    if !(raw.fps.is_finite() && raw.fps >= 0.0) {
        return Err(err("fps", format!("{} is out of range, expected 0 (no cap) or more", raw.fps)));
    }
    let transport = match raw.transport.as_str() {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => {
            return Err(err("transport", format!("unknown transport `{other}`, expected `tcp` or `udp`")));
        }
    };
    if raw.latency_ms > MAX_LATENCY_MS {
        let message = format!("{} is too large, expected at most {MAX_LATENCY_MS}", raw.latency_ms);
        return Err(err("latency_ms", message));
    }
    if let Some(classes) = &raw.classes {
        if classes.is_empty() {
            let message = "empty list publishes nothing; leave `classes` out to publish all";
            return Err(err("classes", message.into()));
        }
        for (i, class) in classes.iter().enumerate() {
            if !model.label_names.contains(class) {
                let message =
                    format!("unknown class `{class}`, not in {}", model.labels.display());
                return Err(err(&format!("classes[{i}]"), message));
            }
        }
    }
    let confidence = match raw.confidence {
        Some(c) => unit_interval(c).map_err(|m| err("confidence", m))?,
        None => model.confidence,
    };
    if let Some(decoder) = &raw.decoder
        && !is_name(decoder, |c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        let message = format!("`{decoder}` is not a GStreamer element name");
        return Err(err("decoder", message));
    }

    Ok(CameraConfig {
        file: file.to_path_buf(),
        id: raw.id,
        url,
        credential: credential(raw.credential).map_err(|m| err("credential", m))?,
        fps: raw.fps,
        transport,
        latency_ms: raw.latency_ms,
        classes: raw.classes,
        confidence,
        publish_empty: raw.publish_empty,
        enabled: raw.enabled,
        decoder: raw.decoder,
    })
}

/// Sorts cameras by id; a duplicate id names both files.
pub(super) fn sort_unique(cameras: &mut [CameraConfig]) -> Result<(), ConfigError> {
    // Stable: of two cameras with one id, the one from the earlier file name comes first.
    cameras.sort_by(|a, b| a.id.cmp(&b.id));
    match cameras.windows(2).find(|w| w[0].id == w[1].id) {
        Some(w) => Err(field_error(
            &w[1].file,
            "id",
            format!("duplicate camera id `{}`, also used in {}", w[1].id, w[0].file.display()),
        )),
        None => Ok(()),
    }
}

/// The folder relative paths in `file` resolve against.
pub(super) fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(super) fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { dir.join(path) }
}

fn field_error(file: &Path, field: &str, message: String) -> ConfigError {
    ConfigError::Field { file: file.to_path_buf(), field: field.to_owned(), message }
}

fn providers(raw: Vec<RawProvider>, file: &Path, dir: &Path) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        let message = "empty list, expected at least one of `tensorrt`, `cuda`, `cpu`";
        return Err(field_error(file, "model.providers", message.into()));
    }
    let mut out: Vec<Provider> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let field = format!("model.providers[{i}]");
        let t = match entry {
            RawProvider::Name(name) => RawProviderTable { name, ..Default::default() },
            RawProvider::Table(t) => t,
        };
        // An option that belongs to another provider is a mistake, not something to ignore.
        let reject = |set: bool, option: &str, owner: &str| match set {
            true => Err(field_error(
                file,
                &format!("{field}.{option}"),
                format!("applies to `{owner}` only, not to `{}`", t.name),
            )),
            false => Ok(()),
        };
        let required = t.required.unwrap_or(raw::DEFAULT_PROVIDER_REQUIRED);
        let provider = match t.name.as_str() {
            "tensorrt" => {
                reject(t.device_id.is_some(), "device_id", "cuda")?;
                let cache = t.engine_cache.clone();
                let cache = cache.unwrap_or_else(|| raw::DEFAULT_TENSORRT_ENGINE_CACHE.into());
                Provider::TensorRt {
                    fp16: t.fp16.unwrap_or(raw::DEFAULT_TENSORRT_FP16),
                    engine_cache: Some(resolve(dir, &cache)),
                    required,
                }
            }
            "cuda" => {
                reject(t.fp16.is_some(), "fp16", "tensorrt")?;
                reject(t.engine_cache.is_some(), "engine_cache", "tensorrt")?;
                let device_id = t.device_id.unwrap_or(raw::DEFAULT_CUDA_DEVICE_ID);
                if device_id < 0 {
                    let message = format!("{device_id} is negative, expected a GPU ordinal");
                    return Err(field_error(file, &format!("{field}.device_id"), message));
                }
                Provider::Cuda { device_id, required }
            }
            "cpu" => {
                reject(t.fp16.is_some(), "fp16", "tensorrt")?;
                reject(t.engine_cache.is_some(), "engine_cache", "tensorrt")?;
                reject(t.device_id.is_some(), "device_id", "cuda")?;
                Provider::Cpu
            }
            other => {
                let message =
                    format!("unknown provider `{other}`, expected `tensorrt`, `cuda` or `cpu`");
                return Err(field_error(file, &field, message));
            }
        };
        let same = |p: &Provider| std::mem::discriminant(p) == std::mem::discriminant(&provider);
        if out.iter().any(same) {
            return Err(field_error(file, &field, format!("`{}` is listed twice", t.name)));
        }
        out.push(provider);
    }
    Ok(out)
}

/// One class name per line, trimmed; blank lines are skipped.
fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() {
        return Err(format!("labels file {} holds no class names", path.display()));
    }
    Ok(names)
}

fn camera_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("not a URL ({e}), expected rtsp://host[:port]/path"))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps") {
        return Err(format!("unsupported scheme `{}`, expected `rtsp` or `rtsps`", url.scheme()));
    }
    no_user_info(&url, "`credential` to name a credential holding `user:password`")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host, expected rtsp://host[:port]/path".into());
    }
    Ok(url.into())
}

fn redis_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text).map_err(|e| {
        format!("not a URL ({e}), expected redis://host:port, rediss://… or unix:///path.sock")
    })?;
    no_user_info(&url, "`redis.username` and `redis.credential`")?;
    match url.scheme() {
        "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => {}
        "redis" | "rediss" => return Err("no host, expected redis://host:port".into()),
        "unix" | "redis+unix" if !matches!(url.path(), "" | "/") => {}
        "unix" | "redis+unix" => return Err("no socket path, expected unix:///path.sock".into()),
        other => {
            let expected = "expected `redis`, `rediss` or `unix`";
            return Err(format!("unsupported scheme `{other}`, {expected}"));
        }
    }
    Ok(url.into())
}

// The message must not echo the URL: the password is in it.
fn no_user_info(url: &Url, instead: &str) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(format!("holds user info (user:password@), which is not allowed here; use {instead}"))
}

/// A credential is looked up as a file name in `$CREDENTIALS_DIRECTORY`.
fn credential(name: Option<String>) -> Result<Option<String>, String> {
    match name {
        Some(n) if n.starts_with('.') || !is_name(&n, |c| c.is_ascii_alphanumeric() || "_.@-".contains(c)) => {
            Err(format!("`{n}` is not a credential name, expected [A-Za-z0-9_.@-]+ (a file name)"))
        }
        other => Ok(other),
    }
}

fn unit_interval(v: f32) -> Result<f32, String> {
    match v > 0.0 && v <= 1.0 {
        true => Ok(v),
        false => Err(format!("{v} is out of range, expected more than 0 and at most 1")),
    }
}

fn is_name(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(allowed)
}
