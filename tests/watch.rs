//! `roadsightd watch`: follows the camera streams a running daemon publishes and summarises
//! them; a config it cannot use is a config error (exit 78).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture};

/// Runs `roadsightd watch --config <config> <args>`; returns the exit code and stdout + stderr.
fn watch(config: &ConfigDir, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roadsightd"))
        .args(["watch", "--config"])
        .arg(config.path())
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_summary_counts_the_entries_of_each_camera() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("north", &cam.url, "fps = 2");
    let daemon = Daemon::start(&config);
    daemon.wait_log("Camera live.", Duration::from_secs(30));
    let (code, out) = watch(&config, &["--seconds", "4"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("summary over"), "{out}");
    let row = out.lines().rev().find(|l| l.starts_with("north ")).unwrap_or_else(|| panic!("{out}"));
    let entries: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(entries >= 2, "about 2 fps for 4 s: {row}");
    assert!(out.lines().any(|l| l.starts_with("north") && l.contains("seq=")), "entries printed: {out}");
    drop(daemon);
}

#[test]
fn a_missing_redis_credential_is_a_config_error_naming_the_field() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "credentials_dir = \"credentials\"");
    let text = std::fs::read_to_string(config.path()).unwrap().replace("[redis]", "[redis]\ncredential = \"redis\"");
    std::fs::write(config.path(), text).unwrap();
    std::fs::create_dir(config.dir.path().join("credentials")).unwrap();
    config.camera("north", "rtsp://127.0.0.1:9/none", "");
    let (code, out) = watch(&config, &["--seconds", "1"]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("redis.credential"), "{out}");
}
