//! Unit tests of `decode`.

use super::*;
use crate::config::DecoderKind::{Detections, Yolov5, Yolov8};

const ALL: DecodeParams<'static> = DecodeParams {
    confidence: 0.25,
    nms_iou: 0.45,
    allowed: None,
    num_classes: 3,
};

fn decode_with(
    kind: DecoderKind,
    shape: &[i64],
    data: &[f32],
    params: &DecodeParams<'_>,
    letterbox: Letterbox,
) -> Result<Vec<Detection>, DecodeError> {
    let mut out = vec![det(0, 1.0, [0.0, 0.0, 1.0, 1.0])];
    let result = decode(kind, shape, data, params, &letterbox, &mut out);
    result.map(|()| out)
}

/// Source and model input the same size: boxes come back unchanged.
fn run(
    kind: DecoderKind,
    shape: &[i64],
    data: &[f32],
    params: &DecodeParams,
) -> Vec<Detection> {
    let identity = Letterbox::centered(640, 640, 640, 640);
    decode_with(kind, shape, data, params, identity).expect("decodes")
}

fn det(class: u32, confidence: f32, bbox: [f32; 4]) -> Detection {
    Detection {
        class,
        confidence,
        bbox,
    }
}

fn summary(dets: &[Detection]) -> Vec<(u32, f32)> {
    dets.iter().map(|d| (d.class, d.confidence)).collect()
}

/// `[1, 4 + C, A]` from one (cx, cy, w, h, scores) per anchor, written channel-major.
fn yolov8_tensor(anchors: &[([f32; 4], &[f32])]) -> (Vec<i64>, Vec<f32>) {
    let (n, classes) = (anchors.len(), anchors[0].1.len());
    let mut data = vec![0.0; (4 + classes) * n];
    for (a, (b, scores)) in anchors.iter().enumerate() {
        for (c, v) in b.iter().chain(scores.iter()).enumerate() {
            data[c * n + a] = *v;
        }
    }
    (vec![1, 4 + classes as i64, n as i64], data)
}

/// `[1, A, 5 + C]` from one (cx, cy, w, h, objectness, scores) per anchor.
fn yolov5_tensor(anchors: &[([f32; 5], &[f32])]) -> (Vec<i64>, Vec<f32>) {
    let width = 5 + anchors[0].1.len() as i64;
    let data = anchors
        .iter()
        .flat_map(|(b, s)| b.iter().chain(s.iter()).copied());
    (vec![1, anchors.len() as i64, width], data.collect())
}

#[test]
fn detections_keeps_rows_over_the_threshold() {
    #[rustfmt::skip]
    let data = [
        10.0, 20.0, 110.0, 220.0, 0.90, 2.0,
        300.0, 300.0, 400.0, 400.0, 0.10, 0.0, // below the threshold
        500.0, 10.0, 600.0, 60.0, 0.25, 1.0,   // exactly at it
    ];
    let out = run(Detections, &[1, 3, 6], &data, &ALL);
    let want = [
        det(2, 0.9, [10.0, 20.0, 110.0, 220.0]),
        det(1, 0.25, [500.0, 10.0, 600.0, 60.0]),
    ];
    assert_eq!(out, want);
}

#[test]
fn detections_skips_classes_out_of_range() {
    let row = |class: f32| [10.0, 10.0, 50.0, 50.0, 0.9, class];
    for class in [3.0, -1.0, f32::NAN, f32::INFINITY, 1e12] {
        assert!(
            run(Detections, &[1, 1, 6], &row(class), &ALL).is_empty(),
            "{class}"
        );
    }
    // A float index a hair off an integer still names its class.
    assert_eq!(
        run(Detections, &[1, 1, 6], &row(1.999_999), &ALL)[0].class,
        2
    );
}

#[test]
fn detections_applies_the_allow_list_and_nms() {
    #[rustfmt::skip]
    let data = [
        10.0, 10.0, 50.0, 50.0, 0.7, 2.0,
        12.0, 10.0, 52.0, 50.0, 0.9, 2.0, // same object, better score
        12.0, 10.0, 52.0, 50.0, 0.8, 1.0, // same place, other class
        60.0, 10.0, 90.0, 50.0, 0.8, 0.0, // class not allowed
    ];
    let params = DecodeParams {
        allowed: Some(&[1, 2]),
        ..ALL
    };
    let out = run(Detections, &[1, 4, 6], &data, &params);
    assert_eq!(summary(&out), [(2, 0.9), (1, 0.8)]);
}

#[test]
fn yolov8_takes_the_best_class_of_each_anchor() {
    let (shape, data) = yolov8_tensor(&[
        ([100.0, 100.0, 40.0, 20.0], &[0.1, 0.7, 0.3]),
        ([300.0, 200.0, 10.0, 10.0], &[0.2, 0.1, 0.2]), // best 0.2: below the threshold
        ([500.0, 400.0, 60.0, 80.0], &[0.3, 0.3, 0.6]),
    ]);
    let out = run(Yolov8, &shape, &data, &ALL);
    let want = [
        det(1, 0.7, [80.0, 90.0, 120.0, 110.0]),
        det(2, 0.6, [470.0, 360.0, 530.0, 440.0]),
    ];
    assert_eq!(out, want);
}

#[test]
fn yolov8_suppresses_overlaps_within_a_class_only() {
    let (shape, data) = yolov8_tensor(&[
        ([100.0, 100.0, 50.0, 50.0], &[0.8, 0.0, 0.0]),
        ([102.0, 101.0, 50.0, 50.0], &[0.9, 0.0, 0.0]),
        ([101.0, 100.0, 50.0, 50.0], &[0.0, 0.0, 0.5]),
    ]);
    assert_eq!(
        summary(&run(Yolov8, &shape, &data, &ALL)),
        [(0, 0.9), (2, 0.5)]
    );
}

#[test]
fn yolov8_filters_the_best_class_not_the_best_allowed_one() {
    // Best class 0 is not allowed; class 1 at 0.6 is not promoted in its place.
    let (shape, data) = yolov8_tensor(&[([100.0, 100.0, 50.0, 50.0], &[0.9, 0.6, 0.0])]);
    let params = DecodeParams {
        allowed: Some(&[1, 2]),
        ..ALL
    };
    assert!(run(Yolov8, &shape, &data, &params).is_empty());
}

#[test]
fn yolov8_needs_the_configured_class_count() {
    let (shape, data) = yolov8_tensor(&[([100.0, 100.0, 50.0, 50.0], &[0.9, 0.6])]);
    let err = decode_with(Yolov8, &shape, &data, &ALL, Letterbox::centered(1, 1, 1, 1));
    assert_eq!(
        err.unwrap_err().to_string(),
        "decoder `yolov8` expects [1, 7, anchors] for 3 classes, the output is [1, 6, 1]"
    );
}

#[test]
fn yolov5_scores_objectness_times_class() {
    let (shape, data) = yolov5_tensor(&[
        ([100.0, 100.0, 40.0, 20.0, 0.9], &[0.1, 0.8, 0.3]), // 0.72, class 1
        ([300.0, 300.0, 40.0, 20.0, 0.4], &[0.9, 0.1, 0.0]), // 0.36, class 0
        ([500.0, 500.0, 40.0, 20.0, 0.2], &[0.9, 0.9, 0.9]), // 0.18: dropped
    ]);
    let out = run(Yolov5, &shape, &data, &ALL);
    let want = [
        det(1, 0.9 * 0.8, [80.0, 90.0, 120.0, 110.0]),
        det(0, 0.4 * 0.9, [280.0, 290.0, 320.0, 310.0]),
    ];
    assert_eq!(out, want);
}

#[test]
fn yolov5_suppresses_and_filters() {
    let (shape, data) = yolov5_tensor(&[
        ([100.0, 100.0, 50.0, 50.0, 1.0], &[0.0, 0.0, 0.8]),
        ([101.0, 100.0, 50.0, 50.0, 1.0], &[0.0, 0.0, 0.9]),
        ([400.0, 400.0, 50.0, 50.0, 1.0], &[0.9, 0.0, 0.0]),
    ]);
    let params = DecodeParams {
        allowed: Some(&[2]),
        ..ALL
    };
    assert_eq!(summary(&run(Yolov5, &shape, &data, &params)), [(2, 0.9)]);
}

#[test]
fn boxes_come_back_in_source_pixels() {
    // 800×600 into 512×512: scale 0.64, 64 rows of border on top.
    let lb = Letterbox::centered(800, 600, 512, 512);
    #[rustfmt::skip]
    let data = [
        0.0, 64.0, 256.0, 256.0, 0.9, 0.0,     // top-left quarter of the frame
        256.0, 200.0, 512.0, 500.0, 0.8, 1.0,  // runs into the bottom border: clamped
        100.0, 460.0, 200.0, 510.0, 0.7, 1.0,  // wholly in the border: dropped
    ];
    let out = decode_with(Detections, &[1, 3, 6], &data, &ALL, lb).unwrap();
    let want = [
        det(0, 0.9, [0.0, 0.0, 400.0, 300.0]),
        det(1, 0.8, [400.0, 212.5, 800.0, 600.0]),
    ];
    assert_eq!(out, want);
    // Portrait 480×640 into 512×512: scale 0.8, 64 columns of border on the left.
    let lb = Letterbox::centered(480, 640, 512, 512);
    let (shape, data) = yolov8_tensor(&[([256.0, 256.0, 80.0, 160.0], &[0.0, 0.9, 0.0])]);
    let out = decode_with(Yolov8, &shape, &data, &ALL, lb).unwrap();
    assert_eq!(out, [det(1, 0.9, [190.0, 220.0, 290.0, 420.0])]);
}

#[test]
fn degenerate_boxes_and_nan_scores_are_dropped() {
    #[rustfmt::skip]
    let data = [
        50.0, 50.0, 50.0, 90.0, 0.9, 0.0,   // no width
        90.0, 90.0, 50.0, 50.0, 0.9, 0.0,   // corners swapped
        f32::NAN, 0.0, 10.0, 10.0, 0.9, 0.0,
        0.0, 0.0, f32::INFINITY, 10.0, 0.9, 0.0,
        0.0, 0.0, 10.0, 10.0, f32::NAN, 0.0,
    ];
    assert!(run(Detections, &[1, 5, 6], &data, &ALL).is_empty());
    let (shape, data) = yolov8_tensor(&[([100.0, 100.0, 50.0, 50.0], &[f32::NAN; 3])]);
    assert!(run(Yolov8, &shape, &data, &ALL).is_empty());
    let (shape, data) = yolov5_tensor(&[([100.0, 100.0, 50.0, 50.0, f32::NAN], &[0.9; 3])]);
    assert!(run(Yolov5, &shape, &data, &ALL).is_empty());
}

#[test]
fn empty_outputs_decode_to_nothing() {
    assert!(run(Detections, &[1, 0, 6], &[], &ALL).is_empty());
    assert!(run(Yolov8, &[1, 7, 0], &[], &ALL).is_empty());
    assert!(run(Yolov5, &[1, 0, 8], &[], &ALL).is_empty());
}

#[test]
fn wrong_shapes_are_errors_and_leave_out_empty() {
    let data = [0.5; 24];
    let cases: [(DecoderKind, &[i64]); 8] = [
        (Detections, &[1, 4]),
        (Detections, &[1, 4, 6, 1]),
        (Detections, &[2, 2, 6]),
        (Detections, &[1, 6, 4]),
        (Detections, &[1, -1, 6]),
        (Yolov8, &[1, 8, 3]),
        (Yolov5, &[1, 4, 6]),
        (Yolov5, &[1, -3, 8]),
    ];
    for (kind, shape) in cases {
        let mut out = vec![det(0, 1.0, [0.0, 0.0, 1.0, 1.0])];
        let lb = Letterbox::centered(640, 640, 640, 640);
        let err = decode(kind, shape, &data, &ALL, &lb, &mut out).unwrap_err();
        assert!(
            matches!(err, DecodeError::ShapeMismatch { .. }),
            "{kind:?} {shape:?}"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn data_shorter_or_longer_than_the_shape_is_an_error() {
    let lb = Letterbox::centered(640, 640, 640, 640);
    for len in [0, 23, 25] {
        let err = decode_with(Detections, &[1, 4, 6], &vec![0.5; len], &ALL, lb);
        assert!(matches!(err, Err(DecodeError::LengthMismatch { got, .. }) if got == len));
    }
    // A product that overflows cannot match any buffer.
    let err = decode_with(Yolov5, &[1, i64::MAX, 8], &[0.5; 8], &ALL, lb);
    assert!(matches!(err, Err(DecodeError::LengthMismatch { .. })));
}

#[test]
fn out_keeps_its_capacity_from_frame_to_frame() {
    let (shape, data) = yolov8_tensor(&[
        ([100.0, 100.0, 50.0, 50.0], &[0.9, 0.0, 0.0]),
        ([300.0, 300.0, 50.0, 50.0], &[0.0, 0.8, 0.0]),
    ]);
    let lb = Letterbox::centered(640, 640, 640, 640);
    let mut out = Vec::new();
    decode(Yolov8, &shape, &data, &ALL, &lb, &mut out).unwrap();
    let capacity = out.capacity();
    for _ in 0..5 {
        decode(Yolov8, &shape, &data, &ALL, &lb, &mut out).unwrap();
        assert_eq!((out.len(), out.capacity()), (2, capacity));
    }
}

#[test]
fn arbitrary_shapes_and_values_never_panic() {
    // A small xorshift generator: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    let dims = [-2, -1, 0, 1, 2, 3, 6, 7, 8, i64::MAX, i64::MIN];
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let values = [
        0.0, 0.3, 0.9, 1.0, -1.0, 2.0, 20.0, 300.0, 1e30, nan, inf, -inf, -0.0,
    ];
    let lb = Letterbox::centered(1920, 1080, 640, 384);
    let (mut out, mut decoded) = (Vec::new(), 0);
    for _ in 0..20_000 {
        let kind = [Detections, Yolov8, Yolov5][next() % 3];
        let params = DecodeParams {
            num_classes: next() % 4,
            ..ALL
        };
        // Half the shapes are the decoder's layout, so decoding gets past the checks.
        let (c, n) = (params.num_classes as i64, (next() % 6) as i64);
        let shape = match (next() % 2, kind) {
            (0, _) => (0..next() % 5).map(|_| dims[next() % dims.len()]).collect(),
            (_, Detections) => vec![1, n, 6],
            (_, Yolov8) => vec![1, 4 + c, n],
            (_, Yolov5) => vec![1, n, 5 + c],
        };
        // Mostly as long as the shape says.
        let len = shape
            .iter()
            .try_fold(1, |p: usize, &d| p.checked_mul(d.try_into().ok()?));
        let len = len
            .filter(|&n| n < 512 && next() % 4 != 0)
            .unwrap_or(next() % 64);
        let data: Vec<f32> = (0..len).map(|_| values[next() % values.len()]).collect();
        let _ = check_output_shape(kind, &shape, params.num_classes);
        if decode(kind, &shape, &data, &params, &lb, &mut out).is_ok() {
            decoded += out.len();
            for d in &out {
                assert!(d.confidence >= 0.25 && (d.class as usize) < params.num_classes);
                assert!(d.bbox[0] < d.bbox[2] && d.bbox[1] < d.bbox[3], "{d:?}");
                assert!(d.bbox[0] >= 0.0 && d.bbox[2] <= 1920.0 && d.bbox[3] <= 1080.0);
            }
        }
    }
    assert!(decoded > 0, "no input got through the decoders");
}

#[test]
fn check_accepts_dynamic_batch_and_box_counts() {
    let cases: [(DecoderKind, &[i64]); 7] = [
        (Detections, &[1, 100, 6]),
        (Detections, &[-1, -1, 6]),
        (Yolov8, &[1, 84, 8400]),
        (Yolov8, &[-1, 84, -1]),
        (Yolov8, &[1, -1, -1]),
        (Yolov5, &[1, 25200, 85]),
        (Yolov5, &[-1, -1, 85]),
    ];
    for (kind, shape) in cases {
        assert_eq!(
            check_output_shape(kind, shape, 80),
            Ok(()),
            "{kind:?} {shape:?}"
        );
    }
}

#[test]
fn check_names_the_expected_layout() {
    let message = |kind, shape: &[i64], classes| check_output_shape(kind, shape, classes);
    assert_eq!(
        message(Yolov8, &[1, 100, 6], 80).unwrap_err(),
        "decoder `yolov8` expects [1, 84, anchors] for 80 classes, the model gives [1, 100, 6]"
    );
    assert_eq!(
        message(Yolov5, &[1, 25200, 85], 3).unwrap_err(),
        "decoder `yolov5` expects [1, anchors, 8] for 3 classes, the model gives [1, 25200, 85]"
    );
    assert_eq!(
        message(Detections, &[1, 100], 80).unwrap_err(),
        "decoder `detections` expects [1, detections, 6], the model gives [1, 100]"
    );
    // A static batch other than 1 is not supported; -2 is not a dimension.
    assert!(message(Detections, &[2, 100, 6], 80).is_err());
    assert!(message(Yolov8, &[1, 84, -2], 80).is_err());
}
