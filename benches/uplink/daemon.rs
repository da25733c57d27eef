//! The daemon side of the uplink benchmark: the release `roadsightd` running only its uplink
//! (every camera disabled), and what is read back from it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::procs::{command, repo, terminate};

/// The release daemon, built first unless `UPLINK_BENCH_NO_BUILD` is set.
pub(crate) fn daemon_binary() -> PathBuf {
    let binary = repo().join("target/release/roadsightd");
    if std::env::var_os("UPLINK_BENCH_NO_BUILD").is_none() {
        eprintln!("uplink bench: cargo build --release --bin roadsightd");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "roadsightd"])
            .current_dir(repo())
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --release --bin roadsightd failed");
    }
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release --bin roadsightd`",
        binary.display()
    );
    binary
}

/// `roadsightd run` over a config whose cameras are all disabled: only the uplink works, on the
/// entries the bench writes (as in tests/uplink.rs). Uplink settings are the defaults.
pub(crate) struct Daemon {
    child: Child,
    dir: TempDir,
}

impl Daemon {
    pub(crate) fn start(binary: &Path, local_url: &str, upstream_url: &str, cameras: &[String]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
        let ort = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".local/onnxruntime/lib/libonnxruntime.so"));
        let config = format!(
            "site = \"{site}\"\n\n[redis]\nurl = \"{local_url}\"\n\n[model]\npath = \"{model}\"\nlabels = \"{labels}\"\n\
             ort_library = \"{ort}\"\n\n[uplink]\nenabled = true\nurl = \"{upstream_url}\"\n",
            site = super::load::SITE,
            model = repo().join("models/centernet_mnv3_coco_512_u8.onnx").display(),
            labels = repo().join("models/coco80.names").display(),
            ort = ort.display(),
        );
        std::fs::write(dir.path().join("roadsight.toml"), config).unwrap();
        for cam in cameras {
            let text = format!("id = \"{cam}\"\nurl = \"rtsp://127.0.0.1:9/none\"\nenabled = false\n");
            std::fs::write(dir.path().join("cameras.d").join(format!("{cam}.toml")), text).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("roadsightd.log")).unwrap();
        let child = command(binary)
            .args(["run", "--config"])
            .arg(dir.path().join("roadsight.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start roadsightd");
        Daemon { child, dir }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("roadsightd.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log holds `text`; panics with the log if the daemon exits first.
    pub(crate) fn wait_log(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(text) {
            if !matches!(self.child.try_wait(), Ok(None)) || start.elapsed() > timeout {
                panic!("roadsightd: no `{text}` in its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait; returns the whole log (with the "Uplink summary." lines).
    pub(crate) fn stop(mut self) -> String {
        terminate(&mut self.child);
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Sums `key=value` over the daemon's "Uplink summary." lines (one per camera).
pub(crate) fn uplink_total(log: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("Uplink summary."))
        .filter_map(|l| {
            let start = l.find(&format!(" {key}="))? + key.len() + 2;
            l[start..].split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// CPU seconds (user + system) process `pid` has used so far; 0 if it is gone.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..].split(' ').collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}
