//! `roadsightd check`: good configs pass, broken ones exit 78 naming the file and the field.

mod support;

use support::{ConfigDir, check, check_with_env, repo};

fn expect_config_error(config: &ConfigDir, file: &str, field: &str) {
    let (code, out) = check(&config.path());
    assert_eq!(code, 78, "{out}");
    assert!(out.contains(file), "message names the file {file}: {out}");
    assert!(out.contains(field), "message names the field {field}: {out}");
}

/// A config whose credentials live in `<dir>/credentials/`, with the camera `north` using one.
fn with_credentials(secret: Option<&str>) -> ConfigDir {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let text = std::fs::read_to_string(config.path()).unwrap().replace("[capture]", "[capture]\ncredentials_dir = \"credentials\"");
    std::fs::write(config.path(), text).unwrap();
    std::fs::create_dir(config.dir.path().join("credentials")).unwrap();
    if let Some(secret) = secret {
        std::fs::write(config.dir.path().join("credentials/north"), secret).unwrap();
    }
    config.camera("north", "rtsp://10.0.0.21:554/stream1", "credential = \"north\"");
    config
}

#[test]
fn a_good_config_passes_and_prints_a_summary_without_secrets() {
    let config = with_credentials(Some("viewer:hunter2\n"));
    let (code, out) = check(&config.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("north") && out.contains("U8Nhwc 512x512") && out.contains("[1, 100, 6]"), "{out}");
    assert!(out.contains("credential `north`") && !out.contains("hunter2"), "{out}");
}

#[test]
fn a_missing_credential_names_the_camera_file_and_field() {
    let config = with_credentials(None);
    expect_config_error(&config, "north.toml", "credential");
}

#[test]
fn a_malformed_credential_is_reported_without_its_content() {
    let config = with_credentials(Some("hunter2-without-user\n"));
    let (code, out) = check(&config.path());
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("north.toml") && out.contains("user:password") && !out.contains("hunter2"), "{out}");
}

#[test]
fn a_camera_decoder_gstreamer_lacks_names_the_file_and_field() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    config.camera("north", "rtsp://10.0.0.21:554/stream1", "decoder = \"avdec_h246\"");
    expect_config_error(&config, "north.toml", "`decoder`");
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    config.camera("north", "rtsp://10.0.0.21:554/stream1", "decoder = \"avdec_h264\"");
    let (code, out) = check(&config.path());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_environment_variable_overrides_the_file() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let (code, out) = check_with_env(&config.path(), &[("ROADSIGHT_REDIS__URL", "redis://10.9.8.7:6380")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("redis://10.9.8.7:6380"), "{out}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let (code, out) = check_with_env(&config.path(), &[("ROADSIGHT_PUBLISH__QUEUE", "many")]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("publish.queue") && out.contains("ROADSIGHT_PUBLISH__QUEUE"), "{out}");
}

#[test]
fn unknown_field() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    config.camera("north", "rtsp://10.0.0.21/s", "fsp = 5");
    expect_config_error(&config, "north.toml", "fsp");
}

#[test]
fn missing_url() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    std::fs::write(config.dir.path().join("cameras.d/north.toml"), "id = \"north\"\n").unwrap();
    expect_config_error(&config, "north.toml", "url");
}

#[test]
fn unsupported_url_scheme() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    config.camera("north", "http://10.0.0.21/video.mjpg", "");
    expect_config_error(&config, "north.toml", "url");
}

#[test]
fn missing_model_file() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let text = std::fs::read_to_string(config.path()).unwrap().replace("centernet_mnv3_coco_512_u8.onnx", "nosuch.onnx");
    std::fs::write(config.path(), text).unwrap();
    expect_config_error(&config, "roadsight.toml", "model.path");
}

#[test]
fn a_file_that_is_not_a_model_or_a_truncated_one_is_a_config_error() {
    let model = std::fs::read(repo().join("models/centernet_mnv3_coco_512_u8.onnx")).unwrap();
    for (name, bytes) in [("garbage.onnx", b"not a model at all".to_vec()), ("truncated.onnx", model[..model.len() / 2].to_vec())] {
        let config = ConfigDir::new("redis://127.0.0.1:1", "");
        std::fs::write(config.dir.path().join(name), bytes).unwrap();
        let path = config.dir.path().join(name).display().to_string();
        let text = std::fs::read_to_string(config.path()).unwrap().replace(&repo().join("models/centernet_mnv3_coco_512_u8.onnx").display().to_string(), &path);
        std::fs::write(config.path(), text).unwrap();
        expect_config_error(&config, name, "model.path");
    }
}

#[test]
fn duplicate_camera_id() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    config.camera("north", "rtsp://10.0.0.21/s", "");
    std::fs::write(config.dir.path().join("cameras.d/north-again.toml"), "id = \"north\"\nurl = \"rtsp://10.0.0.22/s\"\n").unwrap();
    expect_config_error(&config, "north-again.toml", "id");
}

#[test]
fn model_output_that_does_not_fit_the_decoder() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let text = std::fs::read_to_string(config.path()).unwrap().replace("[model]", "[model]\ndecoder = \"yolov8\"");
    std::fs::write(config.path(), text).unwrap();
    expect_config_error(&config, "roadsight.toml", "model.decoder");
}

#[test]
fn the_shipped_example_config_is_valid() {
    // configs/roadsight.toml with its relative paths, pointed at the repository's models.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("configs/roadsight.toml")).unwrap();
    std::fs::write(dir.path().join("roadsight.toml"), text).unwrap();
    std::os::unix::fs::symlink(repo().join("models"), dir.path().join("models")).unwrap();
    std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
    std::fs::copy(repo().join("configs/cameras.d/north.toml.example"), dir.path().join("cameras.d/north.toml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roadsightd"))
        .args(["check", "--config"])
        .arg(dir.path().join("roadsight.toml"))
        .env("ORT_DYLIB_PATH", support::ort_library())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn with_providers(providers: &str) -> ConfigDir {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    let text = std::fs::read_to_string(config.path()).unwrap().replace("[model]", &format!("[model]\nproviders = {providers}"));
    std::fs::write(config.path(), text).unwrap();
    config
}

#[test]
fn gpu_providers_missing_from_a_cpu_build_are_skipped_with_a_warning() {
    let config = with_providers(r#"[{ name = "tensorrt", fp16 = true }, "cuda", "cpu"]"#);
    let (code, out) = check(&config.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TensorrtExecutionProvider") && out.contains("CUDAExecutionProvider") && out.contains("skipped"), "{out}");
}

#[test]
fn a_required_provider_that_cannot_load_is_a_start_up_error() {
    let config = with_providers(r#"[{ name = "cuda", required = true }, "cpu"]"#);
    let (code, out) = check(&config.path());
    assert_eq!(code, 69, "{out}");
    assert!(out.contains("required but unavailable"), "{out}");
}

#[test]
fn a_syntax_error_quotes_the_line_without_its_password() {
    let redis = "redis://127.0.0.1:9";
    let config = ConfigDir::new(redis, "");
    std::fs::write(config.dir.path().join("cameras.d/north.toml"), "id = \"north\"\nurl = \"rtsp://admin:hunter2@10.0.0.1/s\nfps = 5\n").unwrap();
    let (code, out) = check(&config.path());
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("north.toml") && out.contains("line 2") && out.contains("rtsp://admin:***@10.0.0.1"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

/// The uplink is part of what `run` reads at start: a missing password file must fail `check`
/// too, not only the first `systemctl start`.
#[test]
fn the_uplink_credential_is_read_and_named_never_printed() {
    let config = with_credentials(Some("viewer:hunter2\n"));
    let text = std::fs::read_to_string(config.path()).unwrap()
        + "\n[uplink]\nenabled = true\nurl = \"redis://10.0.0.5:6379\"\ncredential = \"central\"\n";
    std::fs::write(config.path(), text).unwrap();
    expect_config_error(&config, "roadsight.toml", "uplink.credential");
    std::fs::write(config.dir.path().join("credentials/central"), "s3cret-upstream\n").unwrap();
    let (code, out) = check(&config.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("uplink     redis://10.0.0.5:6379 (credential `central`)"), "{out}");
    assert!(!out.contains("s3cret-upstream"), "{out}");
}

#[test]
fn a_missing_cameras_folder_names_the_global_file_and_field() {
    let config = ConfigDir::new("redis://127.0.0.1:1", "");
    std::fs::remove_dir(config.dir.path().join("cameras.d")).unwrap();
    expect_config_error(&config, "roadsight.toml", "cameras_dir");
    let (_, out) = check(&config.path());
    assert!(out.contains("expected a folder"), "{out}");
}
