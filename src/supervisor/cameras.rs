//! The running camera set: one capture task per enabled camera, each with its own stop token
//! and mailbox slot. Start-up applies the config's cameras to an empty set; a reload applies
//! the new config's cameras to the running set, so unchanged cameras are never touched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::{self, CaptureShared};
use crate::config::{CameraConfig, CaptureDefaults};
use crate::frame::CameraInfo;
use crate::mailbox::Mailboxes;
use crate::publish;
use crate::telemetry::{DropReason, Metrics};

/// How long cameras may take to tear their pipelines down once told to stop.
pub(super) const CAPTURE_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// What [`CameraSet::apply`] did, by camera id.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Applied {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

struct Running {
    shared: Arc<CaptureShared>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Settings every camera of this daemon run shares (they need a restart to change).
pub(super) struct Shared {
    pub site: String,
    pub labels: Vec<String>,
    pub defaults: CaptureDefaults,
    pub input_width: u32,
    pub input_height: u32,
    /// Where frames of NVIDIA desktop decoders stay (`None`: system memory).
    #[cfg(feature = "cuda")]
    pub device: Option<&'static crate::cuda::DeviceContext>,
}

pub(super) struct CameraSet {
    running: BTreeMap<String, Running>,
    /// The next `seq` of cameras removed or disabled during this run: one that comes back goes
    /// on counting under the same run id (bounded by the camera ids configured in the run).
    retired_seq: HashMap<String, u64>,
    shared: Shared,
    mailboxes: Arc<Mailboxes>,
    metrics: Arc<Metrics>,
}

impl CameraSet {
    pub(super) fn new(shared: Shared, mailboxes: Arc<Mailboxes>, metrics: Arc<Metrics>) -> Self {
        Self { running: BTreeMap::new(), retired_seq: HashMap::new(), shared, mailboxes, metrics }
    }

    /// Makes the running set match the enabled cameras of `wanted`: removed and changed
    /// cameras stop (a changed one restarts with its new settings and keeps counting `seq`),
    /// new ones start, the others keep running untouched.
    pub(super) async fn apply(&mut self, wanted: &[CameraConfig]) -> Applied {
        let wanted: BTreeMap<&str, &CameraConfig> =
            wanted.iter().filter(|c| c.enabled).map(|c| (c.id.as_str(), c)).collect();
        let mut applied = Applied::default();
        let to_stop: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| wanted.get(id.as_str()).is_none_or(|c| **c != r.shared.config))
            .map(|(id, _)| id.clone())
            .collect();
        let next_seq = self.stop(&to_stop).await;
        for id in to_stop {
            if wanted.contains_key(id.as_str()) {
                applied.changed.push(id);
            } else {
                self.metrics.forget_camera(&id);
                if let Some(&seq) = next_seq.get(&id) {
                    self.retired_seq.insert(id.clone(), seq);
                }
                applied.removed.push(id);
            }
        }
        for (id, config) in wanted {
            if self.running.contains_key(id) {
                applied.unchanged += 1;
                continue;
            }
            if !next_seq.contains_key(id) {
                applied.added.push(id.to_owned());
            }
            let seq = next_seq.get(id).copied().or_else(|| self.retired_seq.remove(id));
            self.start(config.clone(), seq.unwrap_or(0));
        }
        applied
    }

    fn start(&mut self, config: CameraConfig, seq: u64) {
        let info = Arc::new(CameraInfo {
            id: config.id.clone(),
            stream_key: publish::stream_key(&self.shared.site, &config.id),
            classes: class_ids(&config.classes, &self.shared.labels),
            confidence: config.confidence,
            publish_empty: config.publish_empty,
            metrics: self.metrics.camera(&config.id),
        });
        let shared = Arc::new(CaptureShared {
            slot: self.mailboxes.add(),
            config,
            defaults: self.shared.defaults.clone(),
            camera: info,
            mailboxes: Arc::clone(&self.mailboxes),
            input_width: self.shared.input_width,
            input_height: self.shared.input_height,
            seq: AtomicU64::new(seq),
            #[cfg(feature = "cuda")]
            device: self.shared.device,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(capture::run(Arc::clone(&shared), stop.clone()));
        self.running.insert(shared.config.id.clone(), Running { shared, stop, task });
    }

    /// Stops these cameras; returns the `seq` each would have used next. A camera whose
    /// pipeline does not stop in time has its mailbox slot retired: its late frames are refused
    /// (counted as `shutdown`) and the slot is freed once the pipeline has stopped.
    async fn stop(&mut self, ids: &[String]) -> HashMap<String, u64> {
        let mut stopping: Vec<Running> = ids.iter().filter_map(|id| self.running.remove(id)).collect();
        for r in &stopping {
            r.stop.cancel();
        }
        let joined = tokio::time::timeout(CAPTURE_STOP_TIMEOUT, async {
            for r in &mut stopping {
                let _ = (&mut r.task).await;
            }
        });
        let _ = joined.await;
        let mut next_seq = HashMap::new();
        for r in stopping {
            let camera = &r.shared.camera;
            let slot = r.shared.slot;
            let waiting = if r.task.is_finished() {
                self.mailboxes.remove(slot)
            } else {
                tracing::warn!(camera = %camera.id, stage = "capture", "Camera did not stop in time; its frames are refused until it does.");
                let mailboxes = Arc::clone(&self.mailboxes);
                let task = r.task;
                tokio::spawn(async move {
                    let _ = task.await;
                    mailboxes.remove(slot); // holds no frame: a retired slot refuses them
                });
                self.mailboxes.retire(slot)
            };
            if let Some(waiting) = waiting {
                camera.metrics.drop(DropReason::Shutdown, 1);
                drop(waiting);
            }
            next_seq.insert(camera.id.clone(), r.shared.seq.load(Ordering::Relaxed));
        }
        next_seq
    }

    /// Shutdown: stops every camera, bounded; frames already in the mailboxes stay there for
    /// inference to finish.
    pub(super) async fn stop_all(&mut self) {
        for r in self.running.values() {
            r.stop.cancel();
        }
        let joined = tokio::time::timeout(CAPTURE_STOP_TIMEOUT, async {
            for r in self.running.values_mut() {
                let _ = (&mut r.task).await;
            }
        });
        if joined.await.is_err() {
            tracing::warn!(stage = "capture", "Some cameras did not stop in time; going on.");
        }
    }

    /// The running cameras, by id.
    pub(super) fn cameras(&self) -> impl Iterator<Item = &Arc<CameraInfo>> {
        self.running.values().map(|r| &r.shared.camera)
    }

    pub(super) fn len(&self) -> usize {
        self.running.len()
    }
}

/// Class names of a camera's allow-list → class ids (validated against the labels earlier).
fn class_ids(classes: &Option<Vec<String>>, labels: &[String]) -> Option<Vec<u32>> {
    classes.as_ref().map(|names| {
        names.iter().filter_map(|n| labels.iter().position(|l| l == n).map(|i| i as u32)).collect()
    })
}
