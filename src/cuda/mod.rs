//! Frames in CUDA device memory (cargo feature `cuda`; NVIDIA desktop GPUs).
//!
//! With the feature on and a CUDA or TensorRT provider configured, a camera whose decoder is
//! `nvh264dec`/`nvh265dec` letterboxes on the GPU (`cudaconvertscale add-borders=true` to
//! `video/x-raw(memory:CUDAMemory),format=RGB`), and the appsink buffer is mapped for its device
//! address (`GST_MAP_CUDA`): that address is the model input, so the frame never crosses to
//! system memory. GStreamer and ONNX Runtime share the device's primary CUDA context (the one the
//! CUDA runtime, and so ONNX Runtime, uses): it is handed to the pipeline as its
//! `gst.cuda.context`, so the decoder allocates in the context the model runs in.
//!
//! Both libraries are opened at run time (`libcuda.so.1`, `libgstcuda-1.0.so.0`): a build with
//! the feature starts on a box without them and keeps frames in system memory, saying why.
//!
//! Not run here: this project's build machines have no NVIDIA GPU. What was and was not
//! verified is listed in the README ("Frames in device memory").

mod memory;

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::glib;
use libloading::Library;

use crate::config::{ModelConfig, Provider};
use crate::infer::InputKind;

pub use memory::{DeviceBatch, DeviceFrame, DeviceSlice, Part};

type CuResult = c_int;
type CuContext = *mut c_void;
type CuDevicePtr = u64;

/// The CUDA driver and GStreamer CUDA library entry points the device path uses.
struct Driver {
    cu_init: unsafe extern "C" fn(c_uint) -> CuResult,
    cu_device_get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult,
    cu_primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, c_int) -> CuResult,
    cu_ctx_push: unsafe extern "C" fn(CuContext) -> CuResult,
    cu_ctx_pop: unsafe extern "C" fn(*mut CuContext) -> CuResult,
    cu_mem_alloc: unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult,
    cu_mem_free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    cu_memcpy_dtod: unsafe extern "C" fn(CuDevicePtr, CuDevicePtr, usize) -> CuResult,
    cu_memcpy_htod: unsafe extern "C" fn(CuDevicePtr, *const c_void, usize) -> CuResult,
    cu_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    gst_cuda_load_library: unsafe extern "C" fn() -> glib::ffi::gboolean,
    gst_cuda_context_new_wrapped: unsafe extern "C" fn(CuContext, c_int) -> *mut gst::ffi::GstObject,
    gst_context_new_cuda_context: unsafe extern "C" fn(*mut gst::ffi::GstObject) -> *mut gst::ffi::GstContext,
    gst_is_cuda_memory: unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> glib::ffi::gboolean,
    /// Keep the libraries loaded for the process's lifetime: the pointers above point into them.
    _libraries: [Library; 2],
}

// SAFETY: plain function pointers into libraries that stay loaded; the CUDA driver API and
// GStreamer's CUDA library are thread-safe.
unsafe impl Send for Driver {}
unsafe impl Sync for Driver {}

impl Driver {
    fn load() -> Result<Driver, String> {
        // SAFETY: loading the system's CUDA driver and GStreamer's CUDA library runs their
        // initialisers, which have no preconditions; each symbol is read with its C signature
        // from cuda.h (the `_v2` ABI) and gst/cuda/*.h of GStreamer 1.22.
        unsafe {
            let cuda = Library::new("libcuda.so.1").map_err(|e| format!("libcuda.so.1: {e}"))?;
            let gst_cuda = Library::new("libgstcuda-1.0.so.0").map_err(|e| format!("libgstcuda-1.0.so.0: {e}"))?;
            macro_rules! sym {
                ($lib:expr, $name:literal) => {
                    *$lib.get($name).map_err(|e| format!("{}: {e}", $name))?
                };
            }
            Ok(Driver {
                cu_init: sym!(cuda, "cuInit"),
                cu_device_get: sym!(cuda, "cuDeviceGet"),
                cu_primary_ctx_retain: sym!(cuda, "cuDevicePrimaryCtxRetain"),
                cu_ctx_push: sym!(cuda, "cuCtxPushCurrent_v2"),
                cu_ctx_pop: sym!(cuda, "cuCtxPopCurrent_v2"),
                cu_mem_alloc: sym!(cuda, "cuMemAlloc_v2"),
                cu_mem_free: sym!(cuda, "cuMemFree_v2"),
                cu_memcpy_dtod: sym!(cuda, "cuMemcpyDtoD_v2"),
                cu_memcpy_htod: sym!(cuda, "cuMemcpyHtoD_v2"),
                cu_error_name: sym!(cuda, "cuGetErrorName"),
                gst_cuda_load_library: sym!(gst_cuda, "gst_cuda_load_library"),
                gst_cuda_context_new_wrapped: sym!(gst_cuda, "gst_cuda_context_new_wrapped"),
                gst_context_new_cuda_context: sym!(gst_cuda, "gst_context_new_cuda_context"),
                gst_is_cuda_memory: sym!(gst_cuda, "gst_is_cuda_memory"),
                _libraries: [cuda, gst_cuda],
            })
        }
    }

    /// `Ok` for CUDA_SUCCESS, else the error's name with what was being done.
    fn check(&self, result: CuResult, doing: &str) -> Result<(), String> {
        if result == 0 {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string, or leaves it null.
        unsafe { (self.cu_error_name)(result, &mut name) };
        let name = if name.is_null() {
            format!("CUDA error {result}")
        } else {
            // SAFETY: non-null: a static NUL-terminated string owned by the driver.
            unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
        };
        Err(format!("{doing}: {name}"))
    }

    /// Runs `f` with the device's context current on this thread.
    fn with_context<T>(&self, ctx: CuContext, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        // SAFETY: `ctx` is a retained primary context; push and pop are paired.
        self.check(unsafe { (self.cu_ctx_push)(ctx) }, "cuCtxPushCurrent")?;
        let out = f();
        let mut popped: CuContext = std::ptr::null_mut();
        // SAFETY: pops the context pushed above.
        unsafe { (self.cu_ctx_pop)(&mut popped) };
        out
    }
}

/// One GPU's primary context, shared by the capture pipelines and ONNX Runtime.
pub struct DeviceContext {
    device: i32,
    ctx: CuContext,
    driver: &'static Driver,
    /// `gst.cuda.context` wrapping `ctx`, set on every camera pipeline.
    gst_context: gst::Context,
}

// SAFETY: a CUDA context handle may be used from any thread (it is pushed where used).
unsafe impl Send for DeviceContext {}
unsafe impl Sync for DeviceContext {}

impl std::fmt::Debug for DeviceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceContext").field("device", &self.device).finish()
    }
}

impl DeviceContext {
    /// The primary context of CUDA device `device`, opened once per process and device 0 to
    /// 15; the context is retained for the process's lifetime.
    ///
    /// # Errors
    /// Why frames cannot be kept in device memory: a library or symbol missing, no such
    /// device, or the driver refusing.
    pub fn open(device: i32) -> Result<&'static DeviceContext, String> {
        static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
        static CONTEXTS: [OnceLock<Result<DeviceContext, String>>; 16] = [const { OnceLock::new() }; 16];
        let slot = CONTEXTS.get(device as usize).ok_or_else(|| format!("CUDA device {device}: only 0 to 15 are supported"))?;
        let driver = DRIVER.get_or_init(Driver::load).as_ref().map_err(Clone::clone)?;
        slot.get_or_init(|| Self::retain(driver, device)).as_ref().map_err(Clone::clone)
    }

    fn retain(driver: &'static Driver, device: i32) -> Result<DeviceContext, String> {
        // GstContext and GstCudaContext are GStreamer types: GStreamer must be initialised.
        gst::init().map_err(|e| format!("GStreamer: {e}"))?;
        // SAFETY: C calls with out-pointers to locals; each result is checked.
        unsafe {
            driver.check((driver.cu_init)(0), "cuInit")?;
            let mut handle: c_int = 0;
            driver.check((driver.cu_device_get)(&mut handle, device), "cuDeviceGet")?;
            let mut ctx: CuContext = std::ptr::null_mut();
            driver.check((driver.cu_primary_ctx_retain)(&mut ctx, handle), "cuDevicePrimaryCtxRetain")?;
            if (driver.gst_cuda_load_library)() == 0 {
                return Err("gst_cuda_load_library failed: GStreamer cannot use the CUDA driver".into());
            }
            let wrapped = (driver.gst_cuda_context_new_wrapped)(ctx, handle);
            if wrapped.is_null() {
                return Err(format!("gst_cuda_context_new_wrapped failed for device {device}"));
            }
            let raw = (driver.gst_context_new_cuda_context)(wrapped);
            // The GstContext holds its own reference to the wrapped context.
            gst::ffi::gst_object_unref(wrapped.cast());
            if raw.is_null() {
                return Err(format!("gst_context_new_cuda_context failed for device {device}"));
            }
            let gst_context = gst::Context::from_glib_full(raw);
            Ok(DeviceContext { device, ctx, driver, gst_context })
        }
    }

    /// The CUDA device number.
    pub fn device(&self) -> i32 {
        self.device
    }

    /// The context to set on a pipeline so that its CUDA elements use this device's context.
    pub fn gst_context(&self) -> &gst::Context {
        &self.gst_context
    }
}

/// The GPU context frames are kept in for this model, given the provider the loaded session
/// runs on, or why they stay in system memory.
///
/// # Errors
/// Why frames stay in system memory, for the log and `roadsightd check`.
pub fn for_model(model: &ModelConfig, input: InputKind) -> Result<&'static DeviceContext, String> {
    let in_use = crate::infer::provider_report().map_or("cpu", |r| r.in_use());
    DeviceContext::open(device_for(&model.providers, input, in_use)?)
}

/// The CUDA device frames can stay on: the provider in use must read device memory (CUDA or
/// TensorRT; the first CUDA provider's device, else device 0, TensorRT's default) and the model
/// must take the frame as it is (uint8 NHWC).
fn device_for(providers: &[Provider], input: InputKind, in_use: &str) -> Result<i32, String> {
    if !matches!(in_use, "cuda" | "tensorrt") {
        return Err(format!("the {in_use} provider reads host memory"));
    }
    if input != InputKind::U8Nhwc {
        return Err(format!("the model takes {input:?}; frames in device memory need uint8 NHWC"));
    }
    let cuda = providers.iter().find_map(|p| match p {
        Provider::Cuda { device_id, .. } => Some(*device_id),
        _ => None,
    });
    Ok(cuda.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stay_on_the_device_only_for_a_gpu_provider_and_a_uint8_nhwc_model() {
        let cuda = [Provider::Cuda { device_id: 1, required: false }, Provider::Cpu];
        assert_eq!(device_for(&cuda, InputKind::U8Nhwc, "cuda"), Ok(1));
        assert_eq!(device_for(&[Provider::Cpu], InputKind::U8Nhwc, "tensorrt"), Ok(0));
        let fell_back = device_for(&cuda, InputKind::U8Nhwc, "cpu").unwrap_err();
        assert!(fell_back.contains("cpu provider reads host memory"), "{fell_back}");
        let float = device_for(&cuda, InputKind::F32Nchw, "cuda").unwrap_err();
        assert!(float.contains("need uint8 NHWC"), "{float}");
    }

    #[test]
    fn a_device_number_out_of_range_is_refused_before_the_driver_is_touched() {
        let err = DeviceContext::open(16).unwrap_err();
        assert!(err.contains("only 0 to 15"), "{err}");
        assert!(DeviceContext::open(-1).is_err());
    }
}
