//! The redis-servers a benchmark scenario needs: the box's local one on a unix socket (AOF),
//! the central one on TCP loopback (killed and restarted on the same port for an outage). Every
//! child gets `PR_SET_PDEATHSIG` and is stopped on drop, so an interrupted run leaves nothing
//! behind. Shared by the uplink and pipeline benchmarks.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

#[path = "../../tests/support/process.rs"]
mod process;
pub(crate) use process::{command, terminate, wait_for};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A redis-server with its own data dir: the local one (unix socket, `appendfsync` as given)
/// or the upstream one (TCP port, Redis's default `appendfsync everysec`). AOF on for both, no
/// RDB snapshots (a fork mid-run would be measured as uplink latency).
pub(crate) struct RedisServer {
    dir: TempDir,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// The box's local Redis, as `configs/redis/roadsight-redis.conf` sets it up.
    pub(crate) fn local(fsync: &str) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock").display().to_string();
        let args = ["--port", "0", "--unixsocket", &socket, "--appendfsync", fsync, "--maxmemory-policy", "noeviction"];
        RedisServer::launch(dir, 0, args.map(String::from).to_vec())
    }

    /// The central Redis, on a free loopback port.
    pub(crate) fn upstream() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let args = ["--bind", "127.0.0.1", "--port", &port.to_string()];
        RedisServer::launch(tempfile::tempdir().unwrap(), port, args.map(String::from).to_vec())
    }

    fn launch(dir: TempDir, port: u16, args: Vec<String>) -> RedisServer {
        let mut server = RedisServer { dir, port, args, child: None };
        server.restart();
        server
    }

    /// Starts the server (again) on the same address and data; waits until it answers.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = command("redis-server")
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(["--daemonize", "no", "--save", "", "--appendonly", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        self.child = Some(child);
        wait_for(Duration::from_secs(20), "redis-server to answer", || {
            let mut conn = self.connect().ok()?;
            redis::cmd("PING").query::<String>(&mut conn).ok()
        });
    }

    /// SIGKILL, as a crash or a cut link would look to the daemon.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn url(&self) -> String {
        if self.port == 0 {
            format!("unix://{}", self.dir.path().join("redis.sock").display())
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    pub(crate) fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_millis(500))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
