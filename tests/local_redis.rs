//! The publisher's own connection to the local Redis (`publish/link.rs`): it authenticates,
//! selects the database the URL names, and a wrong or missing password stops the start with a
//! config error that names the field, without retrying for ever or printing the password.

mod support;

use std::ffi::OsStr;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, upstream, wait_for};

const PASSWORD: &str = "local-Pa55-2b9e41";

#[test]
fn entries_go_to_the_database_the_url_names() {
    let redis = Redis::start_with_password(Some(PASSWORD));
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&format!("{}?db=3", redis.url()), "");
    let text = std::fs::read_to_string(config.path()).unwrap();
    std::fs::write(config.path(), text.replace("[redis]\n", "[redis]\ncredential = \"redis\"\n")).unwrap();
    config.camera("east", &cam.url, "fps = 5");
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("roadsight_redis"), format!("{PASSWORD}\n")).unwrap();

    let env: [(&str, &OsStr); 2] = [("CREDENTIALS_DIRECTORY", credentials.path().as_os_str()), ("RUST_LOG", "info".as_ref())];
    let daemon = Daemon::start_with_env(&config, &env);
    let key = config.stream_key("east");
    let mut conn = redis.connect().unwrap();
    redis::cmd("SELECT").arg(3).exec(&mut conn).unwrap();
    wait_for(Duration::from_secs(60), "entries in database 3", || (upstream::stream_entries(&mut conn, &key).len() >= 3).then_some(()));
    assert!(redis.entries(&key).is_empty(), "nothing in database 0");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn a_wrong_or_missing_password_is_a_config_error_at_start() {
    let redis = Redis::start_with_password(Some(PASSWORD));
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("roadsight_redis"), "not-the-Pa55word\n").unwrap();
    for (case, credential_line) in [("wrong password", "credential = \"redis\"\n"), ("no password", "")] {
        let config = ConfigDir::new(&redis.url(), "");
        let text = std::fs::read_to_string(config.path()).unwrap();
        std::fs::write(config.path(), text.replace("[redis]\n", &format!("[redis]\n{credential_line}"))).unwrap();
        config.camera("east", &cam.url, "fps = 5");
        let env: [(&str, &OsStr); 2] = [("CREDENTIALS_DIRECTORY", credentials.path().as_os_str()), ("RUST_LOG", "info".as_ref())];
        let mut daemon = Daemon::start_with_env(&config, &env);
        wait_for(Duration::from_secs(30), "the daemon to give up", || (!daemon.is_running()).then_some(()));
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(78), "{case}: exit 78 (config): {log}");
        assert!(log.contains("redis.credential") && log.contains("AUTH refused"), "{case}: names the field: {log}");
        assert!(!log.contains("not-the-Pa55word") && !log.contains(PASSWORD), "{case}: {log}");
    }
}
