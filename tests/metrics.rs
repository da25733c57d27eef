//! `/metrics` scraped and parsed: what the counters say agrees with what is on the streams.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{ConfigDir, DROPS_AFTER_CAPTURE, Daemon, Redis, TestCam, fixture, metric, summary_value, wait_for};

/// Objects per class name over every entry of a stream.
fn classes_on_stream(entries: &[(String, std::collections::HashMap<String, String>)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, fields) in entries {
        let det: serde_json::Value = serde_json::from_str(&fields["det"]).unwrap();
        let objects = det.as_array().unwrap();
        assert_eq!(objects.len().to_string(), fields["n"]);
        for object in objects {
            *counts.entry(object["cls"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn counters_agree_with_the_entries_on_the_streams() {
    let redis = Redis::start();
    let cams = [
        ("street", TestCam::start(&fixture("scenetext01.jpg"), 0)),
        ("plate", TestCam::start(&fixture("licenseplate_motion.jpg"), 0)),
    ];
    let config = ConfigDir::new(&redis.url(), "");
    for (id, cam) in &cams {
        config.camera(id, &cam.url, "fps = 5");
    }
    let daemon = Daemon::start(&config);
    for (id, _) in &cams {
        wait_for(Duration::from_secs(30), "10 entries", || (redis.entries(&config.stream_key(id)).len() >= 10).then_some(()));
    }
    // Stop the cameras so the counters stand still, then compare.
    for (_, cam) in cams {
        cam.kill();
    }
    // Down, and nothing left in flight: two scrapes a second apart agree.
    let published = |text: &str| text.lines().filter(|l| l.contains("published")).map(str::to_owned).collect::<Vec<_>>();
    let mut previous = String::new();
    let text = wait_for(Duration::from_secs(20), "both cameras down and the counters still", || {
        std::thread::sleep(Duration::from_secs(1));
        let text = daemon.scrape();
        let down = ["street", "plate"].iter().all(|c| metric(&text, "roadsight_camera_up", &[("camera", c)]) == Some(0.0));
        let still = published(&text) == published(&previous);
        previous = text.clone();
        (down && still).then_some(text)
    });

    let value = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"));
    let mut all_classes = 0;
    for camera in ["street", "plate"] {
        let c = [("camera", camera)];
        let entries = redis.entries(&config.stream_key(camera));
        let published = value("roadsight_entries_published_total", &c);
        assert_eq!(published, entries.len() as f64, "{camera}: published = XLEN");
        assert_eq!(value("roadsight_capture_to_publish_seconds_count", &c), published);
        let processed = value("roadsight_frames_processed_total", &c);
        assert_eq!(value("roadsight_inference_seconds_count", &c), processed);
        let drops: f64 = DROPS_AFTER_CAPTURE
            .iter()
            .map(|r| metric(&text, "roadsight_frames_dropped_total", &[("camera", camera), ("reason", r)]).unwrap())
            .sum();
        assert_eq!(value("roadsight_frames_captured_total", &c), published + drops, "{camera}: captured = published + drops");
        assert!(value("roadsight_camera_reconnects_total", &c) >= 1.0);

        let on_stream = classes_on_stream(&entries);
        assert!(!on_stream.is_empty(), "{camera}: the fixture has objects");
        for (class, n) in &on_stream {
            assert_eq!(value("roadsight_detections_total", &[("camera", camera), ("class", class)]), *n as f64, "{camera} {class}");
            all_classes += 1;
        }
        // Every class of the labels file has its series from the start; only those on the
        // stream count anything.
        let series: Vec<&str> =
            text.lines().filter(|l| l.starts_with("roadsight_detections_total{") && l.contains(&format!("camera=\"{camera}\""))).collect();
        assert_eq!(series.len(), 80, "one series per COCO class");
        let counted = series.iter().filter(|l| !l.ends_with(" 0")).count();
        assert_eq!(counted, on_stream.len(), "no class counted that is not on the stream");
    }
    assert!(all_classes >= 2);
    assert_eq!(value("roadsight_redis_errors_total", &[]), 0.0);
    assert!(value("roadsight_process_resident_memory_bytes", &[]) > 16.0 * 1024.0 * 1024.0);
    assert_eq!(value("roadsight_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    for camera in ["street", "plate"] {
        let published = metric(&text, "roadsight_entries_published_total", &[("camera", camera)]).unwrap();
        assert_eq!(summary_value(&log, camera, "published"), Some(published as u64), "the summary line agrees");
    }
}
