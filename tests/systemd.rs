//! The daemon under a fake systemd: the test creates the notify socket, starts roadsightd with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, and checks what a `Type=notify` unit relies on.

mod support;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use support::notify::FakeSystemd;
use support::{ConfigDir, Daemon, Redis, TestCam, fixture};

/// Short, so pings come every 500 ms and a wedge shows within seconds.
const WATCHDOG: Duration = Duration::from_secs(2);

fn start(config: &ConfigDir, systemd: &FakeSystemd, extra: &[(&str, &OsStr)]) -> Daemon {
    let watchdog_usec = WATCHDOG.as_micros().to_string();
    let socket = systemd.socket();
    let mut env: Vec<(&str, &OsStr)> =
        vec![("NOTIFY_SOCKET", socket.as_os_str()), ("WATCHDOG_USEC", watchdog_usec.as_ref())];
    env.extend_from_slice(extra);
    Daemon::start_with_env(config, &env)
}

/// The largest gap between consecutive pings.
fn largest_gap(pings: &[Instant]) -> Duration {
    pings.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(Duration::MAX)
}

#[test]
fn ready_status_watchdog_reload_and_stop_are_notified() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("north", &cam.url, "fps = 5");
    let systemd = FakeSystemd::start();
    let t0 = Instant::now();
    let daemon = start(&config, &systemd, &[]);

    let ready = systemd.wait(t0, "READY=1", Duration::from_secs(60), |m| m.has("READY=1"));
    let before_ready: Vec<String> =
        systemd.messages().iter().filter(|m| m.at < ready.at).filter_map(|m| m.get("STATUS").map(str::to_owned)).collect();
    assert!(before_ready.iter().any(|s| s.starts_with("Loading model")), "{before_ready:?}");
    assert!(
        systemd.messages().iter().filter(|m| m.at < ready.at).all(|m| !m.has("WATCHDOG=1")),
        "no ping before READY"
    );

    // STATUS: cameras live/total, fps, p95 latency, uplink.
    let status = systemd.wait(ready.at, "a status with the camera live", Duration::from_secs(30), |m| {
        m.get("STATUS").is_some_and(|s| s.starts_with("1/1 cameras live") && !s.contains("p95 -"))
    });
    let line = status.get("STATUS").unwrap();
    eprintln!("STATUS={line}");
    let fps: f64 = line.split(", ").nth(1).and_then(|f| f.strip_suffix(" fps")).unwrap().parse().unwrap();
    assert!((2.0..=6.0).contains(&fps), "5 fps cap, got {line}");
    assert!(line.contains(" ms, uplink off"), "{line}");

    // Pings at a quarter of the interval, steadily.
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let pings = systemd.pings(window, Instant::now());
    assert!(pings.len() >= 6, "{} pings in 4 s", pings.len());
    assert!(largest_gap(&pings) <= WATCHDOG / 2, "gap {:?}", largest_gap(&pings));

    // Reload: RELOADING=1 (with the request's monotonic time), then READY=1.
    let hup = Instant::now();
    daemon.signal(libc::SIGHUP);
    let reloading = systemd.wait(hup, "RELOADING=1", Duration::from_secs(10), |m| m.has("RELOADING=1"));
    assert!(reloading.get("MONOTONIC_USEC").is_some_and(|v| v.parse::<u64>().is_ok()), "{}", reloading.text);
    let reloaded = systemd.wait(reloading.at, "READY=1 after the reload", Duration::from_secs(15), |m| m.has("READY=1"));
    assert!(reloaded.get("STATUS").is_some_and(|s| s.contains("cameras live")), "{}", reloaded.text);

    // A camera file that fails validation: the reload ends (READY=1) with the old config
    // running and the refusal in STATUS.
    config.camera("broken", &cam.url, "fps = \"fast\"");
    let hup = Instant::now();
    daemon.signal(libc::SIGHUP);
    let refused = systemd.wait(hup, "READY=1 after the refused reload", Duration::from_secs(15), |m| m.has("READY=1"));
    let line = refused.get("STATUS").unwrap();
    assert!(line.contains("1/1 cameras live") && line.contains("reload refused") && line.contains("broken.toml"), "{line}");

    // Stop: STOPPING=1 first, exit 0.
    let term = Instant::now();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let stopping = systemd.wait(term, "STOPPING=1", Duration::from_secs(1), |m| m.has("STOPPING=1"));
    assert!(systemd.messages().iter().filter(|m| m.at > stopping.at).all(|m| !m.has("READY=1")));
}

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore = "needs `--features fault-injection` (scripts/test.sh)")]
fn a_wedged_inference_thread_stops_the_watchdog_pings() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("north", &cam.url, "fps = 5");
    let systemd = FakeSystemd::start();
    let wedge = config.dir.path().join("wedge-now");
    let t0 = Instant::now();
    let daemon = start(&config, &systemd, &[("ROADSIGHTD_FAULT_WEDGE_INFERENCE", wedge.as_os_str())]);
    let ready = systemd.wait(t0, "READY=1", Duration::from_secs(60), |m| m.has("READY=1"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(systemd.pings(ready.at, Instant::now()).len() >= 4, "pings while healthy");

    std::fs::write(&wedge, "").unwrap();
    daemon.wait_log("inference thread wedged", Duration::from_secs(5));
    let wedged = Instant::now();
    // The stall limit is half the interval (1 s); give it that plus a tick, then watch.
    std::thread::sleep(WATCHDOG);
    let quiet_from = Instant::now();
    std::thread::sleep(WATCHDOG * 2);
    let late = systemd.pings(quiet_from, Instant::now());
    assert!(late.is_empty(), "{} pings after the wedge", late.len());
    let last = systemd.pings(t0, Instant::now()).last().copied().unwrap();
    assert!(last < wedged + WATCHDOG, "pings stopped within the interval");
    daemon.wait_log("watchdog pings stopped", Duration::from_secs(1));
    let status = systemd.wait(wedged, "a status saying so", Duration::from_secs(10), |m| {
        m.get("STATUS").is_some_and(|s| s.contains("INFERENCE STALLED"))
    });
    eprintln!("STATUS={}", status.get("STATUS").unwrap());
    // The stop is still bounded: the wedged thread is abandoned after its timeout.
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore = "needs `--features fault-injection` (scripts/test.sh)")]
fn a_slow_start_extends_the_start_timeout() {
    let redis = Redis::start();
    let config = ConfigDir::new(&redis.url(), "");
    let systemd = FakeSystemd::start();
    let t0 = Instant::now();
    let daemon = start(&config, &systemd, &[("ROADSIGHTD_FAULT_SLOW_MODEL_MS", "11000".as_ref())]);
    let ready = systemd.wait(t0, "READY=1", Duration::from_secs(60), |m| m.has("READY=1"));
    let extensions: Vec<_> = systemd.messages().into_iter().filter(|m| m.at < ready.at && m.get("EXTEND_TIMEOUT_USEC").is_some()).collect();
    assert!(extensions.len() >= 2, "one every 5 s while the model loads: {extensions:?}");
    for m in &extensions {
        assert_eq!(m.get("EXTEND_TIMEOUT_USEC"), Some("30000000"));
        assert!(m.get("STATUS").is_some_and(|s| s.starts_with("Loading model (")), "{}", m.text);
    }
    assert!(systemd.messages().iter().all(|m| m.at < ready.at || m.get("EXTEND_TIMEOUT_USEC").is_none()), "none after READY");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}
