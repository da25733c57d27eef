//! One scenario: fresh Redis, the pipeline under test on N cameras of the shared test camera,
//! a warm-up, then a measurement window read the same way for every pipeline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::measure::{self, Entry, Quantiles};
use super::procs::RedisServer;
use super::stack::{self, CameraSetup, Pipeline, Scheduling};

/// Why frames were dropped (roadsightd's `frames_dropped_total` reasons).
pub(crate) const REASONS: [&str; 8] =
    ["stale", "rate_limit", "capture_error", "inference_error", "queue_full", "redis_error", "rejected", "shutdown"];

/// Per-stage figures from roadsightd's histograms (ms).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stages {
    /// (stage, p50, p95, p99)
    pub(crate) rows: Vec<(&'static str, f64, f64, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) pipeline: Pipeline,
    pub(crate) label: String,
    pub(crate) cameras: usize,
    pub(crate) fps_cap: u32,
    pub(crate) encoding: String,
    pub(crate) window_s: f64,
    /// Windows pooled into this outcome ([`Outcome::pooled`]); 1 for a single run.
    pub(crate) rounds: usize,
    /// Entries per second per camera, in camera order.
    pub(crate) per_camera_fps: Vec<f64>,
    /// Capture → entry ID latency of every entry in the window, ms.
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) latency: Quantiles,
    /// Process CPU seconds per processed frame.
    pub(crate) cpu_per_frame: f64,
    /// Cores used on average.
    pub(crate) cores: f64,
    pub(crate) rss_start: f64,
    pub(crate) rss_end: f64,
    pub(crate) rss_peak: f64,
    /// (seconds since start of the window, MiB)
    pub(crate) rss_series: Vec<(f64, f64)>,
    /// Resident MiB by mapping at the end of the window ([`measure::resident_by_mapping`]).
    pub(crate) resident: BTreeMap<String, f64>,
    pub(crate) bytes_per_entry: f64,
    pub(crate) drops_per_s: BTreeMap<&'static str, f64>,
    pub(crate) stages: Option<Stages>,
    pub(crate) allocs_per_frame: Option<f64>,
    /// Rust heap allocations in the window (less one scrape's) and the frames processed in it.
    pub(crate) allocs_in_window: Option<(f64, f64)>,
    pub(crate) scheduling: Scheduling,
    /// Frames per model run over the window (roadsightd only).
    pub(crate) mean_batch: Option<f64>,
    /// Share of the machine's CPU time the hypervisor took during the window (steal).
    pub(crate) steal: f64,
    /// How much every `roadsight_*` series of `/metrics` rose over the window (roadsightd only).
    pub(crate) metrics: Option<BTreeMap<String, f64>>,
}

impl Outcome {
    pub(crate) fn total_fps(&self) -> f64 {
        self.per_camera_fps.iter().sum()
    }

    fn frames(&self) -> f64 {
        self.total_fps() * self.window_s
    }

    /// One outcome from several runs of the same plan: every entry's latency, the CPU and the
    /// frames summed, the highest peak RSS, the metrics' rises summed. The RSS series and the
    /// start figures are the first run's, the resident memory by mapping the last run's.
    pub(crate) fn pooled(runs: Vec<Outcome>) -> Outcome {
        let window_s: f64 = runs.iter().map(|o| o.window_s).sum();
        let frames: f64 = runs.iter().map(Outcome::frames).sum();
        let per_window = |f: &dyn Fn(&Outcome) -> f64| runs.iter().map(|o| f(o) * o.window_s).sum::<f64>() / window_s;
        let per_frame = |f: &dyn Fn(&Outcome) -> f64| runs.iter().map(|o| f(o) * o.frames()).sum::<f64>() / frames;
        let mut latencies_ms: Vec<f64> = runs.iter().flat_map(|o| o.latencies_ms.iter().copied()).collect();
        let latency = Quantiles::of(&mut latencies_ms);
        let metrics = runs.iter().map(|o| o.metrics.clone()).collect::<Option<Vec<_>>>().map(|maps| {
            let mut sum = BTreeMap::new();
            for (series, rise) in maps.into_iter().flatten() {
                *sum.entry(series).or_insert(0.0) += rise;
            }
            sum
        });
        let allocs = runs.iter().map(|o| o.allocs_in_window).collect::<Option<Vec<_>>>();
        let first = &runs[0];
        let mut pooled = Outcome {
            window_s,
            rounds: runs.iter().map(|o| o.rounds).sum(),
            per_camera_fps: (0..first.cameras).map(|i| per_window(&|o| o.per_camera_fps[i])).collect(),
            latencies_ms,
            latency,
            cpu_per_frame: per_frame(&|o| o.cpu_per_frame),
            cores: per_window(&|o| o.cores),
            rss_end: runs.last().map_or(f64::NAN, |o| o.rss_end),
            resident: runs.last().map(|o| o.resident.clone()).unwrap_or_default(),
            rss_peak: runs.iter().map(|o| o.rss_peak).fold(f64::NAN, f64::max),
            bytes_per_entry: per_frame(&|o| o.bytes_per_entry),
            steal: per_window(&|o| o.steal),
            metrics,
            allocs_in_window: allocs.map(|a| a.iter().fold((0.0, 0.0), |s, x| (s.0 + x.0, s.1 + x.1))),
            ..first.clone()
        };
        pooled.allocs_per_frame = pooled.allocs_in_window.and_then(|(n, f)| (f > 0.0).then(|| n / f));
        pooled.read_metrics();
        pooled
    }

    /// Drops by reason, the per-stage quantiles and the frames per run, from `metrics`.
    fn read_metrics(&mut self) {
        let Some(rise) = &self.metrics else { return };
        let none = BTreeMap::new();
        for reason in REASONS {
            let label = format!("reason=\"{reason}\"");
            self.drops_per_s.insert(reason, measure::delta(&none, rise, "roadsight_frames_dropped_total", &[&label]) / self.window_s);
        }
        let mut rows = Vec::new();
        for (name, family) in [
            ("wait in mailbox", "roadsight_mailbox_wait_seconds"),
            ("inference", "roadsight_inference_seconds"),
            ("post-processing", "roadsight_postprocess_seconds"),
            ("publish (to XADD reply)", "roadsight_publish_seconds"),
            ("daemon overhead (arrival → reply − inference)", "roadsight_overhead_seconds"),
        ] {
            let q = |p| measure::histogram_quantile(&none, rise, family, p) * 1e3;
            rows.push((name, q(0.5), q(0.95), q(0.99)));
        }
        self.stages = Some(Stages { rows });
        let runs = measure::delta(&none, rise, "roadsight_inference_batch_size_count", &[]);
        let frames = measure::delta(&none, rise, "roadsight_inference_batch_size_sum", &[]);
        self.mean_batch = (runs > 0.0).then(|| frames / runs);
    }
}

pub(crate) struct Plan<'a> {
    pub(crate) pipeline: Pipeline,
    pub(crate) label: String,
    pub(crate) cameras: usize,
    pub(crate) fps_cap: u32,
    pub(crate) encoding: &'a str,
    pub(crate) scheduling: Scheduling,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    /// RSS sampling period.
    pub(crate) sample: Duration,
}

pub(crate) struct Tools<'a> {
    pub(crate) daemon: &'a Path,
    pub(crate) python: Option<&'a Path>,
    pub(crate) camera_url: &'a str,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

pub(crate) fn run(plan: &Plan, tools: &Tools) -> Outcome {
    eprintln!(
        "pipeline bench: {} ({}) · {} × {} fps cap · {} s",
        plan.pipeline.name(),
        plan.scheduling.name(),
        plan.cameras,
        plan.fps_cap,
        plan.window.as_secs()
    );
    let redis = RedisServer::local("everysec");
    let setup = CameraSetup {
        url: tools.camera_url,
        cameras: plan.cameras,
        fps: plan.fps_cap,
        encoding: plan.encoding,
        scheduling: &plan.scheduling,
    };
    let total = plan.warmup + plan.window + Duration::from_secs(10);
    let running = match plan.pipeline {
        Pipeline::Roadsight => stack::start_roadsight(tools.daemon, &redis, &setup),
        baseline => {
            let python = tools.python.expect("a Python for the baselines");
            stack::start_baseline(baseline, python, &redis, &setup, total.as_secs())
        }
    };
    std::thread::sleep(plan.warmup);
    let pids = running.pids();
    let scrape = || running.metrics.as_deref().map(|a| measure::samples(&measure::scrape(a)));
    // A first scrape costs more than later ones (its connection, lazily built series): serve
    // it before the window, so that `scrape_again` below prices the one inside the window.
    let _ = scrape();
    let (from_ms, cpu0, before) = (unix_ms(), measure::cpu_seconds(&pids), scrape());
    let ticks0 = measure::machine_ticks();
    let rss_start = measure::memory_mib(&pids, "VmRSS:");
    let started = Instant::now();
    let mut rss_series = vec![(0.0, rss_start)];
    while started.elapsed() < plan.window {
        std::thread::sleep(plan.sample.min(plan.window.saturating_sub(started.elapsed())));
        rss_series.push((started.elapsed().as_secs_f64(), measure::memory_mib(&pids, "VmRSS:")));
    }
    let (to_ms, cpu1, after) = (unix_ms(), measure::cpu_seconds(&pids), scrape());
    let steal = measure::steal_share(ticks0, measure::machine_ticks());
    // Three more, back to back, price one scrape (the median of their costs).
    let scrapes_again: Vec<_> = (0..3).filter_map(|_| scrape()).collect();
    let window_s = (to_ms - from_ms) as f64 / 1000.0;
    let rss_end = measure::memory_mib(&pids, "VmRSS:");
    let rss_peak = measure::memory_mib(&pids, "VmHWM:").max(rss_series.iter().map(|s| s.1).fold(0.0, f64::max));
    let resident = measure::resident_by_mapping(&pids);

    let mut conn = redis.connect().unwrap();
    let per_camera: Vec<Vec<Entry>> =
        stack::camera_ids(plan.cameras).iter().map(|id| measure::entries(&mut conn, &stack::stream_key(id), from_ms, to_ms)).collect();
    let log = running.stop();
    let all: Vec<Entry> = per_camera.iter().flatten().copied().collect();
    if all.is_empty() {
        eprintln!("pipeline bench: no entries in the window; the pipeline's log:\n{log}");
    }
    let mut latencies_ms: Vec<f64> = all.iter().map(Entry::latency_ms).collect();
    let latency = Quantiles::of(&mut latencies_ms);
    let processed = all.len() as f64;
    let cpu = cpu1 - cpu0;
    let mut outcome = Outcome {
        pipeline: plan.pipeline,
        label: plan.label.clone(),
        cameras: plan.cameras,
        fps_cap: plan.fps_cap,
        encoding: plan.encoding.to_owned(),
        window_s,
        rounds: 1,
        per_camera_fps: per_camera.iter().map(|e| e.len() as f64 / window_s).collect(),
        latencies_ms,
        latency,
        cpu_per_frame: if processed > 0.0 { cpu / processed } else { f64::NAN },
        cores: cpu / window_s,
        rss_start,
        rss_end,
        rss_peak,
        rss_series,
        resident,
        bytes_per_entry: all.iter().map(|e| e.bytes as f64).sum::<f64>() / processed.max(1.0),
        drops_per_s: BTreeMap::new(),
        stages: None,
        allocs_per_frame: None,
        allocs_in_window: None,
        scheduling: plan.scheduling.clone(),
        mean_batch: None,
        steal,
        metrics: None,
    };
    if let (Some(before), Some(after)) = (before, after) {
        let rise = after.iter().map(|(series, v)| (series.clone(), v - before.get(series).copied().unwrap_or(0.0))).collect();
        outcome.metrics = Some(rise);
        outcome.read_metrics();
        let processed_metric = measure::delta(&before, &after, "roadsight_frames_processed_total", &[]);
        let allocations = measure::delta(&before, &after, "roadsight_heap_allocations_total", &[]);
        // The window's allocations include serving one scrape: take off what one costs.
        let scrape_cost = scrape_cost(&after, &scrapes_again);
        let net = (allocations - scrape_cost).max(0.0);
        outcome.allocs_per_frame = (processed_metric > 0.0).then(|| net / processed_metric);
        outcome.allocs_in_window = Some((net, processed_metric));
    }
    outcome
}

/// Heap allocations one `/metrics` scrape costs the daemon: the median over back-to-back scrapes
/// (each one's count includes the previous one's serving).
fn scrape_cost(after: &BTreeMap<String, f64>, again: &[BTreeMap<String, f64>]) -> f64 {
    let mut costs: Vec<f64> = std::iter::once(after)
        .chain(again)
        .zip(again)
        .map(|(a, b)| measure::delta(a, b, "roadsight_heap_allocations_total", &[]))
        .collect();
    costs.sort_by(f64::total_cmp);
    costs.get(costs.len() / 2).copied().unwrap_or(0.0)
}
