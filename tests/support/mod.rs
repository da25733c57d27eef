//! Test harness: real processes on loopback, started per test and stopped on drop.
//!
//! - [`Redis`]: a private `redis-server` on a unix socket in a temp dir.
//! - [`TestCam`]: the `roadsight-testcam` binary serving a file from `../shared`-derived
//!   fixtures on a given or free port.
//! - [`Daemon`]: `roadsightd run` with a config written by [`ConfigDir`].

#![allow(dead_code)]

pub mod notify;
pub mod process;
pub mod proxy;
pub mod upstream;

pub use process::{command, terminate, wait_for};

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test fixture (images, clips) by file name.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one `scripts/setup.sh` installs.
pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".local/onnxruntime/lib/libonnxruntime.so"))
}

/// A port nothing listens on right now (for a camera that must come back on the same port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private redis-server on a unix socket, with AOF (`appendfsync always`) so a restart keeps
/// what was acknowledged.
pub struct Redis {
    dir: TempDir,
    child: Option<Child>,
    /// `requirepass`, if any.
    password: Option<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with_password(None)
    }

    /// A server that wants `password` from every client (`requirepass`).
    pub fn start_with_password(password: Option<&str>) -> Redis {
        let password = password.map(str::to_owned);
        let mut redis = Redis { dir: tempfile::tempdir().unwrap(), child: None, password };
        redis.restart();
        redis
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts the server (again), on the same socket and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let child = command("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--dir"])
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .args(self.password.iter().flat_map(|p| ["--requirepass", p]))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), "redis-server to answer", || self.connect().ok());
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let auth = self.password.as_ref().map(|p| format!("?pass={p}")).unwrap_or_default();
        redis::Client::open(format!("{}{auth}", self.url()))?.get_connection()
    }

    /// Every entry of `key` as (id, field map).
    pub fn entries(&self, key: &str) -> Vec<(String, std::collections::HashMap<String, String>)> {
        let Ok(mut conn) = self.connect() else { return Vec::new() };
        upstream::stream_entries(&mut conn, key)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The RTSP test camera as a child process.
pub struct TestCam {
    child: Child,
    pub url: String,
}

impl TestCam {
    /// Serves `source` at rtsp://127.0.0.1:`port`/cam (port 0: any free one) and waits until it
    /// listens.
    pub fn start(source: &Path, port: u16) -> TestCam {
        TestCam::start_with(source, port, &[])
    }

    /// As [`TestCam::start`], with more command-line options (e.g. `--codec h265`).
    pub fn start_with(source: &Path, port: u16, extra: &[&str]) -> TestCam {
        let mut child = command(env!("CARGO_BIN_EXE_roadsight-testcam"))
            .arg("--source")
            .arg(source)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--path", "/cam", "--fps", "10"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let mut cam = TestCam { url: String::new(), child };
        match line.trim().strip_prefix("roadsight-testcam: serving ") {
            Some(url) => cam.url = url.to_owned(),
            // Dropping `cam` stops the child before the test fails.
            None => panic!("roadsight-testcam did not start: {line:?}"),
        }
        cam
    }

    /// Sends a signal to the camera process: `libc::SIGSTOP` freezes it with its connections
    /// open (a hung camera), `libc::SIGCONT` thaws it.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Stops the camera abruptly (SIGKILL), as a power cut would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestCam {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A config folder: `roadsight.toml` + `cameras.d/`.
pub struct ConfigDir {
    pub dir: TempDir,
    pub site: String,
}

impl ConfigDir {
    /// A global config for `redis_url` with the shipped model; `extra` is appended verbatim.
    pub fn new(redis_url: &str, extra: &str) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
        let repo = repo();
        let global = format!(
            r#"site = "test"

[redis]
url = "{redis_url}"

[model]
path = "{model}"
labels = "{labels}"
ort_library = "{ort}"

[metrics]
listen = "127.0.0.1:0"

[capture]
stall_timeout_ms = 3000
backoff_initial_ms = 250
backoff_max_ms = 2000
{extra}
"#,
            model = repo.join("models/centernet_mnv3_coco_512_u8.onnx").display(),
            labels = repo.join("models/coco80.names").display(),
            ort = ort_library().display(),
        );
        std::fs::write(dir.path().join("roadsight.toml"), global).unwrap();
        ConfigDir { dir, site: "test".into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("roadsight.toml")
    }

    /// Writes `cameras.d/<id>.toml` with `url` and `extra` lines.
    pub fn camera(&self, id: &str, url: &str, extra: &str) -> &Self {
        let text = format!("id = \"{id}\"\nurl = \"{url}\"\n{extra}\n");
        std::fs::write(self.dir.path().join("cameras.d").join(format!("{id}.toml")), text).unwrap();
        self
    }

    pub fn stream_key(&self, camera: &str) -> String {
        format!("roadsight:{{{}:{camera}}}:detections", self.site)
    }
}

/// `roadsightd run` as a child process; its stderr goes to a file for post-mortems.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    _log_dir: TempDir,
}

impl Daemon {
    pub fn start(config: &ConfigDir) -> Daemon {
        Daemon::start_with_env(config, &[("RUST_LOG", "info".as_ref())])
    }

    /// Starts with extra environment variables (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `RUST_LOG`…).
    pub fn start_with_env(config: &ConfigDir, env: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        Daemon::spawn(config, env, false)
    }

    /// Starts as systemd would with `StandardError=journal`: `JOURNAL_STREAM` names stderr.
    pub fn start_on_journal_stream(config: &ConfigDir) -> Daemon {
        Daemon::spawn(config, &[], true)
    }

    fn spawn(config: &ConfigDir, env: &[(&str, &std::ffi::OsStr)], journal: bool) -> Daemon {
        use std::os::unix::fs::MetadataExt as _;
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("roadsightd.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let meta = stderr.metadata().unwrap();
        let mut cmd = command(env!("CARGO_BIN_EXE_roadsightd"));
        cmd.args(["run", "--config"]).arg(config.path()).env("RUST_LOG", "info").envs(env.iter().copied());
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        Daemon { child, log, _log_dir: log_dir }
    }

    /// Sends a signal (`libc::SIGHUP`…) to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a power cut or the OOM killer would.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// GETs `/metrics` from the address the daemon logged; the text exposition.
    pub fn scrape(&self) -> String {
        use std::io::Write as _;
        let log = self.log();
        let addr = log
            .lines()
            .find(|l| l.contains("Metrics served at /metrics."))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or_else(|| panic!("no metrics address in the log: {log}"))
            .to_owned();
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// Waits until the log holds `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        wait_for(timeout, &format!("`{text}` in the daemon's log"), || self.log().contains(text).then_some(()));
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGTERM, wait for the exit; returns the exit code and the whole log.
    pub fn stop(mut self) -> (Option<i32>, String) {
        terminate(&mut self.child);
        let code = self.child.wait().ok().and_then(|s| s.code());
        (code, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Reads `key=value` from the daemon's "Camera summary." line for `camera`.
pub fn summary_value(log: &str, camera: &str, key: &str) -> Option<u64> {
    line_value(log, "Camera summary.", camera, key)
}

/// Reads `key=value` from the daemon's "Uplink summary." line for `camera`.
pub fn uplink_value(log: &str, camera: &str, key: &str) -> Option<u64> {
    line_value(log, "Uplink summary.", camera, key)
}

fn line_value(log: &str, marker: &str, camera: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(marker) && l.contains(&format!("camera={camera} ")))?;
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()?.parse().ok()
}

/// The drop reasons of frames that were already captured (`dropped_<reason>` in the summary);
/// `rate_limit` happens before capture and is not among them.
pub const DROPS_AFTER_CAPTURE: [&str; 7] =
    ["stale", "capture_error", "inference_error", "queue_full", "redis_error", "rejected", "shutdown"];

/// The sum of a camera's drops after capture, from the summary line: with `published`, it
/// must add up to `captured`.
pub fn total_dropped(log: &str, camera: &str) -> u64 {
    DROPS_AFTER_CAPTURE
        .iter()
        .map(|r| summary_value(log, camera, &format!("dropped_{r}")).unwrap_or_else(|| panic!("dropped_{r} in {log}")))
        .sum()
}

/// `roadsightd check --config <path>`: exit code and stderr + stdout.
pub fn check(config: &Path) -> (i32, String) {
    check_with_env(config, &[])
}

/// `roadsightd check` with extra environment variables.
pub fn check_with_env(config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roadsightd"))
        .args(["check", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

/// The value of one series in a `/metrics` exposition, e.g.
/// `metric(&text, "roadsight_entries_published_total", &[("camera", "north")])`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric_name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric_name == name && all).then(|| value.parse().ok())?
    })
}
