//! The physical floor, on the same machine and inputs: (1) the same GStreamer decode + fps cap +
//! scale pipeline as capture, to a `fakesink`, as a `gst-launch-1.0` child; (2) ONNX Runtime
//! alone on the same model and a real letterboxed frame, in a tight loop in this process. Both
//! also say what they hold in memory: the files the decoder loads, the session's resident memory.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::measure::{Quantiles, cpu_seconds, resident_by_mapping};
use super::memory;
use super::procs::{command, repo, terminate};

/// The decode floor of one camera.
pub(crate) struct DecodeFloor {
    /// CPU seconds per processed frame (decode of every source frame, scaling of the `fps` kept).
    pub(crate) cpu_per_frame: f64,
    /// The files the decoder brings into a process: those the floor's pipeline maps and the same
    /// pipeline without `avdec_h264` does not (its plugin, libav and what they link).
    pub(crate) decoder_files: BTreeSet<String>,
}

/// The capture chain after the decoder, as the daemon builds it for the CPU.
fn after_decoder(fps: u32) -> String {
    format!(
        "videorate drop-only=true max-rate={fps} ! videoconvertscale add-borders=true \
         ! video/x-raw,format=RGB,width=512,height=512,pixel-aspect-ratio=1/1 ! fakesink sync=false"
    )
}

/// Runs the decode floor for `seconds` of steady state, then the same pipeline without the
/// decoder for a few seconds to tell the decoder's files apart.
pub(crate) fn decode(url: &str, fps: u32, seconds: f64) -> DecodeFloor {
    let source = format!("rtspsrc location={url} latency=50 protocols=tcp ! rtph264depay ! h264parse");
    let mut child = gst_launch(&format!("{source} ! avdec_h264 ! {}", after_decoder(fps)));
    // Connection and first keyframe are not the steady state.
    std::thread::sleep(Duration::from_secs(3));
    let pid = [child.id()];
    let start = cpu_seconds(&pid);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let used = cpu_seconds(&pid) - start;
    let with_decoder = mapped_files(child.id());
    terminate(&mut child);
    // The same elements but the decoder: the parsed stream to one sink, test frames to the rest.
    let mut child = gst_launch(&format!("{source} ! fakesink sync=false videotestsrc is-live=true ! {}", after_decoder(fps)));
    std::thread::sleep(Duration::from_secs(3));
    let without = mapped_files(child.id());
    terminate(&mut child);
    DecodeFloor {
        cpu_per_frame: used / (seconds * f64::from(fps)),
        decoder_files: with_decoder.difference(&without).cloned().collect(),
    }
}

fn gst_launch(line: &str) -> std::process::Child {
    command("gst-launch-1.0")
        .args(["-q"])
        .args(line.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools)")
}

/// The files a process maps, from `/proc/PID/maps`.
fn mapped_files(pid: u32) -> BTreeSet<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')).map(str::to_owned).collect()
}

/// ONNX Runtime alone: per-run latency quantiles (ms) and CPU seconds per run, and what the
/// session and the library added to this process's resident memory (MiB).
pub(crate) struct OrtFloor {
    pub(crate) latency_ms: Quantiles,
    pub(crate) cpu_per_run: f64,
    pub(crate) runs: usize,
    pub(crate) anonymous_mib: f64,
    pub(crate) library_mib: f64,
}

pub(crate) fn ort_alone(ort_library: &Path, image: &Path, seconds: f64) -> OrtFloor {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "site = \"floor\"\n[model]\npath = \"{}\"\nlabels = \"{}\"\nort_library = \"{}\"\n",
        repo().join("models/centernet_mnv3_coco_512_u8.onnx").display(),
        repo().join("models/coco80.names").display(),
        ort_library.display()
    );
    std::fs::write(dir.path().join("roadsight.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
    let config = roadsight::config::load(&dir.path().join("roadsight.toml")).expect("floor config");
    let (rgb, letterbox) = letterboxed(image, 512);
    let own = [std::process::id()];
    let anonymous_before = memory::anonymous(&resident_by_mapping(&own));
    let mut detector = roadsight::infer::Detector::open(&config.model).expect("load the model");
    for _ in 0..5 {
        detector.detect(&rgb, &letterbox, 0.35, None).unwrap(); // warm-up: arena, caches
    }
    let cpu_start = process_cpu();
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed().as_secs_f64() < seconds {
        let (_, times) = detector.detect(&rgb, &letterbox, 0.35, None).unwrap();
        latencies.push(times.inference.as_secs_f64() * 1e3);
    }
    let cpu = process_cpu() - cpu_start;
    let resident = resident_by_mapping(&own);
    drop(detector);
    OrtFloor {
        cpu_per_run: cpu / latencies.len() as f64,
        runs: latencies.len(),
        latency_ms: Quantiles::of(&mut latencies),
        anonymous_mib: memory::anonymous(&resident) - anonymous_before,
        library_mib: resident.iter().filter(|(m, _)| m.contains("libonnxruntime")).map(|(_, mib)| mib).sum(),
    }
}

/// The image as capture hands it to inference: decoded, letterboxed to `size`², packed RGB.
fn letterboxed(image: &Path, size: u32) -> (Vec<u8>, roadsight::infer::Letterbox) {
    gst::init().unwrap();
    let line = format!(
        "filesrc location={} ! decodebin ! videoconvertscale add-borders=true \
         ! video/x-raw,format=RGB,width={size},height={size},pixel-aspect-ratio=1/1 ! appsink name=sink",
        image.display()
    );
    let pipeline = gst::parse::launch(&line).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("a decoded frame");
    let rgb = sample.buffer().unwrap().map_readable().unwrap().to_vec();
    pipeline.set_state(gst::State::Null).unwrap();
    let (w, h) = image_size(image);
    (rgb, roadsight::infer::Letterbox::centered(w, h, size, size))
}

/// Width and height of the decoded image.
fn image_size(image: &Path) -> (u32, u32) {
    let line = format!("filesrc location={} ! decodebin ! videoconvert ! appsink name=sink", image.display());
    let pipeline = gst::parse::launch(&line).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("a decoded frame");
    let info = gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    (info.width(), info.height())
}

/// This process's CPU time, seconds.
fn process_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
