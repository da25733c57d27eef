//! `roadsightd check`: the config is already validated by loading it; this loads the model
//! (which also checks its input and its output against the configured decoder) and prints a
//! summary an operator can read. Credentials are read to prove they exist and are well
//! formed, never printed; URLs are redacted.

use std::fmt::Write as _;

use crate::capture::{decoder_exists, decoder_summary};
use crate::config::{Config, Provider};
use crate::credentials::{self, redact_url};
use crate::infer::{Detector, InferError, ModelShape, ProviderReport, platform_summary, provider_report};

/// Why `check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A named credential (or an uplink TLS file) is missing or malformed; the message names
    /// file and field.
    #[error("{0}")]
    Credential(String),
    /// A camera names a decoder element GStreamer does not have (the message names the file).
    #[error("{0}")]
    Decoder(String),
    #[error(transparent)]
    Infer(#[from] InferError),
}

impl CheckError {
    /// Whether the operator fixes this in the configuration (exit 78) rather than by installing
    /// something (exit 69).
    pub fn is_config(&self) -> bool {
        match self {
            CheckError::Credential(_) | CheckError::Decoder(_) => true,
            CheckError::Infer(e) => e.is_config(),
        }
    }
}

/// Reads every named credential (without printing it), loads the model and returns the summary.
///
/// # Errors
/// A credential is missing or malformed, the model cannot be loaded or does not fit the
/// decoder, or ONNX Runtime itself is missing.
pub fn check(config: &Config) -> Result<String, CheckError> {
    check_credentials(config)?;
    check_decoders(config)?;
    let detector = Detector::open(&config.model)?;
    let shape = detector.shape();
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "config     {}", config.file.display());
    let _ = writeln!(out, "site       {}", config.site);
    let _ = writeln!(out, "redis      {}{}", redact_url(&config.redis.url), credential_note(config.redis.credential.as_deref()));
    if let Some(uplink) = &config.uplink {
        let mode = if uplink.cluster { " (cluster)" } else { "" };
        let _ = writeln!(out, "uplink     {}{mode}{}", redact_url(&uplink.url), credential_note(uplink.credential.as_deref()));
    }
    let _ = writeln!(
        out,
        "model      {} ({} classes, decoder {:?})",
        config.model.path.display(),
        config.model.label_names.len(),
        config.model.decoder
    );
    let _ = writeln!(
        out,
        "  input    `{}` {:?} {}x{}; output `{}` {:?}",
        shape.input_name, shape.input, shape.width, shape.height, shape.output_name, shape.output_shape
    );
    let providers: Vec<String> = config.model.providers.iter().map(provider_name).collect();
    let _ = writeln!(out, "  providers {}", providers.join(", "));
    if let Some(report) = provider_report() {
        write_provider_report(&mut out, &report);
    }
    let _ = writeln!(out, "  decoders  {}", decoder_summary(None));
    let _ = writeln!(out, "  frames    {}", frame_memory(config, shape));
    let enabled = config.cameras.iter().filter(|c| c.enabled).count();
    let _ = writeln!(out, "cameras    {enabled} enabled of {}", config.cameras.len());
    for cam in &config.cameras {
        let _ = writeln!(
            out,
            "  {:<12} {} {:?} fps={} latency={}ms{}{}{}",
            cam.id,
            redact_url(&cam.url),
            cam.transport,
            cam.fps,
            cam.latency_ms,
            credential_note(cam.credential.as_deref()),
            cam.decoder.as_deref().map(|d| format!(" decoder={}", decoder_summary(Some(d)))).unwrap_or_default(),
            if cam.enabled { "" } else { " (disabled)" },
        );
    }
    let _ = writeln!(out, "ok");
    Ok(out)
}

/// Where decoded frames are kept on their way to the model.
fn frame_memory(config: &Config, shape: &ModelShape) -> String {
    #[cfg(feature = "cuda")]
    {
        match crate::cuda::for_model(&config.model, shape.input) {
            Ok(device) => format!("CUDA memory of GPU {} from nvh264dec/nvh265dec, system memory from other decoders", device.device()),
            Err(why) => format!("system memory ({why})"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (config, shape);
        "system memory (built without the `cuda` feature)".to_owned()
    }
}

fn check_credentials(config: &Config) -> Result<(), CheckError> {
    let dir = config.capture.credentials_dir.as_deref();
    if let Some(name) = &config.redis.credential {
        credentials::read(name, dir).map_err(|e| {
            CheckError::Credential(format!("{}: field `redis.credential`: {e}", config.file.display()))
        })?;
    }
    // The uplink's password and TLS files: `run` reads them at start and exits 78 without them.
    crate::uplink::Uplink::check_settings(config)
        .map_err(|e| CheckError::Credential(format!("{}: {e}", config.file.display())))?;
    for cam in config.cameras.iter().filter(|c| c.enabled) {
        if let Some(name) = &cam.credential {
            credentials::read_user_password(name, dir).map_err(|e| {
                CheckError::Credential(format!("{}: field `credential`: {e}", cam.file.display()))
            })?;
        }
    }
    Ok(())
}

/// A camera's `decoder` must exist: at run time a missing one fails that camera on every retry.
fn check_decoders(config: &Config) -> Result<(), CheckError> {
    for cam in config.cameras.iter().filter(|c| c.enabled) {
        if let Some(name) = cam.decoder.as_deref().filter(|name| !decoder_exists(name)) {
            return Err(CheckError::Decoder(format!(
                "{}: field `decoder`: GStreamer has no element `{name}` (`gst-inspect-1.0 {name}`); \
                 leave `decoder` out to pick one automatically",
                cam.file.display()
            )));
        }
    }
    Ok(())
}

fn credential_note(name: Option<&str>) -> String {
    name.map(|n| format!(" (credential `{n}`)")).unwrap_or_default()
}

fn provider_name(p: &Provider) -> String {
    let options = match p {
        Provider::TensorRt(t) => {
            let dla = t.dla_core.map(|core| format!("+dla{core}")).unwrap_or_default();
            format!("{}{}{dla}", if t.fp16 { "+fp16" } else { "" }, if t.int8.is_some() { "+int8" } else { "" })
        }
        Provider::Cuda { .. } | Provider::Cpu => String::new(),
    };
    format!("{}{options}{}", p.name(), if p.required() { " (required)" } else { "" })
}

/// Which provider the model runs on, the skipped ones, and TensorRT's engine folder.
fn write_provider_report(out: &mut String, report: &ProviderReport) {
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.provider).collect();
    let skipped = if skipped.is_empty() { String::new() } else { format!(" (skipped: {})", skipped.join(", ")) };
    let _ = writeln!(out, "  runs on   {}{skipped}; onnxruntime {}", report.in_use(), platform_summary().0);
    let Some(cache) = &report.engine_cache else { return };
    let (_, tensorrt, gpu) = platform_summary();
    let _ = writeln!(out, "  tensorrt  {tensorrt}, gpu {gpu}");
    match cache {
        Ok(cache) if !report.registered.contains(&"tensorrt") => {
            let _ = writeln!(out, "  engines   {} (key {}): unused, TensorRT is unavailable here", cache.dir.display(), cache.key);
        }
        Ok(cache) => {
            let state = if cache.has_engine() {
                "engine cached"
            } else {
                "no engine yet: built at the next start, or now by `roadsightd warmup`"
            };
            let _ = writeln!(out, "  engines   {} (key {}): {state}", cache.dir.display(), cache.key);
        }
        Err(e) => {
            let _ = writeln!(out, "  engines   unusable ({e}): the engine is built at every start");
        }
    }
}
