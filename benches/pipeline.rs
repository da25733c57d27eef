//! Pipeline benchmark: the real stack (the RTSP test camera, a private redis-server, the
//! release `roadsightd` built with the `alloc-count` feature) for a fixed time per scenario,
//! side by side with the physical floor and two Python pipelines built the way users build
//! them (`benches/baseline/`). Every pipeline's latency is measured the same way: the camera's
//! capture time of the frame (`ts`: RTCP NTP time, or the test camera's frame stamp where a
//! pipeline cannot see RTCP) to the time in the Redis entry ID; throughput from entry counts;
//! CPU and memory from `/proc`. roadsightd's stages, drops and allocations come from /metrics.
//!
//! Scenarios: 1, 2, 4, 8 cameras × 10 fps cap; 1 camera uncapped; 1 camera with `json+lz4`;
//! the careful baseline at the same camera counts, the common one at 1 and 4; the floor; a
//! soak at 4 cameras; the inference scheduling run (1, 4, 8 cameras × 10 fps with a
//! dynamic-batch copy of the model made by `models/make_dynamic_batch.py`: batched vs one frame
//! at a time in one worker, and the shipped model in one worker of ONNX Runtime's threads, the
//! default the main scenarios' one worker per core replaced). Writes
//! `bench-results/pipeline.md` and SVG plots next to it.
//!
//! `cargo bench --bench pipeline --features alloc-count` (the daemon cargo builds for the bench
//! then counts its heap allocations; without the feature they are not measured). Knobs: `PIPELINE_BENCH_SECS` (window per scenario, 60),
//! `PIPELINE_BENCH_WARMUP` (15), `PIPELINE_BENCH_SOAK_SECS` (600; 0 skips), `PIPELINE_BENCH_CAMERAS`
//! (`1,2,4,8`), `PIPELINE_BENCH_BASELINES` (`careful,common,tuned`; `tuned` is the careful one
//! with roadsightd's ONNX Runtime settings, at 1 and 4 cameras; empty skips them),
//! `PIPELINE_BENCH_SCHEDULING` (camera counts of the scheduling run, `1,4,8`; empty skips it),
//! `PIPELINE_BENCH_ROUNDS` (3: turns of the runs behind the close targets, every pipeline but
//! the common one at 1 camera and roadsightd at 2, each one's turns pooled),
//! `PIPELINE_BENCH_OUT` (`bench-results`).

// Shared with the uplink benchmark; this one uses the local server only.
#[path = "uplink/procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "pipeline/floor.rs"]
mod floor;
#[path = "support/markdown.rs"]
mod markdown;
#[path = "pipeline/measure.rs"]
mod measure;
#[path = "pipeline/memory.rs"]
mod memory;
#[path = "pipeline/plot.rs"]
mod plot;
#[path = "pipeline/report.rs"]
mod report;
#[path = "pipeline/scenario.rs"]
mod scenario;
#[path = "pipeline/stack.rs"]
mod stack;
#[path = "pipeline/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use procs::repo;
use scenario::{Outcome, Plan, Tools};
use stack::{Pipeline, Scheduling};

/// The rate the test camera serves (the clip's own), and the cap of the capped scenarios.
const SOURCE_FPS: u32 = 25;
const CAP_FPS: u32 = 10;
const CLIP: &str = "tests/fixtures/vtest.mp4";

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

fn list(name: &str, default: &str) -> Vec<String> {
    env(name, default.to_owned()).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The binaries `cargo bench` built for this run (release, with this run's features).
fn binaries() -> (PathBuf, PathBuf) {
    if cfg!(not(feature = "alloc-count")) {
        eprintln!("pipeline bench: built without `--features alloc-count`: allocations are not measured");
    }
    (PathBuf::from(env!("CARGO_BIN_EXE_roadsightd")), PathBuf::from(env!("CARGO_BIN_EXE_roadsight-testcam")))
}

/// The baselines' Python (`benches/baseline/setup.sh` makes it).
fn python() -> Option<PathBuf> {
    let status = Command::new("bash").arg(repo().join("benches/baseline/setup.sh")).status().ok()?;
    let python = repo().join(".local/bench-venv/bin/python");
    (status.success() && python.exists()).then_some(python)
}

fn main() {
    let window = Duration::from_secs(env("PIPELINE_BENCH_SECS", 60));
    let warmup = Duration::from_secs(env("PIPELINE_BENCH_WARMUP", 15));
    let soak_secs: u64 = env("PIPELINE_BENCH_SOAK_SECS", 600);
    let rounds: usize = env("PIPELINE_BENCH_ROUNDS", 3);
    let counts: Vec<usize> = list("PIPELINE_BENCH_CAMERAS", "1,2,4,8").iter().map(|c| c.parse().expect("camera counts")).collect();
    let baselines = list("PIPELINE_BENCH_BASELINES", "careful,common,tuned");
    let out_dir = repo().join(env("PIPELINE_BENCH_OUT", "bench-results".to_owned()));
    std::fs::create_dir_all(&out_dir).unwrap();

    let (daemon, testcam) = binaries();
    // ONNX Runtime alone first, while this process holds little else, so that what its session
    // adds to the process's resident memory is the session's own.
    eprintln!("pipeline bench: the floor, ONNX Runtime alone");
    let ort = floor::ort_alone(&stack::ort_library(), &repo().join("tests/fixtures/scenetext01.jpg"), window.as_secs_f64().min(30.0));
    let scheduling_counts = list("PIPELINE_BENCH_SCHEDULING", "1,4,8");
    let python = if baselines.is_empty() && scheduling_counts.is_empty() { None } else { python() };
    if !baselines.is_empty() && python.is_none() {
        eprintln!("pipeline bench: benches/baseline/setup.sh failed: running without the baselines");
    }
    let camera = stack::Camera::start(&testcam, &repo().join(CLIP), SOURCE_FPS);
    let tools = Tools { daemon: &daemon, python: python.as_deref(), camera_url: &camera.url };
    let plan = |pipeline: Pipeline, cameras: usize, fps_cap: u32, encoding: &'static str, label: String| Plan {
        pipeline,
        label,
        cameras,
        fps_cap,
        encoding,
        scheduling: Scheduling::Default,
        warmup,
        window,
        sample: Duration::from_secs(1),
    };

    // Every (pipeline, cameras) run of the main table, in the table's order.
    let mut runs: Vec<(Pipeline, usize)> = counts.iter().map(|&n| (Pipeline::Roadsight, n)).collect();
    if python.is_some() {
        let at_1_and_4: Vec<usize> = counts.iter().copied().filter(|n| [1, 4].contains(n)).collect();
        for (name, pipeline, cams) in [
            ("careful", Pipeline::Careful, counts.clone()),
            ("common", Pipeline::Common, vec![1, 4]),
            ("tuned", Pipeline::CarefulTuned, at_1_and_4),
        ] {
            if baselines.iter().any(|b| b == name) {
                runs.extend(cams.into_iter().map(|n| (pipeline, n)));
            }
        }
    }
    let run = |(pipeline, n): (Pipeline, usize)| scenario::run(&plan(pipeline, n, CAP_FPS, "json", format!("{n} × {CAP_FPS} fps")), &tools);
    // The targets at one camera compare pipelines a few milliseconds apart, and the one at two
    // sits near its line; a minute of this shared host can be slower than the next. Those runs
    // go first, taking turns `rounds` times, and each one's turns are pooled: a slow minute
    // falls on every side alike.
    let close = |&(pipeline, n): &(Pipeline, usize)| {
        (n == 1 && pipeline != Pipeline::Common) || (n == 2 && pipeline == Pipeline::Roadsight)
    };
    let mut turns: Vec<Vec<Outcome>> = vec![Vec::new(); runs.len()];
    for _ in 0..rounds.max(1) {
        for (i, r) in runs.iter().enumerate().filter(|(_, r)| close(r)) {
            turns[i].push(run(*r));
        }
    }
    for (i, r) in runs.iter().enumerate().filter(|(_, r)| !close(r)) {
        turns[i].push(run(*r));
    }
    let mut outcomes: Vec<Outcome> = turns.into_iter().map(Outcome::pooled).collect();
    let roadsight_rows = counts.len();
    outcomes.insert(roadsight_rows, scenario::run(&plan(Pipeline::Roadsight, 1, 0, "json", format!("1 × full rate ({SOURCE_FPS} fps source)")), &tools));
    outcomes.insert(roadsight_rows + 1, scenario::run(&plan(Pipeline::Roadsight, 1, CAP_FPS, "json+lz4", format!("1 × {CAP_FPS} fps, json+lz4")), &tools));
    let mut scheduling = Vec::new();
    match python.as_deref().map(dynamic_batch_model) {
        _ if scheduling_counts.is_empty() => {}
        Some(Some(model)) => {
            for n in scheduling_counts.iter().map(|c| c.parse::<usize>().expect("camera counts")) {
                let mut ways = vec![
                    Scheduling::Batched { model: model.clone(), max_batch: 8 },
                    Scheduling::Batched { model: model.clone(), max_batch: 1 },
                ];
                if n > 1 {
                    ways.push(Scheduling::OneWorker);
                }
                for way in ways {
                    let mut p = plan(Pipeline::Roadsight, n, CAP_FPS, "json", format!("{n} × {CAP_FPS} fps"));
                    p.scheduling = way;
                    scheduling.push(scenario::run(&p, &tools));
                }
            }
        }
        _ => eprintln!("pipeline bench: no dynamic-batch model (needs the baselines' venv): scheduling run skipped"),
    }
    eprintln!("pipeline bench: the floor, decode");
    let decode = floor::decode(&camera.url, CAP_FPS, window.as_secs_f64().min(30.0));
    let soak = (soak_secs > 0).then(|| {
        let mut p = plan(Pipeline::Roadsight, 4, CAP_FPS, "json", format!("soak: 4 × {CAP_FPS} fps, {} min", soak_secs / 60));
        (p.window, p.sample) = (Duration::from_secs(soak_secs), Duration::from_secs(5));
        scenario::run(&p, &tools)
    });
    drop(camera);

    let text = targets::write_report(&out_dir, &outcomes, soak.as_ref(), &scheduling, &ort, &decode);
    print!("{text}");
    eprintln!("pipeline bench: wrote {}", out_dir.join("pipeline.md").display());
}

/// The dynamic-batch copy of the shipped model (made once, under `.local/models`).
fn dynamic_batch_model(python: &Path) -> Option<PathBuf> {
    let model = repo().join(".local/models/centernet_mnv3_coco_512_u8_dynbatch.onnx");
    if model.exists() {
        return Some(model);
    }
    let status = Command::new(python).arg(repo().join("models/make_dynamic_batch.py")).arg(&model).status().ok()?;
    (status.success() && model.exists()).then_some(model)
}

/// Where a plot goes, and its name relative to the report.
pub(crate) fn plot_path(dir: &Path, name: &str) -> (PathBuf, String) {
    (dir.join(name), name.to_owned())
}
