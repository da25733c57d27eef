//! Unit tests of `load`.

use std::time::Duration;

use super::*;
use crate::config::{DecoderKind, Encoding, Provider, Transport};

/// A config folder with the default model and labels in place and an empty `cameras.d`.
pub(in crate::config) struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(global: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("models")).unwrap();
        fs::create_dir_all(dir.path().join("cameras.d")).unwrap();
        let fixture = Self { dir };
        fixture.write(
            "models/centernet_mnv3_coco_512_u8.onnx",
            "not really a model",
        );
        fixture.write(
            "models/coco80.names",
            include_str!("../../../models/coco80.names"),
        );
        fixture.write("roadsight.toml", global);
        fixture
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    pub fn camera(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("cameras.d/{name}"), text)
    }

    pub fn global(&self) -> PathBuf {
        self.dir.path().join("roadsight.toml")
    }

    /// Loads with an environment prefix no test sets.
    pub fn load(&self) -> Result<Config, ConfigError> {
        load_with_env(&self.global(), "ROADSIGHT_TEST_UNSET_")
    }

    pub fn error(&self) -> (PathBuf, String, String) {
        match self.load() {
            Err(ConfigError::Field {
                file,
                field,
                message,
            }) => (file, field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }
}

pub(in crate::config) const NORTH: &str =
    "id = \"north\"\nurl = \"rtsp://10.0.0.21:554/stream1\"\n";

#[test]
fn full_config_is_read_with_every_value() {
    let f = Fixture::new(
        r#"
        site = "rsu-0042"
        cameras_dir = "cams"
        [redis]
        url = "unix:///run/roadsight/redis.sock"
        username = "roadsight"
        credential = "redis"
        [model]
        path = "models/centernet_mnv3_coco_512_u8.onnx"
        labels = "models/coco80.names"
        decoder = "yolov8"
        confidence = 0.5
        nms_iou = 0.6
        providers = [{ name = "tensorrt", fp16 = true, engine_cache = "trt" }, "cuda", "cpu"]
        ort_library = "/usr/lib/libonnxruntime.so"
        threads = 2
        [publish]
        queue = 16
        maxlen = 5000
        encoding = "json+lz4"
        [capture]
        stall_timeout_ms = 2000
        backoff_initial_ms = 100
        backoff_max_ms = 1000
        credentials_dir = "creds"
        "#,
    );
    fs::create_dir(f.dir.path().join("cams")).unwrap();
    let south = f.write(
        "cams/south.toml",
        r#"
        id = "south"
        url = "rtsps://cam-south.local/live"
        credential = "south"
        fps = 0
        transport = "udp"
        latency_ms = 200
        classes = ["car", "truck", "traffic light"]
        confidence = 0.6
        publish_empty = false
        enabled = false
        decoder = "avdec_h264"
        "#,
    );
    f.write("cams/north.toml", NORTH);
    f.write("cams/west.toml.example", "this is = not toml");

    let config = f.load().unwrap();
    let dir = f.dir.path();
    assert_eq!(config.site, "rsu-0042");
    assert_eq!(config.cameras_dir, dir.join("cams"));
    assert_eq!(config.redis.url, "unix:///run/roadsight/redis.sock");
    assert_eq!(config.redis.username.as_deref(), Some("roadsight"));
    assert_eq!(config.redis.credential.as_deref(), Some("redis"));
    let m = &config.model;
    assert_eq!(m.path, dir.join("models/centernet_mnv3_coco_512_u8.onnx"));
    assert_eq!(m.labels, dir.join("models/coco80.names"));
    assert_eq!(
        (m.label_names.len(), m.label_names[2].as_str()),
        (80, "car")
    );
    assert_eq!(m.label_names[9], "traffic light");
    assert_eq!(
        (m.decoder, m.confidence, m.nms_iou, m.threads),
        (DecoderKind::Yolov8, 0.5, 0.6, 2)
    );
    assert_eq!(
        m.providers,
        [
            Provider::TensorRt(crate::config::TensorRtConfig {
                fp16: true,
                int8: None,
                dla_core: None,
                engine_cache: dir.join("trt"),
                required: false
            }),
            Provider::Cuda {
                device_id: 0,
                required: false
            },
            Provider::Cpu,
        ]
    );
    assert_eq!(
        m.ort_library.as_deref(),
        Some(Path::new("/usr/lib/libonnxruntime.so"))
    );
    assert_eq!(
        (
            config.publish.queue,
            config.publish.maxlen,
            config.publish.encoding
        ),
        (16, 5000, Encoding::JsonLz4)
    );
    assert_eq!(config.capture.stall_timeout, Duration::from_secs(2));
    assert_eq!(config.capture.backoff_initial, Duration::from_millis(100));
    assert_eq!(config.capture.backoff_max, Duration::from_secs(1));
    assert_eq!(config.capture.credentials_dir, Some(dir.join("creds")));

    let ids: Vec<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["north", "south"]);
    let s = &config.cameras[1];
    assert_eq!(s.file, south);
    assert_eq!(s.url, "rtsps://cam-south.local/live");
    assert_eq!(s.credential.as_deref(), Some("south"));
    assert_eq!(
        (s.fps, s.transport, s.latency_ms),
        (0.0, Transport::Udp, 200)
    );
    assert_eq!(
        s.classes.as_deref().unwrap(),
        ["car", "truck", "traffic light"]
    );
    assert_eq!(
        (s.confidence, s.publish_empty, s.enabled),
        (0.6, false, false)
    );
    assert_eq!(s.decoder.as_deref(), Some("avdec_h264"));
    // The camera without its own threshold takes the model's.
    assert_eq!(config.cameras[0].confidence, 0.5);
}

#[test]
fn only_site_and_camera_id_and_url_give_the_defaults() {
    let f = Fixture::new("site = \"rsu-1\"\n");
    let north = f.camera("north.toml", NORTH);

    let config = f.load().unwrap();
    let dir = f.dir.path();
    assert_eq!(config.file, f.global());
    assert_eq!(config.cameras_dir, dir.join("cameras.d"));
    assert_eq!(config.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(
        (
            config.redis.username.clone(),
            config.redis.credential.clone()
        ),
        (None, None)
    );
    let m = &config.model;
    assert_eq!(m.path, dir.join("models/centernet_mnv3_coco_512_u8.onnx"));
    assert_eq!(m.labels, dir.join("models/coco80.names"));
    assert_eq!(
        (m.decoder, m.confidence, m.nms_iou),
        (DecoderKind::Detections, 0.35, 0.45)
    );
    assert_eq!(m.providers, [Provider::Cpu]);
    assert_eq!((m.ort_library.clone(), m.threads), (None, 0));
    assert_eq!(
        (
            config.publish.queue,
            config.publish.maxlen,
            config.publish.encoding
        ),
        (256, 250_000, Encoding::Json)
    );
    assert_eq!(config.capture.stall_timeout, Duration::from_secs(5));
    assert_eq!(config.capture.backoff_initial, Duration::from_millis(500));
    assert_eq!(config.capture.backoff_max, Duration::from_secs(30));
    assert_eq!(config.capture.credentials_dir, None);

    let c = &config.cameras[..];
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].file.clone(), c[0].id.as_str()), (north, "north"));
    assert_eq!(c[0].url, "rtsp://10.0.0.21:554/stream1");
    assert_eq!((c[0].credential.clone(), c[0].fps), (None, 10.0));
    assert_eq!(
        (c[0].transport, c[0].latency_ms, c[0].classes.clone()),
        (Transport::Tcp, 50, None)
    );
    assert_eq!(
        (c[0].confidence, c[0].publish_empty, c[0].enabled),
        (0.35, true, true)
    );
    assert_eq!(c[0].decoder, None);
}

#[test]
fn shipped_examples_load_and_match_the_defaults() {
    let f = Fixture::new(include_str!("../../../configs/roadsight.toml"));
    f.camera(
        "north.toml",
        include_str!("../../../configs/cameras.d/north.toml.example"),
    );
    let example = f.load().unwrap();

    let f = Fixture::new("site = \"rsu-0042\"\n");
    f.camera("north.toml", NORTH);
    let mut defaults = f.load().unwrap();
    // Same values, other temporary folder.
    let rebase = |p: &Path| {
        example
            .file
            .parent()
            .unwrap()
            .join(p.strip_prefix(f.dir.path()).unwrap())
    };
    defaults.file = example.file.clone();
    defaults.cameras_dir = rebase(&defaults.cameras_dir);
    defaults.model.path = rebase(&defaults.model.path);
    defaults.model.labels = rebase(&defaults.model.labels);
    defaults.cameras[0].file = rebase(&defaults.cameras[0].file);
    assert_eq!(example, defaults);
}

#[test]
fn missing_global_file_is_an_io_error() {
    let f = Fixture::new("site = \"x\"\n");
    let missing = f.dir.path().join("nope.toml");
    match load_with_env(&missing, "ROADSIGHT_TEST_UNSET_") {
        Err(ConfigError::Io { file, .. }) => assert_eq!(file, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn missing_site_is_named() {
    let f = Fixture::new("[redis]\nurl = \"redis://127.0.0.1\"\n");
    let (file, field, message) = f.error();
    assert_eq!((file, field.as_str()), (f.global(), "site"));
    assert!(message.contains("missing field"), "{message}");
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let f = Fixture::new("site = \"x\"\n[redis\n");
    match f.load() {
        Err(e @ ConfigError::Invalid { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&f.global().display().to_string()),
                "{text}"
            );
            assert!(text.contains("line 2"), "{text}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn unknown_field_in_global_file_is_named_with_its_table() {
    let f = Fixture::new("site = \"x\"\n[redis]\nurll = \"redis://h\"\n");
    let (file, field, message) = f.error();
    assert_eq!((file, field.as_str()), (f.global(), "redis.urll"));
    assert!(
        message.starts_with("unknown field `urll`, expected one of"),
        "{message}"
    );

    // Not a section of this version.
    let f = Fixture::new("site = \"x\"\n[tracking]\nenabled = true\n");
    assert_eq!(f.error().1, "tracking");
}

#[test]
fn metrics_listen_defaults_to_loopback_and_can_be_turned_off() {
    let default = Fixture::new("site = \"x\"\n").load().unwrap().metrics_listen;
    assert_eq!(default, Some("127.0.0.1:9464".parse().unwrap()));
    let off = Fixture::new("site = \"x\"\n[metrics]\nlisten = \"\"\n").load().unwrap().metrics_listen;
    assert_eq!(off, None);
    assert_eq!(Fixture::new("site = \"x\"\n[metrics]\nlisten = \"localhost\"\n").error().1, "metrics.listen");
}

#[test]
fn log_level_defaults_to_info_and_rejects_what_tracing_cannot_parse() {
    assert_eq!(Fixture::new("site = \"x\"\n").load().unwrap().log_level, "info");
    let filter = Fixture::new("site = \"x\"\n[logging]\nlevel = \"info,roadsight::uplink=debug\"\n").load().unwrap();
    assert_eq!(filter.log_level, "info,roadsight::uplink=debug");
    assert_eq!(Fixture::new("site = \"x\"\n[logging]\nlevel = \"loud[\"\n").error().1, "logging.level");
    assert_eq!(Fixture::new("site = \"x\"\n[logging]\nlevel = \"\"\n").error().1, "logging.level");
    assert_eq!(Fixture::new("site = \"x\"\n[logging]\nlevel = \"inof\"\n").error().1, "logging.level");
}

#[test]
fn uplink_is_off_by_default_and_validated_when_on() {
    assert_eq!(Fixture::new("site = \"x\"\n").load().unwrap().uplink, None);
    let f = Fixture::new("site = \"x\"\n[uplink]\nenabled = true\n");
    assert_eq!(f.error().1, "uplink.url");
    let f = Fixture::new("site = \"x\"\n[uplink]\nenabled = true\nurl = \"redis://c:secret@central:6379\"\n");
    let (_, field, message) = f.error();
    assert_eq!(field, "uplink.url");
    assert!(message.contains("uplink.credential") && !message.contains("secret"), "{message}");
    let f = Fixture::new("site = \"x\"\n[publish]\nmaxlen = 1000\n[uplink]\nenabled = true\nurl = \"redis://central:6379\"\n");
    assert_eq!(f.error().1, "publish.maxlen");
    // The cap leaves a tenth of the budget for what arrives between two budget checks.
    let tight = "site = \"x\"\n[publish]\nmaxlen = 210000\n[uplink]\nenabled = true\nurl = \"redis://central:6379\"\n";
    let (_, field, message) = Fixture::new(tight).error();
    assert_eq!(field, "publish.maxlen");
    assert!(message.contains("(200000) + 20000"), "{message}");
    let f = Fixture::new("site = \"x\"\n[uplink]\nenabled = true\nurl = \"redis://central:6379\"\ncluster = true\nbatch = 100\n");
    let uplink = f.load().unwrap().uplink.unwrap();
    assert_eq!((uplink.url.as_str(), uplink.cluster, uplink.batch), ("redis://central:6379", true, 100));
}

#[test]
fn unknown_field_in_camera_file_is_named() {
    let f = Fixture::new("site = \"x\"\n");
    let north = f.camera("north.toml", &format!("{NORTH}fsp = 5\n"));
    let (file, field, message) = f.error();
    assert_eq!((file, field.as_str()), (north, "fsp"));
    assert!(
        message.starts_with("unknown field `fsp`, expected one of"),
        "{message}"
    );
}

#[test]
fn camera_without_url_is_rejected() {
    let f = Fixture::new("site = \"x\"\n");
    let north = f.camera("north.toml", "id = \"north\"\n");
    let (file, field, message) = f.error();
    assert_eq!((file, field.as_str()), (north, "url"));
    assert!(message.contains("missing field `url`"), "{message}");
}

#[test]
fn missing_model_file_names_the_resolved_path() {
    let f = Fixture::new("site = \"x\"\n[model]\npath = \"models/other.onnx\"\n");
    let (_, field, message) = f.error();
    assert_eq!(field, "model.path");
    assert!(message.contains(&f.dir.path().join("models/other.onnx").display().to_string()));
}

#[test]
fn missing_labels_file_names_the_resolved_path() {
    let f = Fixture::new("site = \"x\"\n");
    fs::remove_file(f.dir.path().join("models/coco80.names")).unwrap();
    let (_, field, message) = f.error();
    assert_eq!(field, "model.labels");
    assert!(
        message.contains(
            &f.dir
                .path()
                .join("models/coco80.names")
                .display()
                .to_string()
        )
    );
}

#[test]
fn a_blank_line_inside_the_labels_file_is_refused_not_skipped() {
    let f = Fixture::new("site = \"x\"\n");
    f.write("models/coco80.names", "person\n\ncar\n");
    let (_, field, message) = f.error();
    assert_eq!(field, "model.labels");
    assert!(message.contains("line 2 is blank"), "{message}");
    f.write("models/coco80.names", "person\nfire \"hydrant\"\n");
    let (_, _, message) = f.error();
    assert!(message.contains("line 2 holds"), "{message}");
    // Trailing blank lines and surrounding spaces are fine.
    f.write("models/coco80.names", "person\n bicycle \ncar\n\n\n");
    let config = f.load().unwrap();
    assert_eq!(config.model.label_names, ["person", "bicycle", "car"]);
}

#[test]
fn sizes_that_would_exhaust_memory_or_threads_are_refused() {
    for (global, field) in [
        ("site = \"x\"\n[publish]\nqueue = 1000000000000\n", "publish.queue"),
        ("site = \"x\"\n[model]\nthreads = 100000\n", "model.threads"),
    ] {
        let (_, got, message) = Fixture::new(global).error();
        assert_eq!(got, field);
        assert!(message.contains("out of range"), "{message}");
    }
}

#[test]
fn duplicate_camera_id_names_both_files() {
    let f = Fixture::new("site = \"x\"\n");
    let a = f.camera("a-north.toml", NORTH);
    let b = f.camera("b-north.toml", NORTH);
    let error = f.load().unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&a.display().to_string()), "{text}");
    assert!(text.contains(&b.display().to_string()), "{text}");
    assert!(matches!(error, ConfigError::Field { field, .. } if field == "id"));
}

#[test]
fn dotted_paths_index_arrays() {
    let path: Vec<String> = ["model", "providers", "1", "fp16"].map(String::from).into();
    assert_eq!(dotted(&path), "model.providers[1].fp16");
}
