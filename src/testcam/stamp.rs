//! `--stamp`: each frame carries its own capture time in its pixels, so a client that cannot see
//! RTCP (OpenCV's `VideoCapture`) measures latency from the same instant as one that reads the
//! `timestamp/x-ntp` reference meta. The value is the media clock's time when the feeder pushes
//! the frame, which is also the frame's PTS, so it equals what RTCP sender reports map the
//! frame's RTP time to.
//!
//! # Layout (benches/baseline/README.md repeats it for other readers)
//!
//! - Code: 10 bytes = `0x52` ([`MAGIC`]), the capture time as µs since the Unix epoch (u64,
//!   big-endian), then CRC-8 of those 9 bytes (polynomial 0x07, initial value 0, no reflection,
//!   no final XOR: CRC-8/SMBUS, [`crc8`]). 80 bits, each byte most significant bit first.
//! - Blocks: bit `i` (0–79) is a square of `B`×`B` pixels in column `i % 40`, row `i / 40` of a
//!   40 × 2 grid whose bottom-left corner is the frame's: block (c, r) covers x in
//!   `[c·B, (c+1)·B)` and y in `[H − 2B + r·B, H − 2B + (r+1)·B)` for a `W`×`H` frame.
//!   `B` = 16 when `W` ≥ 1280, else 8 ([`Layout::for_frame`]); frames narrower than 40·B or
//!   lower than 2·B are not stamped (the camera refuses `--stamp` for them).
//! - Values: luma (Y) 235 for 1, 16 for 0; chroma (U, V) 128 under the whole grid, so the code
//!   is black and white in RGB too (0 and 255 after a limited → full range conversion).
//! - Reading: per block, the mean luma over its central `B/2`×`B/2` square; 1 if ≥ 126 (the
//!   midpoint), else 0; on full-range RGB or grey, ≥ 128. A frame is stamped iff the first
//!   byte is `0x52` and the CRC matches; anything else is "no stamp".

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// First byte of every code: tells a stamped frame from one that is not (with the CRC).
pub const MAGIC: u8 = 0x52;
/// Blocks per row of the grid.
pub const COLUMNS: usize = 40;
/// Rows of the grid.
pub const ROWS: usize = 2;
/// Bytes in a code: magic, 8 bytes of time, CRC.
pub const CODE_BYTES: usize = 10;
/// Luma of a 1 bit and of a 0 bit (video range white and black).
pub const Y_ONE: u8 = 235;
pub const Y_ZERO: u8 = 16;
const Y_THRESHOLD: u32 = 126;
const CHROMA_NEUTRAL: u8 = 128;

/// Where the code sits in a frame of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Side of one block, pixels.
    pub block: usize,
    /// First row of the grid (the grid's left edge is column 0).
    pub top: usize,
}

impl Layout {
    /// The layout for a `width`×`height` frame; `None` if the grid does not fit.
    pub fn for_frame(width: u32, height: u32) -> Option<Layout> {
        let block = if width >= 1280 { 16 } else { 8 };
        let (w, h) = (width as usize, height as usize);
        (w >= COLUMNS * block && h >= ROWS * block).then(|| Layout {
            block,
            top: h - ROWS * block,
        })
    }

    /// Top-left pixel (x, y) of the block holding bit `bit`.
    fn origin(&self, bit: usize) -> (usize, usize) {
        let (col, row) = (bit % COLUMNS, bit / COLUMNS);
        (col * self.block, self.top + row * self.block)
    }
}

/// CRC-8/SMBUS: polynomial 0x07, initial value 0, MSB first, no final XOR.
pub fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |mut crc, &b| {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// The code for `unix_us`: magic, big-endian time, CRC.
pub fn encode(unix_us: u64) -> [u8; CODE_BYTES] {
    let mut code = [0u8; CODE_BYTES];
    code[0] = MAGIC;
    code[1..9].copy_from_slice(&unix_us.to_be_bytes());
    code[9] = crc8(&code[..9]);
    code
}

/// The time in a code, if it is one.
pub fn decode(code: &[u8; CODE_BYTES]) -> Option<u64> {
    (code[0] == MAGIC && code[9] == crc8(&code[..9]))
        .then(|| u64::from_be_bytes(code[1..9].try_into().expect("8 bytes")))
}

fn bit_of(code: &[u8; CODE_BYTES], i: usize) -> bool {
    code[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Draws the code for `unix_us` into a luma plane (`stride` bytes per row).
pub fn draw_luma(luma: &mut [u8], stride: usize, layout: Layout, unix_us: u64) {
    let code = encode(unix_us);
    for i in 0..CODE_BYTES * 8 {
        let (x, y) = layout.origin(i);
        let value = if bit_of(&code, i) { Y_ONE } else { Y_ZERO };
        for row in y..y + layout.block {
            luma[row * stride + x..][..layout.block].fill(value);
        }
    }
}

/// Makes a 2×2-subsampled chroma plane neutral under the grid.
pub fn neutralise_chroma(chroma: &mut [u8], stride: usize, layout: Layout) {
    let (width, top) = (COLUMNS * layout.block / 2, layout.top / 2);
    for row in top..top + ROWS * layout.block / 2 {
        chroma[row * stride..][..width].fill(CHROMA_NEUTRAL);
    }
}

/// Reads the code from a luma plane of a `width`×`height` frame: the time, or `None` when
/// the frame carries no (intact) stamp.
pub fn read_luma(luma: &[u8], stride: usize, width: u32, height: u32) -> Option<u64> {
    let layout = Layout::for_frame(width, height)?;
    if luma.len() < (height as usize - 1) * stride + width as usize {
        return None;
    }
    let (inner, quarter) = (layout.block / 2, layout.block / 4);
    let mut code = [0u8; CODE_BYTES];
    for i in 0..CODE_BYTES * 8 {
        let (x, y) = layout.origin(i);
        let (x, y) = (x + quarter, y + quarter);
        let sum: u32 = (y..y + inner)
            .flat_map(|row| &luma[row * stride + x..][..inner])
            .map(|&v| u32::from(v))
            .sum();
        if sum >= Y_THRESHOLD * (inner * inner) as u32 {
            code[i / 8] |= 0x80 >> (i % 8);
        }
    }
    decode(&code)
}

/// Draws `unix_us` into a writable I420 `buffer` described by `info` (its strides and offsets).
///
/// # Errors
/// The buffer back when it cannot be mapped for writing or the frame is too small.
pub(crate) fn stamp_i420(
    buffer: gst::Buffer,
    info: &gst_video::VideoInfo,
    unix_us: u64,
) -> Result<gst::Buffer, gst::Buffer> {
    let Some(layout) = Layout::for_frame(info.width(), info.height()) else {
        return Err(buffer);
    };
    let mut frame = gst_video::VideoFrame::from_buffer_writable(buffer, info)?;
    let strides: Vec<usize> = frame.plane_stride().iter().map(|&s| s as usize).collect();
    for plane in 0..3 {
        let Ok(data) = frame.plane_data_mut(plane) else {
            return Err(frame.into_buffer());
        };
        match plane {
            0 => draw_luma(data, strides[0], layout, unix_us),
            p => neutralise_chroma(data, strides[p as usize], layout),
        }
    }
    Ok(frame.into_buffer())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic I420 frame with padded rows: (buffer bytes, luma stride, chroma stride).
    fn i420(width: usize, height: usize, pad: usize) -> (Vec<u8>, usize, usize) {
        let (ys, cs) = (width + pad, width / 2 + pad);
        let mut data = vec![0u8; ys * height + 2 * cs * height / 2];
        for (i, v) in data.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8; // busy texture, nothing like a code
        }
        (data, ys, cs)
    }

    #[test]
    fn code_round_trips_and_rejects_damage() {
        let t = 1_750_000_123_456_789;
        let code = encode(t);
        assert_eq!(code[0], MAGIC);
        assert_eq!(decode(&code), Some(t));
        for bit in 0..CODE_BYTES * 8 {
            let mut bad = code;
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            assert_eq!(decode(&bad), None, "flipped bit {bit} accepted");
        }
        assert_eq!(decode(&[0; CODE_BYTES]), None);
        assert_eq!(decode(&[0xff; CODE_BYTES]), None);
    }

    #[test]
    fn crc8_is_smbus() {
        // The CRC catalogue's check value for CRC-8/SMBUS.
        assert_eq!(crc8(b"123456789"), 0xf4);
    }

    #[test]
    fn block_size_follows_width() {
        assert_eq!(
            Layout::for_frame(800, 600),
            Some(Layout { block: 8, top: 584 })
        );
        assert_eq!(
            Layout::for_frame(1920, 1080),
            Some(Layout {
                block: 16,
                top: 1048
            })
        );
        assert_eq!(
            Layout::for_frame(320, 16),
            Some(Layout { block: 8, top: 0 })
        );
        assert_eq!(Layout::for_frame(318, 600), None);
        assert_eq!(Layout::for_frame(800, 14), None);
    }

    #[test]
    fn stamp_written_into_a_frame_reads_back() {
        let (w, h) = (800, 600);
        let (mut data, ys, cs) = i420(w, h, 12);
        assert_eq!(
            read_luma(&data, ys, w as u32, h as u32),
            None,
            "unstamped frame read as stamped"
        );
        let layout = Layout::for_frame(w as u32, h as u32).unwrap();
        let t = 1_760_000_000_000_001;
        let (luma, chroma) = data.split_at_mut(ys * h);
        draw_luma(luma, ys, layout, t);
        for plane in chroma.chunks_mut(cs * h / 2) {
            neutralise_chroma(plane, cs, layout);
        }
        assert_eq!(read_luma(&data, ys, w as u32, h as u32), Some(t));
        // Only the grid changed: the pixel just above it and just right of it are untouched.
        let (fresh, _, _) = i420(w, h, 12);
        let above = (layout.top - 1) * ys;
        assert_eq!(data[above..above + w], fresh[above..above + w]);
        let right = (h - 1) * ys + COLUMNS * layout.block;
        assert_eq!(data[right], fresh[right]);
    }

    #[test]
    fn stamp_survives_noise_like_a_codec() {
        let (w, h) = (1280, 720);
        let (mut data, ys, _) = i420(w, h, 0);
        let layout = Layout::for_frame(w as u32, h as u32).unwrap();
        let t = u64::MAX - 12345;
        draw_luma(&mut data, ys, layout, t);
        // ±60 levels of ringing, worse than x264 leaves at any sane bit rate.
        for (i, v) in data[..ys * h].iter_mut().enumerate() {
            let e = (i * 31 % 121) as i32 - 60;
            *v = (i32::from(*v) + e).clamp(0, 255) as u8;
        }
        assert_eq!(read_luma(&data, ys, w as u32, h as u32), Some(t));
    }

    #[test]
    fn stamps_a_gstreamer_i420_buffer_with_padded_strides() {
        gst::init().unwrap();
        // 950 wide: GStreamer pads luma rows to 952 and chroma rows to 476 bytes.
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 950, 244)
            .build()
            .unwrap();
        assert_eq!(info.stride()[0], 952);
        let buffer = gst::Buffer::from_mut_slice(vec![90u8; info.size()]);
        let t = 1_700_000_000_000_000;
        let stamped = stamp_i420(buffer, &info, t).unwrap();
        let frame = gst_video::VideoFrame::from_buffer_readable(stamped, &info).unwrap();
        let luma = frame.plane_data(0).unwrap();
        assert_eq!(read_luma(luma, 952, 950, 244), Some(t));
        let u = frame.plane_data(1).unwrap();
        assert_eq!(u[(244 / 2 - 1) * 476], CHROMA_NEUTRAL);
        assert_eq!(u[(244 / 2 - 9) * 476], 90, "chroma above the grid changed");
    }
}
