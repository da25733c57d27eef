//! One inference scheduler for every camera: fps caps are honoured, the CPU left over is shared
//! out fairly, a dead camera changes nothing for the others, and on the CPU several workers,
//! one per core, share the cameras.

mod support;

use std::time::{Duration, Instant};

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, free_port, metric, wait_for};

/// Processed frames per second of each camera over `window`, from `/metrics`.
fn processed_fps(daemon: &Daemon, cameras: &[&str], window: Duration) -> Vec<f64> {
    let count = |text: &str| -> Vec<f64> {
        cameras.iter().map(|c| metric(text, "roadsight_frames_processed_total", &[("camera", c)]).unwrap_or(0.0)).collect()
    };
    let before = count(&daemon.scrape());
    let started = Instant::now();
    std::thread::sleep(window);
    let after = count(&daemon.scrape());
    let secs = started.elapsed().as_secs_f64();
    before.iter().zip(&after).map(|(b, a)| (a - b) / secs).collect()
}

fn all_up(daemon: &Daemon, cameras: &[&str]) -> Option<()> {
    if !daemon.log().contains("Metrics served at /metrics.") {
        return None;
    }
    let text = daemon.scrape();
    cameras.iter().all(|c| metric(&text, "roadsight_camera_up", &[("camera", c)]) == Some(1.0)).then_some(())
}

#[test]
fn caps_are_met_the_rest_is_shared_and_a_dead_camera_changes_nothing() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("vtest.mp4"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    // One model run costs about 60-90 ms on the 2-core CI machine: the uncapped camera alone
    // would saturate it.
    config.camera("slow", &cam.url, "fps = 1");
    config.camera("mid", &cam.url, "fps = 2");
    config.camera("fast", &cam.url, "fps = 25");
    config.camera("greedy", &cam.url, "fps = 0");
    // Nothing listens there: the camera reconnects forever.
    config.camera("dead", &format!("rtsp://127.0.0.1:{}/none", free_port()), "fps = 10");
    let daemon = Daemon::start(&config);
    let live = ["slow", "mid", "fast", "greedy"];
    wait_for(Duration::from_secs(60), "the four live cameras up", || all_up(&daemon, &live));
    std::thread::sleep(Duration::from_secs(3));

    let fps = processed_fps(&daemon, &live, Duration::from_secs(12));
    let total: f64 = fps.iter().sum();
    let expected = fair_shares(&[1.0, 2.0, 25.0, f64::INFINITY], total);
    let text = daemon.scrape();
    let mean = |name: &str| {
        let sum = metric(&text, &format!("{name}_sum"), &[("camera", "greedy")]).unwrap_or(0.0);
        sum / metric(&text, &format!("{name}_count"), &[("camera", "greedy")]).unwrap_or(1.0) * 1e3
    };
    let msg = format!(
        "processed fps slow/mid/fast/greedy = {fps:.2?}, total {total:.1}, fair shares {expected:.2?}; \
         greedy's mean inference {:.0} ms, mailbox wait {:.0} ms",
        mean("roadsight_inference_seconds"),
        mean("roadsight_mailbox_wait_seconds"),
    );
    eprintln!("{msg}");
    // How fast the machine is decides the total; how it is shared out is the scheduler's: a
    // capped camera gets its cap while that is under an even split of what is left, and the
    // cameras that want more split the rest evenly (round-robin, one frame per camera per
    // turn, so the uncapped camera cannot starve the one capped at 25).
    assert!(total > 1.0, "the model ran: {msg}");
    for (got, want) in fps.iter().zip(&expected) {
        assert!((got - want).abs() <= 0.25 * want + 0.15, "{msg}");
    }
    assert!((fps[2] / fps[3] - 1.0).abs() < 0.35, "{msg}");

    assert_eq!(metric(&text, "roadsight_camera_up", &[("camera", "dead")]), Some(0.0), "{text}");
    assert!(metric(&text, "roadsight_camera_reconnects_total", &[("camera", "dead")]).unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(&text, "roadsight_frames_processed_total", &[("camera", "dead")]).unwrap_or(0.0), 0.0);
    // The default model has a fixed batch of 1: every run is one frame.
    let runs = metric(&text, "roadsight_inference_batch_size_count", &[]).unwrap();
    let frames = metric(&text, "roadsight_inference_batch_size_sum", &[]).unwrap();
    assert!(runs > 10.0 && frames == runs, "runs {runs}, frames {frames}");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

/// Max-min fair shares of `total` frames per second between cameras capped at `caps` (ascending):
/// each camera gets its cap while that is under an even split of what is left.
fn fair_shares(caps: &[f64], total: f64) -> Vec<f64> {
    let mut left = total;
    caps.iter()
        .enumerate()
        .map(|(i, cap)| {
            let share = cap.min(left / (caps.len() - i) as f64);
            left -= share;
            share
        })
        .collect()
}

#[test]
fn fair_shares_fill_the_caps_from_the_smallest() {
    let shares = fair_shares(&[1.0, 2.0, 25.0, f64::INFINITY], 8.0);
    assert_eq!(shares, vec![1.0, 2.0, 2.5, 2.5]);
    assert_eq!(fair_shares(&[1.0, 2.0, 25.0, f64::INFINITY], 2.0), vec![0.5; 4]);
}

/// CPU seconds each thread of `pid` named like `prefix*` has used.
fn thread_cpu(pid: u32, prefix: &str) -> Vec<(String, f64)> {
    let tick = 100.0; // USER_HZ
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let comm = comm.trim().to_owned();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tick;
        out.push((comm, cpu));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn on_the_cpu_every_core_gets_a_worker_up_to_the_cameras() {
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("vtest.mp4"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    let ids = ["a", "b", "c", "d"];
    for id in ids {
        config.camera(id, &cam.url, "fps = 5");
    }
    // `model.workers` at its default: one session per core, each with one intra-op thread.
    let expected = std::thread::available_parallelism().map_or(1, usize::from).min(ids.len());
    let daemon = Daemon::start(&config);
    wait_for(Duration::from_secs(60), "four cameras up", || all_up(&daemon, &ids));
    daemon.wait_log(&format!("workers={expected}"), Duration::from_secs(1));
    let threads = if expected > 1 { "intra_threads=1" } else { "intra_threads=onnxruntime-default" };
    daemon.wait_log(threads, Duration::from_secs(1));
    let fps = processed_fps(&daemon, &ids, Duration::from_secs(8));
    assert!(fps.iter().all(|f| *f > 1.0), "every camera is served: {fps:.2?}");
    let workers = thread_cpu(daemon.pid(), "infer");
    assert_eq!(workers.len(), expected, "{workers:?}");
    assert!(workers.iter().all(|(_, cpu)| *cpu > 0.5), "every worker ran the model: {workers:?}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    for id in ids {
        assert_eq!(support::summary_value(&log, id, "published"), support::summary_value(&log, id, "processed"), "{log}");
    }
}
