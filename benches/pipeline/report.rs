//! The Markdown report: the tables, the targets with each figure against its target, the floor
//! and the ratios to the baselines.

use std::fmt::Write as _;

use super::floor::OrtFloor;
use super::markdown::table;
use super::scenario::Outcome;
use super::stack::Pipeline;

pub(crate) fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() { format!("{v:.decimals$}") } else { "–".into() }
}

/// The main table: one row per scenario and pipeline.
pub(crate) fn results(outcomes: &[Outcome]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let drops: Vec<String> =
                o.drops_per_s.iter().filter(|(_, v)| **v > 0.005).map(|(r, v)| format!("{r} {v:.1}/s")).collect();
            vec![
                match o.rounds {
                    1 => format!("{} ({:.0} s)", o.label, o.window_s),
                    n => format!("{} ({n} alternating runs, {:.0} s in all)", o.label, o.window_s),
                },
                o.pipeline.name().to_owned(),
                format!("{:.1} ({})", o.total_fps(), o.per_camera_fps.iter().map(|f| format!("{f:.1}")).collect::<Vec<_>>().join(" · ")),
                format!("{} / {} / {} / {}", ms(o.latency.p50), ms(o.latency.p95), ms(o.latency.p99), ms(o.latency.max)),
                num(o.cpu_per_frame * 1e3, 1),
                num(o.cores, 2),
                format!("{:.0} / {:.0} / {:.0}", o.rss_start, o.rss_end, o.rss_peak),
                if o.pipeline == Pipeline::Roadsight { if drops.is_empty() { "none".into() } else { drops.join(", ") } } else { "n/a".into() },
                format!("{:.0}%", o.steal * 100.0),
            ]
        })
        .collect();
    table(
        &["scenario", "pipeline", "processed fps: total (per camera)", "latency p50 / p95 / p99 / max ms", "CPU ms / frame", "cores", "RSS start / end / peak MiB", "drops", "steal"],
        &rows,
    )
}

/// The scheduling run: the same cameras, batched vs one at a time vs one worker of several threads.
pub(crate) fn scheduling(outcomes: &[Outcome]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.label.clone(),
                o.scheduling.name(),
                format!("{:.1}", o.total_fps()),
                format!("{} / {}", ms(o.latency.p50), ms(o.latency.p99)),
                num(o.cpu_per_frame * 1e3, 1),
                num(o.mean_batch.unwrap_or(f64::NAN), 2),
                format!("{:.1}/s", o.drops_per_s.get("stale").copied().unwrap_or(0.0)),
                format!("{:.0}", o.rss_peak),
                format!("{:.0}%", o.steal * 100.0),
            ]
        })
        .collect();
    let text = "A dynamic-batch copy of the shipped model (`models/make_dynamic_batch.py`) run in one worker with \
                `max_batch = 8` (a batch holds what is ready, one frame per camera, and never waits) and \
                `max_batch = 1`; then the shipped model in one worker with ONNX Runtime's intra-op threads (one per \
                core), the default before `model.workers = 0`. The main table's roadsightd rows run one worker of \
                one thread per core, up to the number of cameras.\n\n";
    text.to_owned()
        + &table(
            &["scenario", "scheduling", "processed fps", "latency p50 / p99 ms", "CPU ms / frame", "frames per run", "stale drops", "peak RSS MiB", "steal"],
            &rows,
        )
}

/// roadsightd's stages, allocations and entry sizes per scenario.
pub(crate) fn stages(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes.iter().filter(|o| o.pipeline == Pipeline::Roadsight) {
        let Some(stages) = &o.stages else { continue };
        let allocations = match o.allocs_in_window {
            Some((n, frames)) => format!("{} ({n:.0} in {frames:.0} frames)", num(o.allocs_per_frame.unwrap_or(f64::NAN), 2)),
            None => "–".into(),
        };
        let _ = writeln!(out, "\n**{}** ({} encoding): heap allocations per processed frame {allocations}, {} bytes per entry\n", o.label, o.encoding, num(o.bytes_per_entry, 0));
        let rows: Vec<Vec<String>> = stages.rows.iter().map(|(n, p50, p95, p99)| vec![(*n).to_owned(), ms(*p50), ms(*p95), ms(*p99)]).collect();
        out.push_str(&table(&["stage", "p50 ms", "p95 ms", "p99 ms"], &rows));
    }
    out
}

/// The floor and the daemon against it, for the 1-camera scenario.
pub(crate) fn floor(daemon: &Outcome, ort: &OrtFloor, decode_cpu: f64) -> String {
    let floor_latency = ort.latency_ms.p50 + decode_cpu * 1e3;
    let floor_cpu = ort.cpu_per_run + decode_cpu;
    let rows = vec![
        vec!["ONNX Runtime alone, per run".into(), format!("{} / {} / {}", ms(ort.latency_ms.p50), ms(ort.latency_ms.p95), ms(ort.latency_ms.p99)), num(ort.cpu_per_run * 1e3, 1), format!("{} runs", ort.runs)],
        vec!["GStreamer decode + fps cap + scale → fakesink, per processed frame".into(), "–".into(), num(decode_cpu * 1e3, 1), String::new()],
        vec![
            "floor (sum: ONNX Runtime's p50 + decode's CPU per frame; a reference, not a bound)".into(),
            ms(floor_latency),
            num(floor_cpu * 1e3, 1),
            String::new(),
        ],
        vec![
            format!("roadsightd, {}", daemon.label),
            format!("{} / {} / {}", ms(daemon.latency.p50), ms(daemon.latency.p95), ms(daemon.latency.p99)),
            num(daemon.cpu_per_frame * 1e3, 1),
            String::new(),
        ],
        vec![
            "roadsightd − floor".into(),
            format!("{} ms at p50", ms(daemon.latency.p50 - floor_latency)),
            num((daemon.cpu_per_frame - floor_cpu) * 1e3, 1),
            String::new(),
        ],
        vec![
            "roadsightd ÷ floor".into(),
            format!("{:.2}× at p50", daemon.latency.p50 / floor_latency),
            format!("{:.2}×", daemon.cpu_per_frame / floor_cpu),
            String::new(),
        ],
    ];
    table(&["what", "latency p50 / p95 / p99 ms", "CPU ms / frame", ""], &rows)
}

/// One line per target: the figure, the target, met or missed.
pub(crate) struct Target {
    pub(crate) what: String,
    pub(crate) figure: String,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

pub(crate) fn targets(targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                // A context row (no target of its own) or a baseline that was not run.
                None if t.target == "–" => "context",
                None => "not measured",
            };
            vec![t.what.clone(), t.figure.clone(), t.target.clone(), verdict.into()]
        })
        .collect();
    table(&["target", "measured", "target", ""], &rows)
}
