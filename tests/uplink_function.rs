//! The `roadsight` Redis Functions library (ordered, idempotent upstream append) against real
//! redis-server processes: one server on an ephemeral loopback port with AOF, and a 3-master
//! Redis Cluster built with `redis-cli --cluster create`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use roadsight::uplink::function::{self, AppendOutcome, Entry, LIBRARY_VERSION, LoadOutcome, StreamId};
use tempfile::TempDir;

const KEY: &str = "roadsight:{north:cam1}:detections";

/// An LZ4 block as the daemon writes with `encoding = "json+lz4"`: any bytes, NULs included.
const BINARY: &[u8] = &[0x1f, 0x00, 0x00, 0x00, 0xf0, 0x10, 0x5b, 0x7b, 0x00, 0xff, 0xfe, 0x0a];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A redis-server on a loopback port, data and AOF (`appendfsync always`) in a temp dir;
/// killed on drop, and by the kernel if the test thread dies first.
struct Server {
    dir: TempDir,
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Server { dir: tempfile::tempdir().unwrap(), port: free_port(), extra, child: None };
        server.restart();
        server
    }

    fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                (libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0)
                    .then_some(())
                    .ok_or_else(std::io::Error::last_os_error)
            })
        };
        self.child = Some(cmd.spawn().expect("redis-server is installed"));
        wait_for("redis-server to answer", || {
            redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// SIGKILL, as a crash or power cut would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                Server::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            wait_for("cluster_state:ok", || {
                let info = redis::Client::open(node.url())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c));
                info.is_ok_and(|info| info.contains("cluster_state:ok"))
            });
        }
        Cluster { nodes }
    }

    async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        let client =
            redis::cluster::ClusterClient::new(self.nodes.iter().map(Server::url).collect::<Vec<_>>())
                .unwrap();
        client.get_async_connection().await.unwrap()
    }
}

fn id(s: &str) -> StreamId {
    s.parse().unwrap()
}

/// Entries `ids`, each with the fields a frame has (`seq` tells them apart) and a binary `det`.
fn batch(ids: &[&str]) -> Vec<Entry> {
    let fields = |id: &str| {
        vec![
            (b"v".to_vec(), b"1".to_vec()),
            (b"seq".to_vec(), id.as_bytes().to_vec()),
            (b"det".to_vec(), BINARY.to_vec()),
        ]
    };
    ids.iter().map(|s| Entry { id: id(s), fields: fields(s) }).collect()
}

/// The stream as upstream holds it, in the entries' shape.
async fn upstream(conn: &mut (impl ConnectionLike + Send), key: &str) -> Vec<Entry> {
    let reply: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(conn).await.unwrap();
    let pairs = |flat: Vec<Vec<u8>>| flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    reply.into_iter().map(|(i, flat)| Entry { id: id(&i), fields: pairs(flat) }).collect()
}

fn appended(applied: u64, duplicates: u64, last: &str) -> AppendOutcome {
    AppendOutcome::Appended { applied, duplicates, last: id(last) }
}

async fn loaded_server() -> (Server, MultiplexedConnection) {
    let server = Server::start(&[]);
    let mut conn = server.conn().await;
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Loaded);
    (server, conn)
}

#[tokio::test]
async fn entries_land_with_their_ids_and_fields_once_however_often_sent() {
    let (_server, mut conn) = loaded_server().await;
    let sent = batch(&["1700000000000-0", "1700000000000-1", "1700000000033-0"]);
    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, true, false, &sent).await.unwrap();
    assert_eq!(outcome, appended(3, 0, "1700000000033-0"));
    assert_eq!(upstream(&mut conn, KEY).await, sent);

    // The reply was lost: the same batch again, with the same prev.
    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, true, false, &sent).await.unwrap();
    assert_eq!(outcome, appended(0, 3, "1700000000033-0"));
    assert_eq!(upstream(&mut conn, KEY).await, sent);
    assert_eq!(function::last_id(&mut conn, KEY).await.unwrap(), Some(id("1700000000033-0")));
}

#[tokio::test]
async fn overlapping_batch_applies_only_the_new_entries_in_order() {
    let (_server, mut conn) = loaded_server().await;
    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &batch(&["1-0", "2-0", "3-0"]))
        .await
        .unwrap();
    let outcome =
        function::append(&mut conn, KEY, id("1-0"), false, false, &batch(&["2-0", "3-0", "3-1", "4-0"]))
            .await;
    assert_eq!(outcome.unwrap(), appended(2, 2, "4-0"));
    assert_eq!(upstream(&mut conn, KEY).await, batch(&["1-0", "2-0", "3-0", "3-1", "4-0"]));
}

#[tokio::test]
async fn missing_stream_is_reported_not_created_unless_asked() {
    let (_server, mut conn) = loaded_server().await;
    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, false, false, &batch(&["1-0"])).await;
    assert_eq!(outcome.unwrap(), AppendOutcome::Missing);
    assert_eq!(function::last_id(&mut conn, KEY).await.unwrap(), None);

    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &batch(&["1-0"])).await.unwrap();
    // An operator deletes the stream upstream: the forwarder is told, the key stays gone.
    redis::cmd("DEL").arg(KEY).exec_async(&mut conn).await.unwrap();
    let outcome = function::append(&mut conn, KEY, id("1-0"), false, false, &batch(&["2-0"])).await;
    assert_eq!(outcome.unwrap(), AppendOutcome::Missing);
    assert!(upstream(&mut conn, KEY).await.is_empty());
    assert_eq!(function::last_id(&mut conn, KEY).await.unwrap(), None);
}

#[tokio::test]
async fn gap_is_reported_with_nothing_written_unless_accepted() {
    let (_server, mut conn) = loaded_server().await;
    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &batch(&["1-0", "2-0"])).await.unwrap();
    // The caller saw 5-0 confirmed, but upstream (a lagging replica promoted) ends at 2-0.
    let outcome = function::append(&mut conn, KEY, id("5-0"), false, false, &batch(&["6-0"])).await;
    assert_eq!(outcome.unwrap(), AppendOutcome::Gap { upstream_last: id("2-0") });
    assert_eq!(upstream(&mut conn, KEY).await, batch(&["1-0", "2-0"]));

    let outcome = function::append(&mut conn, KEY, id("5-0"), false, true, &batch(&["6-0"])).await;
    assert_eq!(outcome.unwrap(), appended(1, 0, "6-0"));
    assert_eq!(upstream(&mut conn, KEY).await, batch(&["1-0", "2-0", "6-0"]));
}

#[tokio::test]
async fn deleted_or_trimmed_entries_still_count_as_duplicates() {
    let (_server, mut conn) = loaded_server().await;
    let sent = batch(&["1-0", "2-0", "3-0"]);
    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &sent).await.unwrap();
    redis::cmd("XDEL").arg(KEY).arg("3-0").exec_async(&mut conn).await.unwrap();
    redis::cmd("XTRIM").arg(KEY).arg("MAXLEN").arg(0).exec_async(&mut conn).await.unwrap();

    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, false, false, &sent).await;
    assert_eq!(outcome.unwrap(), appended(0, 3, "3-0"));
    assert!(upstream(&mut conn, KEY).await.is_empty());
    assert_eq!(function::last_id(&mut conn, KEY).await.unwrap(), Some(id("3-0")));
}

#[tokio::test]
async fn malformed_batches_are_refused_whole() {
    let (_server, mut conn) = loaded_server().await;
    let unordered = batch(&["5-0", "4-0"]);
    let err = function::append(&mut conn, KEY, StreamId::ZERO, true, false, &unordered).await.unwrap_err();
    assert!(err.to_string().contains("entry IDs must increase (4-0 after 5-0)"), "{err}");
    let empty = [Entry { id: id("1-0"), fields: Vec::new() }];
    let err = function::append(&mut conn, KEY, StreamId::ZERO, true, false, &empty).await.unwrap_err();
    assert!(err.to_string().contains("field count of at least 1"), "{err}");
    let err = redis::cmd("FCALL")
        .arg("roadsight_append")
        .arg(1)
        .arg(KEY)
        .arg("0-0")
        .arg("creat")
        .exec_async(&mut conn)
        .await;
    assert!(err.unwrap_err().to_string().contains("unknown mode \"creat\""));
    assert_eq!(function::last_id(&mut conn, KEY).await.unwrap(), None, "nothing may be written");
}

#[tokio::test]
async fn ensure_loaded_is_idempotent_upgrades_older_and_keeps_newer() {
    let (_server, mut conn) = loaded_server().await;
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Current);

    let fake = |version: i64| {
        format!(
            "#!lua name=roadsight\nredis.register_function{{function_name='roadsight_version', callback=function() return {version} end, flags={{'no-writes'}}}}"
        )
    };
    let version = async |conn: &mut MultiplexedConnection| -> i64 {
        redis::cmd("FCALL_RO").arg("roadsight_version").arg(0).query_async(conn).await.unwrap()
    };
    redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(fake(0)).exec_async(&mut conn).await.unwrap();
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Upgraded { from: 0 });
    assert_eq!(version(&mut conn).await, LIBRARY_VERSION);

    redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(fake(99)).exec_async(&mut conn).await.unwrap();
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Newer { upstream: 99 });
    assert_eq!(version(&mut conn).await, 99);
}

#[tokio::test]
async fn library_and_last_id_survive_a_crash_and_restart_with_aof() {
    let (mut server, mut conn) = loaded_server().await;
    let sent = batch(&["1-0", "2-0"]);
    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &sent).await.unwrap();
    redis::cmd("XDEL").arg(KEY).arg("2-0").exec_async(&mut conn).await.unwrap();
    server.kill();
    server.restart();

    let mut conn = server.conn().await;
    // Straight from the AOF: no load by us in between.
    let version: i64 =
        redis::cmd("FCALL_RO").arg("roadsight_version").arg(0).query_async(&mut conn).await.unwrap();
    assert_eq!(version, LIBRARY_VERSION);
    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, false, false, &sent).await;
    assert_eq!(outcome.unwrap(), appended(0, 2, "2-0"));
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Current);
}

#[tokio::test]
async fn flushed_library_is_loaded_again_by_the_next_append() {
    let (_server, mut conn) = loaded_server().await;
    redis::cmd("FUNCTION").arg("FLUSH").exec_async(&mut conn).await.unwrap();
    let outcome = function::append(&mut conn, KEY, StreamId::ZERO, true, false, &batch(&["1-0"])).await;
    assert_eq!(outcome.unwrap(), appended(1, 0, "1-0"));
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Current);
}

#[tokio::test]
async fn cluster_every_primary_gets_the_library_and_each_camera_its_slot() {
    let cluster = Cluster::start();
    let mut conn = cluster.conn().await;
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Loaded);
    for node in &cluster.nodes {
        let libs: Vec<redis::Value> = redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("roadsight")
            .query_async(&mut node.conn().await)
            .await
            .unwrap();
        assert_eq!(libs.len(), 1, "library missing on port {}", node.port);
    }
    assert_eq!(function::ensure_loaded(&mut conn).await.unwrap(), LoadOutcome::Current);

    let keys: Vec<String> = (0..9).map(|n| format!("roadsight:{{north:cam{n}}}:detections")).collect();
    let sent = batch(&["1-0", "1-1", "2-0"]);
    for key in &keys {
        let outcome = function::append(&mut conn, key, StreamId::ZERO, true, false, &sent).await;
        assert_eq!(outcome.unwrap(), appended(3, 0, "2-0"));
        let outcome = function::append(&mut conn, key, StreamId::ZERO, true, false, &sent).await;
        assert_eq!(outcome.unwrap(), appended(0, 3, "2-0"));
        assert_eq!(upstream(&mut conn, key).await, sent);
    }
    for node in &cluster.nodes {
        let held: usize = redis::cmd("DBSIZE").query_async(&mut node.conn().await).await.unwrap();
        assert!(held > 0, "no camera stream on port {}: keys do not spread over the slots", node.port);
    }

    // A primary that lost the library (flushed, or added without it) is repaired on first use;
    // the others answer the repair's FUNCTION LOAD with "already exists".
    redis::cmd("FUNCTION").arg("FLUSH").exec_async(&mut cluster.nodes[0].conn().await).await.unwrap();
    for key in &keys {
        let outcome = function::append(&mut conn, key, id("2-0"), false, false, &batch(&["3-0"])).await;
        assert_eq!(outcome.unwrap(), appended(1, 0, "3-0"));
    }
}

#[tokio::test]
async fn ids_another_writer_took_are_a_conflict_not_duplicates() {
    let (_server, mut conn) = loaded_server().await;
    function::append(&mut conn, KEY, StreamId::ZERO, true, false, &batch(&["1-0", "2-0"])).await.unwrap();
    // Someone else writes a later ID; our next entries fall below it but were never there.
    redis::cmd("XADD").arg(KEY).arg("9-0").arg("v").arg("x").exec_async(&mut conn).await.unwrap();
    let outcome = function::append(&mut conn, KEY, id("2-0"), false, false, &batch(&["3-0", "4-0"])).await;
    assert_eq!(outcome.unwrap(), AppendOutcome::Conflict { upstream_last: id("9-0"), id: id("3-0") });
    assert_eq!(upstream(&mut conn, KEY).await.len(), 3, "nothing written");
    // A retry of what upstream does hold is still a plain duplicate.
    let outcome = function::append(&mut conn, KEY, id("1-0"), false, false, &batch(&["2-0"])).await;
    assert_eq!(outcome.unwrap(), appended(0, 1, "9-0"));
}
