//! `roadsightd watch`: follows every enabled camera's stream in the local Redis, prints each
//! entry as it arrives and, at the end, a summary computed from the entries themselves
//! (frames per second, capture → publish latency percentiles, inference time). It reads what
//! consumers read, so it measures the product, not the daemon's own view of itself.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::AsyncCommands as _;
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::config::Config;
use crate::publish::{RedisTarget, stream_key};

/// Latency samples kept per camera: the summary's percentiles cover the newest this many
/// entries (about 5.5 h at 10 fps), so a watch left running holds bounded memory.
const MAX_SAMPLES: usize = 200_000;

#[derive(Default)]
struct Stats {
    entries: u64,
    detections: u64,
    lat_us: VecDeque<i64>,
    inf_us: VecDeque<i64>,
    ntp: u64,
}

fn sample(samples: &mut VecDeque<i64>, value: i64) {
    if samples.len() == MAX_SAMPLES {
        samples.pop_front();
    }
    samples.push_back(value);
}

/// Follows the streams for `duration` (or until Ctrl-C) and prints a summary.
///
/// # Errors
/// The local Redis cannot be reached or answers with something that is not a stream.
pub async fn watch(config: &Config, duration: Option<Duration>, quiet: bool) -> anyhow::Result<()> {
    let target = RedisTarget::new(&config.redis, config.capture.credentials_dir.as_deref())?;
    let mut conn = target.connect_blocking_reads().await.with_context(|| format!("connecting to {}", target.display()))?;
    let cameras: Vec<&str> = config.cameras.iter().filter(|c| c.enabled).map(|c| c.id.as_str()).collect();
    let keys: Vec<String> = cameras.iter().map(|c| stream_key(&config.site, c)).collect();
    let mut ids: Vec<String> = keys.iter().map(|_| "$".to_owned()).collect();
    let mut stats: HashMap<String, Stats> = HashMap::new();
    let started = Instant::now();
    let options = StreamReadOptions::default().block(500).count(100);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while duration.is_none_or(|d| started.elapsed() < d) {
        let reply: Option<StreamReadReply> = tokio::select! {
            _ = &mut ctrl_c => break,
            r = conn.xread_options(&keys, &ids, &options) => r.context("XREAD")?,
        };
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(i) = keys.iter().position(|k| *k == stream.key) else { continue };
            for entry in stream.ids {
                ids[i] = entry.id.clone();
                let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                let s = stats.entry(cameras[i].to_owned()).or_default();
                s.entries += 1;
                s.detections += field("n").parse::<u64>().unwrap_or(0);
                sample(&mut s.lat_us, field("lat").parse().unwrap_or(0));
                sample(&mut s.inf_us, field("inf").parse().unwrap_or(0));
                s.ntp += u64::from(field("clock") == "ntp");
                if !quiet {
                    println!(
                        "{:<10} seq={:<6} lat={:>6.1}ms inf={:>5.1}ms clock={:<7} n={} {}",
                        cameras[i],
                        field("seq"),
                        field("lat").parse::<f64>().unwrap_or(0.0) / 1000.0,
                        field("inf").parse::<f64>().unwrap_or(0.0) / 1000.0,
                        field("clock"),
                        field("n"),
                        summarize_det(&field("det")),
                    );
                }
            }
        }
    }
    print_summary(&cameras, &mut stats, started.elapsed());
    Ok(())
}

/// `car 0.74 [400,423,697,585]; person 0.73 …` from the `det` JSON.
fn summarize_det(det: &str) -> String {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(det) else {
        return String::new();
    };
    items
        .iter()
        .map(|d| {
            let b: Vec<String> = d["box"].as_array().into_iter().flatten().map(|v| format!("{:.0}", v.as_f64().unwrap_or(0.0))).collect();
            format!("{} {:.2} [{}]", d["cls"].as_str().unwrap_or("?"), d["conf"].as_f64().unwrap_or(0.0), b.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `p`-th percentile (nearest rank) of sorted values, in ms.
fn percentile_ms(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn print_summary(cameras: &[&str], stats: &mut HashMap<String, Stats>, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-3);
    println!();
    println!("summary over {secs:.1} s (from the stream entries)");
    println!(
        "{:<10} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5}",
        "camera", "entries", "fps", "lat p50", "lat p95", "lat p99", "lat max", "inf p50", "inf p95", "ntp%"
    );
    if stats.values().any(|s| s.entries > MAX_SAMPLES as u64) {
        println!("(latency and inference percentiles over each camera's newest {MAX_SAMPLES} entries)");
    }
    for cam in cameras {
        let s = stats.entry((*cam).to_owned()).or_default();
        let lat_us = s.lat_us.make_contiguous();
        lat_us.sort_unstable();
        let inf_us = s.inf_us.make_contiguous();
        inf_us.sort_unstable();
        println!(
            "{:<10} {:>7} {:>6.1} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>5.0}",
            cam,
            s.entries,
            s.entries as f64 / secs,
            percentile_ms(lat_us, 50.0),
            percentile_ms(lat_us, 95.0),
            percentile_ms(lat_us, 99.0),
            percentile_ms(lat_us, 100.0),
            percentile_ms(inf_us, 50.0),
            percentile_ms(inf_us, 95.0),
            if s.entries > 0 { 100.0 * s.ntp as f64 / s.entries as f64 } else { 0.0 },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_bounded_to_the_newest() {
        let mut v = VecDeque::new();
        for x in 0..(MAX_SAMPLES as i64 + 10) {
            sample(&mut v, x);
        }
        assert_eq!(v.len(), MAX_SAMPLES);
        assert_eq!((v.front(), v.back()), (Some(&10), Some(&(MAX_SAMPLES as i64 + 9))));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }

    #[test]
    fn summarizes_detections() {
        let det = r#"[{"cls":"car","id":2,"conf":0.74,"box":[400.3,423.0,697.2,585.2]}]"#;
        assert_eq!(summarize_det(det), "car 0.74 [400,423,697,585]");
    }
}
