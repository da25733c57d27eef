//! The test camera's frame stamp (`--stamp`), end to end: a client that decodes the stream reads
//! a capture time from every frame's pixels, and it is the time RTCP reports for that frame, so
//! a pipeline that cannot see RTCP (OpenCV) is timed like one that can.

use std::path::Path;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use roadsight::testcam::{TestCam, TestCamOptions, stamp};

const NTP_TO_UNIX_NS: u64 = 2_208_988_800 * 1_000_000_000;
/// Frames compared before the test is satisfied (the first RTCP report comes within ~1 s).
const WANTED: usize = 20;

#[test]
fn stamped_frames_carry_the_capture_time_rtcp_reports() {
    gst::init().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenetext01.jpg");
    let opts = TestCamOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        stamp: true,
        ..TestCamOptions::new(source)
    };
    let cam = TestCam::bind(opts).unwrap().spawn();

    let line = format!(
        "rtspsrc location={} latency=50 add-reference-timestamp-meta=true protocols=tcp \
         ! rtph264depay ! h264parse ! avdec_h264 ! video/x-raw,format=I420 \
         ! appsink name=sink sync=false",
        cam.url()
    );
    let pipeline = gst::parse::launch(&line)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();

    let ntp_caps = gst::Caps::new_empty_simple("timestamp/x-ntp");
    let (mut frames, mut unstamped, mut diffs_us) = (0, 0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while diffs_us.len() < WANTED && Instant::now() < deadline {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) else {
            continue;
        };
        frames += 1;
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                .unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let stamped = stamp::read_luma(
            frame.plane_data(0).unwrap(),
            stride,
            info.width(),
            info.height(),
        );
        let ntp = sample
            .buffer()
            .unwrap()
            .iter_meta::<gst::ReferenceTimestampMeta>()
            .find(|m| m.reference().can_intersect(&ntp_caps))
            .map(|m| (m.timestamp().nseconds() - NTP_TO_UNIX_NS) as f64 / 1000.0);
        match (stamped, ntp) {
            (Some(us), Some(ntp_us)) => diffs_us.push(us as f64 - ntp_us),
            (None, _) => unstamped += 1,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    cam.stop().unwrap();

    assert_eq!(
        diffs_us.len(),
        WANTED,
        "{frames} frames, {unstamped} without a stamp"
    );
    // Only the first frames (sent before the media played) may lack a stamp.
    assert!(
        unstamped <= 2,
        "{unstamped} of {frames} frames without a stamp"
    );
    // Both are the same clock reading, up to the 90 kHz RTP clock's rounding.
    let worst = diffs_us.iter().fold(0.0f64, |w, d| w.max(d.abs()));
    assert!(
        worst < 1000.0,
        "stamp − RTCP time up to {worst:.0} µs: {diffs_us:?}"
    );
}
