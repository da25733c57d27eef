//! The ONNX Runtime session: loading the library, registering execution providers in the
//! configured order, and checking the model's input and output against what we feed it.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ort::error::ErrorCode;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::TensorElementType;

use super::InferError;
use super::input::InputKind;
use crate::config::ModelConfig;

/// What the model takes and gives, read from the session.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    pub input_name: String,
    /// How frames become the input tensor.
    pub input: InputKind,
    /// Input height and width in pixels.
    pub height: u32,
    /// Whether the batch dimension is dynamic (-1): the model takes batches of any size.
    pub dynamic_batch: bool,
    pub width: u32,
    pub output_name: String,
    /// Output shape as the model declares it (-1 for dynamic dimensions).
    pub output_shape: Vec<i64>,
}

/// ONNX Runtime allows one environment per process; every session (one per inference worker,
/// `check`, `warmup`) shares it.
static RUNTIME: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads `libonnxruntime.so` once per process: the configured path, else `ORT_DYLIB_PATH`,
/// else the system's library. Later calls share the first environment.
pub(crate) fn load_runtime(config: &ModelConfig) -> Result<Environment, InferError> {
    let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = runtime.as_ref() {
        return Ok(env.clone());
    }
    let path = match (&config.ort_library, std::env::var_os("ORT_DYLIB_PATH")) {
        (Some(path), _) => path.clone(),
        (None, Some(env)) => env.into(),
        (None, None) => "libonnxruntime.so".into(),
    };
    let builder = ort::init_from(&path)
        .map_err(|e| InferError::Runtime(format!("cannot load {}: {e}", path.display())))?;
    let env = builder.with_name("roadsightd").with_telemetry(false).build()?;
    super::platform::read_onnxruntime_version(&path);
    *runtime = Some(env.clone());
    Ok(env)
}

/// Builds a session for `config.path` with the configured providers, in order. A provider
/// that cannot be registered is logged once and skipped unless marked `required`
/// ([`super::providers`]).
pub(crate) fn open(env: &Environment, config: &ModelConfig) -> Result<Session, InferError> {
    let mut builder = Session::builder(env)?;
    if let Some(threads) = intra_threads(config) {
        builder = builder.with_intra_threads(threads).map_err(ort::Error::from)?;
    }
    // Spinning keeps a core busy between runs for no gain at camera frame rates: measured on
    // the 2-core box, 2 threads, 185 vs 120 ms CPU per run at the same latency.
    builder = builder.with_intra_op_spinning(config.spin).map_err(ort::Error::from)?;
    // The memory pattern pre-plans one block for every activation of a run and keeps it in the
    // arena, rounded up: measured on the default model, 145 vs 105 MiB RSS for ORT alone at the
    // same CPU per run (96-106 vs 106-112 ms, within run-to-run noise).
    builder = builder.with_memory_pattern(false).map_err(ort::Error::from)?;
    builder = super::providers::register(builder, config)?;
    let session = {
        let _named = ThreadName::set(c"ort-intra");
        open_file(builder, &config.path)?
    };
    release_load_garbage();
    Ok(session)
}

/// Loading parses the whole model file and copies its weights; the parse buffers are freed but
/// glibc keeps the pages in the loading thread's arena. Handing them back is worth 25 MiB of
/// RSS on the default model, once per session.
fn release_load_garbage() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// ONNX Runtime makes a session's intra-op threads while building it, and on Linux a new thread
/// takes the name of the thread that makes it: without this they show in `top -H`, perf and
/// `/proc` under the async runtime's name. Naming the building thread for the while labels them.
struct ThreadName {
    #[cfg(target_os = "linux")]
    previous: [u8; 16],
}

impl ThreadName {
    fn set(name: &std::ffi::CStr) -> ThreadName {
        #[cfg(target_os = "linux")]
        {
            let mut previous = [0u8; 16];
            // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included; PR_SET_NAME reads a
            // NUL-terminated string and truncates it to 15 bytes.
            unsafe {
                libc::prctl(libc::PR_GET_NAME, previous.as_mut_ptr());
                libc::prctl(libc::PR_SET_NAME, name.as_ptr());
            }
            ThreadName { previous }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            ThreadName {}
        }
    }
}

impl Drop for ThreadName {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: `previous` is what PR_GET_NAME wrote, NUL-terminated.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, self.previous.as_ptr());
        }
    }
}

/// Intra-op threads per session: as configured, else ONNX Runtime's choice (one per core) for
/// a single worker, and the cores shared out between several.
pub(super) fn intra_threads(config: &ModelConfig) -> Option<usize> {
    if config.threads > 0 {
        return Some(config.threads);
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (config.workers > 1).then(|| (cores / config.workers).max(1))
}

/// A model that cannot be read or built is a config error (exit 78: systemd does not restart
/// into it); a device or provider that fails while building the session (GPU out of memory at
/// boot, a TensorRT engine build that failed) is not the file's fault (exit 69: restarted).
fn open_file(mut builder: SessionBuilder, path: &Path) -> Result<Session, InferError> {
    builder.commit_from_file(path).map_err(|e| match e.code() {
        ErrorCode::ExecutionProviderFailure | ErrorCode::RuntimeException | ErrorCode::EngineError | ErrorCode::DeviceReset => {
            InferError::Runtime(format!("building the session for {}: {e}", path.display()))
        }
        _ => InferError::Model { field: "model.path", path: path.to_owned(), reason: e.to_string() },
    })
}

/// Reads the input and output the daemon uses and checks the input is an NHWC RGB image.
pub(crate) fn model_shape(session: &Session, path: &Path) -> Result<ModelShape, InferError> {
    let bad = |reason: String| InferError::Model { field: "model.path", path: path.to_owned(), reason };
    let [input] = session.inputs() else {
        return Err(bad(format!("expected one input, the model has {}", session.inputs().len())));
    };
    let Some(output) = session.outputs().first() else {
        return Err(bad("the model has no output".into()));
    };
    let in_type = input.dtype();
    let dims: Vec<i64> = in_type.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let u8_input = match in_type.tensor_type() {
        Some(TensorElementType::Uint8) => true,
        Some(TensorElementType::Float32) => false,
        other => {
            return Err(bad(format!("input `{}` must be uint8 or float32, is {other:?}", input.name())));
        }
    };
    let Some((kind, height, width)) = InputKind::from_shape(u8_input, &dims) else {
        return Err(bad(format!(
            "input `{}` must be an RGB image, [1, height, width, 3] or [1, 3, height, width], is {dims:?}",
            input.name()
        )));
    };
    let output_shape = output.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    Ok(ModelShape {
        input_name: input.name().to_owned(),
        input: kind,
        dynamic_batch: dims.first() == Some(&-1),
        height,
        width,
        output_name: output.name().to_owned(),
        output_shape,
    })
}
