//! The measured scenarios. Each starts its own local and upstream redis-server, so no run
//! sees another's data, AOF or consumer group.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::load::{self, Id, bulk, cameras, last_ids, now_us, paced, total_len};
use super::daemon::{Daemon, cpu_secs, uplink_total};
use super::procs::{RedisServer, wait_for};
use super::report::Stats;
use super::watch::{self, Background, arrival};
use super::{ceiling, naive};

/// Sizes and knobs, from `UPLINK_BENCH_*` (see the bench's `//!` doc).
pub(crate) struct Settings {
    pub binary: PathBuf,
    pub entries: u64,
    pub cameras: usize,
    pub fps: f64,
    pub latency_secs: f64,
    pub outage_entries: u64,
    pub outage_min_secs: f64,
    pub naive_max_secs: f64,
    pub local_fsync: String,
}

/// Which forwarder a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Roadsight,
    Naive,
}

/// A running forwarder; stopped on drop.
enum Forwarder {
    Daemon(Daemon),
    Naive(Background<u64>),
}

impl Forwarder {
    fn start(kind: Kind, s: &Settings, local: &RedisServer, up: &RedisServer) -> Forwarder {
        let (ids, keys) = cameras(s.cameras);
        match kind {
            Kind::Roadsight => Forwarder::Daemon(Daemon::start(&s.binary, &local.url(), &up.url(), &ids)),
            Kind::Naive => Forwarder::Naive(naive::start(local.url(), up.url(), keys)),
        }
    }

    /// Waits until the forwarder is connected on both sides.
    fn wait_ready(&mut self) {
        if let Forwarder::Daemon(d) = self {
            d.wait_log("Connected upstream.", Duration::from_secs(60));
        }
    }

    /// The daemon's process id (the naive forwarder runs in the bench).
    fn pid(&self) -> Option<u32> {
        match self {
            Forwarder::Daemon(d) => Some(d.pid()),
            Forwarder::Naive(_) => None,
        }
    }

    /// Stops it; the daemon's log, if it was the daemon.
    fn stop(self) -> Option<String> {
        match self {
            Forwarder::Daemon(d) => Some(d.stop()),
            Forwarder::Naive(n) => {
                n.finish();
                None
            }
        }
    }
}

/// Scenario 1's result.
pub(crate) struct Throughput {
    pub forwarded: u64,
    pub secs: f64,
    pub per_sec: f64,
    /// Every preloaded entry arrived (the naive run stops at its time cap).
    pub complete: bool,
    /// The preload's rate: pipelined `XADD`s of the same entries into local Redis.
    pub preload_per_sec: f64,
    /// roadsight only: CPU seconds of roadsightd, local and upstream redis-server while it
    /// forwarded, and what upstream alone takes ([`ceiling::upstream_rates`]).
    pub cpu: Option<[f64; 3]>,
    pub upstream_alone: Option<(f64, f64)>,
}

/// Preloads `entries` into local with no forwarder running, starts one, and times from the
/// last poll that saw nothing upstream to the poll that saw everything (10 ms polls of `XLEN`).
pub(crate) fn throughput(kind: Kind, s: &Settings) -> Throughput {
    let (local, up) = (RedisServer::local(&s.local_fsync), RedisServer::upstream());
    let (_, keys) = cameras(s.cameras);
    let preloading = Instant::now();
    bulk(&mut local.connect().unwrap(), &keys, s.entries);
    let preload_per_sec = s.entries as f64 / preloading.elapsed().as_secs_f64();
    let mut conn = up.connect().unwrap();
    let forwarder = Forwarder::start(kind, s, &local, &up);
    let pids = [forwarder.pid(), local.pid(), up.pid()];
    let cpu = |pids: &[Option<u32>; 3]| pids.map(|p| p.map_or(0.0, cpu_secs));
    let cpu_before = cpu(&pids);
    let cap = match kind {
        Kind::Roadsight => Duration::from_secs(120),
        Kind::Naive => Duration::from_secs_f64(s.naive_max_secs),
    };
    let started = Instant::now();
    let mut last_zero = started;
    let mut count = 0;
    loop {
        let polled = Instant::now();
        count = total_len(&mut conn, &keys).unwrap_or(count);
        if count == 0 {
            last_zero = polled;
            assert!(started.elapsed() < Duration::from_secs(60), "nothing arrived upstream in 60 s");
        }
        if count >= s.entries || (count > 0 && last_zero.elapsed() > cap) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = last_zero.elapsed().as_secs_f64();
    let cpu_after = cpu(&pids);
    let mut t = Throughput {
        forwarded: count,
        secs,
        per_sec: count as f64 / secs,
        complete: count >= s.entries,
        preload_per_sec,
        cpu: None,
        upstream_alone: None,
    };
    if let Some(log) = forwarder.stop() {
        check_same(&local, &up, &keys, "throughput");
        assert_eq!(uplink_total(&log, "forwarded"), s.entries, "roadsightd's forwarded counter");
        t.cpu = Some(std::array::from_fn(|i| cpu_after[i] - cpu_before[i]));
        t.upstream_alone = Some(ceiling::upstream_rates(&local, &keys));
    }
    t
}

/// Scenario 2: the paced producer for `latency_secs`, a reader upstream; arrival − `t0`.
pub(crate) fn latency(kind: Kind, s: &Settings) -> Stats {
    let (local, up) = (RedisServer::local(&s.local_fsync), RedisServer::upstream());
    let (_, keys) = cameras(s.cameras);
    let mut forwarder = Forwarder::start(kind, s, &local, &up);
    forwarder.wait_ready();
    let received = Arc::new(AtomicU64::new(0));
    let reader = watch::reader(up.url(), keys.clone(), Arc::clone(&received));
    let producer = spawn_producer(&local, &keys, s);
    std::thread::sleep(Duration::from_secs_f64(s.latency_secs));
    let sent = producer.finish().len() as u64;
    wait_for(Duration::from_secs(30), "every paced entry upstream", || {
        (received.load(Ordering::Relaxed) >= sent).then_some(())
    });
    let latencies: Vec<i64> = reader.finish().into_iter().map(|(_, l)| l).collect();
    forwarder.stop();
    Stats::of(latencies)
}

fn spawn_producer(local: &RedisServer, keys: &[String], s: &Settings) -> Background<Vec<load::Sent>> {
    let (url, keys, rate) = (local.url(), keys.to_vec(), s.fps * s.cameras as f64);
    Background::spawn(move |stop| paced(&url, &keys, rate, stop))
}

/// Scenario 3's result.
pub(crate) struct CatchUp {
    pub backlog: u64,
    pub produce_secs: f64,
    pub outage_secs: f64,
    /// Upstream answering again → first new entry there (the daemon's reconnect backoff).
    pub reconnect_secs: f64,
    /// Upstream answering again → every entry produced before that is upstream.
    pub drained_secs: f64,
    /// Backlog entries over (drained − first new entry).
    pub drain_per_sec: f64,
    /// Live entries sent between the restart and the drain, and after it.
    pub live_during: Stats,
    pub live_after: Stats,
    pub duplicates: u64,
}

/// Scenario 3: healthy live stream, upstream killed, the outage backlog written fast while
/// the live stream goes on, upstream restarted; time to drain, and the live entries' latency.
pub(crate) fn catch_up(s: &Settings) -> CatchUp {
    let (local, mut up) = (RedisServer::local(&s.local_fsync), RedisServer::upstream());
    let (_, keys) = cameras(s.cameras);
    let mut forwarder = Forwarder::start(Kind::Roadsight, s, &local, &up);
    forwarder.wait_ready();
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let poller = watch::poller(up.url(), keys.clone(), Arc::clone(&timeline));
    let producer = spawn_producer(&local, &keys, s);
    std::thread::sleep(Duration::from_secs(3));

    up.kill();
    let killed = Instant::now();
    let mut lconn = local.connect().unwrap();
    bulk(&mut lconn, &keys, s.outage_entries);
    let produce_secs = killed.elapsed().as_secs_f64();
    if let Some(rest) = Duration::from_secs_f64(s.outage_min_secs).checked_sub(killed.elapsed()) {
        std::thread::sleep(rest);
    }
    let targets = last_ids(&mut lconn, &keys).unwrap();
    let local_total = total_len(&mut lconn, &keys).unwrap();
    up.restart();
    let restarted = now_us();
    let outage_secs = killed.elapsed().as_secs_f64();
    let up_total = total_len(&mut up.connect().unwrap(), &keys).unwrap();
    let drained = wait_for(Duration::from_secs(180), "the backlog to drain", || {
        let tl = timeline.lock().unwrap();
        let (t, ids) = tl.last()?;
        (*t > restarted && ids.iter().zip(&targets).all(|(a, b)| a >= b)).then_some(*t)
    });
    std::thread::sleep(Duration::from_secs(3));
    let sent = producer.finish();
    wait_for(Duration::from_secs(30), "upstream to hold what local holds", || {
        let (l, u) = (total_len(&mut lconn, &keys).ok()?, total_len(&mut up.connect().ok()?, &keys).ok()?);
        (l == u).then_some(())
    });
    poller.finish();
    let log = forwarder.stop().unwrap_or_default();
    check_same(&local, &up, &keys, "catch-up");

    let tl = timeline.lock().unwrap();
    let after: Vec<&(i64, Vec<Id>)> = tl.iter().filter(|(t, _)| *t > restarted).collect();
    let baseline = &after.first().expect("a poll after the restart").1;
    let first_new = after.iter().find(|(_, ids)| ids.iter().zip(baseline).any(|(a, b)| a > b)).map_or(drained, |(t, _)| *t);
    let live = |from: i64, to: i64| {
        let picked = sent.iter().filter(|e| e.t0 >= from && e.t0 < to);
        Stats::of(picked.filter_map(|e| Some(arrival(&tl, e.cam, e.id, e.t0)? - e.t0)).collect())
    };
    let backlog = local_total - up_total;
    CatchUp {
        backlog,
        produce_secs,
        outage_secs,
        reconnect_secs: (first_new - restarted) as f64 / 1e6,
        drained_secs: (drained - restarted) as f64 / 1e6,
        drain_per_sec: backlog as f64 / ((drained - first_new).max(1) as f64 / 1e6),
        live_during: live(restarted, drained),
        live_after: live(drained, i64::MAX),
        duplicates: uplink_total(&log, "duplicates"),
    }
}

/// Upstream holds, per camera, as many entries as local and the same last ID.
fn check_same(local: &RedisServer, up: &RedisServer, keys: &[String], what: &str) {
    let (mut l, mut u) = (local.connect().unwrap(), up.connect().unwrap());
    for key in keys {
        let len = |c: &mut redis::Connection| redis::cmd("XLEN").arg(key).query::<u64>(c).unwrap();
        assert_eq!(len(&mut l), len(&mut u), "{what}: {key} upstream and local differ in length");
    }
    assert_eq!(last_ids(&mut l, keys).unwrap(), last_ids(&mut u, keys).unwrap(), "{what}: last IDs differ");
}
