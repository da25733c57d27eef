//! `[metrics]`: where Prometheus scrapes the daemon.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// Address of the `/metrics` endpoint; `""` turns it off. Default:
    /// [`DEFAULT_METRICS_LISTEN`] (local only: expose it through a scraper or a tunnel).
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { listen: default_listen() }
    }
}

fn default_listen() -> String {
    DEFAULT_METRICS_LISTEN.to_owned()
}

/// The endpoint's address, `None` when turned off.
pub(super) fn validate(raw: RawMetrics, file: &Path) -> Result<Option<SocketAddr>, ConfigError> {
    if raw.listen.is_empty() {
        return Ok(None);
    }
    raw.listen.parse().map(Some).map_err(|_| ConfigError::Field {
        file: file.to_owned(),
        field: "metrics.listen".into(),
        message: format!("`{}` is not an address, expected ip:port (e.g. 127.0.0.1:9464) or \"\"", raw.listen),
    })
}
