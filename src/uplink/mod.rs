//! Uplink: store-and-forward of every camera stream from the local Redis to a central Redis
//! or Redis Cluster, with the same entry IDs, in order, once.
//!
//! The local Redis is the box's write-ahead log. A consumer group `uplink` follows each
//! camera stream; batches go upstream through the `roadsight_append` Redis Function
//! ([`function`]), which skips IDs upstream already holds, refuses to recreate a deleted stream
//! and reports a gap instead of writing past one. Only after upstream confirmed (and, if
//! configured, `WAIT` saw a replica take it) does the local side `XACK`, move its confirmed
//! mark and trim behind it ([`local`]). A retry after any failure resends the same IDs, which
//! upstream skips: no loss, no duplicates, across outages, restarts and power cuts.

mod backlog;
pub mod function;
mod forward;
mod local;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::publish::{RedisTarget, stream_key};
use crate::telemetry::Metrics;
use upstream::UpstreamTarget;

/// How long start-up waits for upstream to reconcile before going on without it: longer than
/// connecting may take (2 × 3 s, `upstream.rs`), so a slow TLS or cluster connect still gets to
/// move the local last IDs forward before the first new entry. (A refused connection returns at
/// once.)
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the uplink.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// A setting cannot work (missing credential…); `field` is the config key.
    #[error("field `{field}`: {message}")]
    Config { field: &'static str, message: String },
    #[error("upstream: {0}")]
    Upstream(#[from] redis::RedisError),
    #[error("local Redis: {0}")]
    Local(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
}

/// Everything the uplink task needs, built once at start.
pub(crate) struct Uplink {
    target: UpstreamTarget,
    local: RedisTarget,
    config: crate::config::UplinkConfig,
    keys: Vec<(String, String)>,
    metrics: Arc<Metrics>,
}

impl Uplink {
    /// `None` when the uplink is disabled. Follows every configured camera, enabled or not:
    /// a camera switched off may still have a backlog to forward.
    pub(crate) fn new(config: &Config, metrics: &Arc<Metrics>) -> Result<Option<Self>, UplinkError> {
        let Some(uplink) = &config.uplink else { return Ok(None) };
        let dir = config.capture.credentials_dir.as_deref();
        let local = RedisTarget::new(&config.redis, dir)
            .map_err(|e| UplinkError::Config { field: "redis.url", message: e.to_string() })?;
        let keys = config.cameras.iter().map(|c| (c.id.clone(), stream_key(&config.site, &c.id))).collect();
        Ok(Some(Uplink {
            target: UpstreamTarget::new(uplink, dir)?,
            local,
            config: uplink.clone(),
            keys,
            metrics: Arc::clone(metrics),
        }))
    }

    /// What `roadsightd check` proves before a start: the uplink's credential and TLS files can
    /// be read (without connecting). `Ok` when the uplink is disabled.
    pub(crate) fn check_settings(config: &Config) -> Result<(), UplinkError> {
        match &config.uplink {
            Some(uplink) => UpstreamTarget::new(uplink, config.capture.credentials_dir.as_deref()).map(drop),
            None => Ok(()),
        }
    }

    /// Start-up reconcile, before the first local `XADD`: where upstream is ahead of the local
    /// stream (the local AOF lost its last writes in a power cut), move the local last ID past
    /// upstream's so no ID is ever reused. If upstream cannot be reached in time, start anyway:
    /// new IDs come from the clock, which is past anything upstream saw unless it went back.
    pub(crate) async fn reconcile(&self) {
        match tokio::time::timeout(RECONCILE_TIMEOUT, self.reconcile_now()).await {
            Ok(Ok(moved)) if moved > 0 => tracing::warn!(stage = "uplink", streams = moved, "Upstream was ahead: moved local last IDs forward."),
            Ok(Ok(_)) => tracing::info!(stage = "uplink", "Local streams are not behind upstream."),
            Ok(Err(e)) => tracing::warn!(stage = "uplink", error = %e, "Start-up reconcile failed; going on."),
            Err(_) => tracing::warn!(stage = "uplink", upstream = %self.target.display, "Upstream unreachable for the start-up reconcile; going on."),
        }
    }

    async fn reconcile_now(&self) -> Result<usize, UplinkError> {
        let mut up = self.target.connect().await?;
        let mut local = self.local.connect().await.map_err(|e| UplinkError::Local(e.to_string()))?;
        let mut moved = 0;
        for (camera, key) in &self.keys {
            let Some(upstream_last) = function::last_id(&mut up, key).await? else { continue };
            let local_last = local::last_generated(&mut local, key).await.map_err(|e| UplinkError::Local(e.to_string()))?;
            if local_last.is_none_or(|l| l < upstream_last) {
                local::set_last_id(&mut local, key, upstream_last).await.map_err(|e| UplinkError::Local(e.to_string()))?;
                tracing::warn!(camera = %camera, stage = "uplink", local = ?local_last.map(|l| l.to_string()), upstream = %upstream_last, "Local stream behind upstream: last ID moved forward.");
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Forwards until `shutdown`. Never gives up: upstream outages are waited out with capped
    /// backoff while the backlog stays in local Redis within its budget.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = forward::run(&self) => {}
        }
        tracing::info!(stage = "uplink", "Uplink stopped.");
    }
}

