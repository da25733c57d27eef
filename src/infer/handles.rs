//! ONNX Runtime tensor handles over host memory, kept from run to run.
//!
//! Wrapping memory as an input tensor costs a heap allocation in `ort` (the value's shared
//! handle) on every run. The memory an input lives in repeats: a camera's decoded frames come
//! from the scaler's small buffer pool, and batches are gathered into a buffer allocated once.
//! So a handle is made once per (address, shape, element type) and reused whenever a run's
//! input sits at that same place again. A handle only records the address: ONNX Runtime reads
//! the memory during the run it is passed to, when the caller holds it mapped, and never
//! otherwise.

use ort::memory::MemoryInfo;
use ort::session::SessionInputValue;
use ort::value::{DynValueTypeMarker, PrimitiveTensorElementType, Shape, TensorElementType, TensorRefMut, ValueRefMut};

/// Handles kept at most; when full, the oldest is replaced. Covers the scaler pools of 16
/// cameras (2 buffers each in steady state) and the batch buffer at every batch size.
const CAPACITY: usize = 48;

/// Where an input's memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Host,
    /// CUDA device memory, by device number.
    #[cfg(feature = "cuda")]
    Cuda(i32),
}

struct Handle {
    memory: Memory,
    address: usize,
    dims: [i64; 4],
    element: TensorElementType,
    value: ValueRefMut<'static, DynValueTypeMarker>,
    /// Where ONNX Runtime reads the data from, as it reported when the handle was made.
    seen_at: usize,
}

/// The handles, oldest replaced first when all [`CAPACITY`] are taken.
pub(crate) struct TensorHandles {
    handles: Vec<Handle>,
    /// The slot the next new handle replaces once the cache is full.
    next: usize,
    /// Handles made so far: a steady state makes none.
    made: u64,
}

impl TensorHandles {
    pub(crate) fn new() -> Self {
        Self { handles: Vec::with_capacity(CAPACITY), next: 0, made: 0 }
    }

    /// Handles made so far.
    pub(crate) fn made(&self) -> u64 {
        self.made
    }

    /// The input tensor of shape `dims` over `data` in host memory, and the address ONNX
    /// Runtime reads it from. `data` must hold exactly the elements of `dims` (the caller
    /// checks sizes). Reuses the handle made for the same place and shape.
    pub(crate) fn view<'a, T: PrimitiveTensorElementType + std::fmt::Debug>(
        &'a mut self,
        dims: [i64; 4],
        data: &'a [T],
    ) -> Result<(SessionInputValue<'a>, usize), ort::Error> {
        assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "tensor shape and data disagree");
        // SAFETY: `data` holds the elements of `dims` and stays borrowed for `'a`, as long as
        // the returned value.
        unsafe { self.get::<T>(Memory::Host, data.as_ptr() as usize, dims) }
    }

    /// As [`TensorHandles::view`], for a uint8 tensor in the memory of CUDA device `device`.
    ///
    /// # Safety
    /// `address` must hold the elements of `dims` in that device's memory, and stay valid until
    /// the run the returned value is passed to is over.
    #[cfg(feature = "cuda")]
    pub(crate) unsafe fn device_view(
        &mut self,
        device: i32,
        address: usize,
        dims: [i64; 4],
    ) -> Result<(SessionInputValue<'_>, usize), ort::Error> {
        // SAFETY: as the caller promised.
        unsafe { self.get::<u8>(Memory::Cuda(device), address, dims) }
    }

    /// # Safety
    /// `address` holds the elements of `dims` in `memory` until the run is over.
    unsafe fn get<T: PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        memory: Memory,
        address: usize,
        dims: [i64; 4],
    ) -> Result<(SessionInputValue<'_>, usize), ort::Error> {
        let element = T::into_tensor_element_type();
        let found = self
            .handles
            .iter()
            .position(|h| h.memory == memory && h.address == address && h.dims == dims && h.element == element);
        let slot = match found {
            Some(slot) => slot,
            None => self.make::<T>(memory, address, dims)?,
        };
        let handle = &self.handles[slot];
        Ok((SessionInputValue::from(&*handle.value), handle.seen_at))
    }

    fn make<T: PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        memory: Memory,
        address: usize,
        dims: [i64; 4],
    ) -> Result<usize, ort::Error> {
        let info = match memory {
            Memory::Host => MemoryInfo::default(),
            #[cfg(feature = "cuda")]
            Memory::Cuda(device) => {
                use ort::memory::{AllocationDevice, AllocatorType, MemoryType};
                MemoryInfo::new(AllocationDevice::CUDA, device, AllocatorType::Device, MemoryType::Default)?
            }
        };
        // SAFETY: the handle only records `address` and `dims`. `get` hands it to a run only
        // while its caller guarantees that memory at that very address holds that shape for
        // the run; ONNX Runtime reads an input during the run and never writes through it.
        let tensor = unsafe { TensorRefMut::<T>::from_raw(info, address as *mut _, Shape::new(dims))? };
        let seen_at = tensor.data_ptr() as usize;
        let handle = Handle { memory, address, dims, element: T::into_tensor_element_type(), value: tensor.into_dyn(), seen_at };
        self.made += 1;
        if self.handles.len() < CAPACITY {
            self.handles.push(handle);
            return Ok(self.handles.len() - 1);
        }
        let slot = self.next;
        self.handles[slot] = handle;
        self.next = (slot + 1) % CAPACITY;
        Ok(slot)
    }
}
