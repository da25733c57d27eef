//! Output decoders: the model's raw output tensor → detections in source pixels.
//!
//! Each decoder reads one layout (chosen per model in config), keeps the boxes that pass the
//! confidence threshold and the class allow-list, runs class-wise NMS and maps the survivors
//! back through the letterbox. Nothing here panics on a bad tensor: a shape or length that does
//! not fit is a [`DecodeError`].

use super::letterbox::Letterbox;
use super::nms::nms_in_place;
use crate::config::DecoderKind;
use crate::frame::Detection;

/// What to keep from one output.
pub(crate) struct DecodeParams<'a> {
    /// Lowest score kept.
    pub confidence: f32,
    /// IoU above which a lower-scored box of the same class is suppressed.
    pub nms_iou: f32,
    /// Class indices kept; `None`: all.
    pub allowed: Option<&'a [u32]>,
    /// Number of classes the model knows (the length of its label list).
    pub num_classes: usize,
}

/// An output tensor that does not fit the configured decoder.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The shape is not the decoder's layout.
    #[error("{expected}, the output is {got:?}")]
    ShapeMismatch { expected: String, got: Vec<i64> },
    /// The data does not hold as many values as the shape says.
    #[error("output shape {shape:?} does not match its {got} values")]
    LengthMismatch { shape: Vec<i64>, got: usize },
}

/// Checks a model's declared output shape against the decoder, before any frame is run. A
/// dynamic dimension (-1) is accepted for the batch and the box count, and for the class
/// dimension too (it is checked on every output then).
///
/// # Errors
///
/// A sentence saying what the decoder expects and what the model gives, for `roadsightd check`.
pub(crate) fn check_output_shape(
    kind: DecoderKind,
    shape: &[i64],
    num_classes: usize,
) -> Result<(), String> {
    if fits(kind, shape, num_classes, true) {
        Ok(())
    } else {
        Err(format!(
            "{}, the model gives {shape:?}",
            layout(kind, num_classes)
        ))
    }
}

/// Decodes one output into `out` (cleared first, its capacity reused): boxes in source pixels,
/// highest confidence first.
///
/// # Errors
///
/// [`DecodeError`] when `shape` is not the decoder's layout or `data` is not as long as `shape`
/// says; `out` is then empty.
pub(crate) fn decode(
    kind: DecoderKind,
    shape: &[i64],
    data: &[f32],
    params: &DecodeParams<'_>,
    letterbox: &Letterbox,
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    out.clear();
    if !fits(kind, shape, params.num_classes, false) {
        return Err(DecodeError::ShapeMismatch {
            expected: layout(kind, params.num_classes),
            got: shape.to_vec(),
        });
    }
    // `fits` has checked the rank and that no dimension is negative.
    let dim = |i: usize| usize::try_from(shape[i]).ok();
    let cols = match (dim(1), dim(2)) {
        (Some(r), Some(c)) if r.checked_mul(c) == Some(data.len()) => c,
        _ => {
            return Err(DecodeError::LengthMismatch {
                shape: shape.to_vec(),
                got: data.len(),
            });
        }
    };
    match kind {
        DecoderKind::Detections => detections(data, params, out),
        DecoderKind::Yolov8 => yolov8(data, cols, params, out),
        DecoderKind::Yolov5 => yolov5(data, cols, params, out),
    }
    nms_in_place(out, params.nms_iou);
    out.retain_mut(|d| {
        d.bbox = letterbox.to_source(d.bbox);
        d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1]
    });
    Ok(())
}

/// `[1, N, 6]`: x1 y1 x2 y2 score class, the class a float holding the index.
fn detections(data: &[f32], params: &DecodeParams<'_>, out: &mut Vec<Detection>) {
    for row in data.chunks_exact(6) {
        let class = row[5].round();
        // Also rejects NaN and infinities.
        if !(class >= 0.0 && class < params.num_classes as f32) {
            continue;
        }
        let bbox = [row[0], row[1], row[2], row[3]];
        push(out, params, class as u32, row[4], bbox);
    }
}

/// `[1, 4 + C, A]`, channel-major: value (c, a) at `data[c * A + a]`.
fn yolov8(data: &[f32], anchors: usize, params: &DecodeParams<'_>, out: &mut Vec<Detection>) {
    let at = |c: usize, a: usize| data[c * anchors + a];
    for a in 0..anchors {
        let scores = (0..params.num_classes).map(|c| at(4 + c, a));
        if let Some((class, score)) = best(scores) {
            let bbox = corners(at(0, a), at(1, a), at(2, a), at(3, a));
            push(out, params, class, score, bbox);
        }
    }
}

/// `[1, A, 5 + C]`: cx cy w h objectness, then the class scores; score = objectness × best.
fn yolov5(data: &[f32], width: usize, params: &DecodeParams<'_>, out: &mut Vec<Detection>) {
    // `fits` made `width` 5 + num_classes, never 0.
    for row in data.chunks_exact(width) {
        if let Some((class, score)) = best(row[5..].iter().copied()) {
            let bbox = corners(row[0], row[1], row[2], row[3]);
            push(out, params, class, row[4] * score, bbox);
        }
    }
}

/// Index and value of the highest score (the first on a tie); `None` if none is a number.
fn best(scores: impl Iterator<Item = f32>) -> Option<(u32, f32)> {
    let mut top: Option<(u32, f32)> = None;
    for (i, s) in scores.enumerate() {
        if top.is_none_or(|(_, t)| s > t) && !s.is_nan() {
            top = Some((u32::try_from(i).ok()?, s));
        }
    }
    top
}

/// Box from centre and size.
fn corners(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// Keeps a candidate that passes the threshold and the allow-list.
fn push(
    out: &mut Vec<Detection>,
    p: &DecodeParams<'_>,
    class: u32,
    confidence: f32,
    bbox: [f32; 4],
) {
    // `>=` is false for a NaN score. A box with a NaN or infinite corner is noise, not a box
    // to clamp onto the frame.
    let allowed = p.allowed.is_none_or(|a| a.contains(&class));
    if confidence >= p.confidence && allowed && bbox.iter().all(|v| v.is_finite()) {
        out.push(Detection {
            class,
            confidence,
            bbox,
        });
    }
}

/// Whether `shape` is the decoder's layout; `dynamic` accepts -1 where a model may declare it.
fn fits(kind: DecoderKind, shape: &[i64], num_classes: usize, dynamic: bool) -> bool {
    if shape.len() != 3 {
        return false;
    }
    let (fixed_at, fixed) = fixed_dim(kind, num_classes);
    shape.iter().enumerate().all(|(i, &d)| match d {
        -1 => dynamic,
        i64::MIN..=-2 => false,
        _ if i == 0 => d == 1,
        _ if i == fixed_at => u64::try_from(d).is_ok_and(|d| d == fixed),
        _ => true,
    })
}

/// The dimension whose size the decoder knows (row width or channel count), and that size.
fn fixed_dim(kind: DecoderKind, num_classes: usize) -> (usize, u64) {
    let classes = num_classes as u64;
    match kind {
        DecoderKind::Detections => (2, 6),
        DecoderKind::Yolov8 => (1, classes.saturating_add(4)),
        DecoderKind::Yolov5 => (2, classes.saturating_add(5)),
    }
}

/// "decoder `yolov8` expects [1, 84, anchors] for 80 classes".
fn layout(kind: DecoderKind, num_classes: usize) -> String {
    let (_, fixed) = fixed_dim(kind, num_classes);
    match kind {
        DecoderKind::Detections => "decoder `detections` expects [1, detections, 6]".to_owned(),
        DecoderKind::Yolov8 => {
            format!("decoder `yolov8` expects [1, {fixed}, anchors] for {num_classes} classes")
        }
        DecoderKind::Yolov5 => {
            format!("decoder `yolov5` expects [1, anchors, {fixed}] for {num_classes} classes")
        }
    }
}

#[cfg(test)]
mod tests;
