//! From a letterboxed RGB frame to the model's input tensor.
//!
//! A uint8 NHWC model takes the mapped GStreamer buffer as it is (zero copy). Other layouts
//! cost one pass into a buffer allocated once: float32 NHWC gets raw 0–255 values (as the
//! TensorFlow-exported CenterNet expects), NCHW layouts are planar, and float32 NCHW is scaled
//! to 0–1 (the YOLO convention).

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
        let size = |h: i64, w: i64| (h > 0 && w > 0).then(|| (h as u32, w as u32));
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
