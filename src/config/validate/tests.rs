//! Unit tests of `validate`.

use super::*;
use crate::config::load::tests::{Fixture, NORTH};
use crate::config::{Int8Calibration, Provider, TensorRtConfig};

#[test]
fn http_camera_url_names_the_scheme() {
    let f = Fixture::new("site = \"x\"\n");
    f.camera(
        "north.toml",
        "id = \"north\"\nurl = \"http://10.0.0.21/video\"\n",
    );
    let (_, field, message) = f.error();
    assert_eq!(field, "url");
    assert!(
        message.contains("`http`") && message.contains("rtsp"),
        "{message}"
    );
}

#[test]
fn password_in_camera_url_is_rejected_without_echoing_it() {
    let f = Fixture::new("site = \"x\"\n");
    f.camera(
        "north.toml",
        "id = \"north\"\nurl = \"rtsp://admin:Hunter2x@10.0.0.21/s\"\n",
    );
    let error = f.load().unwrap_err();
    let text = error.to_string();
    assert!(!text.contains("Hunter2x"), "{text}");
    let ConfigError::Field { field, message, .. } = error else {
        panic!("{text}")
    };
    assert_eq!(field, "url");
    assert!(message.contains("`credential`"), "{message}");
}

#[test]
fn unknown_class_is_named() {
    let f = Fixture::new("site = \"x\"\n");
    f.camera(
        "north.toml",
        &format!("{NORTH}classes = [\"car\", \"lorry\"]\n"),
    );
    let (_, field, message) = f.error();
    assert_eq!(field, "classes[1]");
    assert!(message.contains("`lorry`"), "{message}");
}

#[test]
fn provider_tables_are_parsed_and_mistakes_named_by_index() {
    let f = Fixture::new(
        r#"site = "x"
        [model]
        providers = [
            { name = "tensorrt", required = true },
            { name = "cuda", device_id = 1, required = true },
            { name = "cpu" },
        ]"#,
    );
    let providers = f.load().unwrap().model.providers;
    assert_eq!(
        providers,
        [
            Provider::TensorRt(TensorRtConfig {
                fp16: false,
                int8: None,
                dla_core: None,
                engine_cache: "/var/cache/roadsight".into(),
                required: true
            }),
            Provider::Cuda {
                device_id: 1,
                required: true
            },
            Provider::Cpu,
        ]
    );

    let cases = [
        (
            r#"["cuda", "tpu"]"#,
            "model.providers[1]",
            "unknown provider `tpu`",
        ),
        (
            r#"[{ name = "cuda", fp16 = true }]"#,
            "model.providers[0].fp16",
            "`tensorrt` only",
        ),
        (
            r#"[{ name = "tensorrt", fp16 = "yes" }]"#,
            "model.providers[0].fp16",
            "invalid type",
        ),
        (
            r#"["cpu", { name = "cpu", dla = 1 }]"#,
            "model.providers[1].dla",
            "unknown field `dla`",
        ),
        (
            r#"["cpu", 3]"#,
            "model.providers[1]",
            "provider name or a table",
        ),
        (r#"["cpu", "cpu"]"#, "model.providers[1]", "listed twice"),
        (r#"["cpu", "cuda"]"#, "model.providers[1]", "list `cpu` last"),
        ("[]", "model.providers", "empty"),
    ];
    for (providers, want_field, want_message) in cases {
        let f = Fixture::new(&format!("site = \"x\"\n[model]\nproviders = {providers}\n"));
        let (_, field, message) = f.error();
        assert_eq!(field, want_field, "{providers}: {message}");
        assert!(message.contains(want_message), "{providers}: {message}");
    }
}

#[test]
fn tensorrt_precision_options_are_checked_together() {
    let f = Fixture::new(
        r#"site = "x"
        [model]
        providers = [{ name = "tensorrt", int8 = true, calibration_table = "calib.cache", dla_core = 1 }]"#,
    );
    f.write("calib.cache", "TRT-8601-EntropyCalibration2\n");
    let providers = f.load().unwrap().model.providers;
    let Provider::TensorRt(trt) = &providers[0] else { panic!("{providers:?}") };
    let table = std::fs::canonicalize(f.dir.path().join("calib.cache")).unwrap();
    assert_eq!(trt.int8, Some(Int8Calibration { table, native: false }));
    assert_eq!((trt.fp16, trt.dla_core), (false, Some(1)));

    let cases = [
        (r#"{ name = "tensorrt", int8 = true }"#, "model.providers[0].int8", "needs `calibration_table`"),
        (r#"{ name = "tensorrt", int8 = true, calibration_table = "nosuch.cache" }"#, "model.providers[0].calibration_table", "no calibration table file"),
        (r#"{ name = "tensorrt", calibration_table = "calib.cache" }"#, "model.providers[0].calibration_table", "`int8 = true`"),
        (r#"{ name = "tensorrt", native_calibration_table = true }"#, "model.providers[0].native_calibration_table", "`int8 = true`"),
        (r#"{ name = "tensorrt", fp16 = true, dla_core = -1 }"#, "model.providers[0].dla_core", "0 or more"),
        (r#"{ name = "tensorrt", fp16 = true, dla_core = 4294967296 }"#, "model.providers[0].dla_core", "too large"),
        (r#"{ name = "tensorrt", dla_core = 0 }"#, "model.providers[0].dla_core", "FP16 or INT8 only"),
        (r#"{ name = "cuda", int8 = true }"#, "model.providers[0].int8", "`tensorrt` only"),
        (r#"{ name = "cpu", dla_core = 0 }"#, "model.providers[0].dla_core", "`tensorrt` only"),
    ];
    for (provider, want_field, want_message) in cases {
        let f = Fixture::new(&format!("site = \"x\"\n[model]\nproviders = [{provider}]\n"));
        f.write("calib.cache", "table");
        let (file, field, message) = f.error();
        assert_eq!((file, field.as_str()), (f.global(), want_field), "{provider}: {message}");
        assert!(message.contains(want_message), "{provider}: {message}");
    }
}

#[test]
fn out_of_range_values_say_what_was_expected() {
    let cases = [
        (
            "[model]\nconfidence = 0.0",
            "model.confidence",
            "more than 0",
        ),
        ("[model]\nnms_iou = 1.5", "model.nms_iou", "at most 1"),
        ("[model]\ndecoder = \"ssd\"", "model.decoder", "`yolov8`"),
        ("[publish]\nqueue = 0", "publish.queue", "expected 1 to 100000"),
        ("[publish]\nmaxlen = 10", "publish.maxlen", "at least 1000"),
        (
            "[publish]\nencoding = \"gzip\"",
            "publish.encoding",
            "`json+lz4`",
        ),
        (
            "[capture]\nstall_timeout_ms = 100",
            "capture.stall_timeout_ms",
            "at least 500",
        ),
        (
            "[capture]\nbackoff_max_ms = 100",
            "capture.backoff_max_ms",
            "backoff_initial_ms",
        ),
        (
            "[redis]\nurl = \"redis://:s3cret@h\"",
            "redis.url",
            "redis.credential",
        ),
        ("[redis]\nurl = \"http://h\"", "redis.url", "`http`"),
        (
            "[redis]\ncredential = \"../x\"",
            "redis.credential",
            "credential name",
        ),
    ];
    for (toml, want_field, want_message) in cases {
        let f = Fixture::new(&format!("site = \"x\"\n{toml}\n"));
        let (_, field, message) = f.error();
        assert_eq!(field, want_field, "{toml}: {message}");
        assert!(message.contains(want_message), "{toml}: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    for site in ["", "a:b", "{a}", "a b"] {
        let f = Fixture::new(&format!("site = \"{site}\"\n"));
        assert_eq!(f.error().1, "site", "{site:?}");
    }
}

#[test]
fn out_of_range_camera_values_are_named() {
    let cases = [
        ("id = \"North\"\nurl = \"rtsp://h/\"", "id", "[a-z0-9_-]+"),
        (
            &format!("{NORTH}latency_ms = 6000"),
            "latency_ms",
            "at most 5000",
        ),
        (&format!("{NORTH}fps = -1"), "fps", "0 (no cap)"),
        // A period of 1e30 s does not fit a Duration: it used to abort the capture thread.
        (&format!("{NORTH}fps = 1e-30"), "fps", "at least 0.001"),
        (
            &format!("{NORTH}transport = \"http\""),
            "transport",
            "`udp`",
        ),
        (
            &format!("{NORTH}confidence = 2.0"),
            "confidence",
            "at most 1",
        ),
        (
            &format!("{NORTH}classes = []"),
            "classes",
            "leave `classes` out",
        ),
        (
            &format!("{NORTH}latency_ms = \"50\""),
            "latency_ms",
            "invalid type",
        ),
    ];
    for (toml, want_field, want_message) in cases {
        let f = Fixture::new("site = \"x\"\n");
        f.camera("north.toml", toml);
        let (_, field, message) = f.error();
        assert_eq!(field, want_field, "{toml}: {message}");
        assert!(message.contains(want_message), "{toml}: {message}");
    }
}

#[test]
fn urls_with_user_info_are_rejected_without_echoing_them() {
    for url in [
        "rtsp://admin:Hunter2x@cam/s",
        "rtsp://Hunter2x@cam/s",
        "rtsp://:Hunter2x@cam/",
    ] {
        let message = camera_url(url).unwrap_err();
        assert!(
            !message.contains("Hunter2x") && message.contains("user info"),
            "{message}"
        );
    }
    for url in ["unix:///run/r.sock?pass=Hunter2x", "unix:///run/r.sock?db=1&user=u&password=Hunter2x"] {
        let message = redis_url(url).unwrap_err();
        assert!(!message.contains("Hunter2x") && message.contains("redis.credential"), "{message}");
    }
    for url in ["redis://u:Hunter2x@h:6379", "rediss://:Hunter2x@h"] {
        let message = redis_url(url).unwrap_err();
        assert!(
            !message.contains("Hunter2x") && message.contains("user info"),
            "{message}"
        );
    }
}

#[test]
fn accepted_urls_are_kept() {
    assert_eq!(
        camera_url("rtsp://10.0.0.21:554/stream1").unwrap(),
        "rtsp://10.0.0.21:554/stream1"
    );
    assert_eq!(
        camera_url("rtsps://cam.local/live?ch=1").unwrap(),
        "rtsps://cam.local/live?ch=1"
    );
    assert!(camera_url("rtsp:///nohost").is_err());
    for url in [
        "redis://127.0.0.1:6379",
        "rediss://central:6380/2",
        "unix:///run/r.sock",
    ] {
        assert_eq!(redis_url(url).unwrap(), url);
    }
    assert!(redis_url("unix://").is_err());
    // The local Redis is on the box: no TLS to it; the message says where TLS goes.
    assert_eq!(local_url("unix:///run/r.sock?db=2").unwrap(), "unix:///run/r.sock?db=2");
    let message = local_url("rediss://127.0.0.1:6380").unwrap_err();
    assert!(message.contains("uplink.url") && message.contains("unix://"), "{message}");
}

#[test]
fn credential_names_are_file_names() {
    for ok in ["north", "redis.pw", "cam_1-a@site"] {
        assert_eq!(credential(Some(ok.into())).unwrap().as_deref(), Some(ok));
    }
    for bad in ["", ".hidden", "../etc/shadow", "a/b", "a b"] {
        assert!(credential(Some(bad.into())).is_err(), "{bad:?}");
    }
    assert_eq!(credential(None).unwrap(), None);
}
