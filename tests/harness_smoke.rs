//! The uplink tests' harness pieces, exercised for real: the cutting proxy, and the upstream
//! Redis kinds (single with AOF and ACL users, with a replica, a 3-master cluster, TLS).

mod support;

use std::time::Duration;

use support::proxy::Proxy;
use support::upstream::{RedisCluster, RedisOptions, ReplicatedRedis, TlsRedis, UpstreamRedis};

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

fn ping(conn: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(conn)
}

#[test]
fn the_proxy_forwards_commands_both_ways() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let mut conn = connect(&proxy.url()).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    let () = redis::cmd("SET").arg("k").arg("through the proxy").query(&mut conn).unwrap();
    assert_eq!(get(&mut redis.connect().unwrap(), "k").as_deref(), Some("through the proxy"));
    assert_eq!(get(&mut conn, "k").as_deref(), Some("through the proxy"));
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert!(stats.to_server > 0 && stats.to_client > 0, "{stats:?}");
    assert_eq!(stats.swallowed, 0);
}

#[test]
fn a_cut_breaks_live_connections_and_refuses_new_ones_until_restored() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let mut conn = connect(&proxy.url()).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");

    proxy.cut();
    assert!(ping(&mut conn).is_err(), "a live connection must break");
    assert!(connect(&proxy.url()).and_then(|mut c| ping(&mut c)).is_err(), "a new connection must be refused");
    assert!(proxy.stats().refused >= 1);
    assert_eq!(proxy.open_connections(), 0);

    proxy.restore();
    let mut again = connect(&proxy.url()).unwrap();
    assert_eq!(ping(&mut again).unwrap(), "PONG");
}

#[test]
fn a_cut_after_the_next_request_applies_it_upstream_but_the_client_sees_an_error() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let mut conn = connect(&proxy.url()).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");

    proxy.cut_after_next_request();
    assert!(proxy.is_armed());
    let result: redis::RedisResult<()> = redis::cmd("SET").arg("k").arg("applied").query(&mut conn);
    assert!(result.is_err(), "the client must not see the reply: {result:?}");
    assert!(proxy.wait_cut_fired(Duration::from_secs(3)));
    assert_eq!(get(&mut redis.connect().unwrap(), "k").as_deref(), Some("applied"));
    assert!(proxy.stats().swallowed > 0);
    assert!(ping(&mut conn).is_err(), "the connection is closed");

    // New connections go through normally afterwards.
    let mut again = connect(&proxy.url()).unwrap();
    assert_eq!(get(&mut again, "k").as_deref(), Some("applied"));
}

#[test]
fn a_cut_armed_for_one_command_lets_others_through_first() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let mut conn = connect(&proxy.url()).unwrap();

    proxy.cut_after_request_containing(b"xadd");
    assert_eq!(ping(&mut conn).unwrap(), "PONG", "a PING does not fire the cut");
    let result: redis::RedisResult<String> =
        redis::cmd("XADD").arg("roadsight:s").arg("1-1").arg("f").arg("v").query(&mut conn);
    assert!(result.is_err(), "{result:?}");
    assert!(proxy.wait_cut_fired(Duration::from_secs(3)));
    let entries = redis.entries("roadsight:s");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "1-1");
    assert_eq!(entries[0].1["f"], "v");
}

#[test]
fn dropping_replies_then_cutting_applies_requests_but_answers_none() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let mut conn = connect(&proxy.url()).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");

    proxy.drop_replies_then_cut();
    let result: redis::RedisResult<()> = redis::cmd("SET").arg("k").arg("applied").query(&mut conn);
    assert!(result.is_err(), "{result:?}");
    assert_eq!(get(&mut redis.connect().unwrap(), "k").as_deref(), Some("applied"));
    // Once the window closed, the proxy forwards again.
    std::thread::sleep(support::proxy::DROP_REPLIES_FOR + Duration::from_millis(100));
    let mut again = connect(&proxy.url()).unwrap();
    assert_eq!(get(&mut again, "k").as_deref(), Some("applied"));
}

#[test]
fn a_dropped_proxy_stops_listening() {
    let redis = UpstreamRedis::start_with(RedisOptions::default().no_aof());
    let proxy = Proxy::start(redis.addr());
    let url = proxy.url();
    let mut conn = connect(&url).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    drop(proxy);
    assert!(ping(&mut conn).is_err());
    assert!(connect(&url).and_then(|mut c| ping(&mut c)).is_err());
}

#[test]
fn an_upstream_killed_and_restarted_keeps_what_it_acknowledged() {
    let mut redis = UpstreamRedis::start();
    let port = redis.port();
    let id: String =
        redis::cmd("XADD").arg("roadsight:s").arg("*").arg("f").arg("v").query(&mut redis.connect().unwrap()).unwrap();
    redis.kill();
    assert!(redis.connect().is_err());
    redis.restart();
    assert_eq!(redis.port(), port);
    let entries = redis.entries("roadsight:s");
    assert_eq!(entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), [id.as_str()]);
}

#[test]
fn an_acl_user_reaches_its_keys_only_and_a_wrong_password_is_refused() {
    let mut redis = UpstreamRedis::start_with(RedisOptions::default().acl_user("uplink", "s3cret"));
    let mut conn = redis.connect_as("uplink", "s3cret").unwrap();
    let () = redis::cmd("SET").arg("roadsight:k").arg("v").query(&mut conn).unwrap();
    let err = redis::cmd("SET").arg("other").arg("v").query::<()>(&mut conn).unwrap_err();
    assert!(err.to_string().to_uppercase().contains("NOPERM"), "{err}");
    let err = redis.connect_as("uplink", "wrong").and_then(|mut c| ping(&mut c)).unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    assert!(redis.url_as("uplink", "s3cret").starts_with("redis://uplink:s3cret@127.0.0.1:"));

    // A user added at run time exists again after a restart.
    redis.with_acl_user("late", "pw2");
    redis.kill();
    redis.restart();
    assert_eq!(ping(&mut redis.connect_as("late", "pw2").unwrap()).unwrap(), "PONG");
    assert_eq!(ping(&mut redis.connect_as("uplink", "s3cret").unwrap()).unwrap(), "PONG");
}

#[test]
fn a_replicated_upstream_acknowledges_wait_until_its_replica_is_gone() {
    let mut pair = ReplicatedRedis::start();
    let mut conn = pair.primary.connect().unwrap();
    let () = redis::cmd("SET").arg("k").arg("v").query(&mut conn).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(2000).query(&mut conn).unwrap();
    assert_eq!(acked, 1);
    assert_eq!(get(&mut pair.replica.connect().unwrap(), "k").as_deref(), Some("v"));

    pair.replica.kill();
    let () = redis::cmd("SET").arg("k").arg("w").query(&mut conn).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(100).query(&mut conn).unwrap();
    assert_eq!(acked, 0);
    pair.replica.restart();
    pair.wait_synced();
    assert_eq!(get(&mut pair.replica.connect().unwrap(), "k").as_deref(), Some("w"));
}

#[test]
fn a_three_master_cluster_serves_a_key_on_every_master() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    let keys = cluster.keys_on_every_node(|i| format!("roadsight:{{test:cam{i}}}:detections"));
    for (node, key) in keys.iter().enumerate() {
        assert_eq!(cluster.node_for(key), node);
        let id = cluster.cli(&["XADD", key, "*", "f", "v"]);
        assert!(id.ends_with("-0"), "{id}");
        let entries = cluster.entries(key);
        assert_eq!(entries.len(), 1, "{key} on node {node}");
        assert_eq!(entries[0].0, id);
        // Only the owning master holds it.
        let counts: Vec<usize> = cluster.nodes().iter().map(|n| n.entries(key).len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 1, "{counts:?}");
    }
    assert_eq!(cluster.cli(&["SET", "plain-key", "v"]), "OK");
    assert_eq!(cluster.cli(&["GET", "plain-key"]), "v");
}

#[test]
fn a_tls_upstream_answers_with_the_test_ca_and_checks_acl_passwords() {
    let tls = TlsRedis::start_with(RedisOptions::default().acl_user("uplink", "s3cret"));
    assert_eq!(tls.url(), format!("rediss://127.0.0.1:{}", tls.tls_port()));
    assert!(tls.ca_file().exists() && tls.client_cert().exists() && tls.client_key().exists());
    assert_eq!(tls.cli_tls(&["PING"]), "PONG");
    assert_eq!(tls.cli_tls(&["--user", "uplink", "--pass", "s3cret", "SET", "roadsight:k", "v"]), "OK");
    assert!(tls.cli_tls(&["--user", "uplink", "--pass", "wrong", "PING"]).contains("WRONGPASS"));
    // The harness reads what arrived over the plain port.
    assert_eq!(get(&mut tls.connect().unwrap(), "roadsight:k").as_deref(), Some("v"));

    // Without the CA, the server's certificate is not trusted.
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "-h", "127.0.0.1", "-p", &tls.tls_port().to_string(), "PING"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("PONG"), "{text}");

    // A proxy in front of the TLS port passes it through: the certificate names 127.0.0.1.
    let proxy = Proxy::start(tls.tls_addr().unwrap());
    let ca = tls.ca_file().to_str().unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", ca, "-h", "127.0.0.1", "-p", &proxy.port().to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
}

#[test]
fn a_tls_upstream_can_require_a_client_certificate() {
    let tls = TlsRedis::start_with(RedisOptions::default().require_client_cert());
    assert_eq!(tls.cli_tls(&["PING"]), "PONG");
    let ca = tls.ca_file().to_str().unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", ca, "-h", "127.0.0.1", "-p", &tls.tls_port().to_string(), "PING"])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
}
