//! TensorRT engine and timing caches, one folder per key: `<engine_cache>/<key>/`.
//!
//! ONNX Runtime's TensorRT provider loads whatever engine file in its cache folder carries the
//! graph's name; it does not notice that the model's weights, ONNX Runtime, TensorRT or the GPU
//! changed (its documentation asks users to clear the cache when they do). So the folder is
//! named after everything the engine depends on: the model file's stem and the first 16 hex
//! digits of the SHA-256 of [`EngineInputs`], which `roadsight-engine.txt` in the folder lists
//! in plain text. A stale engine is never loaded; folders of old keys stay until deleted.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::platform;
use crate::config::TensorRtConfig;

/// The file in each key folder that lists the key's inputs.
pub(crate) const MANIFEST: &str = "roadsight-engine.txt";

/// Everything a TensorRT engine depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineInputs {
    /// The model file's stem, for people reading the folder name (not hashed).
    pub model_name: String,
    /// SHA-256 of the model file's bytes, hex.
    pub model_sha256: String,
    /// ONNX Runtime's version string.
    pub onnxruntime: String,
    /// TensorRT's version, `none` where it is missing.
    pub tensorrt: String,
    /// The GPU(s), `none` where there is none.
    pub gpu: String,
    pub fp16: bool,
    pub int8: bool,
    /// SHA-256 of the INT8 calibration table, hex.
    pub calibration_sha256: Option<String>,
    pub native_calibration_table: bool,
    pub dla_core: Option<u32>,
}

impl EngineInputs {
    /// The inputs for `model` built with `trt` on this box (ONNX Runtime must be loaded).
    pub(crate) fn read(model: &Path, trt: &TensorRtConfig) -> io::Result<Self> {
        let name = model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
        Ok(Self {
            model_name: name,
            model_sha256: sha256_file(model)?,
            onnxruntime: platform::onnxruntime(),
            tensorrt: platform::tensorrt(),
            gpu: platform::gpu(),
            fp16: trt.fp16,
            int8: trt.int8.is_some(),
            calibration_sha256: trt.int8.as_ref().map(|c| sha256_file(&c.table)).transpose()?,
            native_calibration_table: trt.int8.as_ref().is_some_and(|c| c.native),
            dla_core: trt.dla_core,
        })
    }

    /// The hashed inputs, one `name = value` line each.
    fn lines(&self) -> String {
        let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        [
            ("model_sha256", self.model_sha256.clone()),
            ("onnxruntime", self.onnxruntime.clone()),
            ("tensorrt", self.tensorrt.clone()),
            ("gpu", self.gpu.clone()),
            ("fp16", self.fp16.to_string()),
            ("int8", self.int8.to_string()),
            ("calibration_table_sha256", or_none(self.calibration_sha256.clone())),
            ("native_calibration_table", self.native_calibration_table.to_string()),
            ("dla_core", or_none(self.dla_core.map(|c| c.to_string()))),
        ]
        .iter()
        .map(|(name, value)| format!("{name} = {}\n", value.replace('\n', " ")))
        .collect()
    }

    /// `<model stem>-<16 hex digits>`: file-system safe, stable for identical inputs.
    pub(crate) fn key(&self) -> String {
        let digest = Sha256::digest(self.lines().as_bytes());
        let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let safe = |c: char| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' };
        let mut stem: String = self.model_name.chars().map(safe).take(48).collect();
        if stem.is_empty() || stem.starts_with('.') {
            stem.insert(0, 'm');
        }
        format!("{stem}-{short}")
    }
}

/// The engine folder of one model and TensorRT configuration on this box.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineCache {
    /// `<engine_cache>/<key>`: ONNX Runtime's engine and timing cache path.
    pub dir: PathBuf,
    pub key: String,
    manifest: String,
}

impl EngineCache {
    /// Computes the key of `model` with `trt` (reading the model and the calibration table).
    pub(crate) fn for_model(model: &Path, trt: &TensorRtConfig) -> io::Result<Self> {
        let inputs = EngineInputs::read(model, trt)?;
        let key = inputs.key();
        let manifest = format!(
            "# roadsightd TensorRT engine cache: the engines here were built for these inputs.\n\
             # Any change gives a new folder; this one is then stale and may be deleted.\n\
             key = {key}\nmodel = {}\n{}",
            model.display(),
            inputs.lines()
        );
        Ok(Self { dir: trt.engine_cache.join(&key), key, manifest })
    }

    /// Whether an engine file is already there.
    pub fn has_engine(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return false };
        entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".engine"))
    }

    /// Creates the folder (and the cache root). Returns whether it was created now.
    pub(crate) fn create(&self) -> io::Result<bool> {
        let existed = self.dir.is_dir();
        std::fs::create_dir_all(&self.dir)?;
        Ok(!existed)
    }

    /// Removes the folder if it is empty (the provider it was made for did not load).
    pub(crate) fn remove_if_empty(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Writes [`MANIFEST`] unless it already says the same.
    pub(crate) fn write_manifest(&self) -> io::Result<()> {
        let path = self.dir.join(MANIFEST);
        if std::fs::read_to_string(&path).is_ok_and(|text| text == self.manifest) {
            return Ok(());
        }
        let tmp = self.dir.join(format!(".{MANIFEST}.{}", std::process::id()));
        std::fs::write(&tmp, &self.manifest)?;
        std::fs::rename(&tmp, &path)
    }
}

/// SHA-256 of a file, hex (the engine key, the stream entries' `model` field); remembered per path, size and modification time, so sessions after
/// the first (one per worker) do not read the model again.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    type Seen = (PathBuf, u64, Option<SystemTime>, String);
    static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
    let meta = std::fs::metadata(path)?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((.., hash)) = seen.iter().find(|(p, l, m, _)| p == path && *l == len && *m == modified) {
        return Ok(hash.clone());
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    seen.retain(|(p, ..)| p != path);
    seen.push((path.to_owned(), len, modified, hash.clone()));
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(model_sha256: String) -> EngineInputs {
        EngineInputs {
            model_name: "centernet_mnv3_coco_512_u8".into(),
            model_sha256,
            onnxruntime: "1.23.2".into(),
            tensorrt: "10.3.0.30".into(),
            gpu: "NVIDIA Jetson AGX Orin Developer Kit".into(),
            fp16: true,
            int8: false,
            calibration_sha256: None,
            native_calibration_table: false,
            dla_core: None,
        }
    }

    #[test]
    fn the_key_follows_the_model_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
        std::fs::write(&a, b"model one").unwrap();
        std::fs::write(&b, b"model two").unwrap();
        let key_a = inputs(sha256_file(&a).unwrap()).key();
        assert_ne!(key_a, inputs(sha256_file(&b).unwrap()).key());
        assert_eq!(key_a, inputs(sha256_file(&a).unwrap()).key(), "stable for the same bytes");
        // Rewritten in place (a new model under the old name): a new key.
        std::fs::write(&a, b"model one, retrained").unwrap();
        assert_ne!(key_a, inputs(sha256_file(&a).unwrap()).key());
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = inputs("00".repeat(32));
        type Change = (&'static str, fn(&mut EngineInputs));
        let changes: [Change; 8] = [
            ("onnxruntime", |i| i.onnxruntime = "1.24.0".into()),
            ("tensorrt", |i| i.tensorrt = "10.7.0.23".into()),
            ("gpu", |i| i.gpu = "NVIDIA Jetson Orin NX".into()),
            ("fp16", |i| i.fp16 = false),
            ("int8", |i| i.int8 = true),
            ("calibration", |i| i.calibration_sha256 = Some("11".repeat(32))),
            ("native", |i| i.native_calibration_table = true),
            ("dla_core", |i| i.dla_core = Some(0)),
        ];
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(base.key(), changed.key(), "{what} must change the key");
        }
        assert_eq!(base.key(), base.clone().key());
    }

    #[test]
    fn the_key_is_a_safe_folder_name() {
        let mut odd = inputs("00".repeat(32));
        odd.model_name = "../my model:v2".into();
        let key = odd.key();
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)), "{key}");
        assert!(!key.starts_with('.'), "{key}");
        assert!(inputs("00".repeat(32)).key().starts_with("centernet_mnv3_coco_512_u8-"));
    }

    #[test]
    fn the_folder_holds_a_manifest_of_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"weights").unwrap();
        let trt = TensorRtConfig {
            fp16: true,
            int8: None,
            dla_core: Some(1),
            engine_cache: dir.path().join("cache"),
            required: false,
        };
        let cache = EngineCache::for_model(&model, &trt).unwrap();
        assert_eq!(cache.dir, dir.path().join("cache").join(&cache.key));
        assert!(cache.create().unwrap() && !cache.has_engine());
        cache.write_manifest().unwrap();
        let text = std::fs::read_to_string(cache.dir.join(MANIFEST)).unwrap();
        assert!(text.contains(&format!("key = {}", cache.key)) && text.contains("dla_core = 1"), "{text}");
        std::fs::write(cache.dir.join("TensorrtExecutionProvider_TRTKernel_graph_x_sm87.engine"), b"").unwrap();
        assert!(cache.has_engine());
    }
}
