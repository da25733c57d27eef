//! The processes one scenario runs: a private redis-server (unix socket, AOF everysec as the box
//! ships it), one test camera serving the stamped clip (every camera of a scenario reads the
//! same shared RTSP media, so one x264 encoder loads the machine whatever the camera count),
//! and the pipeline under test: the release `roadsightd`, or one Python baseline process per
//! camera. Every child gets `PR_SET_PDEATHSIG` and is stopped on drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::procs::{RedisServer, command, repo, terminate};

pub(crate) const SITE: &str = "bench";

/// The stream key of camera `camera`, as the daemon writes it (baselines use the same).
pub(crate) fn stream_key(camera: &str) -> String {
    format!("roadsight:{{{SITE}:{camera}}}:detections")
}

pub(crate) fn camera_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("cam{i}")).collect()
}

/// `roadsight-testcam --stamp` serving `source` at `fps`; the URL it printed.
pub(crate) struct Camera {
    child: Child,
    pub(crate) url: String,
}

impl Camera {
    pub(crate) fn start(binary: &Path, source: &Path, fps: u32) -> Camera {
        let mut child = command(binary)
            .args(["--listen", "127.0.0.1:0", "--stamp", "--fps", &fps.to_string(), "--source"])
            .arg(source)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start roadsight-testcam");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(url.starts_with("rtsp://"), "roadsight-testcam printed {line:?}");
        Camera { child, url }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// What runs the cameras of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipeline {
    Roadsight,
    /// `benches/baseline/gst_appsink.py`: PyGObject, newest-frame appsink, one process per camera.
    Careful,
    /// The same with ONNX Runtime set up as roadsightd sets it up (`--tuned`: no spinning, no
    /// memory pattern; the cores shared out between the processes): how much of the margin
    /// over `Careful` is those settings rather than the pipeline.
    CarefulTuned,
    /// `benches/baseline/opencv_rtsp.py`: `cv2.VideoCapture`, one process per camera.
    Common,
}

impl Pipeline {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pipeline::Roadsight => "roadsightd",
            Pipeline::Careful => "careful Python (GStreamer appsink)",
            Pipeline::CarefulTuned => "careful Python, ONNX Runtime as in roadsightd",
            Pipeline::Common => "common Python (OpenCV VideoCapture)",
        }
    }
}

/// The pipeline's processes (one daemon, or one Python process per camera).
pub(crate) struct Running {
    children: Vec<Child>,
    _dir: TempDir,
    /// `/metrics` address (roadsightd only).
    pub(crate) metrics: Option<String>,
    log: PathBuf,
}

impl Running {
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to all, then wait.
    pub(crate) fn stop(mut self) -> String {
        for child in &mut self.children {
            terminate(child);
        }
        self.log()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            terminate(child);
        }
    }
}

/// How a scenario's cameras are set up.
pub(crate) struct CameraSetup<'a> {
    pub(crate) url: &'a str,
    pub(crate) cameras: usize,
    /// Cap on processed frames per second per camera (0: none).
    pub(crate) fps: u32,
    /// `det` encoding of the daemon: `json` or `json+lz4`.
    pub(crate) encoding: &'a str,
    pub(crate) scheduling: &'a Scheduling,
}

/// How the daemon's inference is set up (the `[model]` options that differ).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scheduling {
    /// The shipped model (fixed batch 1), `[model]` at its defaults: what a box runs (on the
    /// CPU, one worker per core up to the cameras, one intra-op thread each).
    Default,
    /// A dynamic-batch model with this `max_batch` (1: one frame at a time), one worker.
    Batched { model: PathBuf, max_batch: usize },
    /// The shipped model, one worker with ONNX Runtime's intra-op threads (one per core): the
    /// default before `model.workers = 0`.
    OneWorker,
}

impl Scheduling {
    pub(crate) fn name(&self) -> String {
        match self {
            Scheduling::Default => "default".into(),
            Scheduling::Batched { max_batch: 1, .. } => "one at a time".into(),
            Scheduling::Batched { max_batch, .. } => format!("batched (≤ {max_batch})"),
            Scheduling::OneWorker => "1 worker × ONNX Runtime's threads".into(),
        }
    }

    fn model_options(&self) -> (PathBuf, String) {
        let shipped = repo().join("models/centernet_mnv3_coco_512_u8.onnx");
        match self {
            Scheduling::Default => (shipped, String::new()),
            Scheduling::Batched { model, max_batch } => (model.clone(), format!("max_batch = {max_batch}\nworkers = 1\n")),
            Scheduling::OneWorker => (shipped, "workers = 1\n".into()),
        }
    }
}

/// Starts `roadsightd` (release, `alloc-count`) on `redis` with `setup`'s cameras.
pub(crate) fn start_roadsight(binary: &Path, redis: &RedisServer, setup: &CameraSetup) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
    let (model, options) = setup.scheduling.model_options();
    let config = format!(
        "site = \"{SITE}\"\n\n[redis]\nurl = \"{redis}\"\n\n[model]\npath = \"{model}\"\nlabels = \"{labels}\"\n\
         ort_library = \"{ort}\"\n{options}\n[publish]\nencoding = \"{encoding}\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        redis = redis.url(),
        model = model.display(),
        labels = repo().join("models/coco80.names").display(),
        ort = ort_library().display(),
        encoding = setup.encoding,
    );
    std::fs::write(dir.path().join("roadsight.toml"), config).unwrap();
    for id in camera_ids(setup.cameras) {
        let text = format!("id = \"{id}\"\nurl = \"{}\"\nfps = {}\n", setup.url, setup.fps);
        std::fs::write(dir.path().join("cameras.d").join(format!("{id}.toml")), text).unwrap();
    }
    let log = dir.path().join("roadsightd.log");
    let child = command(binary)
        .args(["run", "--config"])
        .arg(dir.path().join("roadsight.toml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start roadsightd");
    let mut running = Running { children: vec![child], _dir: dir, metrics: None, log };
    let addr = super::procs::wait_for(Duration::from_secs(60), "roadsightd's metrics address", || {
        let log = running.log();
        assert!(!log.contains("cannot run"), "roadsightd failed:\n{log}");
        log.lines()
            .find(|l| l.contains("Metrics served at /metrics."))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_owned)
    });
    running.metrics = Some(addr);
    running
}

/// Starts one baseline process per camera, each writing to its camera's stream key.
pub(crate) fn start_baseline(pipeline: Pipeline, python: &Path, redis: &RedisServer, setup: &CameraSetup, seconds: u64) -> Running {
    let script = match pipeline {
        Pipeline::Careful | Pipeline::CarefulTuned => "benches/baseline/gst_appsink.py",
        Pipeline::Common => "benches/baseline/opencv_rtsp.py",
        Pipeline::Roadsight => unreachable!("not a baseline"),
    };
    // Tuned: one process per camera shares the cores as roadsightd's workers do.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (threads, tuned) = match pipeline {
        Pipeline::CarefulTuned => ((cores / setup.cameras).max(1).to_string(), Some("--tuned")),
        _ => ("0".to_owned(), None),
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("baseline.log");
    let children = camera_ids(setup.cameras)
        .iter()
        .map(|id| {
            command(python)
                .arg(repo().join(script))
                .args(["--url", setup.url, "--redis", &redis.url(), "--key", &stream_key(id)])
                .arg("--model")
                .arg(repo().join("models/centernet_mnv3_coco_512_u8.onnx"))
                .arg("--labels")
                .arg(repo().join("models/coco80.names"))
                .args(["--fps", &setup.fps.to_string(), "--seconds", &seconds.to_string(), "--threads", &threads])
                .args(tuned)
                .stdout(Stdio::null())
                .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
                .spawn()
                .expect("start a Python baseline (benches/baseline/setup.sh)")
        })
        .collect();
    Running { children, _dir: dir, metrics: None, log }
}

/// The ONNX Runtime library the daemon and the floor load.
pub(crate) fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".local/onnxruntime/lib/libonnxruntime.so"))
}
