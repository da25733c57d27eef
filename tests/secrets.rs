//! Secrets come from systemd credentials (a camera that wants a login and a Redis with a
//! password both let the daemon in) and are never printed: not in the logs (at debug
//! level, through a reconnecting camera and a reload), not in `check`, not in STATUS, not on
//! `/metrics`.

mod support;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use support::notify::FakeSystemd;
use support::{ConfigDir, Daemon, Redis, TestCam, check_with_env, fixture, wait_for};

const REDIS_PASSWORD: &str = "redis-Pa55-6f1c0e";
const CAMERA_PASSWORD: &str = "cam-Pa55-93ab27";
const WRONG_PASSWORD: &str = "wrong-Pa55-5d7e11";

#[test]
fn passwords_appear_nowhere() {
    let redis = Redis::start_with_password(Some(REDIS_PASSWORD));
    // The camera wants a login, as real ones do.
    let login = tempfile::tempdir().unwrap();
    let login_file = login.path().join("login");
    std::fs::write(&login_file, format!("viewer:{CAMERA_PASSWORD}\n")).unwrap();
    let cam = TestCam::start_with(&fixture("scenetext01.jpg"), 0, &["--auth-file", login_file.to_str().unwrap()]);
    let config = ConfigDir::new(&redis.url(), "");
    let text = std::fs::read_to_string(config.path()).unwrap();
    std::fs::write(config.path(), text.replace("[redis]\n", "[redis]\ncredential = \"redis\"\n")).unwrap();
    config.camera("north", &cam.url, "credential = \"north\"\nfps = 5");
    // Refused: it fails and reconnects (and logs its URL and the reason) over and over.
    config.camera("intruder", &cam.url, "credential = \"intruder\"");
    // The names systemd gives credentials loaded from the unit's credential directory.
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("roadsight_redis"), format!("{REDIS_PASSWORD}\n")).unwrap();
    std::fs::write(credentials.path().join("roadsight_north"), format!("viewer:{CAMERA_PASSWORD}\n")).unwrap();
    std::fs::write(credentials.path().join("roadsight_intruder"), format!("viewer:{WRONG_PASSWORD}\n")).unwrap();

    let systemd = FakeSystemd::start();
    let socket = systemd.socket();
    let env: [(&str, &OsStr); 3] = [
        ("CREDENTIALS_DIRECTORY", credentials.path().as_os_str()),
        ("NOTIFY_SOCKET", socket.as_os_str()),
        ("RUST_LOG", "debug".as_ref()),
    ];
    let t0 = Instant::now();
    let daemon = Daemon::start_with_env(&config, &env);
    wait_for(Duration::from_secs(60), "entries with the Redis password in use", || {
        (redis.entries(&config.stream_key("north")).len() >= 5).then_some(())
    });
    daemon.wait_log("Camera disconnected; reconnecting. camera=intruder", Duration::from_secs(20));
    assert!(redis.entries(&config.stream_key("intruder")).is_empty(), "the wrong password is refused");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("Configuration reloaded.", Duration::from_secs(20));
    systemd.wait(t0, "a status line", Duration::from_secs(15), |m| m.get("STATUS").is_some_and(|s| s.contains("cameras live")));
    let metrics = daemon.scrape();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");

    let env: Vec<(&str, &str)> = vec![("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap())];
    let (check_code, check) = check_with_env(&config.path(), &env);
    assert_eq!(check_code, 0, "{check}");
    assert!(check.contains("credential `north`") || check.contains("north"), "{check}");

    let notified: String = systemd.messages().iter().map(|m| m.text.clone()).collect();
    assert!(notified.contains("STATUS="));
    for (what, text) in [("log", &log), ("check output", &check), ("sd_notify", &notified), ("/metrics", &metrics)] {
        for secret in [REDIS_PASSWORD, CAMERA_PASSWORD, WRONG_PASSWORD] {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
    assert!(log.contains(" DEBUG "), "debug logging ran: {log}");
}
