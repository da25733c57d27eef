//! `model.providers`: bare names or tables, each option checked against the provider it belongs
//! to, and TensorRT's precision options checked against each other.

use std::path::{Path, PathBuf};

use super::raw::{self, RawProvider, RawProviderTable};
use super::validate::{at_least, field_error, resolve};
use super::{ConfigError, Int8Calibration, Provider, TensorRtConfig};

/// Validates the list, in order of preference.
pub(super) fn validate(raw: Vec<RawProvider>, file: &Path, dir: &Path) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        let message = "empty list, expected at least one of `tensorrt`, `cuda`, `cpu`";
        return Err(field_error(file, "model.providers", message.into()));
    }
    let mut out: Vec<Provider> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let field = format!("model.providers[{i}]");
        let t = match entry {
            RawProvider::Name(name) => RawProviderTable { name, ..Default::default() },
            RawProvider::Table(t) => t,
        };
        if !matches!(t.name.as_str(), "tensorrt" | "cuda" | "cpu") {
            let message = format!("unknown provider `{}`, expected `tensorrt`, `cuda` or `cpu`", t.name);
            return Err(field_error(file, &field, message));
        }
        let at = |option: &str, message: String| field_error(file, &format!("{field}.{option}"), message);
        // An option that belongs to another provider is a mistake, not something to ignore.
        if let Some((option, owner)) = options_set(&t).into_iter().find(|(_, owner)| *owner != t.name) {
            return Err(at(option, format!("applies to `{owner}` only, not to `{}`", t.name)));
        }
        let required = t.required.unwrap_or(raw::DEFAULT_PROVIDER_REQUIRED);
        let provider = match t.name.as_str() {
            "tensorrt" => Provider::TensorRt(tensorrt(&t, dir, required, at)?),
            "cuda" => {
                let device_id = t.device_id.unwrap_or(raw::DEFAULT_CUDA_DEVICE_ID);
                let device_id = at_least(device_id, 0).map_err(|m| at("device_id", m))?;
                Provider::Cuda { device_id, required }
            }
            // `cpu`: the name was checked above.
            _ => Provider::Cpu,
        };
        if out.iter().any(|p| p.name() == provider.name()) {
            return Err(field_error(file, &field, format!("`{}` is listed twice", t.name)));
        }
        // ONNX Runtime's CPU provider always comes after the others, whatever the list says.
        if out.iter().any(|p| matches!(p, Provider::Cpu)) {
            let message = format!("`{}` after `cpu` would still be tried first; list `cpu` last", t.name);
            return Err(field_error(file, &field, message));
        }
        out.push(provider);
    }
    Ok(out)
}

/// The options present in `t`, each with the provider it belongs to.
fn options_set(t: &RawProviderTable) -> Vec<(&'static str, &'static str)> {
    [
        ("fp16", "tensorrt", t.fp16.is_some()),
        ("int8", "tensorrt", t.int8.is_some()),
        ("calibration_table", "tensorrt", t.calibration_table.is_some()),
        ("native_calibration_table", "tensorrt", t.native_calibration_table.is_some()),
        ("dla_core", "tensorrt", t.dla_core.is_some()),
        ("engine_cache", "tensorrt", t.engine_cache.is_some()),
        ("device_id", "cuda", t.device_id.is_some()),
    ]
    .into_iter()
    .filter(|(_, _, set)| *set)
    .map(|(option, owner, _)| (option, owner))
    .collect()
}

fn tensorrt(
    t: &RawProviderTable,
    dir: &Path,
    required: bool,
    at: impl Fn(&str, String) -> ConfigError,
) -> Result<TensorRtConfig, ConfigError> {
    let fp16 = t.fp16.unwrap_or(raw::DEFAULT_TENSORRT_FP16);
    let native = t.native_calibration_table;
    let int8 = match (t.int8.unwrap_or(raw::DEFAULT_TENSORRT_INT8), &t.calibration_table) {
        (true, Some(table)) => Some(Int8Calibration {
            table: calibration_table(dir, table).map_err(|m| at("calibration_table", m))?,
            native: native.unwrap_or(raw::DEFAULT_TENSORRT_NATIVE_CALIBRATION_TABLE),
        }),
        (true, None) => {
            let message = "`int8 = true` needs `calibration_table`, expected the path of the INT8 \
                           calibration table (ONNX Runtime's format, or TensorRT's with \
                           `native_calibration_table = true`)";
            return Err(at("int8", message.into()));
        }
        (false, Some(_)) => {
            return Err(at("calibration_table", "is only read with `int8 = true`: set `int8` or remove this".into()));
        }
        (false, None) if native.is_some() => {
            let message = "is only read with `int8 = true` and `calibration_table`: set them or remove this";
            return Err(at("native_calibration_table", message.into()));
        }
        (false, None) => None,
    };
    let dla_core = match t.dla_core {
        Some(core) => Some(dla_core(core, fp16 || int8.is_some()).map_err(|m| at("dla_core", m))?),
        None => None,
    };
    let cache = t.engine_cache.as_deref().unwrap_or(Path::new(raw::DEFAULT_TENSORRT_ENGINE_CACHE));
    Ok(TensorRtConfig { fp16, int8, dla_core, engine_cache: resolve(dir, cache), required })
}

/// An existing file, made absolute: ONNX Runtime joins the name to the engine cache folder,
/// which leaves an absolute path as it is.
fn calibration_table(dir: &Path, table: &Path) -> Result<PathBuf, String> {
    let path = resolve(dir, table);
    if !path.is_file() {
        return Err(format!("no calibration table file at {}", path.display()));
    }
    std::fs::canonicalize(&path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// A DLA core number; the DLA runs FP16 and INT8 only (ONNX Runtime silently builds for the GPU
/// otherwise).
fn dla_core(core: i64, reduced_precision: bool) -> Result<u32, String> {
    if core < 0 {
        return Err(format!("{core} is too small, expected a DLA core number, 0 or more"));
    }
    let core = i32::try_from(core)
        .map_err(|_| format!("{core} is too large, expected a DLA core number up to {}", i32::MAX))?;
    if !reduced_precision {
        return Err("the DLA runs FP16 or INT8 only, expected `fp16 = true` or `int8 = true` beside it".into());
    }
    Ok(core.unsigned_abs())
}
