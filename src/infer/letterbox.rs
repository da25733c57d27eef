//! Letterbox maths: where the source frame sits inside the model input, and back.
//!
//! The capture pipeline scales each frame with `videoconvertscale add-borders=true` (GStreamer
//! 1.22) into the model's input size; [`Letterbox::centered`] reproduces the placement GStreamer
//! chooses, pixel for pixel, so that [`Letterbox::to_source`] can map the model's boxes back onto
//! the camera image.

/// Placement of a source frame inside the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src_w: u32,
    pub src_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
    /// Source pixels → model pixels.
    pub scale: f32,
    /// Left and top border, model pixels.
    pub pad_x: f32,
    pub pad_y: f32,
    /// The source's pixel aspect ratio (width : height of one pixel; 1:1 is square). Cameras
    /// with D1/4CIF streams often send non-square pixels, and GStreamer keeps the display
    /// aspect ratio when it letterboxes.
    pub par: (u32, u32),
}

impl Letterbox {
    /// The placement `videoconvertscale add-borders=true` gives a `src_w`×`src_h` frame scaled
    /// into a `dst_w`×`dst_h` output (both square pixels): aspect ratio kept, content centred,
    /// the odd border pixel on the right or bottom.
    pub fn centered(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        Letterbox::with_pixel_aspect(src_w, src_h, (1, 1), dst_w, dst_h)
    }

    /// As [`Letterbox::centered`], for a source whose pixels are `par` (n, d) wide by high, as
    /// in the caps' `pixel-aspect-ratio` (0 in either part: square). The output's pixels are
    /// square.
    pub fn with_pixel_aspect(src_w: u32, src_h: u32, par: (u32, u32), dst_w: u32, dst_h: u32) -> Letterbox {
        let par = if par.0 == 0 || par.1 == 0 { (1, 1) } else { par };
        let (content_w, content_h) = content_size(src_w, src_h, par, dst_w, dst_h);
        Letterbox {
            src_w,
            src_h,
            dst_w,
            dst_h,
            scale: if src_w == 0 {
                0.0
            } else {
                content_w as f32 / src_w as f32
            },
            pad_x: ((dst_w - content_w) / 2) as f32,
            pad_y: ((dst_h - content_h) / 2) as f32,
            par,
        }
    }

    /// Maps a box (x1, y1, x2, y2) from model-input pixels to source pixels, clamped to the
    /// source frame. A box that lies wholly in a border comes back with zero width or height.
    pub fn to_source(&self, bbox: [f32; 4]) -> [f32; 4] {
        let (content_w, content_h) = self.content_size();
        let (src_w, src_h) = (self.src_w as f32, self.src_h as f32);
        // `f32::max` returns the other operand for NaN, so a NaN coordinate lands on 0.
        let x = |v: f32| ((v - self.pad_x) * src_w / content_w).max(0.0).min(src_w);
        let y = |v: f32| ((v - self.pad_y) * src_h / content_h).max(0.0).min(src_h);
        [x(bbox[0]), y(bbox[1]), x(bbox[2]), y(bbox[3])]
    }

    /// Size of the scaled frame inside the model input, model pixels.
    pub fn content_size(&self) -> (f32, f32) {
        let centered = Letterbox::with_pixel_aspect(self.src_w, self.src_h, self.par, self.dst_w, self.dst_h);
        let (w, h) = content_size(self.src_w, self.src_h, centered.par, self.dst_w, self.dst_h);
        if centered.pad_x == self.pad_x && centered.pad_y == self.pad_y {
            // GStreamer scales each axis on its own to a whole number of pixels; on the padded
            // axis that ratio differs from `scale` by up to one model pixel over the frame, which
            // the exact integer size avoids.
            (w as f32, h as f32)
        } else {
            // Not GStreamer's placement (built by hand): `scale` is all there is, across; down
            // it follows the pixel aspect ratio.
            let (n, d) = centered.par;
            (
                self.scale * self.src_w as f32,
                self.scale * self.src_h as f32 * d as f32 / n as f32,
            )
        }
    }
}

/// Size of the scaled frame inside the output, as GStreamer 1.22 computes it.
//
// `gst_video_convert_scale_set_info` (gst-plugins-base, videoconvertscale) takes the source
// display aspect ratio n/d (src_w·par_n / src_h·par_d, the output's pixels being square) and computes
// `to_h = gst_util_uint64_scale_int (out_width, d, n)`, i.e. floor(dst_w * src_h / src_w). If
// `to_h <= out_height` the borders are top and bottom: `borders_h = out_height - to_h`. Otherwise
// they are left and right: `to_w = gst_util_uint64_scale_int (out_height, n, d)`, i.e.
// floor(dst_h * src_w / src_h), `borders_w = out_width - to_w`. The converter then draws the
// content at `DEST_X = borders_w / 2`, `DEST_Y = borders_h / 2` (C integer division, so the odd
// pixel goes right/bottom) with size `out - borders`. Reducing n/d first, as GStreamer does,
// does not change a floor of the exact quotient, so the unreduced product below is the same.
// When the aspect ratios already match GStreamer adds no border, and the formula gives none.
fn content_size(src_w: u32, src_h: u32, (par_n, par_d): (u32, u32), dst_w: u32, dst_h: u32) -> (u32, u32) {
    let (n, d) = (u128::from(src_w) * u128::from(par_n), u128::from(src_h) * u128::from(par_d));
    if n == 0 || d == 0 {
        return (0, 0);
    }
    let to_h = u128::from(dst_w) * d / n;
    if to_h <= u128::from(dst_h) {
        // to_h <= dst_h, so it fits in u32.
        (dst_w, to_h as u32)
    } else {
        // dst_w * d > dst_h * n here, so to_w < dst_w.
        let to_w = u128::from(dst_h) * n / d;
        (to_w as u32, dst_h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(lb: &Letterbox) -> (f32, f32, f32, f32) {
        let (w, h) = lb.content_size();
        (w, h, lb.pad_x, lb.pad_y)
    }

    #[test]
    fn landscape_4_3_into_square() {
        let lb = Letterbox::centered(800, 600, 512, 512);
        assert_eq!(placement(&lb), (512.0, 384.0, 0.0, 64.0));
        assert_eq!(lb.scale, 0.64);
    }

    #[test]
    fn odd_border_goes_to_the_bottom() {
        // floor(512 * 482 / 600) = 411: 101 rows of border, 50 above and 51 below.
        let lb = Letterbox::centered(600, 482, 512, 512);
        assert_eq!(placement(&lb), (512.0, 411.0, 0.0, 50.0));
    }

    #[test]
    fn very_wide_source() {
        // floor(512 * 245 / 950) = 132: 380 rows of border.
        let lb = Letterbox::centered(950, 245, 512, 512);
        assert_eq!(placement(&lb), (512.0, 132.0, 0.0, 190.0));
    }

    #[test]
    fn same_size_has_no_border() {
        let lb = Letterbox::centered(512, 512, 512, 512);
        assert_eq!(placement(&lb), (512.0, 512.0, 0.0, 0.0));
        assert_eq!(lb.scale, 1.0);
        assert_eq!(
            lb.to_source([10.0, 20.0, 30.0, 40.0]),
            [10.0, 20.0, 30.0, 40.0]
        );
    }

    #[test]
    fn portrait_into_square() {
        let lb = Letterbox::centered(480, 640, 512, 512);
        assert_eq!(placement(&lb), (384.0, 512.0, 64.0, 0.0));
        // floor(512 * 482 / 600) = 411 columns: 101 of border, 50 left and 51 right.
        let lb = Letterbox::centered(482, 600, 512, 512);
        assert_eq!(placement(&lb), (411.0, 512.0, 50.0, 0.0));
    }

    #[test]
    fn into_non_square_input() {
        // 640×384 is 5:3; 4:3 is narrower, so the borders are left and right.
        let lb = Letterbox::centered(800, 600, 640, 384);
        assert_eq!(placement(&lb), (512.0, 384.0, 64.0, 0.0));
        // 16:9 is wider: floor(640 * 1080 / 1920) = 360, 24 rows of border.
        let lb = Letterbox::centered(1920, 1080, 640, 384);
        assert_eq!(placement(&lb), (640.0, 360.0, 0.0, 12.0));
        // Portrait 9:16: floor(384 * 1080 / 1920) = 216, 424 columns of border.
        let lb = Letterbox::centered(1080, 1920, 640, 384);
        assert_eq!(placement(&lb), (216.0, 384.0, 212.0, 0.0));
    }

    #[test]
    fn matches_gstreamer_on_odd_sizes() {
        // Measured with gst-launch-1.0 1.22.0: videotestsrc pattern=white ! videoconvertscale !
        // video/x-raw,format=RGB,pixel-aspect-ratio=1/1, then the extent of the white pixels.
        let lb = Letterbox::centered(601, 333, 512, 512);
        assert_eq!(placement(&lb), (512.0, 283.0, 0.0, 114.0));
        let lb = Letterbox::centered(333, 601, 640, 384);
        assert_eq!(placement(&lb), (212.0, 384.0, 214.0, 0.0));
    }

    #[test]
    fn non_square_pixels_keep_the_display_aspect_ratio() {
        // Measured as above, with the source caps' pixel-aspect-ratio set: D1 and 4CIF at 12/11
        // and 16/15 are 4:3 on screen, anamorphic 640×480 and 1440×1080 at 4/3 are 16:9.
        for (w, h, par) in [(704, 576, (12, 11)), (720, 576, (16, 15))] {
            let lb = Letterbox::with_pixel_aspect(w, h, par, 512, 512);
            assert_eq!(placement(&lb), (512.0, 384.0, 0.0, 64.0), "{w}x{h} {par:?}");
            let (cw, ch) = lb.content_size();
            let corners = lb.to_source([lb.pad_x, lb.pad_y, lb.pad_x + cw, lb.pad_y + ch]);
            assert_eq!(corners, [0.0, 0.0, w as f32, h as f32]);
        }
        for (w, h) in [(640, 480), (1440, 1080)] {
            let lb = Letterbox::with_pixel_aspect(w, h, (4, 3), 512, 512);
            assert_eq!(placement(&lb), (512.0, 288.0, 0.0, 112.0), "{w}x{h}");
        }
        let lb = Letterbox::with_pixel_aspect(600, 482, (10, 11), 512, 512);
        assert_eq!(placement(&lb), (512.0, 452.0, 0.0, 30.0));
        // A box over the middle half of the picture maps to the middle half of the pixels.
        let lb = Letterbox::with_pixel_aspect(704, 576, (12, 11), 512, 512);
        assert_eq!(lb.to_source([128.0, 160.0, 384.0, 352.0]), [176.0, 144.0, 528.0, 432.0]);
        // An unknown ratio (0) is square, as in GStreamer.
        assert_eq!(Letterbox::with_pixel_aspect(800, 600, (0, 1), 512, 512), Letterbox::centered(800, 600, 512, 512));
    }

    #[test]
    fn content_corners_map_to_source_corners() {
        for (sw, sh, dw, dh) in [
            (800, 600, 512, 512),
            (600, 482, 512, 512),
            (950, 245, 512, 512),
            (482, 600, 512, 512),
            (1080, 1920, 640, 384),
            (1920, 1080, 640, 384),
        ] {
            let lb = Letterbox::centered(sw, sh, dw, dh);
            let (cw, ch) = lb.content_size();
            let b = [lb.pad_x, lb.pad_y, lb.pad_x + cw, lb.pad_y + ch];
            assert_eq!(
                lb.to_source(b),
                [0.0, 0.0, sw as f32, sh as f32],
                "{sw}x{sh}"
            );
        }
    }

    #[test]
    fn box_round_trips() {
        let lb = Letterbox::centered(600, 482, 512, 512);
        let src = [120.0, 80.0, 300.0, 400.0];
        let (cw, ch) = lb.content_size();
        let (sx, sy) = (cw / 600.0, ch / 482.0);
        let model = [
            src[0] * sx + lb.pad_x,
            src[1] * sy + lb.pad_y,
            src[2] * sx + lb.pad_x,
            src[3] * sy + lb.pad_y,
        ];
        let back = lb.to_source(model);
        for (a, b) in back.iter().zip(src) {
            assert!((a - b).abs() < 1e-3, "{back:?} != {src:?}");
        }
    }

    #[test]
    fn boxes_in_the_border_are_clamped() {
        let lb = Letterbox::centered(800, 600, 512, 512);
        // Straddles the top border: starts at the top edge of the frame.
        assert_eq!(
            lb.to_source([0.0, 10.0, 512.0, 128.0]),
            [0.0, 0.0, 800.0, 100.0]
        );
        // Wholly in the bottom border: zero height.
        let b = lb.to_source([10.0, 460.0, 100.0, 500.0]);
        assert_eq!(b[1], b[3]);
        assert_eq!(b[1], 600.0);
        // NaN lands on the frame's edge rather than escaping.
        assert_eq!(lb.to_source([f32::NAN; 4]), [0.0; 4]);
    }

    #[test]
    fn hand_built_placement_uses_scale() {
        let lb = Letterbox {
            src_w: 1000,
            src_h: 500,
            dst_w: 512,
            dst_h: 512,
            scale: 0.5,
            pad_x: 0.0,
            pad_y: 0.0,
            par: (1, 1),
        };
        assert_eq!(
            lb.to_source([0.0, 0.0, 100.0, 50.0]),
            [0.0, 0.0, 200.0, 100.0]
        );
    }

    #[test]
    fn empty_source_does_not_panic() {
        let lb = Letterbox::centered(0, 0, 512, 512);
        assert_eq!(lb.to_source([1.0, 2.0, 3.0, 4.0]), [0.0; 4]);
        let b = Letterbox::centered(640, 480, 0, 0).to_source([1.0, 2.0, 3.0, 4.0]);
        assert!(b[0] == b[2] && b[1] == b[3], "{b:?}");
    }
}
