//! Uplink benchmark: the release `roadsightd` forwarding 8 camera streams from a local
//! redis-server (unix socket, AOF `appendfsync everysec` as `configs/redis/` ships it) to an
//! upstream one (TCP loopback, AOF with Redis's default `appendfsync everysec`), next to a naive
//! `COUNT 1` forwarder run the same way. Every scenario starts fresh servers.
//!
//! 1. Throughput: `UPLINK_BENCH_ENTRIES` entries preloaded, then the forwarder started; from
//!    the last 10 ms poll that saw nothing upstream to the one that saw them all.
//! 2. Added latency at `UPLINK_BENCH_CAMERAS` × `UPLINK_BENCH_FPS` for `UPLINK_BENCH_LATENCY_SECS`:
//!    one paced producer writes `t0`, a reader upstream (`XREAD BLOCK`) takes arrival − `t0`.
//! 3. Catch-up (roadsight only): the live stream keeps going while upstream is killed, the
//!    outage backlog (`UPLINK_BENCH_OUTAGE_ENTRIES`, a 10-minute outage's worth) is written
//!    as fast as local Redis takes it, and upstream restarted (after `UPLINK_BENCH_OUTAGE_SECS`
//!    at least); time until everything produced before the restart is upstream, and the live
//!    entries' latency meanwhile (from 10 ms polls of each stream's last ID).
//!
//! `cargo bench --bench uplink` builds `roadsightd` (release) first, prints the table and
//! writes it to `bench-results/uplink.md`. Other knobs: `UPLINK_BENCH_NAIVE_SECS` (time cap
//! of the naive throughput run), `UPLINK_BENCH_LOCAL_FSYNC` (`everysec` or `always`),
//! `UPLINK_BENCH_SCENARIOS` (e.g. `throughput,latency`; a run without all three writes no
//! file), `UPLINK_BENCH_LUA` (see `uplink/ceiling.rs`), `UPLINK_BENCH_NO_BUILD=1`.

#[path = "uplink/ceiling.rs"]
mod ceiling;
#[path = "uplink/daemon.rs"]
mod daemon;
#[path = "uplink/load.rs"]
mod load;
#[path = "uplink/naive.rs"]
mod naive;
#[path = "uplink/procs.rs"]
mod procs;
#[path = "uplink/report.rs"]
mod report;
#[path = "uplink/scenarios.rs"]
mod scenarios;
#[path = "uplink/watch.rs"]
mod watch;
#[path = "support/markdown.rs"]
mod markdown;

use std::time::Instant;

use markdown::table;
use report::{CpuTimes, thousands};
use scenarios::{Kind, Settings, Throughput};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

fn main() {
    let wanted: String = env("UPLINK_BENCH_SCENARIOS", "throughput,latency,catchup".to_owned());
    let run = |name: &str| wanted.split(',').any(|w| w.trim() == name);
    let s = Settings {
        binary: daemon::daemon_binary(),
        entries: env("UPLINK_BENCH_ENTRIES", 200_000),
        cameras: env("UPLINK_BENCH_CAMERAS", 8),
        fps: env("UPLINK_BENCH_FPS", 30.0),
        latency_secs: env("UPLINK_BENCH_LATENCY_SECS", 30.0),
        outage_entries: env("UPLINK_BENCH_OUTAGE_ENTRIES", 144_000),
        outage_min_secs: env("UPLINK_BENCH_OUTAGE_SECS", 0.0),
        naive_max_secs: env("UPLINK_BENCH_NAIVE_SECS", 20.0),
        local_fsync: env("UPLINK_BENCH_LOCAL_FSYNC", "everysec".to_owned()),
    };
    let started = Instant::now();
    let step = |what: &str| eprintln!("uplink bench: [{:>5.1} s] {what}", started.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    if run("throughput") {
        rows.extend(throughput_rows(&s, &step));
    }
    if run("latency") {
        rows.extend(latency_rows(&s, &step));
    }
    if run("catchup") {
        rows.extend(catch_up_rows(&s, &step));
    }
    step("done");

    let header = ["Measure", "roadsight", "naive (`COUNT 1` loop)", "roadsight / naive", "Aim", "CPU, whole machine"];
    let mut md = String::from("# Uplink benchmark\n\n`cargo bench --bench uplink`\n\n");
    md.push_str(&table(&header, &rows));
    md.push_str(&notes(&s, started.elapsed().as_secs_f64()));
    md.push_str(&report::machine());
    println!("\n{md}");
    if ["throughput", "latency", "catchup"].iter().all(|w| run(w)) {
        let dir = procs::repo().join("bench-results");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("uplink.md"), &md).unwrap();
        eprintln!("uplink bench: written to {}", dir.join("uplink.md").display());
    } else {
        eprintln!("uplink bench: partial run ({wanted}); bench-results/uplink.md left as it was");
    }
}

/// A row that only fills the roadsight column.
fn detail(what: impl Into<String>, value: String) -> Vec<String> {
    vec![what.into(), value, "—".into(), "—".into(), "—".into()]
}

fn met(ok: bool, aim: &str) -> String {
    if ok { format!("{aim}: met") } else { format!("{aim}: **missed**") }
}

fn throughput_rows(s: &Settings, step: &dyn Fn(&str)) -> Vec<Vec<String>> {
    let cpu = CpuTimes::now();
    step("throughput, roadsightd");
    let r = scenarios::throughput(Kind::Roadsight, s);
    step("throughput, naive");
    let n = scenarios::throughput(Kind::Naive, s);
    let cell = |t: &Throughput| {
        let capped = if t.complete { "" } else { ", stopped at the time cap" };
        format!("{}/s ({} in {:.2} s{capped})", thousands(t.per_sec), thousands(t.forwarded as f64), t.secs)
    };
    let what = format!("Throughput, {} entries preloaded over {} cameras", thousands(s.entries as f64), s.cameras);
    let ratio = format!("{:.1}×", r.per_sec / n.per_sec);
    let mut rows = vec![vec![what, cell(&r), cell(&n), ratio, met(r.per_sec >= 100_000.0, "≥ 100,000/s"), cpu.since()]];
    if let (Some([daemon, local, up]), Some((xadd, fcall))) = (r.cpu, r.upstream_alone) {
        rows.push(detail(
            "… CPU meanwhile: roadsightd / local redis / upstream redis",
            format!("{daemon:.1} / {local:.1} / {up:.1} s in {:.1} s", r.secs),
        ));
        rows.push(detail(
            "… upstream alone, batches of 500: plain pipelined `XADD` / `FCALL roadsight_append`",
            format!("{}/s / {}/s", thousands(xadd), thousands(fcall)),
        ));
    }
    rows.push(detail(
        "… for scale: pipelined `XADD` of the same entries into local (the preload)",
        format!("{}/s", thousands(r.preload_per_sec)),
    ));
    rows
}

fn latency_rows(s: &Settings, step: &dyn Fn(&str)) -> Vec<Vec<String>> {
    let cpu = CpuTimes::now();
    step("latency, roadsightd");
    let r = scenarios::latency(Kind::Roadsight, s);
    step("latency, naive");
    let n = scenarios::latency(Kind::Naive, s);
    let what = format!("Added latency XADD → upstream, p50 / p99 / max, {} × {} fps for {} s", s.cameras, s.fps, s.latency_secs);
    let ratio = format!("{:.2} / {:.2} / {:.2}", r.p50 / n.p50, r.p99 / n.p99, r.max / n.max);
    vec![vec![what, r.cell(), n.cell(), ratio, met(r.p99 <= 5.0, "p99 ≤ 5 ms"), cpu.since()]]
}

fn catch_up_rows(s: &Settings, step: &dyn Fn(&str)) -> Vec<Vec<String>> {
    let cpu = CpuTimes::now();
    step("catch-up, roadsightd");
    let c = scenarios::catch_up(s);
    let what = format!(
        "Catch-up: upstream back → backlog of {} entries drained, live {} × {} fps going on",
        thousands(c.backlog as f64),
        s.cameras,
        s.fps
    );
    let value = format!(
        "{:.2} s = {:.2} s reconnect wait + {:.2} s drain at {}/s",
        c.drained_secs,
        c.reconnect_secs,
        c.drained_secs - c.reconnect_secs,
        thousands(c.drain_per_sec)
    );
    vec![
        vec![what, value, "—".into(), "—".into(), met(c.drained_secs < 10.0, "< 10 s"), cpu.since()],
        detail("… latency of live entries during catch-up", c.live_during.cell()),
        detail("… latency of live entries after catch-up", c.live_after.cell()),
        detail(
            format!("… outage: backlog written in {:.2} s, upstream down {:.2} s", c.produce_secs, c.outage_secs),
            format!("{} duplicates skipped upstream", c.duplicates),
        ),
    ]
}

fn notes(s: &Settings, secs: f64) -> String {
    format!(
        "\nLocal redis-server: unix socket, AOF `appendfsync {}`; upstream: TCP loopback, AOF `appendfsync everysec` \
         (Redis's default); no RDB snapshots on either. roadsightd release build, `[uplink]` defaults. \
         Latency from the upstream reader is exact; during and after catch-up it comes from 10 ms polls of each \
         stream's last ID (up to 10 ms more). The outage backlog is written as fast as local Redis takes it, not in \
         real time, so upstream is down only that long (`UPLINK_BENCH_OUTAGE_SECS` holds it down longer): the \
         reconnect wait is where roadsightd's backoff stands then; after a real 10-minute outage its retries are \
         `BACKOFF_MAX` (src/uplink/forward.rs) apart, which adds anything from 0 to that. \"steal\" is CPU time the hypervisor gave to other guests: on a shared 2-vCPU VM it \
         shows up as latency outliers. Whole run: {secs:.0} s.\n\n",
        s.local_fsync
    )
}
