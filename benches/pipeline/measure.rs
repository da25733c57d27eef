//! What a scenario measures, the same way for every pipeline: latency from the streams (camera
//! capture time `ts`, from RTCP or the frame stamp, to the Redis entry ID's time), throughput
//! from entry counts, CPU and memory from `/proc`; for roadsightd also `/metrics` (drops by
//! reason, stage histograms, heap allocations).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::time::Duration;

/// CPU time (user + system) of the processes, seconds.
/// The machine's CPU ticks: (all, stolen by the hypervisor), from the first line of /proc/stat.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let all = values.iter().take(8).sum();
    (all, values.get(7).copied().unwrap_or(0))
}

/// The share of the machine's CPU time the hypervisor took between two [`machine_ticks`].
pub(crate) fn steal_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.0.saturating_sub(before.0);
    if all == 0 { 0.0 } else { after.1.saturating_sub(before.1) as f64 / all as f64 }
}

pub(crate) fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (utime + stime) / ticks
        })
        .sum()
}

/// `VmRSS` or `VmHWM` of the processes together, MiB.
pub(crate) fn memory_mib(pids: &[u32], field: &str) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1024.0
}

/// Resident memory of the processes by mapping, MiB, from `/proc/PID/smaps`: keyed by a file's
/// path, the kernel's name for the region (`[heap]`, `[stack]`), or `[anon]`.
pub(crate) fn resident_by_mapping(pids: &[u32]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for pid in pids {
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { continue };
        let mut mapping = String::new();
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            if first == "Rss:" {
                let kib: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                *out.entry(mapping.clone()).or_insert(0.0) += kib / 1024.0;
            } else if !first.ends_with(':') {
                // A region's header: address range, permissions, offset, device, inode, name.
                mapping = fields.nth(4).unwrap_or("[anon]").to_owned();
            }
        }
    }
    out
}

/// One entry's figures: capture time (µs), entry time (µs, ms resolution), stored bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) ts_us: i64,
    pub(crate) id_us: i64,
    pub(crate) bytes: usize,
}

impl Entry {
    pub(crate) fn latency_ms(&self) -> f64 {
        (self.id_us - self.ts_us) as f64 / 1000.0
    }
}

/// Every entry of `key` whose ID is at or after `from_ms` (Unix ms) and before `to_ms`.
pub(crate) fn entries(conn: &mut redis::Connection, key: &str, from_ms: u64, to_ms: u64) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg(from_ms)
        .arg(format!("({to_ms}"))
        .query(conn)
        .unwrap_or_default();
    reply
        .ids
        .iter()
        .filter_map(|e| {
            let id_ms: i64 = e.id.split('-').next()?.parse().ok()?;
            let ts_us: i64 = e.get("ts")?;
            let bytes = e.map.iter().map(|(k, v)| k.len() + value_len(v)).sum();
            Some(Entry { ts_us, id_us: id_ms * 1000, bytes })
        })
        .collect()
}

fn value_len(v: &redis::Value) -> usize {
    match v {
        redis::Value::BulkString(b) => b.len(),
        redis::Value::SimpleString(s) => s.len(),
        other => format!("{other:?}").len(),
    }
}

/// Quantiles of a sample (nearest rank), plus the maximum.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quantiles {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Quantiles {
    pub(crate) fn of(values: &mut [f64]) -> Quantiles {
        if values.is_empty() {
            return Quantiles { p50: f64::NAN, p95: f64::NAN, p99: f64::NAN, max: f64::NAN };
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Quantiles { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: values[values.len() - 1] }
    }
}

/// `GET /metrics`.
pub(crate) fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Every sample of a scrape: series (name + labels, as written) → value.
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("roadsight_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum over series of `name` whose labels contain every `label` (`key="value"`), between
/// two scrapes.
pub(crate) fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let pick = |m: &BTreeMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(s, _)| s.split('{').next() == Some(name) && labels.iter().all(|l| s.contains(l)))
            .map(|(_, v)| v)
            .sum()
    };
    pick(after) - pick(before)
}

/// A quantile of a histogram family (all cameras together) from the bucket deltas between two
/// scrapes, interpolated linearly inside the bucket; seconds.
pub(crate) fn histogram_quantile(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, family: &str, q: f64) -> f64 {
    let bucket = format!("{family}_bucket");
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new(); // le bits → (le, count)
    for (series, value) in after {
        if series.split('{').next() != Some(bucket.as_str()) {
            continue;
        }
        let Some(le) = series.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let d = value - before.get(series).copied().unwrap_or(0.0);
        let slot = by_le.entry(le.to_bits()).or_insert((le, 0.0));
        slot.1 += d;
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = buckets.last() else { return f64::NAN };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, cumulative) in buckets {
        if cumulative >= rank {
            if le.is_infinite() {
                return lower;
            }
            let inside = cumulative - below;
            return if inside > 0.0 { lower + (le - lower) * (rank - below) / inside } else { le };
        }
        (lower, below) = (le, cumulative);
    }
    f64::NAN
}
