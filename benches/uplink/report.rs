//! Percentiles, the Markdown table and the machine it ran on.

use std::fmt::Write as _;
use std::process::Command;

/// Latency percentiles over a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// From samples in microseconds (nearest-rank percentiles).
    pub(crate) fn of(mut us: Vec<i64>) -> Stats {
        if us.is_empty() {
            return Stats::default();
        }
        us.sort_unstable();
        let rank = |p: f64| us[((p * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1] as f64 / 1e3;
        Stats { n: us.len(), p50: rank(0.50), p99: rank(0.99), max: *us.last().unwrap() as f64 / 1e3 }
    }

    /// `p50 / p99 / max ms (n)`.
    pub(crate) fn cell(&self) -> String {
        if self.n == 0 {
            return "no samples".into();
        }
        format!("{} / {} / {} ms (n={})", ms(self.p50), ms(self.p99), ms(self.max), self.n)
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.2}") } else { format!("{v:.0}") }
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The machine's CPU time counters (`/proc/stat`, all CPUs), to tell how much the hypervisor
/// took away during a scenario: on a shared 2-vCPU VM, steal shows up as latency outliers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
}

impl CpuTimes {
    pub(crate) fn now() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        CpuTimes { busy: at(0) + at(1) + at(2) + at(5) + at(6), idle: at(3) + at(4), steal: at(7) }
    }

    /// `steal x% · busy y%` of all CPU time since `self`.
    pub(crate) fn since(&self) -> String {
        let now = CpuTimes::now();
        let (busy, idle, steal) = (now.busy - self.busy, now.idle - self.idle, now.steal - self.steal);
        let total = (busy + idle + steal).max(1) as f64;
        format!("steal {:.0}% · busy {:.0}%", 100.0 * steal as f64 / total, 100.0 * busy as f64 / total)
    }
}


fn run(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

/// Date, CPU, core count, redis-server version and the commit, as a Markdown list.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let dirty = if run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() { "" } else { " (with local changes)" };
    let mut out = String::new();
    let _ = writeln!(out, "- Date: {}", run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    let _ = writeln!(out, "- CPU: {cpu}, `nproc` = {}", run("nproc", &[]));
    let _ = writeln!(out, "- {}", run("redis-server", &["--version"]));
    let _ = writeln!(out, "- Commit: {}{dirty}", run("git", &["rev-parse", "--short", "HEAD"]));
    out
}
