//! Where each pipeline's resident memory goes at one camera, by part: the decoder and what it
//! loads, ONNX Runtime's library, Python, the other files, anonymous memory. The peak RSS target
//! compares whole processes, library pages included; this shows which parts the pipelines share.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::floor::OrtFloor;
use super::markdown::table;
use super::scenario::Outcome;

/// The parts, in the table's order (the decoder's row adds its count of files).
const PARTS: [&str; 5] = [
    "`avdec_h264` and the files it loads",
    "ONNX Runtime's library",
    "Python and its modules",
    "other libraries and the executable (GStreamer, GLib, libc, …)",
    "anonymous: heap, malloc arenas, thread stacks (ONNX Runtime's weights and activations are here)",
];

/// Which of [`PARTS`] a mapping belongs to.
fn part(mapping: &str, decoder_files: &BTreeSet<String>) -> usize {
    if decoder_files.contains(mapping) {
        0
    } else if mapping.contains("onnxruntime") {
        // Before Python: the Python package's extension module is the whole runtime.
        1
    } else if ["python", "site-packages", "dist-packages"].iter().any(|p| mapping.contains(p)) {
        2
    } else if mapping.starts_with('/') {
        3
    } else {
        4
    }
}

fn by_part(resident: &BTreeMap<String, f64>, decoder_files: &BTreeSet<String>) -> [f64; 5] {
    let mut parts = [0.0; 5];
    for (mapping, mib) in resident {
        parts[part(mapping, decoder_files)] += mib;
    }
    parts
}

/// Anonymous memory of [`resident_by_mapping`](super::measure::resident_by_mapping)'s map, MiB.
pub(crate) fn anonymous(resident: &BTreeMap<String, f64>) -> f64 {
    by_part(resident, &BTreeSet::new())[4]
}

/// The section: one column per pipeline at one camera, roadsightd's first, then what the RSS
/// target leaves roadsightd and what ONNX Runtime alone holds.
pub(crate) fn section(columns: &[&Outcome], decoder_files: &BTreeSet<String>, ort: &OrtFloor, careful_peak: Option<f64>) -> String {
    let parts: Vec<[f64; 5]> = columns.iter().map(|o| by_part(&o.resident, decoder_files)).collect();
    let mut rows: Vec<Vec<String>> = PARTS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = match i {
                0 => format!("{name} ({}: libav and what libav links)", decoder_files.len()),
                _ => (*name).to_owned(),
            };
            std::iter::once(name).chain(parts.iter().map(|p| format!("{:.1}", p[i]))).collect()
        })
        .collect();
    rows.push(std::iter::once("resident in all".to_owned()).chain(parts.iter().map(|p| format!("{:.1}", p.iter().sum::<f64>()))).collect());
    let header: Vec<&str> = std::iter::once("MiB").chain(columns.iter().map(|o| o.pipeline.name())).collect();
    let mut text = "Resident memory at the end of the 1-camera window, from `/proc/PID/smaps`; a library's pages count in \
                    full in every process that maps them, as in the peak RSS target. The decoder's files are those the \
                    floor's `gst-launch-1.0` pipeline maps and the same pipeline without `avdec_h264` does not.\n\n"
        .to_owned();
    text += &table(&header, &rows);
    if let (Some(ours), Some(peak)) = (parts.first(), careful_peak) {
        let files: f64 = ours[..4].iter().sum();
        let _ = writeln!(
            text,
            "\nThe peak RSS target's line is {:.1} MiB (half the careful pipeline's peak). The files roadsightd maps \
             take {files:.1} MiB of it, which leaves {:.1} MiB for all its anonymous memory; it holds {:.1} MiB.",
            peak / 2.0,
            peak / 2.0 - files,
            ours[4]
        );
    }
    let _ = writeln!(
        text,
        "\nONNX Runtime alone on the same model (the floor's run, in the benchmark's own process) adds {:.1} MiB of \
         anonymous memory, its session's weights and activations, and {:.1} MiB of library pages.",
        ort.anonymous_mib, ort.library_mib
    );
    text
}
