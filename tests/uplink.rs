//! Store and forward: every entry of the local streams reaches the central Redis with the same
//! ID and fields, in order, exactly once, across upstream outages, cut links, daemon kills,
//! local Redis restarts and deleted upstream streams.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::proxy::Proxy;
use support::upstream::{RedisCluster, RedisOptions, ReplicatedRedis, TlsRedis, UpstreamRedis};
use support::{ConfigDir, Daemon, Redis, metric, uplink_value, wait_for};

type Entries = Vec<(String, HashMap<String, String>)>;

/// A config whose cameras are all disabled: only the uplink works, on entries the test writes.
/// `capture` lines go into `[capture]`, `extra` into `[uplink]`.
fn uplink_config(local: &Redis, upstream_url: &str, cameras: &[&str], capture: &str, extra: &str) -> ConfigDir {
    let uplink = format!("{capture}\n[uplink]\nenabled = true\nurl = \"{upstream_url}\"\nbatch = 200\n{extra}");
    let config = ConfigDir::new(&local.url(), &uplink);
    for cam in cameras {
        config.camera(cam, "rtsp://127.0.0.1:9/none", "enabled = false");
    }
    config
}

fn started(config: &ConfigDir) -> Daemon {
    let daemon = Daemon::start(config);
    daemon.wait_log("roadsightd running.", Duration::from_secs(30));
    daemon
}

fn daemon(local: &Redis, upstream_url: &str, cameras: &[&str], extra: &str) -> (ConfigDir, Daemon) {
    let config = uplink_config(local, upstream_url, cameras, "", extra);
    let daemon = started(&config);
    (config, daemon)
}

/// Appends `n` entries to `key` in the local Redis, as the publisher would (IDs by Redis).
fn produce(local: &Redis, key: &str, n: usize) {
    let mut conn = local.connect().unwrap();
    for chunk in 0..n.div_ceil(500) {
        let mut pipe = redis::pipe();
        for i in chunk * 500..((chunk + 1) * 500).min(n) {
            pipe.cmd("XADD").arg(key).arg("*").arg("v").arg("1").arg("seq").arg(i).arg("det").arg("[]").ignore();
        }
        let () = pipe.query(&mut conn).unwrap();
    }
}

fn ids(entries: &Entries) -> Vec<&str> {
    entries.iter().map(|(id, _)| id.as_str()).collect()
}

/// Waits until upstream holds `n` entries of `key`, then returns them.
fn arrived(upstream: impl Fn(&str) -> Entries, key: &str, n: usize, timeout: Duration) -> Entries {
    wait_for(timeout, &format!("{n} entries upstream"), || {
        let e = upstream(key);
        (e.len() >= n).then_some(e)
    })
}

#[test]
fn steady_state_every_entry_arrives_with_the_same_id_and_fields_in_order() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    for _ in 0..5 {
        produce(&local, &key, 40);
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = arrived(|k| upstream.entries(k), &key, 200, Duration::from_secs(20));
    assert_eq!(got, local.entries(&key), "same IDs, same fields, same order");
    wait_for(Duration::from_secs(10), "the forwarded counter to reach 200", || {
        (metric(&daemon.scrape(), "roadsight_uplink_forwarded_total", &[("camera", "north")]) == Some(200.0)).then_some(())
    });
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert_eq!(uplink_value(&log, "north", "forwarded"), Some(200), "{log}");
}

#[test]
fn upstream_down_while_5000_entries_are_produced_then_all_arrive_once() {
    let local = Redis::start();
    let mut upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 100);
    arrived(|k| upstream.entries(k), &key, 100, Duration::from_secs(20));

    upstream.kill();
    produce(&local, &key, 5_000);
    std::thread::sleep(Duration::from_secs(2));
    upstream.restart();
    let got = arrived(|k| upstream.entries(k), &key, 5_100, Duration::from_secs(60));
    assert_eq!(ids(&got), ids(&local.entries(&key)), "all arrive, in order, none twice");
    drop(daemon);
}

#[test]
fn a_link_cut_after_upstream_applied_a_batch_leaves_each_entry_once() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let proxy = Proxy::start(upstream.addr());
    let (config, daemon) = daemon(&local, &proxy.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 50);
    arrived(|k| upstream.entries(k), &key, 50, Duration::from_secs(20));

    // The next append reaches upstream and is applied, but its reply never comes back.
    proxy.cut_after_request_containing(b"roadsight_append");
    produce(&local, &key, 50);
    assert!(proxy.wait_cut_fired(Duration::from_secs(20)), "the cut happened mid-batch");
    let got = arrived(|k| upstream.entries(k), &key, 100, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ids(&upstream.entries(&key)), ids(&local.entries(&key)), "each entry exactly once");
    assert_eq!(got.len(), 100);
    let (_, log) = daemon.stop();
    assert!(uplink_value(&log, "north", "duplicates").unwrap() > 0, "the retry was recognised: {log}");
}

#[test]
fn a_daemon_killed_while_forwarding_loses_and_duplicates_nothing_after_restart() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, first) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 4_000);
    wait_for(Duration::from_secs(20), "forwarding under way", || (!upstream.entries(&key).is_empty()).then_some(()));
    first.kill();
    produce(&local, &key, 1_000);

    let second = Daemon::start(&config);
    let got = arrived(|k| upstream.entries(k), &key, 5_000, Duration::from_secs(60));
    assert_eq!(ids(&got), ids(&local.entries(&key)));
    drop(second);
}

#[test]
fn a_local_redis_restart_resumes_forwarding_where_it_was() {
    let mut local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 300);
    arrived(|k| upstream.entries(k), &key, 300, Duration::from_secs(20));
    local.kill();
    std::thread::sleep(Duration::from_secs(1));
    local.restart();
    produce(&local, &key, 300);
    let got = arrived(|k| upstream.entries(k), &key, 600, Duration::from_secs(30));
    assert_eq!(ids(&got), ids(&local.entries(&key)));
    drop(daemon);
}

#[test]
fn upstream_ahead_at_start_moves_the_local_last_id_and_new_entries_land() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let key = "roadsight:{test:north}:detections";
    // Upstream holds an ID from the future: the local stream's own clock will not pass it soon.
    upstream.cli(&["XADD", key, "9999999999999-0", "v", "1", "seq", "0"]);
    let (_config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    produce(&local, key, 10);
    let local_ids: Vec<String> = local.entries(key).into_iter().map(|(id, _)| id).collect();
    assert!(local_ids.iter().all(|id| id.as_str() > "9999999999999-0"), "{local_ids:?}");
    let got = arrived(|k| upstream.entries(k), key, 11, Duration::from_secs(20));
    assert_eq!(ids(&got)[1..], local_ids.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    drop(daemon);
}

#[test]
fn past_the_backlog_budget_the_oldest_are_dropped_and_counted_and_the_rest_arrive() {
    let local = Redis::start();
    let mut upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "backlog_entries = 1000\n[publish]\nmaxlen = 5000\n");
    let key = config.stream_key("north");
    produce(&local, &key, 10);
    let before = arrived(|k| upstream.entries(k), &key, 10, Duration::from_secs(20));
    upstream.kill();
    produce(&local, &key, 3_000);
    daemon.wait_log("Backlog over budget", Duration::from_secs(20));
    upstream.restart();
    // Drained: the newest local entry is upstream.
    let newest = local.entries(&key).last().unwrap().0.clone();
    wait_for(Duration::from_secs(30), "the backlog to drain", || {
        upstream.entries(&key).last().is_some_and(|(id, _)| *id == newest).then_some(())
    });
    let (_, log) = daemon.stop();
    let dropped = uplink_value(&log, "north", "dropped").unwrap();
    let held = upstream.entries(&key);
    assert!(dropped >= 2_000, "{log}");
    assert_eq!(held.len() as u64 + dropped, 3_010, "the drop counter equals what is missing upstream");
    assert_eq!(held[..10], before[..10], "what was forwarded before the outage is untouched");
    // What survived locally arrived, in order: the newest 1000 (the budget).
    let kept = local.entries(&key);
    assert_eq!(ids(&held)[held.len() - kept.len()..], ids(&kept)[..]);
}

/// `used_memory` of a Redis, from `INFO memory`.
fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

#[test]
fn a_local_redis_at_maxmemory_drains_when_upstream_returns_and_takes_entries_again() {
    let local = Redis::start();
    let mut upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 10);
    arrived(|k| upstream.entries(k), &key, 10, Duration::from_secs(20));
    upstream.kill();
    // Fill the local Redis to its maxmemory during the outage, as big entries would.
    let mut conn = local.connect().unwrap();
    let max = used_memory(&mut conn) + 3 * 1024 * 1024;
    let () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(max).query(&mut conn).unwrap();
    let payload = "x".repeat(400);
    let refused = (0..100_000).find_map(|i| {
        let added: redis::RedisResult<String> =
            redis::cmd("XADD").arg(&key).arg("*").arg("seq").arg(i).arg("det").arg(&payload).query(&mut conn);
        added.err()
    });
    assert_eq!(refused.as_ref().and_then(|e| e.code()), Some("OOM"), "{refused:?}");
    let newest = local.entries(&key).last().unwrap().0.clone();
    std::thread::sleep(Duration::from_secs(3)); // the forwarder retries against the full Redis

    upstream.restart();
    wait_for(Duration::from_secs(60), "the backlog to drain", || {
        upstream.entries(&key).last().is_some_and(|(id, _)| *id == newest).then_some(())
    });
    let held = upstream.entries(&key);
    assert!(held.windows(2).all(|w| w[0].0 < w[1].0), "in order, none twice");
    // Forwarded entries no longer hold the memory: the box records frames again.
    wait_for(Duration::from_secs(20), "the local Redis to take entries again", || {
        let added: redis::RedisResult<String> =
            redis::cmd("XADD").arg(&key).arg("*").arg("seq").arg(-1).arg("det").arg("[]").query(&mut conn);
        added.ok()
    });
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(uplink_value(&log, "north", "dropped"), Some(0), "nothing unforwarded was given up: {log}");
    assert!(log.contains("Local Redis is at maxmemory"), "{log}");
}

#[test]
fn a_primary_demoted_behind_a_stable_address_is_left_for_the_new_one() {
    let local = Redis::start();
    let old = UpstreamRedis::start();
    let new = UpstreamRedis::start();
    let address = Proxy::start(old.addr());
    let (config, daemon) = daemon(&local, &address.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 50);
    arrived(|k| old.entries(k), &key, 50, Duration::from_secs(20));
    // Failover behind the address: the new server copies the old one and is promoted, the old
    // one is demoted in place (its clients stay connected), the address moves.
    let port = |r: &UpstreamRedis| r.port().to_string();
    new.cli(&["REPLICAOF", "127.0.0.1", &port(&old)]);
    arrived(|k| new.entries(k), &key, 50, Duration::from_secs(20));
    new.cli(&["REPLICAOF", "NO", "ONE"]);
    old.cli(&["REPLICAOF", "127.0.0.1", &port(&new)]);
    address.retarget(new.addr());
    produce(&local, &key, 50);
    // The demoted server answers READONLY: the forwarder reconnects instead of waiting on it.
    let got = arrived(|k| new.entries(k), &key, 100, Duration::from_secs(20));
    assert_eq!(ids(&got), ids(&local.entries(&key)), "each entry once, in order");
    drop(daemon);
}

#[test]
fn a_deleted_upstream_stream_is_reported_not_recreated_and_others_keep_flowing() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north", "south"], "");
    let (north, south) = (config.stream_key("north"), config.stream_key("south"));
    produce(&local, &north, 20);
    produce(&local, &south, 20);
    arrived(|k| upstream.entries(k), &north, 20, Duration::from_secs(20));
    arrived(|k| upstream.entries(k), &south, 20, Duration::from_secs(20));

    upstream.cli(&["DEL", &north]);
    produce(&local, &north, 20);
    produce(&local, &south, 20);
    arrived(|k| upstream.entries(k), &south, 40, Duration::from_secs(20));
    daemon.wait_log("Upstream stream is missing", Duration::from_secs(10));
    assert_eq!(upstream.cli(&["EXISTS", &north]).trim(), "0", "not recreated");
    assert!(metric(&daemon.scrape(), "roadsight_uplink_errors_total", &[]).unwrap_or(0.0) >= 1.0, "counted");

    // The way out the log names (a new central server): delete the local mark. The next try,
    // after the camera's pause, creates the stream with what was not forwarded yet.
    let mark = north.replace(":detections", ":uplink");
    let _: i64 = redis::cmd("DEL").arg(&mark).query(&mut local.connect().unwrap()).unwrap();
    let got = arrived(|k| upstream.entries(k), &north, 20, Duration::from_secs(45));
    assert_eq!(ids(&got), ids(&local.entries(&north))[20..]);
    drop(daemon);
}

#[test]
fn a_three_master_cluster_receives_every_camera_once() {
    let local = Redis::start();
    let cluster = RedisCluster::start(3);
    // Camera ids whose stream keys land on each of the three masters.
    let mut cameras: Vec<String> = Vec::new();
    for node in 0..3 {
        let id = (0..1000)
            .map(|i| format!("cam{i}"))
            .find(|id| cluster.node_for(&format!("roadsight:{{test:{id}}}:detections")) == node && !cameras.contains(id))
            .unwrap();
        cameras.push(id);
    }
    let names: Vec<&str> = cameras.iter().map(String::as_str).collect();
    let (config, daemon) = daemon(&local, &cluster.seed_url(), &names, "cluster = true\n");
    for cam in &names {
        produce(&local, &config.stream_key(cam), 300);
    }
    for cam in &names {
        let key = config.stream_key(cam);
        let got = arrived(|k| cluster.entries(k), &key, 300, Duration::from_secs(30));
        assert_eq!(ids(&got), ids(&local.entries(&key)), "{cam}");
    }
    drop(daemon);
}

#[test]
fn in_a_cluster_wait_asks_the_primary_of_the_camera_stream_only() {
    let local = Redis::start();
    let mut cluster = RedisCluster::start(3);
    let extra = "cluster = true\nwait_replicas = 1\nwait_timeout_ms = 1000\n";
    let config = uplink_config(&local, &cluster.seed_url(), &["north"], "", extra);
    let key = config.stream_key("north");
    // Only the shard of this camera's stream has a replica.
    cluster.add_replica(cluster.node_for(&key));
    let daemon = started(&config);
    produce(&local, &key, 100);
    arrived(|k| cluster.entries(k), &key, 100, Duration::from_secs(20));
    wait_for(Duration::from_secs(20), "the forwarded counter to reach 100 (each batch confirmed by WAIT)", || {
        (metric(&daemon.scrape(), "roadsight_uplink_forwarded_total", &[("camera", "north")]) == Some(100.0)).then_some(())
    });
    drop(daemon);
}

/// The upstream ACL README.md ("Uplink: store and forward") tells operators to grant, and no
/// more; a cluster needs `CLUSTER_ACL` on top.
const DOCUMENTED_ACL: &[&str] = &["+fcall", "+fcall_ro", "+function|load", "+exists", "+xinfo|stream", "+xrange", "+xadd"];
// Without `+cluster|slots` the daemon never connects; `PING` is what redis-rs checks a cluster
// connection with after an error.
const CLUSTER_ACL: &[&str] = &["+cluster|slots", "+ping"];

/// Forwards 100 entries of `north` as the ACL user `box` (password `acl-pw`, `extra` lines in
/// `[uplink]`) and checks they all arrived, unrefused, and the password stayed out of the log.
fn forwards_as_acl_user(local: &Redis, url: &str, extra: &str, upstream: impl Fn(&str) -> Entries) {
    let config = uplink_config(local, url, &["north"], "credentials_dir = \"credentials\"", &format!("username = \"box\"\ncredential = \"upstream\"\n{extra}"));
    with_credential(&config, "acl-pw\n");
    let daemon = started(&config);
    let key = config.stream_key("north");
    produce(local, &key, 100);
    let got = arrived(upstream, &key, 100, Duration::from_secs(20));
    assert_eq!(ids(&got), ids(&local.entries(&key)));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains("NOPERM"), "{log}");
    assert!(!log.contains("acl-pw"), "the password never reaches the log");
}

#[test]
fn the_documented_upstream_acl_is_enough() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start_with(RedisOptions::default().acl_user("box", "acl-pw").acl_commands(DOCUMENTED_ACL));
    forwards_as_acl_user(&local, &upstream.url(), "", |k| upstream.entries(k));
}

#[test]
fn the_documented_upstream_acl_is_enough_in_a_cluster() {
    let local = Redis::start();
    let commands: Vec<&str> = DOCUMENTED_ACL.iter().chain(CLUSTER_ACL).copied().collect();
    let cluster = RedisCluster::start_with(3, RedisOptions::default().acl_user("box", "acl-pw").acl_commands(&commands));
    forwards_as_acl_user(&local, &cluster.seed_url(), "cluster = true\n", |k| cluster.entries(k));
}

/// `credentials/upstream` in the config folder holds `password`; `capture.credentials_dir` points there.
fn with_credential(config: &ConfigDir, password: &str) {
    let dir = config.dir.path().join("credentials");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upstream"), password).unwrap();
}

#[test]
fn a_tls_upstream_with_an_acl_user_receives_everything() {
    let local = Redis::start();
    let upstream = TlsRedis::start_with(RedisOptions::default().acl_user("box", "acl-pw"));
    let extra = format!("tls_ca_file = \"{}\"\n", upstream.ca_file().display());
    forwards_as_acl_user(&local, &upstream.url(), &extra, |k| upstream.entries(k));
}

#[test]
fn a_wrong_upstream_password_is_a_clear_error_and_a_counted_retry_not_a_crash() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start_with(RedisOptions::default().acl_user("box", "right-pw"));
    let config = uplink_config(&local, &upstream.url(), &["north"], "credentials_dir = \"credentials\"", "username = \"box\"\ncredential = \"upstream\"\n");
    with_credential(&config, "wrong-pw\n");
    let mut daemon = started(&config);
    produce(&local, &config.stream_key("north"), 10);
    wait_for(Duration::from_secs(20), "two failed attempts", || {
        (daemon.log().matches("Uplink interrupted; retrying.").count() >= 2).then_some(())
    });
    assert!(daemon.is_running());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    let lower = log.to_lowercase();
    assert!(lower.contains("wrongpass") || lower.contains("authentication"), "{log}");
    assert!(!log.contains("wrong-pw"), "the password never reaches the log");
    assert_eq!(upstream.entries(&config.stream_key("north")).len(), 0);
}

#[test]
fn with_wait_a_batch_counts_as_forwarded_once_a_replica_holds_it() {
    let local = Redis::start();
    let upstream = ReplicatedRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "wait_replicas = 1\nwait_timeout_ms = 1000\n");
    let key = config.stream_key("north");
    produce(&local, &key, 100);
    let got = arrived(|k| upstream.replica.entries(k), &key, 100, Duration::from_secs(20));
    assert_eq!(ids(&got), ids(&local.entries(&key)));
    let (_, log) = daemon.stop();
    assert_eq!(uplink_value(&log, "north", "forwarded"), Some(100), "{log}");
}

#[test]
fn mutual_tls_with_a_client_certificate_works() {
    let local = Redis::start();
    let upstream = TlsRedis::start_with(RedisOptions::default().require_client_cert());
    let extra = format!(
        "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        upstream.ca_file().display(),
        upstream.client_cert().display(),
        upstream.client_key().display()
    );
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], &extra);
    let key = config.stream_key("north");
    produce(&local, &key, 50);
    let got = arrived(|k| upstream.entries(k), &key, 50, Duration::from_secs(20));
    assert_eq!(ids(&got), ids(&local.entries(&key)));
    drop(daemon);
}

#[test]
fn ids_taken_upstream_by_another_writer_are_refused_not_skipped_as_duplicates() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 10);
    let first = arrived(|k| upstream.entries(k), &key, 10, Duration::from_secs(20));
    // Another writer (a second box with the same keys, a clock ahead) takes a later ID range.
    upstream.cli(&["XADD", &key, "9999999999999-0", "v", "1", "seq", "foreign"]);
    produce(&local, &key, 10);
    daemon.wait_log("Upstream holds later IDs this box never sent", Duration::from_secs(20));
    // Nothing of ours was skipped or confirmed: it waits in local Redis.
    let mut conn = local.connect().unwrap();
    let mark: String = redis::cmd("HGET").arg("roadsight:{test:north}:uplink").arg("confirmed").query(&mut conn).unwrap();
    assert_eq!(mark, first[9].0, "the confirmed mark did not move past our own entries");
    assert_eq!(local.entries(&key).len(), 20);
    assert_eq!(upstream.entries(&key).len(), 11);
    drop(daemon);
}

#[test]
fn a_lone_camera_with_a_deleted_upstream_stream_idles_and_stops_promptly() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let key = config.stream_key("north");
    produce(&local, &key, 5);
    arrived(|k| upstream.entries(k), &key, 5, Duration::from_secs(20));
    upstream.cli(&["DEL", &key]);
    produce(&local, &key, 5);
    daemon.wait_log("Upstream stream is missing", Duration::from_secs(10));
    let started = std::time::Instant::now();
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(8), "stop took {:?}", started.elapsed());
}

#[test]
fn a_box_with_no_cameras_runs_the_uplink_idle_and_stops_promptly() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (_config, daemon) = daemon(&local, &upstream.url(), &[], "");
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(8), "stop took {:?}", started.elapsed());
}

#[test]
fn a_camera_added_by_a_reload_is_forwarded_and_the_others_go_on_once() {
    let local = Redis::start();
    let upstream = UpstreamRedis::start();
    let (config, daemon) = daemon(&local, &upstream.url(), &["north"], "");
    let (north, south) = (config.stream_key("north"), config.stream_key("south"));
    produce(&local, &north, 100);
    arrived(|k| upstream.entries(k), &north, 100, Duration::from_secs(20));

    config.camera("south", "rtsp://127.0.0.1:9/none", "enabled = false");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("Configuration reloaded.", Duration::from_secs(20));
    assert!(daemon.log().contains("uplink_restarted=true"));
    produce(&local, &north, 50);
    produce(&local, &south, 70);
    let north_up = arrived(|k| upstream.entries(k), &north, 150, Duration::from_secs(20));
    let south_up = arrived(|k| upstream.entries(k), &south, 70, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(upstream.entries(&north), local.entries(&north), "restarting the uplink repeated nothing");
    assert_eq!((north_up.len(), south_up.len()), (150, 70));
    assert_eq!(upstream.entries(&south), local.entries(&south));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert_eq!(uplink_value(&log, "south", "forwarded"), Some(70), "{log}");
}

/// An upstream that accepts connections and never answers: each attempt waits out its timeouts.
/// The reload's reconcile waits for it; a stop must not wait behind that (systemd's
/// `TimeoutStopSec=15s` would SIGKILL the drain).
#[test]
fn a_stop_during_a_reload_waiting_for_upstream_is_prompt() {
    let local = Redis::start();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let (config, daemon) = daemon(&local, &url, &["north"], "");

    config.camera("south", "rtsp://127.0.0.1:9/none", "enabled = false");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("Reloading configuration.", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let asked = std::time::Instant::now();
    let (code, log) = daemon.stop();
    // Waiting for the reconcile would hold the stop for its connection timeout (3 s) or more.
    assert!(asked.elapsed() < Duration::from_millis(1500), "stop took {:?}", asked.elapsed());
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Stop signal during the reload"), "{log}");
}
