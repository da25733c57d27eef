//! Batched inference through the real ONNX Runtime: a model with a dynamic batch dimension
//! runs several frames in one call and gives exactly what one-at-a-time runs give; the default
//! (fixed batch 1) model reads the frame in place.

mod support;

use std::path::Path;

use roadsight::config::{self, ModelConfig};
use roadsight::infer::{Detector, Input, Letterbox, Pixels};
use support::{fixture, ort_library, repo};

fn model_config(model: &Path, labels: &[&str], extra: &str) -> ModelConfig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("labels.names"), labels.join("\n")).unwrap();
    let text = format!(
        "site = \"t\"\n[model]\npath = \"{}\"\nlabels = \"labels.names\"\nort_library = \"{}\"\nconfidence = 0.01\n{extra}\n",
        model.display(),
        ort_library().display()
    );
    std::fs::write(dir.path().join("roadsight.toml"), text).unwrap();
    std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
    config::load(&dir.path().join("roadsight.toml")).expect("test config").model
}

/// A 64 × 64 frame of one colour.
fn frame(r: u8, g: u8) -> Vec<u8> {
    [r, g, 7].repeat(64 * 64)
}

type Found = Vec<(u32, f32, [f32; 4])>;

fn run_batch(detector: &mut Detector, frames: &[Vec<u8>]) -> Vec<Found> {
    let letterbox = Letterbox::centered(64, 64, 64, 64);
    let mut found = vec![Vec::new(); frames.len()];
    detector
        .detect_batch(
            frames.len(),
            |i| Input { pixels: Pixels::Host(&frames[i]), letterbox: &letterbox, confidence: 0.01, allowed: None },
            |i, result| {
                let (dets, _) = result.expect("decodes");
                found[i] = dets.iter().map(|d| (d.class, d.confidence, d.bbox)).collect();
            },
        )
        .expect("batched run");
    found
}

#[test]
fn a_dynamic_batch_model_gives_the_same_detections_batched_and_one_at_a_time() {
    let config = model_config(&fixture("batch_u8.onnx"), &["red", "green"], "max_batch = 4");
    let mut detector = Detector::open(&config).expect("load the batch model");
    assert!(detector.shape().dynamic_batch);
    assert_eq!(detector.max_batch(), 4, "max_batch applies to a dynamic batch dimension");

    let frames = [frame(255, 0), frame(51, 102), frame(0, 204), frame(128, 128)];
    let batched = run_batch(&mut detector, &frames);
    let single: Vec<Found> = frames.iter().map(|f| run_batch(&mut detector, std::slice::from_ref(f)).remove(0)).collect();
    assert_eq!(batched, single, "batched outputs are bit-identical to one-at-a-time outputs");
    // And they are each frame's own: the score of class 0 is the frame's mean red.
    let red = |found: &Found| found.iter().find(|d| d.0 == 0).map_or(0.0, |d| d.1);
    assert!((red(&batched[0]) - 1.0).abs() < 1e-4 && (red(&batched[1]) - 0.2).abs() < 1e-4, "{batched:?}");
    assert_eq!(batched[2].iter().filter(|d| d.0 == 0).count(), 0, "no red in frame 2");

    // More frames than the batch size is refused; the caller never builds such a batch.
    let five = [frames.as_slice(), &frames[..1]].concat();
    let letterbox = Letterbox::centered(64, 64, 64, 64);
    let refused = detector.detect_batch(5, |i| Input { pixels: Pixels::Host(&five[i]), letterbox: &letterbox, confidence: 0.1, allowed: None }, |_, _| {});
    assert!(refused.is_err());
}

#[test]
fn tensor_handles_kept_between_runs_read_each_frame_afresh() {
    // The detector keeps ONNX Runtime's tensor handle per input address and shape: a buffer the
    // scaler's pool hands out again holds a new frame, and that new frame is what the model reads.
    let config = model_config(&fixture("batch_u8.onnx"), &["red", "green"], "max_batch = 4");
    let mut detector = Detector::open(&config).expect("load the batch model");
    let red = |found: &Found| found.iter().find(|d| d.0 == 0).map_or(0.0, |d| d.1);

    let mut buffer = vec![frame(255, 0)];
    let address = buffer[0].as_ptr();
    assert!((red(&run_batch(&mut detector, &buffer)[0]) - 1.0).abs() < 1e-4);
    buffer[0].copy_from_slice(&frame(51, 102));
    assert_eq!(buffer[0].as_ptr(), address, "same buffer, new frame");
    let again = run_batch(&mut detector, &buffer);
    assert!((red(&again[0]) - 0.2).abs() < 1e-4, "the new frame's own score: {again:?}");
    assert_eq!(detector.input_handles_made(), 1, "one handle for one buffer, kept for the second run");

    // More distinct buffers than the detector keeps handles for (48): the oldest are replaced,
    // and every frame still gets its own result, in batches too.
    let frames: Vec<Vec<u8>> = (0..60).map(|i| frame((i * 4) as u8, 0)).collect();
    for round in 0..2 {
        for (i, f) in frames.iter().enumerate() {
            let found = run_batch(&mut detector, std::slice::from_ref(f));
            let want = (i * 4) as f32 / 255.0;
            assert!((red(&found[0]) - want).abs() < 1e-4, "round {round}, frame {i}: {found:?}");
        }
        let batched = run_batch(&mut detector, &frames[..4]);
        assert_eq!(batched.len(), 4);
        assert!((red(&batched[3]) - 12.0 / 255.0).abs() < 1e-4, "{batched:?}");
    }
    // 1 + 60 frames + the batch buffer in the first round; cycling over more places than it
    // keeps, the second round finds its handles replaced and makes them again.
    assert!(detector.input_handles_made() > 62, "handles replaced when more places than it keeps");
}

#[test]
fn a_frame_of_the_wrong_size_fails_its_batch_and_nothing_is_decoded() {
    let config = model_config(&fixture("batch_u8.onnx"), &["red", "green"], "max_batch = 2");
    let mut detector = Detector::open(&config).unwrap();
    let frames = [frame(10, 10), vec![0u8; 12]];
    let letterbox = Letterbox::centered(64, 64, 64, 64);
    let mut called = 0;
    let result = detector.detect_batch(2, |i| Input { pixels: Pixels::Host(&frames[i]), letterbox: &letterbox, confidence: 0.1, allowed: None }, |_, _| called += 1);
    assert!(result.unwrap_err().to_string().contains("12 bytes"));
    assert_eq!(called, 0);
}

#[test]
fn a_fixed_batch_model_runs_one_frame_at_a_time_and_reads_the_gstreamer_buffer_in_place() {
    use gstreamer as gst;
    let config = model_config(&repo().join("models/centernet_mnv3_coco_512_u8.onnx"), &["person"; 80], "max_batch = 8");
    let mut detector = Detector::open(&config).expect("load the default model");
    assert!(!detector.shape().dynamic_batch);
    assert_eq!(detector.max_batch(), 1, "a fixed batch-1 model is never batched");

    // A frame as capture hands it over: a GStreamer buffer, mapped readable.
    gst::init().unwrap();
    let pixels = gst::Buffer::from_slice(vec![90u8; 512 * 512 * 3]).into_mapped_buffer_readable().unwrap();
    let letterbox = Letterbox::centered(512, 512, 512, 512);
    detector.detect(&pixels, &letterbox, 0.35, None).expect("runs");
    assert_eq!(
        detector.last_input_address(),
        pixels.as_ptr() as usize,
        "the tensor ONNX Runtime read is the mapped buffer itself (zero copy)"
    );
}
