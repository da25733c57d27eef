//! Execution providers with the CPU-only ONNX Runtime of this machine: a GPU provider that
//! cannot load is skipped once and shows on `/metrics`, a required one stops start-up (69),
//! `warmup` has nothing to build, and TensorRT's options are checked at load (78).
//!
//! ONNX Runtime's own threads are named `ort-intra`, not after the thread that built the session.
//!
//! Nothing here runs TensorRT: the library has neither the TensorRT nor the CUDA provider.

mod support;

use std::process::Output;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, check, metric};

/// A config for `redis_url` whose `[model]` lists `providers` (plus `more` model keys).
fn with_model(redis_url: &str, providers: &str, more: &str) -> ConfigDir {
    let config = ConfigDir::new(redis_url, "");
    let text = std::fs::read_to_string(config.path()).unwrap();
    let text = text.replace("[model]", &format!("[model]\nproviders = {providers}\n{more}"));
    std::fs::write(config.path(), text).unwrap();
    config
}

/// `roadsightd <command> --config …`, its exit code and stderr + stdout.
fn roadsightd(command: &str, config: &ConfigDir) -> (i32, String) {
    let Output { status, stdout, stderr } = support::command(env!("CARGO_BIN_EXE_roadsightd"))
        .args([command, "--config"])
        .arg(config.path())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&stderr), String::from_utf8_lossy(&stdout));
    (status.code().unwrap_or(-1), text)
}

#[test]
fn tensorrt_missing_falls_back_to_the_cpu_once_and_says_so_on_metrics() {
    let redis = Redis::start();
    // Two workers open two sessions: the fallback is still one warning.
    let config = with_model(&redis.url(), r#"[{ name = "tensorrt", fp16 = true, engine_cache = "engines" }, "cpu"]"#, "workers = 2");
    let daemon = Daemon::start(&config);
    daemon.wait_log("roadsightd running.", Duration::from_secs(60));
    let text = daemon.scrape();
    let log = daemon.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("Execution provider unavailable")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(r#"provider="tensorrt""#) && warnings[0].contains(r#"fallback="cpu""#), "{log}");
    assert!(warnings[0].contains("not enabled in this build"), "the reason is ONNX Runtime's: {log}");
    let provider = |p: &str| metric(&text, "roadsight_inference_provider", &[("provider", p)]);
    assert_eq!((provider("tensorrt"), provider("cpu")), (Some(0.0), Some(1.0)), "{text}");
    // An ONNX Runtime without TensorRT gets no engine folder.
    assert!(!config.dir.path().join("engines").exists());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_required_gpu_provider_that_cannot_load_stops_run_and_check_with_69() {
    for (provider, ep) in [("tensorrt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider")] {
        // Redis is unreachable: a daemon that went past the model would fail on it instead,
        // with another message.
        let config = with_model("redis://127.0.0.1:1", &format!(r#"[{{ name = "{provider}", required = true }}, "cpu"]"#), "");
        let (code, out) = roadsightd("run", &config);
        assert_eq!(code, 69, "{out}");
        assert!(out.contains(&format!("execution provider `{provider}` ({ep}) is required")), "{out}");
        assert!(!out.contains("Redis"), "stopped at the model, before Redis: {out}");
        let (code, out) = check(&config.path());
        assert_eq!(code, 69, "{out}");
        assert!(out.contains(&format!("`{provider}`")) && out.contains("required"), "{out}");
    }
}

#[test]
fn warmup_on_a_cpu_box_has_no_engine_to_build() {
    let config = with_model("redis://127.0.0.1:1", r#"["cpu"]"#, "");
    let (code, out) = roadsightd("warmup", &config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no execution provider in model.providers (cpu) needs an engine"), "{out}");
    assert!(out.contains("the model runs on cpu; nothing to cache"), "{out}");

    // TensorRT listed, but this ONNX Runtime has none: nothing to build either.
    let config = with_model("redis://127.0.0.1:1", r#"["tensorrt", "cpu"]"#, "");
    let (code, out) = roadsightd("warmup", &config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("has no TensorRT provider, so no engine is needed"), "{out}");

    let config = with_model("redis://127.0.0.1:1", r#"[{ name = "tensorrt", required = true }]"#, "");
    let (code, out) = roadsightd("warmup", &config);
    assert_eq!(code, 69, "{out}");
}

#[test]
fn check_shows_the_engine_folder_and_its_key() {
    let config = with_model("redis://127.0.0.1:1", r#"[{ name = "tensorrt", engine_cache = "engines" }, "cpu"]"#, "");
    let (code, out) = check(&config.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("runs on   cpu (skipped: tensorrt); onnxruntime 1.23"), "{out}");
    let engines = config.dir.path().join("engines").join("centernet_mnv3_coco_512_u8-");
    assert!(out.contains(&format!("engines   {}", engines.display())), "{out}");
    assert!(out.contains("unused, TensorRT is unavailable here"), "{out}");
}

#[test]
fn tensorrt_options_that_cannot_work_are_config_errors() {
    let cases = [
        (r#"[{ name = "tensorrt", int8 = true }, "cpu"]"#, "model.providers[0].int8", "calibration_table"),
        (r#"[{ name = "tensorrt", int8 = true, calibration_table = "none.cache" }]"#, "model.providers[0].calibration_table", "no calibration table file"),
        (r#"[{ name = "tensorrt", fp16 = true, dla_core = -1 }]"#, "model.providers[0].dla_core", "0 or more"),
        (r#"[{ name = "tensorrt", dla_core = 0 }]"#, "model.providers[0].dla_core", "FP16 or INT8"),
    ];
    for (providers, field, expected) in cases {
        let config = with_model("redis://127.0.0.1:1", providers, "");
        let (code, out) = check(&config.path());
        assert_eq!(code, 78, "{providers}: {out}");
        assert!(out.contains("roadsight.toml") && out.contains(field) && out.contains(expected), "{providers}: {out}");
        let (code, _) = roadsightd("warmup", &config);
        assert_eq!(code, 78, "{providers}");
    }
}

#[test]
fn onnx_runtime_threads_carry_their_own_name() {
    let redis = Redis::start();
    // Two intra-op threads: the worker's own and one ONNX Runtime makes, on any machine.
    let config = with_model(&redis.url(), r#"["cpu"]"#, "threads = 2");
    let daemon = Daemon::start(&config);
    daemon.wait_log("roadsightd running.", Duration::from_secs(60));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).unwrap();
    let names: Vec<String> = tasks
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap().trim().to_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "ort-intra").count(), 1, "{names:?}");
    assert!(names.iter().any(|n| n == "roadsightd-rt"), "the runtime thread got its name back: {names:?}");
}
