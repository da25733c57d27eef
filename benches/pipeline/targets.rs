//! The report: the targets checked against the figures, the tables and the plots.

use std::fmt::Write as _;
use std::path::Path;

use super::floor::{DecodeFloor, OrtFloor};
use super::report::{self, Target, ms};
use super::memory;
use super::scenario::Outcome;
use super::stack::Pipeline;
use super::{CAP_FPS, plot, plot_path};

fn find(outcomes: &[Outcome], pipeline: Pipeline, cameras: usize) -> Option<&Outcome> {
    outcomes.iter().find(|o| o.pipeline == pipeline && o.cameras == cameras && o.fps_cap == CAP_FPS && o.encoding == "json")
}

fn ratio(what: &str, ours: f64, theirs: Option<f64>, max: f64, unit: &str) -> Target {
    match theirs {
        Some(t) if t.is_finite() && t > 0.0 => Target {
            what: what.to_owned(),
            figure: format!("{ours:.1}{unit} vs {t:.1}{unit} = {:.2}×", ours / t),
            target: format!("≤ {max}×"),
            met: Some(ours / t <= max),
        },
        _ => Target { what: what.to_owned(), figure: "baseline not run".into(), target: format!("≤ {max}×"), met: None },
    }
}

fn targets(outcomes: &[Outcome], soak: Option<&Outcome>) -> Vec<Target> {
    let mut out = Vec::new();
    let one = find(outcomes, Pipeline::Roadsight, 1);
    let careful1 = find(outcomes, Pipeline::Careful, 1);
    let common1 = find(outcomes, Pipeline::Common, 1);
    if let Some(one) = one {
        let overhead = one.stages.as_ref().and_then(|s| s.rows.iter().find(|r| r.0.starts_with("daemon overhead"))).map_or(f64::NAN, |r| r.3);
        out.push(Target {
            what: "daemon overhead p99 (arrival → XADD reply − inference), 1 camera".into(),
            figure: format!("{} ms", ms(overhead)),
            target: "≤ 3 ms".into(),
            met: overhead.is_finite().then_some(overhead <= 3.0),
        });
        out.push(Target {
            what: format!("capture → publish p99, 1 camera × {CAP_FPS} fps"),
            figure: format!("{} ms", ms(one.latency.p99)),
            target: "≤ 100 ms".into(),
            met: Some(one.latency.p99 <= 100.0),
        });
        let served: Vec<&Outcome> =
            outcomes.iter().filter(|o| o.pipeline == Pipeline::Roadsight && o.fps_cap == CAP_FPS && o.encoding == "json").collect();
        let under: Vec<usize> = served.iter().filter(|o| o.latency.p99 <= 100.0).map(|o| o.cameras).collect();
        let full: Vec<usize> =
            served.iter().filter(|o| o.total_fps() >= 0.95 * (o.cameras as f64) * f64::from(CAP_FPS)).map(|o| o.cameras).collect();
        out.push(Target {
            what: "cameras served at the full 10 fps each / with p99 under 100 ms".into(),
            figure: format!("{:?} / {:?}", full, under),
            target: "p99 < 100 ms wherever the CPU serves every frame".into(),
            met: Some(full.iter().all(|n| under.contains(n))),
        });
        out.push(ratio("p99 latency vs careful Python, 1 camera", one.latency.p99, careful1.map(|c| c.latency.p99), 1.0, " ms"));
        out.push(ratio("CPU per processed frame vs careful Python, 1 camera", one.cpu_per_frame * 1e3, careful1.map(|c| c.cpu_per_frame * 1e3), 0.7, " ms"));
        out.push(ratio("peak RSS vs careful Python, 1 camera", one.rss_peak, careful1.map(|c| c.rss_peak), 0.5, " MiB"));
        out.push(ratio("p95 latency vs common Python (OpenCV), 1 camera", one.latency.p95, common1.map(|c| c.latency.p95), 0.5, " ms"));
        let measured = find(outcomes, Pipeline::Roadsight, 4).or(Some(one));
        let (allocs, frames) = measured.and_then(|o| o.allocs_in_window).unwrap_or((f64::NAN, f64::NAN));
        out.push(Target {
            what: format!(
                "Rust heap allocations per processed frame, steady state ({} cameras; the libraries' own malloc is not counted)",
                measured.map_or(0, |o| o.cameras)
            ),
            figure: format!("{:.2} ({allocs:.0} in {frames:.0} frames)", allocs / frames),
            target: "0".into(),
            met: allocs.is_finite().then_some(allocs < 0.5),
        });
    }
    // Context, not targets: the careful pipeline with ONNX Runtime set up as roadsightd sets it
    // up, to show how much of each margin is those settings rather than the pipeline.
    if let (Some(one), Some(tuned)) = (one, find(outcomes, Pipeline::CarefulTuned, 1)) {
        let what = |w: &str| format!("{w} vs careful Python with roadsightd's ONNX Runtime settings, 1 camera (context)");
        for (w, ours, theirs, unit) in [
            ("p99 latency", one.latency.p99, tuned.latency.p99, " ms"),
            ("CPU per processed frame", one.cpu_per_frame * 1e3, tuned.cpu_per_frame * 1e3, " ms"),
            ("peak RSS", one.rss_peak, tuned.rss_peak, " MiB"),
        ] {
            out.push(Target { met: None, target: "–".into(), ..ratio(&what(w), ours, Some(theirs), 1.0, unit) });
        }
    }
    if let (Some(ours), Some(tuned)) = (find(outcomes, Pipeline::Roadsight, 4), find(outcomes, Pipeline::CarefulTuned, 4)) {
        out.push(Target {
            what: "processed fps at 4 cameras vs careful Python with roadsightd's ONNX Runtime settings (context)".into(),
            figure: format!("{:.1} vs {:.1} = {:.2}×", ours.total_fps(), tuned.total_fps(), ours.total_fps() / tuned.total_fps()),
            target: "–".into(),
            met: None,
        });
    }
    match (find(outcomes, Pipeline::Roadsight, 4), find(outcomes, Pipeline::Careful, 4)) {
        (Some(ours), Some(theirs)) => out.push(Target {
            what: "processed fps at 4 cameras vs careful Python (one process per camera)".into(),
            figure: format!("{:.1} vs {:.1} = {:.2}×", ours.total_fps(), theirs.total_fps(), ours.total_fps() / theirs.total_fps()),
            target: "≥ 1.5×".into(),
            met: Some(ours.total_fps() >= 1.5 * theirs.total_fps()),
        }),
        _ => out.push(Target { what: "processed fps at 4 cameras vs careful Python".into(), figure: "not run".into(), target: "≥ 1.5×".into(), met: None }),
    }
    if let Some(soak) = soak {
        let settled = soak.rss_series.iter().find(|p| p.0 >= 60.0).map_or(f64::NAN, |p| p.1);
        let growth = soak.rss_end - settled;
        out.push(Target {
            what: format!("RSS growth over the soak after the first minute ({})", soak.label),
            figure: format!("{growth:+.2} MiB ({settled:.1} → {:.1})", soak.rss_end),
            target: "< 1 MiB".into(),
            met: growth.is_finite().then_some(growth < 1.0),
        });
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_owned();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = mem.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1048576.0;
    format!("{cpus} × {model}, {mem_gib:.0} GiB")
}

/// Writes `pipeline.md` and the plots into `dir`; returns the Markdown.
pub(crate) fn write_report(
    dir: &Path,
    outcomes: &[Outcome],
    soak: Option<&Outcome>,
    scheduling: &[Outcome],
    ort: &OrtFloor,
    decode: &DecodeFloor,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Pipeline benchmark\n");
    let _ = writeln!(md, "Machine: {}. Command: `{}cargo bench --bench pipeline --features alloc-count`. Source: `tests/fixtures/vtest.mp4` served by `roadsight-testcam --stamp` at 25 fps; every camera of a scenario reads that one stream. Latency: camera capture time → Redis entry ID time, for every pipeline. `steal`: the share of the machine's CPU time the hypervisor gave to other guests during the window (from /proc/stat); where it is high, the figures say more about the host than about the pipelines.\n", machine(), bench_env());
    let _ = writeln!(md, "## Targets\n\n{}", report::targets(&targets(outcomes, soak)));
    let _ = writeln!(md, "## Results\n\n{}", report::results(outcomes));
    if let Some(soak) = soak {
        let _ = writeln!(md, "\n{}", report::results(std::slice::from_ref(soak)));
    }
    if let Some(one) = find(outcomes, Pipeline::Roadsight, 1) {
        let _ = writeln!(md, "## The floor\n\n{}", report::floor(one, ort, decode.cpu_per_frame));
        let careful = find(outcomes, Pipeline::Careful, 1);
        let columns: Vec<&Outcome> = [Some(one), careful, find(outcomes, Pipeline::CarefulTuned, 1)].into_iter().flatten().collect();
        let _ = writeln!(md, "## Where the memory goes, 1 camera\n\n{}", memory::section(&columns, &decode.decoder_files, ort, careful.map(|c| c.rss_peak)));
    }
    let _ = writeln!(md, "## roadsightd stages, allocations, entry size\n{}", report::stages(outcomes));
    if !scheduling.is_empty() {
        let _ = writeln!(md, "\n## Inference scheduling on the CPU\n\n{}", report::scheduling(scheduling));
    }

    let (cdf, cdf_name) = plot_path(dir, "pipeline-latency-cdf.svg");
    let capped: Vec<&Outcome> = outcomes.iter().filter(|o| o.encoding == "json").collect();
    plot::latency_cdf(&cdf, &capped);
    let (lat, lat_name) = plot_path(dir, "pipeline-latency-vs-cameras.svg");
    let scaling: Vec<&Outcome> = outcomes.iter().filter(|o| o.fps_cap == CAP_FPS && o.encoding == "json").collect();
    plot::versus_cameras(&lat, "p99 latency vs cameras", "ms", &scaling, |o| o.latency.p99);
    let (cpu, cpu_name) = plot_path(dir, "pipeline-cpu-vs-cameras.svg");
    plot::versus_cameras(&cpu, "CPU per processed frame vs cameras", "CPU ms / frame", &scaling, |o| o.cpu_per_frame * 1e3);
    let _ = writeln!(md, "\n## Plots\n\n![latency CDF]({cdf_name})\n\n![p99 vs cameras]({lat_name})\n\n![CPU vs cameras]({cpu_name})");
    if let Some(soak) = soak {
        let (rss, rss_name) = plot_path(dir, "pipeline-soak-rss.svg");
        plot::rss_over_time(&rss, soak);
        let _ = writeln!(md, "\n![RSS over the soak]({rss_name})");
    }
    std::fs::write(dir.join("pipeline.md"), &md).unwrap();
    md
}

/// The `PIPELINE_BENCH_*` settings of this run, as a command prefix, so a partial run says so.
fn bench_env() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("PIPELINE_BENCH_")).collect();
    vars.sort();
    vars.iter().map(|(k, v)| format!("{k}={v} ")).collect()
}
