//! A frame mapped for its CUDA device address, and the device buffer a batch is gathered into.

use gstreamer as gst;

use super::{CuDevicePtr, DeviceContext};

/// `GST_MAP_CUDA` (gst/cuda/gstcudamemory.h): map for the device address, not for host memory.
const GST_MAP_CUDA: gst::ffi::GstMapFlags = gst::ffi::GST_MAP_FLAG_LAST << 1;

/// Where a frame's pixels lie in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSlice {
    pub address: CuDevicePtr,
    pub len: usize,
    /// CUDA device number.
    pub device: i32,
}

/// An appsink buffer of CUDA memory, mapped for its device address until dropped.
pub struct DeviceFrame {
    buffer: gst::Buffer,
    info: gst::ffi::GstMapInfo,
    device: i32,
}

// SAFETY: the map info only describes the mapping that this value owns and releases once; the
// buffer is a GStreamer buffer (thread-safe refcount).
unsafe impl Send for DeviceFrame {}
unsafe impl Sync for DeviceFrame {}

impl DeviceFrame {
    /// Maps `buffer` for its device address when it is a single block of CUDA memory; gives the
    /// buffer back otherwise (its memory is then mapped for the host as usual).
    pub fn map(buffer: gst::Buffer, context: &'static DeviceContext) -> Result<DeviceFrame, gst::Buffer> {
        let driver = context.driver;
        let raw = buffer.as_mut_ptr();
        // SAFETY: `raw` is a valid buffer for as long as `buffer` lives, which the returned
        // value owns; the map is undone exactly once, in Drop.
        unsafe {
            if gst::ffi::gst_buffer_n_memory(raw) != 1
                || (driver.gst_is_cuda_memory)(gst::ffi::gst_buffer_peek_memory(raw, 0)) == 0
            {
                return Err(buffer);
            }
            let mut info = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
            if gst::ffi::gst_buffer_map(raw, info.as_mut_ptr(), gst::ffi::GST_MAP_READ | GST_MAP_CUDA) == 0 {
                return Err(buffer);
            }
            Ok(DeviceFrame { buffer, info: info.assume_init(), device: context.device })
        }
    }

    /// The frame's pixels on the device.
    pub fn slice(&self) -> DeviceSlice {
        DeviceSlice { address: self.info.data as CuDevicePtr, len: self.info.size, device: self.device }
    }
}

impl Drop for DeviceFrame {
    fn drop(&mut self) {
        // SAFETY: undoes the map made in `DeviceFrame::map`, on the same buffer.
        unsafe { gst::ffi::gst_buffer_unmap(self.buffer.as_mut_ptr(), &mut self.info) };
    }
}

/// One part of a batch: a frame on the device or, from a camera decoded on the CPU, in host
/// memory.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    Host(&'a [u8]),
    Device(DeviceSlice),
}

/// A device buffer that batches are gathered into, allocated once for the largest batch.
pub struct DeviceBatch {
    context: &'static DeviceContext,
    address: CuDevicePtr,
    capacity: usize,
}

// SAFETY: a device address; every use pushes the owning context first.
unsafe impl Send for DeviceBatch {}

impl DeviceBatch {
    /// Allocates `capacity` bytes on `context`'s device.
    ///
    /// # Errors
    /// The driver's error, named.
    pub fn new(context: &'static DeviceContext, capacity: usize) -> Result<DeviceBatch, String> {
        let driver = context.driver;
        let mut address: CuDevicePtr = 0;
        // SAFETY: out-pointer to a local; the allocation is freed in Drop.
        driver.with_context(context.ctx, || driver.check(unsafe { (driver.cu_mem_alloc)(&mut address, capacity) }, "cuMemAlloc"))?;
        Ok(DeviceBatch { context, address, capacity })
    }

    /// Copies `n` parts of `size` bytes each one after another from the start of the buffer
    /// (device to device, or host to device) and returns where the batch lies.
    ///
    /// # Errors
    /// A part of the wrong size, a batch larger than the buffer, or the driver's error.
    pub fn gather<'a>(&mut self, n: usize, size: usize, part: impl Fn(usize) -> Part<'a>) -> Result<DeviceSlice, String> {
        if n * size > self.capacity {
            return Err(format!("batch of {} bytes, the device buffer holds {}", n * size, self.capacity));
        }
        let driver = self.context.driver;
        driver.with_context(self.context.ctx, || {
            for i in 0..n {
                let dst = self.address + (i * size) as CuDevicePtr;
                // SAFETY: `dst..dst + size` lies inside the allocation (checked above); the
                // sources are `size` bytes (checked per part).
                let result = match part(i) {
                    Part::Device(src) if src.len == size => unsafe { (driver.cu_memcpy_dtod)(dst, src.address, size) },
                    Part::Host(src) if src.len() == size => unsafe { (driver.cu_memcpy_htod)(dst, src.as_ptr().cast(), size) },
                    _ => return Err(format!("frame {i} of the batch is not {size} bytes")),
                };
                driver.check(result, "cuMemcpy")?;
            }
            Ok(())
        })?;
        Ok(DeviceSlice { address: self.address, len: n * size, device: self.context.device })
    }
}

impl Drop for DeviceBatch {
    fn drop(&mut self) {
        let driver = self.context.driver;
        // SAFETY: frees the allocation made in `new`, in its context.
        let _ = driver.with_context(self.context.ctx, || driver.check(unsafe { (driver.cu_mem_free)(self.address) }, "cuMemFree"));
    }
}
