//! `roadsightd warmup`: builds the TensorRT engine ahead of time, so that the daemon's first
//! start after an image update or a model change loads it in seconds instead of building it for
//! minutes. It opens one session as the daemon does (with TensorRT that builds the engine, or
//! loads it from `<engine_cache>/<key>/`), then runs the model on a blank frame (TensorRT
//! builds on the first run for inputs with dynamic dimensions), at batch 1 and, for a model with
//! a dynamic batch dimension, at `model.max_batch`. Progress goes to `out`; under systemd the
//! start timeout is extended while it works, as the daemon's own model load does.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::{Config, ModelConfig, Provider};
use crate::infer::{
    Detector, EngineCache, InferError, Input, Letterbox, Pixels, load_runtime, platform_summary, provider_report, tensorrt_built_in,
};
use crate::systemd::Notifier;

/// A progress line this often while the engine builds…
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// … each pushing systemd's start timeout this far ahead.
const EXTEND_BY: Duration = Duration::from_secs(30);

/// Builds (or checks) the engine of `config.model`; progress lines go to `out`.
///
/// # Errors
/// As loading the model in the daemon: [`InferError::Model`] for a model that does not fit,
/// [`InferError::Runtime`] or [`InferError::ProviderUnavailable`] for a missing library or
/// required provider, [`InferError::Run`] when the model fails on the blank frame.
pub fn warmup(config: &Config, notifier: Notifier, out: &mut dyn Write) -> Result<(), InferError> {
    let model = &config.model;
    let name = model.path.display();
    let trt = model.providers.iter().find_map(|p| match p {
        Provider::TensorRt(t) => Some(t),
        _ => None,
    });
    let Some(trt) = trt else {
        let listed: Vec<&str> = model.providers.iter().map(Provider::name).collect();
        let why = format!("no execution provider in model.providers ({}) needs an engine", listed.join(", "));
        return without_engine(model, &why, notifier, out);
    };
    load_runtime(model)?;
    if !tensorrt_built_in() {
        let why = format!("this ONNX Runtime ({}) has no TensorRT provider, so no engine is needed", platform_summary().0);
        return without_engine(model, &why, notifier, out);
    }
    let cache = EngineCache::for_model(&model.path, trt).map_err(|e| InferError::Model {
        field: "model.path",
        path: model.path.clone(),
        reason: format!("cannot read it or the INT8 calibration table for the engine key: {e}"),
    })?;
    if cache.has_engine() {
        say(out, &format!("TensorRT engine for {name} (key {}) is cached in {}; loading it", cache.key, cache.dir.display()));
    } else {
        say(out, &format!("building TensorRT engine for {name} (key {})…", cache.key));
    }
    let took = with_progress(model, notifier, out, "Building TensorRT engine")?.as_secs_f64();
    let report = provider_report();
    if let Some(report) = report.filter(|r| !r.registered.contains(&"tensorrt")) {
        let skipped = report.skipped.iter().find(|s| s.provider == "tensorrt");
        let reason = skipped.map_or("not registered", |s| s.reason.as_str());
        let in_use = report.in_use();
        say(out, &format!("TensorRT could not be registered ({reason}): no engine built; the model runs on {in_use}"));
    } else if cache.has_engine() {
        say(out, &format!("done in {took:.1} s, cached at {}", cache.dir.display()));
    } else {
        let dir = cache.dir.display();
        say(out, &format!("done in {took:.1} s, but {dir} holds no engine: TensorRT took no part of the model (see the log)"));
    }
    Ok(())
}

/// Nothing to build: loads the model once, as the daemon would, and says where it runs.
fn without_engine(model: &ModelConfig, why: &str, notifier: Notifier, out: &mut dyn Write) -> Result<(), InferError> {
    say(out, &format!("{why}; loading {} once to check it", model.path.display()));
    let took = with_progress(model, notifier, out, "Loading model")?.as_secs_f64();
    let in_use = provider_report().map_or("cpu", |r| r.in_use());
    say(out, &format!("done in {took:.1} s, the model runs on {in_use}; nothing to cache"));
    Ok(())
}

fn say(out: &mut dyn Write, line: &str) {
    // Progress only: a closed stderr must not fail the build.
    let _ = writeln!(out, "roadsightd warmup: {line}");
}

/// Loads the model and runs it once on a separate thread; meanwhile a line every
/// [`PROGRESS_EVERY`] and a start timeout extension for systemd. Returns how long it took.
fn with_progress(
    model: &ModelConfig,
    notifier: Notifier,
    out: &mut dyn Write,
    doing: &str,
) -> Result<Duration, InferError> {
    let started = Instant::now();
    let (done, finished) = mpsc::channel();
    let model = model.clone();
    std::thread::Builder::new()
        .name("roadsightd-warmup".into())
        .spawn(move || {
            let _ = done.send(load_and_run(&model));
        })
        .map_err(|e| InferError::Runtime(format!("cannot start the warm-up thread: {e}")))?;
    notifier.status(doing);
    loop {
        match finished.recv_timeout(PROGRESS_EVERY) {
            Ok(result) => return result.map(|()| started.elapsed()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let waited = started.elapsed().as_secs();
                say(out, &format!("{doing}: {waited} s"));
                notifier.extend_timeout(EXTEND_BY, &format!("{doing} ({waited} s)"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(InferError::Runtime("the warm-up thread stopped without a result".into()));
            }
        }
    }
}

/// One session, one run on a blank frame, and one at the largest batch the daemon will send.
fn load_and_run(model: &ModelConfig) -> Result<(), InferError> {
    let mut detector = Detector::open(model)?;
    let (w, h) = (detector.shape().width, detector.shape().height);
    let blank = vec![0u8; (w * h * 3) as usize];
    let letterbox = Letterbox::centered(w, h, w, h);
    let input = Input { pixels: Pixels::Host(&blank), letterbox: &letterbox, confidence: 1.0, allowed: None };
    let mut sizes = vec![1];
    if detector.max_batch() > 1 {
        sizes.push(detector.max_batch());
    }
    for n in sizes {
        let mut failed = None;
        detector.detect_batch(n, |_| input, |_, result| {
            if let Err(e) = result {
                failed = Some(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}
