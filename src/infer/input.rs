//! From letterboxed RGB frames to the model's input tensor.
//!
//! A uint8 NHWC model takes the mapped GStreamer buffer as it is (zero copy), in host memory or,
//! with the `cuda` feature, in device memory. Batches and other layouts cost one pass into a
//! buffer allocated once: float32 NHWC gets raw 0–255 values (as the TensorFlow-exported
//! CenterNet expects), NCHW layouts are planar, and float32 NCHW is scaled to 0–1 (the YOLO
//! convention).

use ort::session::SessionInputValue;

use super::InferError;
use super::handles::TensorHandles;

/// The model input layouts the daemon can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// uint8 [1, H, W, 3]: the frame itself, no conversion.
    U8Nhwc,
    /// float32 [1, H, W, 3], values 0–255.
    F32Nhwc,
    /// uint8 [1, 3, H, W].
    U8Nchw,
    /// float32 [1, 3, H, W], values 0–1.
    F32Nchw,
}

impl InputKind {
    /// Recognises an RGB image input from its element type and declared shape; returns the kind,
    /// height and width. A batch dimension of -1 (dynamic) is accepted.
    pub(crate) fn from_shape(u8_input: bool, dims: &[i64]) -> Option<(InputKind, u32, u32)> {
        let size = |h: i64, w: i64| (h > 0 && w > 0).then_some((h as u32, w as u32));
        match *dims {
            [n, h, w, 3] if n == 1 || n == -1 => {
                let (h, w) = size(h, w)?;
                Some((if u8_input { InputKind::U8Nhwc } else { InputKind::F32Nhwc }, h, w))
            }
            [n, 3, h, w] if n == 1 || n == -1 => {
                let (h, w) = size(h, w)?;
                Some((if u8_input { InputKind::U8Nchw } else { InputKind::F32Nchw }, h, w))
            }
            _ => None,
        }
    }

    /// The shape fed to the model for `batch` frames.
    pub(crate) fn shape(self, batch: usize, height: u32, width: u32) -> [i64; 4] {
        let (n, h, w) = (batch as i64, i64::from(height), i64::from(width));
        match self {
            InputKind::U8Nhwc | InputKind::F32Nhwc => [n, h, w, 3],
            InputKind::U8Nchw | InputKind::F32Nchw => [n, 3, h, w],
        }
    }
}

/// Where a frame's packed RGB pixels (model width × height) are.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// In host memory.
    Host(&'a [u8]),
    /// In CUDA device memory (cargo feature `cuda`).
    #[cfg(feature = "cuda")]
    Device(crate::cuda::DeviceSlice),
}

impl<'a> Pixels<'a> {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Pixels::Host(bytes) => bytes.len(),
            #[cfg(feature = "cuda")]
            Pixels::Device(slice) => slice.len,
        }
    }

    /// Whether there are no pixels at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are in host memory.
    fn host(self) -> Option<&'a [u8]> {
        match self {
            Pixels::Host(bytes) => Some(bytes),
            #[cfg(feature = "cuda")]
            Pixels::Device(_) => None,
        }
    }
}

/// The buffers model inputs are built in, allocated once for the largest batch, the tensor
/// handles over host inputs, and the address of the last input handed to ONNX Runtime
/// (zero-copy check).
pub(crate) struct InputBuffers {
    kind: InputKind,
    height: u32,
    width: u32,
    /// Sizes the device buffer of batches.
    #[cfg(feature = "cuda")]
    max_batch: usize,
    f32s: Vec<f32>,
    u8s: Vec<u8>,
    /// Where batches of frames in device memory are gathered; allocated on the first one.
    #[cfg(feature = "cuda")]
    device: Option<crate::cuda::DeviceBatch>,
    handles: TensorHandles,
    last_address: usize,
}

impl InputBuffers {
    /// Buffers for `max_batch` frames of a model taking `kind` at `height` × `width`; a single
    /// uint8 NHWC frame needs none.
    pub(crate) fn new(kind: InputKind, height: u32, width: u32, max_batch: usize) -> Self {
        let room = max_batch * (height * width * 3) as usize;
        let (f32s, u8s) = match kind {
            InputKind::U8Nhwc if max_batch == 1 => (Vec::new(), Vec::new()),
            InputKind::U8Nhwc | InputKind::U8Nchw => (Vec::new(), vec![0; room]),
            InputKind::F32Nhwc | InputKind::F32Nchw => (vec![0.0; room], Vec::new()),
        };
        InputBuffers {
            kind,
            height,
            width,
            #[cfg(feature = "cuda")]
            max_batch,
            f32s,
            u8s,
            #[cfg(feature = "cuda")]
            device: None,
            handles: TensorHandles::new(),
            last_address: 0,
        }
    }

    /// Where the data of the last tensor built lives.
    pub(crate) fn last_address(&self) -> usize {
        self.last_address
    }

    /// Tensor handles made so far.
    pub(crate) fn handles_made(&self) -> u64 {
        self.handles.made()
    }

    /// The input tensor for frames `0..n`, each of the model's input size (checked by the
    /// caller). One uint8 NHWC frame is passed in place; otherwise the frames are gathered or
    /// converted into the buffers.
    pub(crate) fn tensor<'s, 'f: 's>(
        &'s mut self,
        n: usize,
        frame: impl Fn(usize) -> Pixels<'f>,
    ) -> Result<SessionInputValue<'s>, InferError> {
        #[cfg(feature = "cuda")]
        if (0..n).any(|i| matches!(frame(i), Pixels::Device(_))) {
            return self.device_tensor(n, frame);
        }
        let dims = self.kind.shape(n, self.height, self.width);
        let plane = (self.height * self.width) as usize;
        let size = plane * 3;
        // Every frame is in host memory here (device frames took the branch above).
        let rgb = |i: usize| frame(i).host().unwrap_or_default();
        let (tensor, seen_at) = match self.kind {
            InputKind::U8Nhwc if n == 1 => self.handles.view(dims, rgb(0))?,
            InputKind::U8Nhwc | InputKind::U8Nchw => {
                for (i, dst) in self.u8s.chunks_exact_mut(size).take(n).enumerate() {
                    if self.kind == InputKind::U8Nhwc {
                        dst.copy_from_slice(rgb(i));
                    } else {
                        to_nchw(rgb(i), plane, dst, |v| v);
                    }
                }
                self.handles.view(dims, &self.u8s[..n * size])?
            }
            InputKind::F32Nhwc | InputKind::F32Nchw => {
                for (i, dst) in self.f32s.chunks_exact_mut(size).take(n).enumerate() {
                    if self.kind == InputKind::F32Nhwc {
                        to_f32_nhwc(rgb(i), dst);
                    } else {
                        to_nchw(rgb(i), plane, dst, |v| f32::from(v) / 255.0);
                    }
                }
                self.handles.view(dims, &self.f32s[..n * size])?
            }
        };
        self.last_address = seen_at;
        Ok(tensor)
    }

    /// The input tensor in device memory: one device frame in place, else the batch gathered
    /// on the device (host frames of CPU-decoded cameras are uploaded into it).
    #[cfg(feature = "cuda")]
    fn device_tensor<'s, 'f: 's>(
        &'s mut self,
        n: usize,
        frame: impl Fn(usize) -> Pixels<'f>,
    ) -> Result<SessionInputValue<'s>, InferError> {
        use crate::cuda::{DeviceBatch, DeviceContext, Part};

        if self.kind != InputKind::U8Nhwc {
            return Err(InferError::Run(format!("frames in device memory need a uint8 NHWC model, this one takes {:?}", self.kind)));
        }
        let size = (self.height * self.width * 3) as usize;
        let slice = match frame(0) {
            Pixels::Device(slice) if n == 1 => slice,
            _ => {
                if self.device.is_none() {
                    let device = (0..n).find_map(|i| match frame(i) {
                        Pixels::Device(slice) => Some(slice.device),
                        Pixels::Host(_) => None,
                    });
                    let context = DeviceContext::open(device.unwrap_or(0)).map_err(InferError::Run)?;
                    self.device = Some(DeviceBatch::new(context, self.max_batch * size).map_err(InferError::Run)?);
                }
                let batch = self.device.as_mut().ok_or_else(|| InferError::Run("no device buffer".into()))?;
                let part = |i: usize| match frame(i) {
                    Pixels::Host(bytes) => Part::Host(bytes),
                    Pixels::Device(slice) => Part::Device(slice),
                };
                batch.gather(n, size, part).map_err(InferError::Run)?
            }
        };
        let dims = self.kind.shape(n, self.height, self.width);
        // SAFETY: `slice` is `n` frames of the model's input size in device memory of
        // `slice.device`, mapped (or gathered into the buffer this value owns) until the run
        // that borrows the tensor is over.
        let (tensor, seen_at) = unsafe { self.handles.device_view(slice.device, slice.address as usize, dims)? };
        self.last_address = seen_at;
        Ok(tensor)
    }
}

/// GStreamer lays out packed RGB frames in system memory with each row padded to a multiple of
/// 4 bytes, and the frame is used as the input as it is: its rows must need no padding.
pub(crate) fn unpadded_rows(width: u32) -> Result<(), String> {
    match (u64::from(width) * 3) % 4 {
        0 => Ok(()),
        _ => Err(format!(
            "input width {width}: GStreamer pads each RGB row ({} bytes) to a multiple of 4, so a \
             decoded frame cannot be the input tensor; use a model whose input width is a multiple of 4",
            u64::from(width) * 3
        )),
    }
}

/// Writes packed RGB pixels (`width * height * 3` bytes) as float32 NHWC, 0–255.
pub(crate) fn to_f32_nhwc(rgb: &[u8], out: &mut [f32]) {
    for (o, &p) in out.iter_mut().zip(rgb) {
        *o = f32::from(p);
    }
}

/// Writes packed RGB pixels as planar NCHW, through `convert` per value.
pub(crate) fn to_nchw<T: Copy>(rgb: &[u8], plane: usize, out: &mut [T], convert: impl Fn(u8) -> T) {
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).take(plane).enumerate() {
        r[i] = convert(px[0]);
        g[i] = convert(px[1]);
        b[i] = convert(px[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_widths_whose_rgb_rows_need_no_padding_are_taken() {
        for width in [512, 640, 416, 1280, 4] {
            assert_eq!(unpadded_rows(width), Ok(()), "{width}");
        }
        for width in [250, 1333, 513, 2] {
            let error = unpadded_rows(width).unwrap_err();
            assert!(error.contains(&format!("input width {width}")) && error.contains("multiple of 4"), "{error}");
        }
    }

    #[test]
    fn recognises_layouts() {
        assert_eq!(InputKind::from_shape(true, &[1, 512, 512, 3]), Some((InputKind::U8Nhwc, 512, 512)));
        assert_eq!(InputKind::from_shape(false, &[-1, 3, 384, 640]), Some((InputKind::F32Nchw, 384, 640)));
        assert_eq!(InputKind::from_shape(false, &[1, 3, -1, -1]), None);
        assert_eq!(InputKind::from_shape(true, &[2, 512, 512, 3]), None);
        assert_eq!(InputKind::from_shape(true, &[1, 512, 512]), None);
    }

    #[test]
    fn converts_to_planar() {
        let rgb = [1u8, 2, 3, 4, 5, 6];
        let mut out = [0f32; 6];
        to_nchw(&rgb, 2, &mut out, |v| f32::from(v) / 255.0);
        assert_eq!(out.map(|v| (v * 255.0).round() as u8), [1, 4, 2, 5, 3, 6]);
        let mut f = [0f32; 6];
        to_f32_nhwc(&rgb, &mut f);
        assert_eq!(f, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
