//! Outages: cameras that are absent, die or come back, and a local Redis that crashes. The
//! daemon keeps running, reconnects on its own, and every frame it could not publish is
//! counted.

mod support;

use std::time::{Duration, Instant};

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, free_port, summary_value, total_dropped, wait_for};

fn count(redis: &Redis, key: &str) -> usize {
    redis.entries(key).len()
}

#[test]
fn a_dead_camera_does_not_disturb_a_live_one_and_is_picked_up_when_it_appears() {
    let redis = Redis::start();
    let live = TestCam::start(&fixture("white_car.jpg"), 0);
    let late_port = free_port();
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("live", &live.url, "");
    config.camera("late", &format!("rtsp://127.0.0.1:{late_port}/cam"), "");
    let mut daemon = Daemon::start(&config);
    let (live_key, late_key) = (config.stream_key("live"), config.stream_key("late"));

    wait_for(Duration::from_secs(30), "the live camera's first entry", || (count(&redis, &live_key) > 0).then_some(()));
    // While the other camera fails to connect again and again, the live one never pauses.
    let mut last = count(&redis, &live_key);
    let mut last_change = Instant::now();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(200));
        let n = count(&redis, &live_key);
        if n > last {
            last = n;
            last_change = Instant::now();
        }
        // 10 entries a second are expected; 3 s without one is an interruption, not jitter.
        assert!(last_change.elapsed() < Duration::from_secs(3), "the live camera stalled");
    }
    assert_eq!(count(&redis, &late_key), 0);
    assert!(daemon.is_running());

    let _late = TestCam::start(&fixture("scenetext01.jpg"), late_port);
    let appeared = Instant::now();
    wait_for(Duration::from_secs(10), "the late camera to publish within 10 s", || {
        (count(&redis, &late_key) > 0).then_some(())
    });
    eprintln!("late camera published {:?} after it started", appeared.elapsed());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(summary_value(&log, "late", "reconnects").unwrap() >= 1, "{log}");
}

#[test]
fn a_camera_killed_mid_stream_is_reconnected_when_it_comes_back() {
    let redis = Redis::start();
    let port = free_port();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), port);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("gate", &cam.url, "");
    let mut daemon = Daemon::start(&config);
    let key = config.stream_key("gate");

    wait_for(Duration::from_secs(30), "5 entries", || (count(&redis, &key) >= 5).then_some(()));
    cam.kill();
    std::thread::sleep(Duration::from_secs(4));
    let before = count(&redis, &key);
    assert!(daemon.is_running());

    let _cam = TestCam::start(&fixture("scenetext01.jpg"), port);
    wait_for(Duration::from_secs(20), "entries after the camera came back", || {
        (count(&redis, &key) >= before + 5).then_some(())
    });
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(summary_value(&log, "gate", "reconnects").unwrap() >= 1, "{log}");
}

#[test]
fn a_local_redis_crash_loses_nothing_silently() {
    let mut redis = Redis::start();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), 0);
    // A small queue so that the outage overflows it.
    let config = ConfigDir::new(&redis.url(), "[publish]\nqueue = 8\n");
    config.camera("yard", &cam.url, "");
    let mut daemon = Daemon::start(&config);
    let key = config.stream_key("yard");

    wait_for(Duration::from_secs(30), "5 entries", || (count(&redis, &key) >= 5).then_some(()));
    redis.kill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(daemon.is_running(), "the daemon survives its Redis");
    redis.restart();
    let before = count(&redis, &key);
    wait_for(Duration::from_secs(20), "entries after Redis came back", || {
        (count(&redis, &key) >= before + 5).then_some(())
    });

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let v = |k: &str| summary_value(&log, "yard", k).unwrap_or_else(|| panic!("{k} in summary: {log}"));
    let (captured, published) = (v("captured"), v("published"));
    let dropped = total_dropped(&log, "yard");
    assert!(v("dropped_queue_full") + v("dropped_redis_error") > 0, "the outage cost frames: {log}");
    // Every captured frame is either published or counted as dropped, by reason.
    assert_eq!(captured, published + dropped, "{log}");
    // And what Redis holds is what was acknowledged (plus any in-flight batch whose reply the
    // crash swallowed, which is counted as redis_error).
    let stored = count(&redis, &key) as u64;
    assert!(stored >= published && stored <= published + v("dropped_redis_error"), "stored {stored}, {log}");
}

#[test]
fn stopping_while_redis_is_down_exits_cleanly_and_counts_what_was_not_flushed() {
    let mut redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("dock", &cam.url, "");
    let daemon = Daemon::start(&config);
    let key = config.stream_key("dock");

    wait_for(Duration::from_secs(30), "5 entries", || (count(&redis, &key) >= 5).then_some(()));
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    let stopping = Instant::now();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    // Bounded drain: well inside a systemd stop timeout (the harness itself gives up at 10 s).
    assert!(stopping.elapsed() < Duration::from_secs(10), "stop took {:?}", stopping.elapsed());
    let v = |k: &str| summary_value(&log, "dock", k).unwrap_or_else(|| panic!("{k} in summary: {log}"));
    let dropped = total_dropped(&log, "dock");
    assert!(v("dropped_shutdown") > 0, "frames queued during the outage are counted at stop: {log}");
    assert_eq!(v("captured"), v("published") + dropped, "{log}");
}
