//! Camera isolation: a camera that flaps (its server killed and restarted) or hangs (its server
//! frozen with the connection open) does not delay another camera's frames.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, free_port, metric, wait_for};

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn value(text: &str, name: &str, camera: &str) -> f64 {
    metric(text, name, &[("camera", camera)]).unwrap_or(0.0)
}

fn all_up(daemon: &Daemon, cameras: &[&str]) -> Option<()> {
    if !daemon.log().contains("Metrics served at /metrics.") {
        return None;
    }
    let text = daemon.scrape();
    cameras.iter().all(|c| value(&text, "roadsight_camera_up", c) == 1.0).then_some(())
}

#[test]
fn a_flapping_and_a_hung_camera_do_not_delay_the_others() {
    let redis = Redis::start();
    // A still picture: the three test cameras' encoders cost little CPU, so the steady camera's
    // timing shows the daemon, not the test's own load on a 2-core machine.
    let source = fixture("scenetext01.jpg");
    let steady = TestCam::start(&source, 0);
    let hung = TestCam::start(&source, 0);
    let flap_port = free_port();
    let mut flapping = Some(TestCam::start(&source, flap_port));
    let flapping_url = flapping.as_ref().unwrap().url.clone();
    // 2 fps each: well inside what the CPU serves, so any gap in the steady camera's entries
    // comes from the others, not from a saturated model. Stall timeout 3 s (test default).
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("steady", &steady.url, "fps = 2\npublish_empty = true");
    config.camera("flapping", &flapping_url, "fps = 2\npublish_empty = true");
    config.camera("hung", &hung.url, "fps = 2\npublish_empty = true");
    let daemon = Daemon::start(&config);
    let all = ["steady", "flapping", "hung"];
    wait_for(Duration::from_secs(60), "three cameras up", || all_up(&daemon, &all));
    std::thread::sleep(Duration::from_secs(2));

    // 18 s of trouble: the flapping camera dies and comes back three times (3 s down, 3 s up);
    // the hung one is frozen for the first 9 s: its stall is detected, and reconnecting to it
    // hangs in RTSP until its timeout.
    let from = unix_ms();
    let mut events = Vec::new();
    let mut event = |what: &str| events.push(format!("{} ms {what}", unix_ms() - from));
    hung.signal(libc::SIGSTOP);
    event("hung frozen");
    for round in 0..3 {
        flapping.take().unwrap().kill();
        event("flapping killed");
        std::thread::sleep(Duration::from_secs(3));
        if round == 1 {
            hung.signal(libc::SIGCONT);
            event("hung thawed");
        }
        flapping = Some(TestCam::start(&source, flap_port));
        event("flapping restarted");
        std::thread::sleep(Duration::from_secs(3));
    }
    let to = unix_ms();

    let times: Vec<u64> = redis
        .entries(&config.stream_key("steady"))
        .iter()
        .filter_map(|(id, _)| id.split('-').next()?.parse().ok())
        .filter(|ms| (from..=to).contains(ms))
        .collect();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().copied().max().unwrap_or(u64::MAX);
    let long: Vec<String> =
        times.windows(2).filter(|w| w[1] - w[0] > 700).map(|w| format!("{} ms after {}", w[1] - w[0], w[0] - from)).collect();
    let secs = (to - from) as f64 / 1000.0;
    let msg = format!(
        "steady camera: {} entries in {secs:.1} s, longest gap {longest} ms; gaps over 700 ms: {long:?}; events: {events:?}",
        times.len()
    );
    eprintln!("{msg}");
    // 2 fps is one entry per 500 ms. Each camera (re)start costs CPU on a 2-core machine (the
    // test camera process starts, the daemon starts a decoder): with video sources, gaps of up to
    // 1.7 s were seen. A camera that blocked the scheduler, the runtime or the publisher would
    // hold the others for its stall timeout (3 s) or an RTSP timeout.
    assert!(times.len() as f64 >= 0.7 * 2.0 * secs, "{msg}");
    assert!(longest < 2500, "{msg}");

    let text = daemon.scrape();
    assert_eq!(value(&text, "roadsight_camera_reconnects_total", "steady"), 0.0, "{text}");
    assert!(value(&text, "roadsight_camera_reconnects_total", "flapping") >= 3.0, "{text}");
    assert!(value(&text, "roadsight_camera_reconnects_total", "hung") >= 1.0, "{text}");
    // Both troubled cameras come back on their own and are served again.
    wait_for(Duration::from_secs(30), "the flapping and the hung camera up again", || all_up(&daemon, &all));
    let served = |text: &str| all.map(|c| value(text, "roadsight_frames_processed_total", c));
    let before = served(&daemon.scrape());
    std::thread::sleep(Duration::from_secs(3));
    let after = served(&daemon.scrape());
    assert!(before.iter().zip(&after).all(|(b, a)| a > b), "every camera processes frames again: {before:?} → {after:?}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}
