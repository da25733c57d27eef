//! What this box runs a model with, as far as a TensorRT engine cares: the ONNX Runtime version,
//! the TensorRT version and the GPU. Read at run time, never assumed from the build:
//!
//! - ONNX Runtime: `OrtGetApiBase()->GetVersionString()` of the library already loaded.
//! - TensorRT: `getInferLibMajorVersion`/`Minor`/`Patch`/`Build` (else `getInferLibVersion`) of
//!   the first of `libnvinfer.so.10`, `.so.11`, `.so.9`, `.so.8`, `.so` the dynamic loader finds
//!   (the search path ONNX Runtime's TensorRT provider also loads it from); `none` without one.
//! - GPU: the `Model:` line of every `/proc/driver/nvidia/gpus/<PCI address>/information` (the
//!   NVIDIA driver's, x86 GPUs), in PCI address order, and `/proc/device-tree/model` (a Jetson
//!   module names itself there); joined with ` + `, `none` without either.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Written when `libonnxruntime.so` is loaded; `unknown` until then.
static ORT_VERSION: Mutex<Option<String>> = Mutex::new(None);

/// Reads and remembers the version of the ONNX Runtime library at `path`, which the process has
/// just loaded.
pub(crate) fn read_onnxruntime_version(path: &Path) {
    let version = onnxruntime_version(path).unwrap_or_else(|| "unknown".into());
    *ORT_VERSION.lock().unwrap_or_else(PoisonError::into_inner) = Some(version);
}

/// ONNX Runtime's own version string, e.g. `1.23.2`.
pub(crate) fn onnxruntime() -> String {
    let version = ORT_VERSION.lock().unwrap_or_else(PoisonError::into_inner);
    version.clone().unwrap_or_else(|| "unknown".into())
}

/// TensorRT's version, e.g. `10.3.0.30`, or `none` where no libnvinfer loads. Read once.
pub(crate) fn tensorrt() -> String {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| tensorrt_version().unwrap_or_else(|| "none".into())).clone()
}

/// The GPU(s) an engine would be built for, or `none`. Read once.
pub(crate) fn gpu() -> String {
    static GPU: OnceLock<String> = OnceLock::new();
    GPU.get_or_init(read_gpu).clone()
}

fn onnxruntime_version(path: &Path) -> Option<String> {
    // RTLD_NOLOAD: the library ort loaded, never a second copy.
    let lib = Library::open(path.to_str()?, libc::RTLD_NOLOAD | libc::RTLD_LAZY)?;
    let get_base = lib.symbol("OrtGetApiBase")?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release; the library
    // stays loaded while `lib` lives, and the version string is static inside it.
    unsafe {
        let get_base: extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(get_base);
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let text = ((*base).GetVersionString)();
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

fn tensorrt_version() -> Option<String> {
    let names = ["libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so.9", "libnvinfer.so.8", "libnvinfer.so"];
    let lib = names.iter().find_map(|name| Library::open(name, libc::RTLD_LAZY | libc::RTLD_LOCAL))?;
    let call = |name: &str| {
        // SAFETY: TensorRT's version functions are `extern "C" int32_t f() noexcept`.
        lib.symbol(name).map(|f| unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(f)() })
    };
    let parts = ["getInferLibMajorVersion", "getInferLibMinorVersion", "getInferLibPatchVersion", "getInferLibBuildVersion"];
    let parts: Vec<c_int> = parts.iter().map_while(|name| call(name)).collect();
    if parts.len() >= 2 {
        let parts: Vec<String> = parts.iter().map(c_int::to_string).collect();
        return Some(parts.join("."));
    }
    call("getInferLibVersion").map(decode_version)
}

/// `getInferLibVersion()`: major × 1000 + minor × 100 + patch up to TensorRT 9, major × 10000 +
/// minor × 100 + patch from 10.
fn decode_version(v: c_int) -> String {
    let (major, minor) = if v >= 100_000 { (v / 10_000, v / 100 % 100) } else { (v / 1000, v / 100 % 10) };
    format!("{major}.{minor}.{}", v % 100)
}

fn read_gpu() -> String {
    let mut boards: Vec<(String, String)> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let info = std::fs::read_to_string(entry.path().join("information")).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), gpu_model(&info)?))
        })
        .collect();
    boards.sort();
    let mut names: Vec<String> = boards.into_iter().map(|(_, model)| model).collect();
    if let Some(model) = std::fs::read("/proc/device-tree/model").ok().and_then(|b| device_tree_model(&b)) {
        names.push(model);
    }
    if names.is_empty() { "none".into() } else { names.join(" + ") }
}

/// The `Model:` line of the NVIDIA driver's `information` file.
fn gpu_model(information: &str) -> Option<String> {
    let model = information.lines().find_map(|l| l.strip_prefix("Model:"))?.trim();
    (!model.is_empty()).then(|| model.to_owned())
}

/// `/proc/device-tree/model` is NUL-terminated.
fn device_tree_model(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let model = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!model.is_empty()).then(|| model.to_owned())
}

/// A `dlopen` handle, closed on drop.
struct Library(*mut c_void);

impl Library {
    fn open(name: &str, flags: c_int) -> Option<Library> {
        let name = CString::new(name).ok()?;
        // SAFETY: a valid C string; the handle is checked for NULL.
        let handle = unsafe { libc::dlopen(name.as_ptr(), flags) };
        // Not `then_some`: it would build (and drop, so dlclose) a NULL handle.
        if handle.is_null() { None } else { Some(Library(handle)) }
    }

    fn symbol(&self, name: &str) -> Option<*mut c_void> {
        let name = CString::new(name).ok()?;
        // SAFETY: `self.0` is a live handle from dlopen.
        let symbol = unsafe { libc::dlsym(self.0, name.as_ptr() as *const c_char) };
        (!symbol.is_null()).then_some(symbol)
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: a handle from dlopen, closed once.
        unsafe { libc::dlclose(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_names_the_gpu_model() {
        let info = "Model: \t\t NVIDIA GeForce RTX 3060\nIRQ:   \t\t 130\nGPU UUID: \t GPU-1234\n";
        assert_eq!(gpu_model(info).as_deref(), Some("NVIDIA GeForce RTX 3060"));
        assert_eq!(gpu_model("IRQ: 1\n"), None);
    }

    #[test]
    fn a_device_tree_model_loses_its_nul() {
        let model = device_tree_model(b"NVIDIA Jetson AGX Orin Developer Kit\0");
        assert_eq!(model.as_deref(), Some("NVIDIA Jetson AGX Orin Developer Kit"));
        assert_eq!(device_tree_model(b"\0"), None);
    }

    #[test]
    fn tensorrt_version_numbers_decode_before_and_after_10() {
        assert_eq!(decode_version(8601), "8.6.1");
        assert_eq!(decode_version(100300), "10.3.0");
    }

    #[test]
    fn an_onnxruntime_not_loaded_yet_is_not_loaded_to_read_its_version() {
        // RTLD_NOLOAD: only the library ort already loaded is asked.
        assert_eq!(onnxruntime_version(Path::new("/nonexistent/libonnxruntime.so")), None);
    }
}
