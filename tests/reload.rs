//! `systemctl reload` (SIGHUP): camera files added, removed and changed are applied while the
//! daemon runs; an untouched camera keeps running without a gap; a bad file changes nothing.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, metric, total_dropped, wait_for};

type Entry = (String, HashMap<String, String>);

fn entries(redis: &Redis, config: &ConfigDir, camera: &str) -> Vec<Entry> {
    redis.entries(&config.stream_key(camera))
}

/// Waits until `camera` has `n` more entries than it has now.
fn wait_more(redis: &Redis, config: &ConfigDir, camera: &str, n: usize) {
    let start = entries(redis, config, camera).len();
    wait_for(Duration::from_secs(30), &format!("{n} more entries of `{camera}`"), || {
        (entries(redis, config, camera).len() >= start + n).then_some(())
    });
}

fn seq(entry: &Entry) -> u64 {
    entry.1["seq"].parse().unwrap()
}

/// Milliseconds part of a stream entry ID.
fn id_ms(entry: &Entry) -> u64 {
    entry.0.split('-').next().unwrap().parse().unwrap()
}

#[test]
fn cameras_are_added_removed_and_changed_and_the_rest_runs_on() {
    let redis = Redis::start();
    let busy = TestCam::start(&fixture("scenetext01.jpg"), 0);
    let empty = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    // 2-3 fps each: within what the model serves on a 2-core machine (one run ≈ 60-130 ms),
    // so a pause of the untouched camera comes from the reload, not from a saturated model.
    config.camera("keep", &busy.url, "fps = 2");
    config.camera("gone", &empty.url, "fps = 2");
    config.camera("edit", &busy.url, "fps = 2");
    let daemon = Daemon::start(&config);
    for camera in ["keep", "gone", "edit"] {
        wait_more(&redis, &config, camera, 3);
    }

    std::fs::remove_file(config.dir.path().join("cameras.d/gone.toml")).unwrap();
    config.camera("edit", &busy.url, "fps = 3\nclasses = [\"person\"]");
    config.camera("new", &empty.url, "fps = 2");
    let edit_before = entries(&redis, &config, "edit");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("Configuration reloaded.", Duration::from_secs(20));
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("Configuration reloaded.")).unwrap();
    for expected in [r#"added=["new"]"#, r#"removed=["gone"]"#, r#"changed=["edit"]"#, "unchanged=1"] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    wait_more(&redis, &config, "new", 3);
    wait_more(&redis, &config, "edit", 3);
    let gone_after_reload = entries(&redis, &config, "gone").len();

    // The changed camera restarted with its new settings and went on counting `seq`.
    let edit: Vec<u64> = entries(&redis, &config, "edit").iter().map(seq).collect();
    assert!(edit.len() > edit_before.len() && edit.windows(2).all(|w| w[0] < w[1]), "seq continues: {edit:?}");
    let cameras_live = daemon.log().matches("Camera live. camera=edit").count();
    assert_eq!(cameras_live, 2, "edit was restarted once");

    // A file that fails validation: reported, nothing changes.
    config.camera("bad", "rtsp://127.0.0.1:9/x", "fps = \"fast\"");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("Reload refused", Duration::from_secs(10));
    let refused = daemon.log().lines().find(|l| l.contains("Reload refused")).unwrap().to_owned();
    assert!(refused.contains("bad.toml") && refused.contains("fps"), "names the file and field: {refused}");
    for camera in ["keep", "edit", "new"] {
        wait_more(&redis, &config, camera, 2);
    }
    assert!(entries(&redis, &config, "bad").is_empty());
    let metrics = daemon.scrape();
    assert_eq!(metric(&metrics, "roadsight_config_last_reload_successful", &[]), Some(0.0));
    assert_eq!(metric(&metrics, "roadsight_config_reloads_total", &[("result", "ok")]), Some(1.0));
    assert_eq!(metric(&metrics, "roadsight_config_reloads_total", &[("result", "failed")]), Some(1.0));
    for camera in ["keep", "edit", "new"] {
        assert_eq!(metric(&metrics, "roadsight_camera_up", &[("camera", camera)]), Some(1.0), "{camera} up");
    }
    assert!(!metrics.contains("camera=\"gone\""), "a removed camera leaves /metrics");

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    // The removed camera stopped publishing with the reload.
    assert_eq!(entries(&redis, &config, "gone").len(), gone_after_reload);

    // The untouched camera ran on: one start, one run id, and every missing seq is a frame
    // counted as dropped (stale, …), none lost to the reload.
    let keep = entries(&redis, &config, "keep");
    assert_eq!(log.matches("Camera live. camera=keep").count(), 1, "keep was never restarted");
    assert!(keep.iter().all(|e| e.1["run"] == keep[0].1["run"]));
    let seqs: Vec<u64> = keep.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let missing = seqs.last().unwrap() + 1 - seqs.len() as u64;
    assert_eq!(missing, total_dropped(&log, "keep"), "{seqs:?}\n{log}");
    let largest_pause = keep.windows(2).map(|w| id_ms(&w[1]) - id_ms(&w[0])).max().unwrap();
    // 2 fps is one entry per 500 ms; pauses of 0.6-0.8 s were measured across the reload. (At
    // 3-4 fps per camera the model was saturated on this 2-core machine and a camera start's CPU
    // burst paused `keep` for up to 2 s.) A restarted `keep` shows as a second "Camera live".
    eprintln!("keep: largest pause {largest_pause} ms");
    assert!(largest_pause < 2000, "keep paused {largest_pause} ms at 2 fps");
}

#[test]
fn a_camera_disabled_and_enabled_again_goes_on_counting_seq() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("north", &cam.url, "fps = 2");
    let daemon = Daemon::start(&config);
    wait_more(&redis, &config, "north", 3);
    let reloads = |n: usize| {
        daemon.signal(libc::SIGHUP);
        wait_for(Duration::from_secs(20), &format!("reload {n}"), || {
            (daemon.log().matches("Configuration reloaded.").count() == n).then_some(())
        });
    };
    config.camera("north", &cam.url, "fps = 2\nenabled = false");
    reloads(1);
    config.camera("north", &cam.url, "fps = 2");
    reloads(2);
    wait_more(&redis, &config, "north", 3);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let north = entries(&redis, &config, "north");
    assert!(north.iter().all(|e| e.1["run"] == north[0].1["run"]), "one run");
    let seqs: Vec<u64> = north.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq never repeats within a run: {seqs:?}");
}
