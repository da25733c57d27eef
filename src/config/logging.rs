//! `[logging]`: how much the daemon logs.

use std::path::Path;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use super::ConfigError;

pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";

/// `[logging]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a `tracing` filter such as
    /// `info,roadsight::uplink=debug`. `RUST_LOG`, when set, wins. A reload applies a change.
    /// Default: [`DEFAULT_LOG_LEVEL`].
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self { level: default_level() }
    }
}

fn default_level() -> String {
    DEFAULT_LOG_LEVEL.to_owned()
}

/// The filter text, checked by parsing it the way the subscriber will. A bare word must be a
/// level: `tracing` would read a typo such as `inof` as a target name and log nothing useful.
pub(super) fn validate(raw: RawLogging, file: &Path) -> Result<String, ConfigError> {
    let bare_words_are_levels = raw
        .level
        .split(',')
        .filter(|d| !d.contains('=') && !d.contains('['))
        .all(|d| d.trim().parse::<LevelFilter>().is_ok());
    match EnvFilter::try_new(&raw.level) {
        Ok(_) if bare_words_are_levels && !raw.level.trim().is_empty() => Ok(raw.level),
        _ => Err(ConfigError::Field {
            file: file.to_owned(),
            field: "logging.level".into(),
            message: format!(
                "`{}` is not a log level, expected error, warn, info, debug, trace or a filter like `info,roadsight::uplink=debug`",
                raw.level
            ),
        }),
    }
}
