//! What a reload may change while the daemon runs. The camera set, the uplink and the log
//! level apply at once; the local Redis, the model, publishing, capture defaults and the
//! metrics address are wired into running tasks and need a restart (said in the log).

use crate::config::Config;

/// The config to run after a reload: `new`'s cameras, uplink and log level, everything
/// else as it runs now. Also returns the sections whose change waits for a restart.
pub(super) fn merge(running: &Config, new: Config) -> (Config, Vec<&'static str>) {
    let mut pending = Vec::new();
    let mut note = |changed: bool, section| {
        if changed {
            pending.push(section);
        }
    };
    note(running.site != new.site, "site");
    note(running.redis != new.redis, "redis");
    note(running.model != new.model, "model");
    note(running.publish != new.publish, "publish");
    note(running.capture != new.capture, "capture");
    note(running.metrics_listen != new.metrics_listen, "metrics");
    let merged = Config {
        cameras_dir: new.cameras_dir,
        cameras: new.cameras,
        uplink: new.uplink,
        log_level: new.log_level,
        ..running.clone()
    };
    (merged, pending)
}

/// Camera files are validated against the model they will run with. While a change to
/// `[model]` waits for a restart that is the running one: its labels (for `classes`) and its
/// `confidence` (the default of a camera without its own), not the file's new ones.
pub(super) fn revalidate_cameras(running: &Config, mut new: Config) -> Result<Config, String> {
    if running.model != new.model {
        new.cameras = crate::config::load_cameras(&new.cameras_dir, &running.model).map_err(|e| {
            format!("{e} (camera files are checked against the running model: the change to [model] waits for a restart)")
        })?;
    }
    Ok(new)
}

/// Whether the uplink must be rebuilt: its settings or the set of streams it follows changed.
pub(super) fn uplink_changed(running: &Config, new: &Config) -> bool {
    let ids = |c: &Config| c.cameras.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    running.uplink != new.uplink || ids(running) != ids(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn load(global: &str, cameras: &[(&str, &str)]) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let root = env!("CARGO_MANIFEST_DIR");
        let text = format!(
            "site = \"s\"\n{global}\n[model]\npath = \"{root}/models/centernet_mnv3_coco_512_u8.onnx\"\nlabels = \"{root}/models/coco80.names\"\n"
        );
        std::fs::write(dir.path().join("roadsight.toml"), text).unwrap();
        std::fs::create_dir(dir.path().join("cameras.d")).unwrap();
        for (id, body) in cameras {
            std::fs::write(dir.path().join(format!("cameras.d/{id}.toml")), format!("id = \"{id}\"\n{body}")).unwrap();
        }
        let mut c = config::load(&dir.path().join("roadsight.toml")).unwrap();
        // Same paths in both configs, as when one file is read twice.
        c.file = "/etc/roadsight/roadsight.toml".into();
        c.cameras_dir = "/etc/roadsight/cameras.d".into();
        for cam in &mut c.cameras {
            cam.file = format!("/etc/roadsight/cameras.d/{}.toml", cam.id).into();
        }
        c
    }

    const URL: &str = "url = \"rtsp://10.0.0.1/s\"\n";

    #[test]
    fn while_a_model_change_waits_cameras_are_checked_against_the_running_model() {
        let running = load("", &[("a", URL)]);
        let dir = tempfile::tempdir().unwrap();
        let write = |body: &str| std::fs::write(dir.path().join("a.toml"), format!("id = \"a\"\n{body}")).unwrap();
        // A new default confidence (the camera, validated against the new model, took it):
        // the camera keeps the running one, so it is not restarted.
        let mut new = load("", &[("a", URL)]);
        new.model.confidence = 0.6;
        new.cameras[0].confidence = 0.6;
        write(URL);
        new.cameras_dir = dir.path().into();
        let mut new = revalidate_cameras(&running, new).unwrap();
        new.cameras[0].file = running.cameras[0].file.clone();
        assert_eq!(new.cameras, running.cameras);
        // A class only the new labels have is refused, naming the camera file.
        let mut new = load("", &[("a", URL)]);
        new.model.label_names.push("scooter".into());
        write(&format!("{URL}classes = [\"scooter\"]"));
        new.cameras_dir = dir.path().into();
        let error = revalidate_cameras(&running, new).unwrap_err();
        assert!(error.contains("a.toml") && error.contains("scooter") && error.contains("running model"), "{error}");
    }

    #[test]
    fn cameras_uplink_and_log_level_apply_the_rest_waits_for_a_restart() {
        let running = load("", &[("a", URL)]);
        let new = load(
            "[redis]\nurl = \"redis://127.0.0.1:7000\"\n[logging]\nlevel = \"debug\"",
            &[("a", URL), ("b", URL)],
        );
        assert!(uplink_changed(&running, &new), "a new stream to follow");
        let (merged, pending) = merge(&running, new);
        assert_eq!(pending, ["redis"]);
        assert_eq!(merged.redis, running.redis, "the running Redis stays");
        assert_eq!(merged.log_level, "debug");
        assert_eq!(merged.cameras.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn the_same_files_change_nothing() {
        let running = load("", &[("a", URL)]);
        let again = load("", &[("a", URL)]);
        assert!(!uplink_changed(&running, &again));
        let (merged, pending) = merge(&running, again);
        assert!(pending.is_empty());
        assert_eq!(merged, running);
    }
}
