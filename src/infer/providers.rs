//! Execution providers: registering the configured ones in order (TensorRT with its engine
//! cache folder, see [`super::engine_cache`]) and what came of it: the provider the model runs
//! on, the ones skipped and why. Every inference worker opens a session, so the outcome is
//! logged once per process, and kept for `/metrics` ([`last_report`]).

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ort::ep::{CUDA, ExecutionProvider as _, ExecutionProviderDispatch, TensorRT};
use ort::session::builder::SessionBuilder;

use super::InferError;
use super::engine_cache::EngineCache;
use crate::config::{ModelConfig, Provider, TensorRtConfig};

/// What registering the configured providers came to.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReport {
    /// Config names of the listed providers, in order.
    pub listed: Vec<&'static str>,
    /// Those registered, in order (the CPU provider is always there, behind them).
    pub registered: Vec<&'static str>,
    /// Those that could not be registered.
    pub skipped: Vec<Skipped>,
    /// TensorRT's engine folder, or why it cannot be used; `None` without TensorRT.
    pub engine_cache: Option<Result<EngineCache, String>>,
}

impl ProviderReport {
    /// The provider the model runs on: the first one registered, else the CPU.
    pub fn in_use(&self) -> &'static str {
        self.registered.first().copied().unwrap_or("cpu")
    }
}

/// A listed provider that could not be registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Config name (`tensorrt`).
    pub provider: &'static str,
    /// ONNX Runtime's name (`TensorrtExecutionProvider`).
    pub ep: &'static str,
    /// ONNX Runtime's error.
    pub reason: String,
}

/// The outcome of the last session opened in this process.
static LAST: Mutex<Option<ProviderReport>> = Mutex::new(None);

/// What the last session opened in this process registered; `None` before the first.
pub fn last_report() -> Option<ProviderReport> {
    LAST.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Whether the loaded ONNX Runtime was built with the TensorRT provider (which says nothing yet
/// about TensorRT's own libraries being there).
pub fn tensorrt_built_in() -> bool {
    TensorRT::is_available().unwrap_or(false)
}

/// Registers `config.providers` in order. A provider that cannot be registered is skipped,
/// unless it is `required`.
pub(super) fn register(mut builder: SessionBuilder, config: &ModelConfig) -> Result<SessionBuilder, InferError> {
    let mut report = ProviderReport {
        listed: config.providers.iter().map(Provider::name).collect(),
        registered: Vec::new(),
        skipped: Vec::new(),
        engine_cache: None,
    };
    for provider in &config.providers {
        let (dispatch, created) = match provider {
            // Always there, behind every other; registering it explicitly only adds a code path
            // (that aborted in ORT 1.22's device selection).
            Provider::Cpu => continue,
            Provider::Cuda { device_id, .. } => (CUDA::default().with_device_id(*device_id).build(), false),
            Provider::TensorRt(trt) => {
                let cache = prepare_cache(&config.path, trt);
                let created = matches!(cache, Ok((_, true)));
                let cache = cache.map(|(cache, _)| cache);
                let dispatch = tensorrt(trt, cache.as_ref().ok());
                report.engine_cache = Some(cache);
                (dispatch, created)
            }
        };
        let ep = dispatch.name();
        match builder.with_execution_providers([dispatch.error_on_failure()]) {
            Ok(b) => {
                builder = b;
                report.registered.push(provider.name());
            }
            Err(e) => {
                if let (true, Some(Ok(cache))) = (created, &report.engine_cache) {
                    cache.remove_if_empty();
                }
                if provider.required() {
                    return Err(InferError::ProviderUnavailable { provider: provider.name(), ep, reason: e.to_string() });
                }
                report.skipped.push(Skipped { provider: provider.name(), ep, reason: e.to_string() });
                builder = e.recover();
            }
        }
    }
    if let Some(Ok(cache)) = &report.engine_cache
        && report.registered.contains(&"tensorrt")
        && let Err(e) = cache.write_manifest()
    {
        tracing::warn!(dir = %cache.dir.display(), error = %e, "Cannot write the engine cache manifest.");
    }
    record(report);
    Ok(builder)
}

/// Computes the key and creates the folder before registration: ONNX Runtime creates only the
/// last level of a missing cache path and fails the provider when it cannot. An ONNX Runtime
/// without TensorRT gets no folder (the key is still shown by `check`).
fn prepare_cache(model: &Path, trt: &TensorRtConfig) -> Result<(EngineCache, bool), String> {
    let cache = EngineCache::for_model(model, trt).map_err(|e| format!("cannot read the model or calibration table: {e}"))?;
    if !tensorrt_built_in() {
        return Ok((cache, false));
    }
    let created = cache.create().map_err(|e| format!("cannot create {}: {e}", cache.dir.display()))?;
    Ok((cache, created))
}

fn tensorrt(trt: &TensorRtConfig, cache: Option<&EngineCache>) -> ExecutionProviderDispatch {
    let mut ep = TensorRT::default().with_fp16(trt.fp16);
    if let Some(int8) = &trt.int8 {
        // An absolute path: ONNX Runtime joins the name to the engine cache folder.
        ep = ep
            .with_int8(true)
            .with_int8_calibration_table_name(int8.table.display())
            .with_int8_use_native_calibration_table(int8.native);
    }
    if let Some(core) = trt.dla_core {
        ep = ep.with_dla(true).with_dla_core(core);
    }
    if let Some(cache) = cache {
        let dir = cache.dir.display().to_string();
        ep = ep
            .with_engine_cache(true)
            .with_engine_cache_path(&dir)
            .with_timing_cache(true)
            .with_timing_cache_path(&dir);
    }
    ep.build()
}

/// Logs the outcome unless a session before this one had the same (one per worker).
fn record(report: ProviderReport) {
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if last.as_ref() == Some(&report) {
        return;
    }
    let in_use = report.in_use();
    for s in &report.skipped {
        tracing::warn!(
            provider = s.provider, ep = s.ep, fallback = in_use, error = %s.reason,
            "Execution provider unavailable, skipped: inference falls back to the next one."
        );
    }
    tracing::info!(provider = in_use, registered = ?report.registered, "Inference runs on this execution provider.");
    match &report.engine_cache {
        Some(Ok(cache)) if report.registered.contains(&"tensorrt") => {
            let engine = if cache.has_engine() { "cached" } else { "to be built (minutes)" };
            tracing::info!(dir = %cache.dir.display(), key = %cache.key, engine, "TensorRT engine cache.");
        }
        Some(Err(e)) if report.registered.contains(&"tensorrt") => {
            tracing::warn!(error = %e, "TensorRT engine cache unusable: the engine is built at every start.");
        }
        _ => {}
    }
    *last = Some(report);
}
