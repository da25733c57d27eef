//! `[uplink]`: store-and-forward of every camera stream to a central Redis or Redis Cluster.
//! Raw keys (with their defaults) and their validation live together here, as one section.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

pub(crate) const DEFAULT_UPLINK_ENABLED: bool = false;
pub(crate) const DEFAULT_UPLINK_CLUSTER: bool = false;
pub(crate) const DEFAULT_UPLINK_BATCH: usize = 500;
pub(crate) const DEFAULT_UPLINK_RETENTION_S: u64 = 600;
pub(crate) const DEFAULT_UPLINK_BACKLOG_ENTRIES: u64 = 200_000;
pub(crate) const DEFAULT_UPLINK_WAIT_REPLICAS: u32 = 0;
pub(crate) const DEFAULT_UPLINK_WAIT_TIMEOUT_MS: u64 = 100;
const MAX_BATCH: usize = 10_000;
/// `WAIT` must answer within the upstream connection's 5 s response timeout.
const MAX_WAIT_TIMEOUT_MS: u64 = 4_000;

/// `[uplink]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    /// Forward the local streams upstream. Default: [`DEFAULT_UPLINK_ENABLED`].
    #[serde(default)]
    pub enabled: bool,
    /// Central Redis: `redis://host:port` (a seed node when `cluster = true`). Required when
    /// enabled; no user info.
    #[serde(default)]
    pub url: Option<String>,
    /// The upstream is a Redis Cluster. Default: [`DEFAULT_UPLINK_CLUSTER`].
    #[serde(default)]
    pub cluster: bool,
    /// ACL user name upstream. Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Credential holding the upstream password. Default: none.
    #[serde(default)]
    pub credential: Option<String>,
    /// Entries per upstream call at most, while catching up. Default: [`DEFAULT_UPLINK_BATCH`].
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Forwarded entries stay in the local stream this long. Default:
    /// [`DEFAULT_UPLINK_RETENTION_S`].
    #[serde(default = "default_retention_s")]
    pub retention_s: u64,
    /// Unforwarded entries kept per camera during an outage; past it the oldest are dropped
    /// and counted. Default: [`DEFAULT_UPLINK_BACKLOG_ENTRIES`].
    #[serde(default = "default_backlog_entries")]
    pub backlog_entries: u64,
    /// Upstream replicas that must hold a batch before it counts as confirmed (`WAIT`).
    /// Default: [`DEFAULT_UPLINK_WAIT_REPLICAS`] (no WAIT).
    #[serde(default)]
    pub wait_replicas: u32,
    /// How long `WAIT` may take. Default: [`DEFAULT_UPLINK_WAIT_TIMEOUT_MS`].
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
    /// `rediss://` only: CA certificate (PEM) to verify upstream with. Default: none (the
    /// system's trust store).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// `rediss://` only: client certificate (PEM) for mutual TLS. Default: none.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// `rediss://` only: the client certificate's key (PEM). Default: none.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for RawUplink {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_UPLINK_ENABLED,
            url: None,
            cluster: DEFAULT_UPLINK_CLUSTER,
            username: None,
            credential: None,
            batch: DEFAULT_UPLINK_BATCH,
            retention_s: DEFAULT_UPLINK_RETENTION_S,
            backlog_entries: DEFAULT_UPLINK_BACKLOG_ENTRIES,
            wait_replicas: DEFAULT_UPLINK_WAIT_REPLICAS,
            wait_timeout_ms: DEFAULT_UPLINK_WAIT_TIMEOUT_MS,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn default_batch() -> usize {
    DEFAULT_UPLINK_BATCH
}
fn default_retention_s() -> u64 {
    DEFAULT_UPLINK_RETENTION_S
}
fn default_backlog_entries() -> u64 {
    DEFAULT_UPLINK_BACKLOG_ENTRIES
}
fn default_wait_timeout_ms() -> u64 {
    DEFAULT_UPLINK_WAIT_TIMEOUT_MS
}

/// The validated uplink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    /// `redis://` URL of the central Redis (a seed node for a cluster), without credentials.
    pub url: String,
    pub cluster: bool,
    pub username: Option<String>,
    pub credential: Option<String>,
    pub batch: usize,
    pub retention: Duration,
    pub backlog_entries: u64,
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
    /// TLS files (paths resolved), used with `rediss://`.
    pub tls: TlsFiles,
}

/// Certificates for a `rediss://` upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// `None` when the uplink is disabled. `maxlen` is `publish.maxlen`, which must leave room for
/// the backlog (Redis 7 trims entries that were never forwarded). Relative TLS paths resolve
/// against `dir`.
pub(super) fn validate(raw: RawUplink, file: &Path, dir: &Path, maxlen: u64) -> Result<Option<UplinkConfig>, ConfigError> {
    let at = |field: &str, message: String| ConfigError::Field { file: file.to_owned(), field: field.to_owned(), message };
    if !raw.enabled {
        return Ok(None);
    }
    let url = raw.url.ok_or_else(|| at("uplink.url", "required when `uplink.enabled = true`".into()))?;
    let url = super::validate::upstream_url(&url).map_err(|m| at("uplink.url", m))?;
    let credential = super::validate::credential(raw.credential).map_err(|m| at("uplink.credential", m))?;
    if !(1..=MAX_BATCH).contains(&raw.batch) {
        return Err(at("uplink.batch", format!("expected 1 to {MAX_BATCH}, got {}", raw.batch)));
    }
    if !(1..=MAX_WAIT_TIMEOUT_MS).contains(&raw.wait_timeout_ms) {
        return Err(at(
            "uplink.wait_timeout_ms",
            format!("expected 1 to {MAX_WAIT_TIMEOUT_MS} (below the upstream response timeout), got {}", raw.wait_timeout_ms),
        ));
    }
    if raw.backlog_entries < 1_000 {
        return Err(at("uplink.backlog_entries", format!("expected at least 1000, got {}", raw.backlog_entries)));
    }
    // The budget is enforced every few seconds (longer while upstream is unreachable), so the
    // producer's cap must leave room for what arrives in between: a tenth, at least 1000.
    let margin = (raw.backlog_entries / 10).max(1_000);
    if maxlen < raw.backlog_entries + margin {
        return Err(at(
            "publish.maxlen",
            format!(
                "must be at least `uplink.backlog_entries` ({}) + {margin}: the producer's cap would \
                 delete entries never forwarded before the backlog budget is applied",
                raw.backlog_entries
            ),
        ));
    }
    let tls_wanted = raw.tls_ca_file.is_some() || raw.tls_cert_file.is_some() || raw.tls_key_file.is_some();
    if tls_wanted && !url.starts_with("rediss://") {
        return Err(at("uplink.url", "TLS files are set but the URL is not rediss://".into()));
    }
    let existing = |field: &str, p: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
        match p.map(|p| dir.join(p)) {
            Some(p) if !p.is_file() => Err(at(field, format!("{} does not exist", p.display()))),
            other => Ok(other),
        }
    };
    let ca = existing("uplink.tls_ca_file", raw.tls_ca_file)?;
    let cert = existing("uplink.tls_cert_file", raw.tls_cert_file)?;
    let key = existing("uplink.tls_key_file", raw.tls_key_file)?;
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(at("uplink.tls_key_file", "required with `uplink.tls_cert_file`".into())),
        (None, Some(_)) => return Err(at("uplink.tls_cert_file", "required with `uplink.tls_key_file`".into())),
    };
    Ok(Some(UplinkConfig {
        url,
        cluster: raw.cluster,
        username: raw.username,
        credential,
        batch: raw.batch,
        retention: Duration::from_secs(raw.retention_s),
        backlog_entries: raw.backlog_entries,
        wait_replicas: raw.wait_replicas,
        wait_timeout: Duration::from_millis(raw.wait_timeout_ms),
        tls: TlsFiles { ca, client },
    }))
}
