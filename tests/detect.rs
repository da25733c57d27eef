//! Camera → daemon → local Redis with the real model: what is in the picture ends up in the
//! stream, in the schema-1 format.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, metric, wait_for};

const SCHEMA_1_FIELDS: [&str; 14] =
    ["v", "site", "cam", "run", "seq", "ts", "clock", "lat", "inf", "w", "h", "model", "n", "det"];

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

fn detections(entry: &HashMap<String, String>) -> Vec<(String, f64, [f64; 4])> {
    let det: serde_json::Value = serde_json::from_str(&entry["det"]).expect("det is JSON");
    det.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f64> = d["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (d["cls"].as_str().unwrap().to_owned(), d["conf"].as_f64().unwrap(), [b[0], b[1], b[2], b[3]])
        })
        .collect()
}

#[test]
fn car_and_people_in_a_still_image_are_published_where_they_are() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("street", &cam.url, "");
    let daemon = Daemon::start(&config);
    let key = config.stream_key("street");

    let entry = wait_for(Duration::from_secs(30), "an entry with the car and a person", || {
        redis.entries(&key).into_iter().map(|(_, e)| e).find(|e| {
            let dets = detections(e);
            let car = dets.iter().any(|(c, conf, b)| c == "car" && *conf >= 0.5 && iou(*b, [400.0, 423.0, 697.0, 585.0]) >= 0.5);
            car && dets.iter().any(|(c, ..)| c == "person")
        })
    });

    let mut names: Vec<&str> = entry.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = SCHEMA_1_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "exactly the schema-1 fields");
    assert_eq!(entry["v"], "1");
    assert_eq!(entry["site"], "test");
    assert_eq!(entry["cam"], "street");
    assert_eq!((entry["w"].as_str(), entry["h"].as_str()), ("800", "600"));
    assert!(entry["model"].starts_with("centernet_mnv3_coco_512_u8@"), "{}", entry["model"]);
    assert_eq!(entry["n"].parse::<usize>().unwrap(), detections(&entry).len());
    assert!(["ntp", "arrival"].contains(&entry["clock"].as_str()));
    let lat: i64 = entry["lat"].parse().unwrap();
    assert!(lat > 0 && lat < 10_000_000, "lat {lat} µs");
    assert!(entry["inf"].parse::<i64>().unwrap() > 0);

    // The camera sends RTCP sender reports: after the first few seconds, capture times come
    // from its clock.
    wait_for(Duration::from_secs(15), "an entry with clock=ntp", || {
        redis.entries(&key).into_iter().find(|(_, e)| e["clock"] == "ntp")
    });

    // /metrics agrees with the stream: what was counted as published is in Redis.
    let text = daemon.scrape();
    let published = metric(&text, "roadsight_entries_published_total", &[("camera", "street")]).unwrap();
    let stored = redis.entries(&key).len() as f64;
    assert!(published > 0.0 && stored >= published, "published {published}, stored {stored}");
    assert!(metric(&text, "roadsight_camera_up", &[("camera", "street")]) == Some(1.0), "{text}");
    assert!(metric(&text, "roadsight_process_resident_memory_bytes", &[]).unwrap() > 1e6);
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn an_empty_scene_keeps_publishing_entries_with_no_detections() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("side", &cam.url, "");
    let daemon = Daemon::start(&config);
    let key = config.stream_key("side");

    let entries = wait_for(Duration::from_secs(30), "10 entries", || {
        let e = redis.entries(&key);
        (e.len() >= 10).then_some(e)
    });
    for (_, e) in &entries {
        assert_eq!(e["n"], "0");
        assert_eq!(e["det"], "[]");
        // The camera serves even dimensions (4:2:0 H.264): 950×245 goes out as 950×244.
        assert_eq!((e["w"].as_str(), e["h"].as_str()), ("950", "244"));
    }
    let seqs: Vec<u64> = entries.iter().map(|(_, e)| e["seq"].parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq increases: {seqs:?}");
    drop(daemon);
}

#[test]
fn an_h265_camera_is_decoded_too() {
    let redis = Redis::start();
    let cam = TestCam::start_with(&fixture("licenseplate_motion.jpg"), 0, &["--codec", "h265"]);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("rear", &cam.url, "");
    let daemon = Daemon::start(&config);
    let key = config.stream_key("rear");

    let entry = wait_for(Duration::from_secs(30), "an entry with the car", || {
        redis.entries(&key).into_iter().map(|(_, e)| e).find(|e| {
            detections(e).iter().any(|(c, _, b)| c == "car" && iou(*b, [4.0, 21.0, 598.0, 467.0]) >= 0.5)
        })
    });
    assert_eq!((entry["w"].as_str(), entry["h"].as_str()), ("600", "482"));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(log.contains("codec=H265"), "{log}");
}
