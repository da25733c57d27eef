//! SVG plots of the results (plotters, SVG backend): latency CDF per scenario, latency and CPU
//! against the number of cameras, RSS over the soak.

use std::path::Path;

use plotters::prelude::*;

use super::scenario::Outcome;
use super::stack::Pipeline;

const SIZE: (u32, u32) = (900, 520);

fn color(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    RGBColor(r, g, b)
}

/// Latency CDF: one line per outcome.
pub(crate) fn latency_cdf(path: &Path, outcomes: &[&Outcome]) {
    let max = outcomes.iter().map(|o| o.latency.p99).filter(|v| v.is_finite()).fold(10.0, f64::max) * 1.5;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption("Capture → publish latency (CDF)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max, 0.0..1.0)
        .unwrap();
    chart.configure_mesh().x_desc("ms (camera capture time → Redis entry ID)").y_desc("fraction of frames").draw().unwrap();
    for (i, o) in outcomes.iter().enumerate() {
        let mut sorted = o.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let points: Vec<(f64, f64)> = sorted.iter().enumerate().map(|(k, v)| (v.min(max), (k + 1) as f64 / n)).collect();
        let c = color(i);
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .unwrap()
            .label(format!("{}: {}", o.pipeline.name(), o.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().unwrap();
    root.present().unwrap();
}

/// A figure against the number of cameras, one line per pipeline.
pub(crate) fn versus_cameras(path: &Path, title: &str, y_desc: &str, outcomes: &[&Outcome], value: impl Fn(&Outcome) -> f64) {
    let max_cams = outcomes.iter().map(|o| o.cameras).max().unwrap_or(1) as f64;
    let max_y = outcomes.iter().map(|o| value(o)).filter(|v| v.is_finite()).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..max_cams + 0.5, 0.0..max_y)
        .unwrap();
    chart.configure_mesh().x_desc("cameras (10 fps cap each)").y_desc(y_desc).draw().unwrap();
    for (i, pipeline) in [Pipeline::Roadsight, Pipeline::Careful, Pipeline::Common, Pipeline::CarefulTuned].into_iter().enumerate() {
        let mut points: Vec<(f64, f64)> =
            outcomes.iter().filter(|o| o.pipeline == pipeline).map(|o| (o.cameras as f64, value(o))).filter(|p| p.1.is_finite()).collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(i);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .unwrap()
            .label(pipeline.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled()))).unwrap();
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().unwrap();
    root.present().unwrap();
}

/// RSS over the soak.
pub(crate) fn rss_over_time(path: &Path, soak: &Outcome) {
    let max_t = soak.rss_series.last().map_or(1.0, |p| p.0).max(1.0);
    let max_y = soak.rss_series.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("roadsightd RSS during the soak ({})", soak.label), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t, 0.0..max_y)
        .unwrap();
    chart.configure_mesh().x_desc("seconds").y_desc("MiB").draw().unwrap();
    chart.draw_series(LineSeries::new(soak.rss_series.clone(), color(0).stroke_width(2))).unwrap();
    root.present().unwrap();
}
