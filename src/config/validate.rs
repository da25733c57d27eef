//! Raw → validated: names, ranges, URLs, paths and the labels file. Every error names the file,
//! the field in dotted form and what was expected. URLs are never echoed back, as they may hold
//! a password.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{RawCamera, RawGlobal, RawModel};
use super::{
    CameraConfig, CaptureDefaults, Config, ConfigError, DecoderKind, Encoding, ModelConfig,
    PublishConfig, RedisConfig, Transport,
};

const MAX_LATENCY_MS: u32 = 5_000;
const MIN_STALL_TIMEOUT_MS: u64 = 500;
const MIN_MAXLEN: u64 = 1_000;

/// Validates the global file; `cameras` is left empty for the caller to fill.
pub(super) fn global(raw: RawGlobal, file: &Path) -> Result<Config, ConfigError> {
    let at = |field: &'static str| move |message| field_error(file, field, message);
    let dir = folder_of(file);
    let site_char = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    let site = name(raw.site, "[A-Za-z0-9_.-]+", site_char).map_err(at("site"))?;

    let redis = RedisConfig {
        url: local_url(&raw.redis.url).map_err(at("redis.url"))?,
        username: raw.redis.username,
        credential: credential(raw.redis.credential).map_err(at("redis.credential"))?,
    };

    let p = raw.publish;
    let encodings = [("json", Encoding::Json), ("json+lz4", Encoding::JsonLz4)];
    let publish = PublishConfig {
        queue: in_range(p.queue, 1..=MAX_PUBLISH_QUEUE).map_err(at("publish.queue"))?,
        maxlen: at_least(p.maxlen, MIN_MAXLEN).map_err(at("publish.maxlen"))?,
        encoding: one_of(&p.encoding, "encoding", &encodings).map_err(at("publish.encoding"))?,
    };

    let c = raw.capture;
    at_least(c.stall_timeout_ms, MIN_STALL_TIMEOUT_MS).map_err(at("capture.stall_timeout_ms"))?;
    at_least(c.backoff_initial_ms, 1).map_err(at("capture.backoff_initial_ms"))?;
    at_least(c.backoff_max_ms, c.backoff_initial_ms)
        .map_err(|m| at("capture.backoff_max_ms")(m + " (`capture.backoff_initial_ms`)"))?;
    let capture = CaptureDefaults {
        stall_timeout: Duration::from_millis(c.stall_timeout_ms),
        backoff_initial: Duration::from_millis(c.backoff_initial_ms),
        backoff_max: Duration::from_millis(c.backoff_max_ms),
        credentials_dir: c.credentials_dir.map(|p| resolve(&dir, &p)),
    };

    let maxlen = publish.maxlen;
    Ok(Config {
        file: file.to_path_buf(),
        site,
        cameras_dir: resolve(&dir, &raw.cameras_dir),
        redis,
        model: model(raw.model, file, &dir)?,
        publish,
        capture,
        uplink: super::uplink::validate(raw.uplink, file, &dir, maxlen)?,
        metrics_listen: super::metrics::validate(raw.metrics, file)?,
        log_level: super::logging::validate(raw.logging, file)?,
        cameras: Vec::new(),
    })
}

fn model(m: RawModel, file: &Path, dir: &Path) -> Result<ModelConfig, ConfigError> {
    let at = |field: &'static str| move |message| field_error(file, field, message);
    let path = resolve(dir, &m.path);
    if !path.is_file() {
        return Err(at("model.path")(format!(
            "no model file at {}",
            path.display()
        )));
    }
    let labels = resolve(dir, &m.labels);
    let decoders = [
        ("detections", DecoderKind::Detections),
        ("yolov8", DecoderKind::Yolov8),
        ("yolov5", DecoderKind::Yolov5),
    ];
    Ok(ModelConfig {
        label_names: read_labels(&labels).map_err(at("model.labels"))?,
        path,
        labels,
        decoder: one_of(&m.decoder, "decoder", &decoders).map_err(at("model.decoder"))?,
        confidence: unit_interval(m.confidence).map_err(at("model.confidence"))?,
        nms_iou: unit_interval(m.nms_iou).map_err(at("model.nms_iou"))?,
        providers: super::providers::validate(m.providers, file, dir)?,
        ort_library: m.ort_library.map(|p| resolve(dir, &p)),
        threads: in_range(m.threads, 0..=MAX_THREADS).map_err(at("model.threads"))?,
        spin: m.spin,
        workers: in_range(m.workers, 0..=MAX_WORKERS).map_err(at("model.workers"))?,
        max_batch: in_range(m.max_batch, 1..=MAX_BATCH).map_err(at("model.max_batch"))?,
    })
}

/// Upper bounds for `model.workers` and `model.max_batch`: each worker holds a session (its
/// weights and activations), each batch slot a frame of input.
const MAX_WORKERS: usize = 16;
const MAX_BATCH: usize = 64;
/// ONNX Runtime intra-op threads per session: more than any edge box has cores.
const MAX_THREADS: usize = 256;
/// Results waiting for Redis: the queue is allocated whole at start (about 1 KiB a result).
const MAX_PUBLISH_QUEUE: usize = 100_000;
/// The lowest fps cap: one frame in 1000 s. Below it the frame period does not fit a timer.
const MIN_FPS: f64 = 0.001;

fn in_range(value: usize, range: std::ops::RangeInclusive<usize>) -> Result<usize, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is out of range, expected {} to {}", range.start(), range.end()))
    }
}

/// Validates one camera file against the already validated model.
pub(super) fn camera(
    raw: RawCamera,
    file: &Path,
    model: &ModelConfig,
) -> Result<CameraConfig, ConfigError> {
    let at = |field: &'static str| move |message| field_error(file, field, message);
    let id_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c);
    let id = name(raw.id, "[a-z0-9_-]+", id_char).map_err(at("id"))?;
    if !(raw.fps == 0.0 || (raw.fps.is_finite() && raw.fps >= MIN_FPS)) {
        return Err(at("fps")(format!(
            "{} is out of range, expected 0 (no cap) or at least {MIN_FPS}",
            raw.fps
        )));
    }
    let transports = [("tcp", Transport::Tcp), ("udp", Transport::Udp)];
    at_most(raw.latency_ms, MAX_LATENCY_MS).map_err(at("latency_ms"))?;
    if let Some(classes) = &raw.classes {
        if classes.is_empty() {
            let message = "empty list publishes nothing; leave `classes` out to publish all";
            return Err(at("classes")(message.into()));
        }
        if let Some((i, class)) = classes
            .iter()
            .enumerate()
            .find(|(_, c)| !model.label_names.contains(c))
        {
            let message = format!("unknown class `{class}`, not in {}", model.labels.display());
            return Err(field_error(file, &format!("classes[{i}]"), message));
        }
    }
    let element_char = |c: char| c.is_ascii_alphanumeric() || "_-".contains(c);
    let decoder = raw
        .decoder
        .map(|d| name(d, "a GStreamer element name", element_char));

    Ok(CameraConfig {
        file: file.to_path_buf(),
        id,
        url: camera_url(&raw.url).map_err(at("url"))?,
        credential: credential(raw.credential).map_err(at("credential"))?,
        fps: raw.fps,
        transport: one_of(&raw.transport, "transport", &transports).map_err(at("transport"))?,
        latency_ms: raw.latency_ms,
        classes: raw.classes,
        confidence: match raw.confidence {
            Some(c) => unit_interval(c).map_err(at("confidence"))?,
            None => model.confidence,
        },
        publish_empty: raw.publish_empty,
        enabled: raw.enabled,
        decoder: decoder.transpose().map_err(at("decoder"))?,
    })
}

/// Sorts cameras by id; a duplicate id names both files.
pub(super) fn sort_unique(cameras: &mut [CameraConfig]) -> Result<(), ConfigError> {
    // Stable: of two cameras with one id, the one from the earlier file name comes first.
    cameras.sort_by(|a, b| a.id.cmp(&b.id));
    match cameras.windows(2).find(|w| w[0].id == w[1].id) {
        Some([first, second]) => {
            let message = format!(
                "duplicate camera id `{}`, also used in {}",
                second.id,
                first.file.display()
            );
            Err(field_error(&second.file, "id", message))
        }
        _ => Ok(()),
    }
}

/// The folder relative paths in `file` resolve against.
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(super) fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

pub(super) fn field_error(file: &Path, field: &str, message: String) -> ConfigError {
    ConfigError::Field {
        file: file.to_path_buf(),
        field: field.to_owned(),
        message,
    }
}

/// One class name per line, trimmed; blank lines are skipped.
fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let count = lines.iter().rposition(|l| !l.is_empty()).map_or(0, |last| last + 1);
    if count == 0 {
        return Err(format!(
            "labels file {} holds no class names",
            path.display()
        ));
    }
    // Class N is line N + 1: a skipped blank line would shift every id after it.
    if let Some(blank) = lines[..count].iter().position(|l| l.is_empty()) {
        return Err(format!(
            "labels file {}: line {} is blank, but each line up to the last names one class \
             (class N on line N + 1); give it a name such as `unused`",
            path.display(),
            blank + 1
        ));
    }
    // The names are label values on /metrics, which prometheus-client writes unescaped.
    let unprintable = |c: char| c == '"' || c == '\\' || c.is_control();
    if let Some(line) = lines[..count].iter().position(|l| l.contains(unprintable)) {
        return Err(format!(
            "labels file {}: line {} holds a `\"`, `\\` or control character, which class names \
             (label values on /metrics) may not",
            path.display(),
            line + 1
        ));
    }
    Ok(lines[..count].iter().map(|l| l.to_string()).collect())
}

fn camera_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("not a URL ({e}), expected rtsp://host[:port]/path"))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps") {
        let scheme = url.scheme();
        return Err(format!(
            "unsupported scheme `{scheme}`, expected `rtsp` or `rtsps`"
        ));
    }
    no_user_info(
        &url,
        "`credential` to name a credential holding `user:password`",
    )?;
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
    // redis-rs also takes a user and password from the query of a `unix://` URL.
    if url.query_pairs().any(|(k, _)| matches!(k.as_ref(), "user" | "pass" | "password")) {
        return Err("holds a user or password in its query (?user=, ?pass=), which is not allowed here; use \
                    `redis.username` and `redis.credential`"
            .into());
    }
    match url.scheme() {
        "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url.into()),
        "redis" | "rediss" => Err("no host, expected redis://host:port".into()),
        "unix" | "redis+unix" if !matches!(url.path(), "" | "/") => Ok(url.into()),
        "unix" | "redis+unix" => Err("no socket path, expected unix:///path.sock".into()),
        other => Err(format!(
            "unsupported scheme `{other}`, expected `redis`, `rediss` or `unix`"
        )),
    }
}

/// The local Redis: on this box, so `redis://` or a unix socket; no TLS (the publisher's own
/// connection, `publish/link.rs`, does not speak it).
fn local_url(text: &str) -> Result<String, String> {
    let url = redis_url(text)?;
    if url.starts_with("rediss://") {
        return Err("TLS to the local Redis is not supported (it runs on this box), expected redis://host:port or unix:///path.sock; rediss:// is for `uplink.url`".into());
    }
    Ok(url)
}

/// The central Redis: `redis://` or `rediss://` (TLS) with a host (no unix socket: it is remote).
pub(super) fn upstream_url(text: &str) -> Result<String, String> {
    let url = redis_url(text).map_err(|m| m.replace("`redis.username` and `redis.credential`", "`uplink.username` and `uplink.credential`"))?;
    if url.starts_with("unix") || url.starts_with("redis+unix") {
        return Err("a unix socket is not an upstream, expected redis://host:port".into());
    }
    Ok(url)
}

// The message must not echo the URL: the password is in it.
fn no_user_info(url: &Url, instead: &str) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(format!(
        "holds user info (user:password@), which is not allowed here; use {instead}"
    ))
}

/// A credential is looked up as a file name in `$CREDENTIALS_DIRECTORY`.
pub(super) fn credential(name: Option<String>) -> Result<Option<String>, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.@-".contains(c);
    match name {
        // The value is not echoed: a password typed here by mistake must not reach a log.
        Some(n) if n.starts_with('.') || n.is_empty() || !n.chars().all(allowed) => Err(
            "is not a credential name, expected the name of a credential file ([A-Za-z0-9_.@-]+), \
             not the secret itself"
                .to_owned(),
        ),
        other => Ok(other),
    }
}

fn name(s: String, expected: &str, allowed: impl Fn(char) -> bool) -> Result<String, String> {
    match !s.is_empty() && s.chars().all(allowed) {
        true => Ok(s),
        false => Err(format!("`{s}` is not valid, expected {expected}")),
    }
}

fn one_of<T: Copy>(value: &str, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            Err(format!(
                "unknown {what} `{value}`, expected one of {}",
                names.join(", ")
            ))
        }
    }
}

pub(super) fn at_least<T: PartialOrd + Display>(value: T, min: T) -> Result<T, String> {
    match value >= min {
        true => Ok(value),
        false => Err(format!("{value} is too small, expected at least {min}")),
    }
}

fn at_most<T: PartialOrd + Display>(value: T, max: T) -> Result<T, String> {
    match value <= max {
        true => Ok(value),
        false => Err(format!("{value} is too large, expected at most {max}")),
    }
}

fn unit_interval(value: f32) -> Result<f32, String> {
    match value > 0.0 && value <= 1.0 {
        true => Ok(value),
        false => Err(format!(
            "{value} is out of range, expected more than 0 and at most 1"
        )),
    }
}

#[cfg(test)]
mod tests;
