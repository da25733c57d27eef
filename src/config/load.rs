//! Reading the files: the global file with `ROADSIGHT_` environment overrides on top, then every
//! `*.toml` in `cameras_dir`, each parsed alone (camera files take no environment overrides).

use std::fs;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use figment::{Figment, Provider};

use super::raw::{RawCamera, RawGlobal};
use super::{CameraConfig, Config, ConfigError, ModelConfig, validate};

/// Prefix of the environment variables that override global keys; `__` separates table and key.
const ENV_PREFIX: &str = "ROADSIGHT_";

/// Loads and validates the global config at `path` and every camera file it points to.
///
/// # Errors
///
/// [`ConfigError::Io`] when a file or the cameras folder cannot be read, otherwise
/// [`ConfigError::Field`] (or [`ConfigError::Invalid`] for TOML syntax) naming the file and field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, ENV_PREFIX)
}

/// [`load`] with overrides from the environment variables starting with `prefix`.
fn load_with_env(path: &Path, prefix: &str) -> Result<Config, ConfigError> {
    // Read the file ourselves: figment treats a missing file as an empty one.
    let text = read(path)?;
    // `ROADSIGHT_CONFIG` is the command line's `--config`, not a key of the file.
    let env = Env::prefixed(prefix).split("__").ignore(&["config"]);
    let overrides = EnvOverrides {
        prefix,
        name: env.metadata().name.into_owned(),
        values: Figment::from(env.clone()),
    };
    let figment = Figment::from(Toml::string(&text)).merge(env);

    let raw: RawGlobal = figment
        .extract()
        .map_err(|e| from_figment(e, path, Some(&overrides)))?;
    let mut config =
        validate::global(raw, path).map_err(|e| overrides.annotate(e, false, false))?;
    config.cameras = cameras(&config.cameras_dir, &config.model).map_err(|e| match e {
        // The folder itself: the global file's `cameras_dir` names it.
        ConfigError::Io { file, source } if file == config.cameras_dir => ConfigError::Field {
            file: path.to_path_buf(),
            field: "cameras_dir".into(),
            message: format!("{}: {source}; expected a folder of <camera>.toml files", file.display()),
        },
        e => e,
    })?;
    Ok(config)
}

/// Every `*.toml` in `dir` (not hidden ones, not `*.toml.example`), validated against `model`,
/// sorted by id.
///
/// # Errors
///
/// As [`load`], for the camera files.
pub fn cameras(dir: &Path, model: &ModelConfig) -> Result<Vec<CameraConfig>, ConfigError> {
    let io = |source| ConfigError::Io {
        file: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_camera = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.') && n.ends_with(".toml"));
        if is_camera && path.is_file() {
            files.push(path);
        } else {
            tracing::debug!(file = %path.display(), "Ignoring a file that is not a camera file.");
        }
    }
    // One folder: sorting the paths sorts by file name.
    files.sort();

    let mut cameras = files
        .iter()
        .map(|file| {
            let raw: RawCamera = Figment::from(Toml::string(&read(file)?))
                .extract()
                .map_err(|e| from_figment(e, file, None))?;
            validate::camera(raw, file, model)
        })
        .collect::<Result<Vec<_>, _>>()?;
    validate::sort_unique(&mut cameras)?;
    Ok(cameras)
}

fn read(file: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: file.to_path_buf(),
        source,
    })
}

/// Where environment overrides come from, to say so in error messages.
struct EnvOverrides<'a> {
    prefix: &'a str,
    /// Name in the metadata of values the environment provided.
    name: String,
    /// The environment alone.
    values: Figment,
}

impl EnvOverrides<'_> {
    /// Says so in an error about a field whose value came from the environment: the value at
    /// the field (`model.providers[1]` → `model.providers`) is set there, or figment's metadata
    /// says so (`by_metadata`). `wants_string`: the value was parsed into something else.
    fn annotate(&self, error: ConfigError, by_metadata: bool, wants_string: bool) -> ConfigError {
        let ConfigError::Field {
            file,
            field,
            mut message,
        } = error
        else {
            return error;
        };
        let key: Vec<&str> = field
            .split('.')
            .map(|s| s.split('[').next().unwrap_or(s))
            .collect();
        if self.values.contains(&key.join(".")) {
            let var: Vec<String> = key.iter().map(|s| s.to_ascii_uppercase()).collect();
            let var = format!("{}{}", self.prefix, var.join("__"));
            message += &format!(" (from environment variable `{var}`");
            // figment reads `0042` as the number 42 and `true` as a boolean.
            if wants_string {
                message += &format!("; quote a string that looks like a number: {var}='\"…\"'");
            }
            message += ")";
        } else if by_metadata {
            message += &format!(" (from {})", self.name);
        }
        ConfigError::Field {
            file,
            field,
            message,
        }
    }
}

/// A figment error as a [`ConfigError`]: the path in dotted form (`model.providers[1].fp16`),
/// the kind ("unknown field `fsp`, expected one of …") as the message.
fn from_figment(error: figment::Error, file: &Path, env: Option<&EnvOverrides>) -> ConfigError {
    // Extraction stops at the first error, so there is one.
    let error = error
        .into_iter()
        .next()
        .expect("a figment error holds at least one error");
    let mut path = error.path.clone();
    // Some kinds name the field themselves rather than in the path.
    let named = match &error.kind {
        Kind::UnknownField(name, _) => Some(name.as_str()),
        Kind::MissingField(name) => Some(name.as_ref()),
        _ => None,
    };
    if let Some(name) = named
        && path.last().map(String::as_str) != Some(name)
    {
        path.push(name.to_owned());
    }
    let field = dotted(&path);
    let message = match &error.kind {
        // figment's own wording ("unknown field: found `fsp`, expected `one of …`") reads badly.
        Kind::UnknownField(name, expected) => {
            let expected: Vec<String> = expected.iter().map(|f| format!("`{f}`")).collect();
            format!(
                "unknown field `{name}`, expected one of {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(name) => format!("missing field `{name}`"),
        kind => kind.to_string(),
    };
    // A syntax error quotes the offending line: never a password in a URL on it.
    let message = crate::credentials::redact_text(&message);
    let metadata = error.metadata.as_ref();
    let wants_string = matches!(&error.kind, Kind::InvalidType(_, e) if e.contains("string"));
    if field.is_empty() {
        // TOML syntax: the message carries line and column.
        return ConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        };
    }
    let error = ConfigError::Field {
        file: file.to_path_buf(),
        field,
        message,
    };
    match env {
        Some(env) => {
            let by_metadata = metadata.is_some_and(|m| m.name == env.name.as_str());
            env.annotate(error, by_metadata, wants_string)
        }
        None => error,
    }
}

/// `["model", "providers", "1", "fp16"]` → `model.providers[1].fp16`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests;
