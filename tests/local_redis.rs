//! The publisher's own connection to the local Redis (`publish/link.rs`): it authenticates,
//! selects the database the URL names, and a wrong or missing password stops the start with a
//! config error that names the field, without retrying for ever or printing the password. A
//! Redis that answers "not yet" (BUSY, LOADING) costs no entry; one that refuses one camera's
//! key costs that camera's entries only; a restart between two entries costs none.

mod support;

use std::ffi::OsStr;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, metric, upstream, wait_for};

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

#[test]
fn entries_wait_while_redis_answers_busy_and_none_is_dropped() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("east", &cam.url, "fps = 5");
    let daemon = Daemon::start(&config);
    let key = config.stream_key("east");
    wait_for(Duration::from_secs(60), "first entries", || (redis.entries(&key).len() >= 3).then_some(()));

    // A script that runs for 3 s: past the busy threshold (100 ms) Redis answers every other
    // client `-BUSY`, as it answers `-LOADING` while it reads its data after a restart.
    let mut admin = redis.connect().unwrap();
    redis::cmd("CONFIG").arg("SET").arg("busy-reply-threshold").arg(100).exec(&mut admin).unwrap();
    let mut script_conn = redis.connect().unwrap();
    let script = std::thread::spawn(move || {
        let busy = "local t = redis.call('TIME') \
                    while true do \
                      local n = redis.call('TIME') \
                      if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 3000000 then return 1 end \
                    end";
        redis::cmd("EVAL").arg(busy).arg(0).query::<i64>(&mut script_conn)
    });
    daemon.wait_log("Local Redis is not taking writes yet; entries kept, retrying.", Duration::from_secs(10));
    assert_eq!(script.join().unwrap().expect("the script ran to its end"), 1);
    let before = redis.entries(&key).len();
    wait_for(Duration::from_secs(30), "entries after the busy spell", || (redis.entries(&key).len() >= before + 5).then_some(()));

    let text = daemon.scrape();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    for reason in ["rejected", "redis_error", "queue_full"] {
        let dropped = metric(&text, "roadsight_frames_dropped_total", &[("camera", "east"), ("reason", reason)]);
        assert_eq!(dropped, Some(0.0), "{reason}: {text}");
    }
    let errors = metric(&text, "roadsight_redis_errors_total", &[]).unwrap_or(0.0);
    assert!(errors >= 1.0, "the busy replies are counted as Redis errors: {text}");
}

#[test]
fn a_key_redis_refuses_costs_that_camera_only_and_a_restart_costs_no_entry() {
    let mut redis = Redis::start();
    let cam = TestCam::start(&fixture("white_car.jpg"), 0);
    // A small queue: a publisher that paused for the refusals would overflow it.
    let config = ConfigDir::new(&redis.url(), "[publish]\nqueue = 16\n");
    config.camera("good", &cam.url, "fps = 5");
    config.camera("bad", &cam.url, "fps = 5");
    // The bad camera's stream key holds a string: every XADD to it is refused (WRONGTYPE).
    let bad = config.stream_key("bad");
    redis::cmd("SET").arg(&bad).arg("not a stream").exec(&mut redis.connect().unwrap()).unwrap();
    let daemon = Daemon::start(&config);
    let good = config.stream_key("good");
    wait_for(Duration::from_secs(60), "entries of the good camera", || (redis.entries(&good).len() >= 25).then_some(()));

    // A local Redis restarted between two entries: the old connection is found closed before
    // the next XADD is written, so that entry is kept and sent on the new connection.
    for round in 0..3 {
        redis.kill();
        redis.restart();
        let before = redis.entries(&good).len();
        wait_for(Duration::from_secs(30), &format!("entries after restart {round}"), || {
            (redis.entries(&good).len() >= before + 5).then_some(())
        });
    }

    let text = daemon.scrape();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let dropped = |camera: &str, reason: &str| {
        metric(&text, "roadsight_frames_dropped_total", &[("camera", camera), ("reason", reason)]).unwrap_or(f64::NAN)
    };
    assert!(dropped("bad", "rejected") >= 25.0, "{text}");
    assert_eq!(dropped("good", "queue_full"), 0.0, "the refusals held nothing back: {text}");
    assert_eq!(dropped("bad", "queue_full"), 0.0, "{text}");
    // One restart in three may land while an XADD is in flight: that entry is counted.
    assert!(dropped("good", "redis_error") + dropped("bad", "redis_error") <= 1.0, "{text}");
    let lines = log.matches("Local Redis refused entries").count();
    assert!((1..=6).contains(&lines), "logged once per 10 s, not per batch: {lines} lines\n{log}");
}
