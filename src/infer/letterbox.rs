//! Letterbox maths: where the source frame sits inside the model input, and back.

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
}
