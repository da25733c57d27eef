//! Class-wise non-maximum suppression, in place and without allocating once the vector has
//! grown to twice the largest candidate count it has seen (the merge sort's scratch space).

use std::cmp::Ordering;

use crate::frame::Detection;

/// Intersection over union of two boxes (x1, y1, x2, y2); 0 when either has no area.
pub(crate) fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    // `f32::max` ignores a NaN operand, so a NaN coordinate gives an empty box, never NaN.
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let (area_a, area_b) = (area(a), area(b));
    if !(area_a > 0.0 && area_b > 0.0) {
        return 0.0;
    }
    let inter = area([
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    let union = area_a + area_b - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Sorts `dets` by confidence, highest first, then drops every box that overlaps a kept box
/// of the same class with an IoU above `iou_threshold`.
pub(crate) fn nms_in_place(dets: &mut Vec<Detection>, iou_threshold: f32) {
    sort_by_confidence(dets);
    let mut kept = 0;
    for i in 0..dets.len() {
        let cand = dets[i];
        let suppressed = dets[..kept]
            .iter()
            .any(|k| k.class == cand.class && iou(k.bbox, cand.bbox) > iou_threshold);
        if !suppressed {
            dets[kept] = cand;
            kept += 1;
        }
    }
    dets.truncate(kept);
}

/// Highest confidence first; `total_cmp` puts NaN above every number, so the order is total.
fn descending(a: &Detection, b: &Detection) -> Ordering {
    b.confidence.total_cmp(&a.confidence)
}

/// Stable bottom-up merge sort that borrows its scratch space from the vector's own spare
/// capacity: `slice::sort_by` is stable too but allocates a buffer on every call past a few
/// hundred elements, once per frame.
fn sort_by_confidence(dets: &mut Vec<Detection>) {
    const RUN: usize = 16;
    let n = dets.len();
    for run in dets.chunks_mut(RUN) {
        insertion_sort(run);
    }
    if n <= RUN {
        return;
    }
    dets.extend_from_within(..);
    let (first, second) = dets.split_at_mut(n);
    let (mut src, mut dst) = (first, second);
    let mut in_second = false;
    let mut width = RUN;
    while width < n {
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            merge(&src[start..mid], &src[mid..end], &mut dst[start..end]);
        }
        std::mem::swap(&mut src, &mut dst);
        in_second = !in_second;
        width *= 2;
    }
    if in_second {
        dets.copy_within(n.., 0);
    }
    dets.truncate(n);
}

fn insertion_sort(run: &mut [Detection]) {
    for i in 1..run.len() {
        let mut j = i;
        while j > 0 && descending(&run[j - 1], &run[j]) == Ordering::Greater {
            run.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Merges two sorted runs into `out`; on ties the left run goes first, which keeps it stable.
fn merge(left: &[Detection], right: &[Detection], out: &mut [Detection]) {
    let (mut l, mut r) = (0, 0);
    for slot in out.iter_mut() {
        let take_left = r == right.len()
            || (l < left.len() && descending(&left[l], &right[r]) != Ordering::Greater);
        if take_left {
            *slot = left[l];
            l += 1;
        } else {
            *slot = right[r];
            r += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u32, confidence: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            class,
            confidence,
            bbox,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(a, a), 1.0);
        // Half of `a` overlaps: 50 / (100 + 100 - 50).
        assert_eq!(iou(a, [5.0, 0.0, 15.0, 10.0]), 50.0 / 150.0);
        assert_eq!(iou(a, [10.0, 0.0, 20.0, 10.0]), 0.0, "touching edges");
        assert_eq!(iou(a, [20.0, 20.0, 30.0, 30.0]), 0.0, "disjoint");
        // A box inside another: its area over the larger one.
        assert_eq!(iou(a, [0.0, 0.0, 5.0, 5.0]), 0.25);
    }

    #[test]
    fn iou_of_degenerate_boxes_is_zero() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(a, [5.0, 5.0, 5.0, 5.0]), 0.0, "point");
        assert_eq!(iou(a, [8.0, 8.0, 2.0, 2.0]), 0.0, "inverted");
        assert_eq!(iou([5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]), 0.0);
        assert_eq!(iou(a, [f32::NAN, 0.0, 10.0, 10.0]), 0.0, "NaN");
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_best() {
        let mut dets = vec![
            det(2, 0.6, [1.0, 0.0, 11.0, 10.0]),
            det(2, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(2, 0.5, [50.0, 50.0, 60.0, 60.0]),
        ];
        nms_in_place(&mut dets, 0.5);
        assert_eq!(
            dets,
            [
                det(2, 0.9, [0.0, 0.0, 10.0, 10.0]),
                det(2, 0.5, [50.0, 50.0, 60.0, 60.0])
            ]
        );
    }

    #[test]
    fn overlapping_boxes_of_different_classes_are_kept() {
        let b = [0.0, 0.0, 10.0, 10.0];
        let mut dets = vec![det(0, 0.7, b), det(1, 0.8, b)];
        nms_in_place(&mut dets, 0.5);
        assert_eq!(dets, [det(1, 0.8, b), det(0, 0.7, b)]);
    }

    #[test]
    fn overlap_at_the_threshold_is_kept() {
        // IoU exactly 1/3: suppressed only above the threshold.
        let mut dets = vec![
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [5.0, 0.0, 15.0, 10.0]),
        ];
        nms_in_place(&mut dets, 50.0 / 150.0);
        assert_eq!(dets.len(), 2);
        nms_in_place(&mut dets, 0.3);
        assert_eq!(dets.len(), 1);
    }

    #[test]
    fn suppressed_boxes_do_not_suppress() {
        // b overlaps a and c; a suppresses b, so c (which only overlaps b) stays.
        let mut dets = vec![
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [4.0, 0.0, 14.0, 10.0]),
            det(0, 0.7, [8.0, 0.0, 18.0, 10.0]),
        ];
        nms_in_place(&mut dets, 0.4);
        let confidences: Vec<f32> = dets.iter().map(|d| d.confidence).collect();
        assert_eq!(confidences, [0.9, 0.7]);
    }

    #[test]
    fn equal_scores_keep_the_first_box() {
        let b = [0.0, 0.0, 10.0, 10.0];
        let mut dets = vec![
            det(7, 0.5, b),
            det(3, 0.5, b),
            det(7, 0.5, [0.5, 0.0, 10.0, 10.0]),
        ];
        nms_in_place(&mut dets, 0.5);
        assert_eq!(dets, [det(7, 0.5, b), det(3, 0.5, b)]);
    }

    #[test]
    fn sort_is_stable_and_total_past_the_small_run_size() {
        // 1000 disjoint boxes with repeating scores and a few NaNs; the box's x1 records its
        // original position.
        let mut dets: Vec<Detection> = (0..1000)
            .map(|i| {
                let x = i as f32 * 20.0;
                let score = if i % 97 == 0 {
                    f32::NAN
                } else {
                    (i % 7) as f32 / 10.0
                };
                det(0, score, [x, 0.0, x + 10.0, 10.0])
            })
            .collect();
        let mut expected = dets.clone();
        expected.sort_by(descending);
        nms_in_place(&mut dets, 0.5);
        assert_eq!(dets.len(), 1000);
        // Compare bit patterns so NaN equals NaN.
        let bits = |d: &[Detection]| -> Vec<(u32, u32)> {
            d.iter()
                .map(|d| (d.confidence.to_bits(), d.bbox[0].to_bits()))
                .collect()
        };
        assert_eq!(bits(&dets), bits(&expected));
        assert!(dets[0].confidence.is_nan());
    }

    #[test]
    fn steady_state_does_not_grow_the_vector() {
        let make = || -> Vec<Detection> {
            (0..300)
                .map(|i| det(i % 3, (i % 11) as f32, [0.0, 0.0, 1.0 + i as f32, 1.0]))
                .collect()
        };
        let mut dets = make();
        nms_in_place(&mut dets, 0.5);
        let capacity = dets.capacity();
        for _ in 0..3 {
            dets.clear();
            dets.extend(make());
            nms_in_place(&mut dets, 0.5);
            assert_eq!(dets.capacity(), capacity);
        }
    }

    #[test]
    fn empty_and_single_inputs() {
        let mut dets = Vec::new();
        nms_in_place(&mut dets, 0.5);
        assert!(dets.is_empty());
        let mut dets = vec![det(0, 0.1, [0.0, 0.0, 1.0, 1.0])];
        nms_in_place(&mut dets, 0.5);
        assert_eq!(dets.len(), 1);
    }
}
