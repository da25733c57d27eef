//! Publish: the third stage. A tokio task takes results from the [`PublishQueue`] and writes
//! one `XADD` per processed frame to the camera's stream in the local Redis, pipelined in
//! batches of whatever is waiting. When Redis is down the queue absorbs results up to its size
//! (then drops the oldest, counted) while the task reconnects with capped backoff.

mod entry;
mod queue;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use tokio_util::sync::CancellationToken;

use crate::credentials::{self, Secret};
use crate::frame::Detections;
use crate::telemetry::{DropReason, Metrics};

pub(crate) use entry::{EntryContext, stream_key};
pub(crate) use queue::PublishQueue;

/// Entries sent in one pipeline at most.
const MAX_BATCH: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Errors of the publish stage.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The Redis URL or its credential is unusable; nothing will ever connect.
    #[error("redis.url: {0}")]
    Config(String),
    /// Redis refused or dropped the connection; the caller reconnects.
    #[error("local Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// How to reach the local Redis.
pub(crate) struct RedisTarget {
    client: Client,
    /// For log lines: the URL without credentials.
    display: String,
}

impl RedisTarget {
    /// Builds the client from the config; the password comes from the named credential.
    pub(crate) fn new(config: &crate::config::RedisConfig, credentials_dir: Option<&std::path::Path>) -> Result<Self, PublishError> {
        let mut info = config.url.as_str().into_connection_info().map_err(|e| PublishError::Config(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(name) = &config.credential {
            let secret: Secret = credentials::read(name, credentials_dir).map_err(|e| PublishError::Config(e.to_string()))?;
            settings = settings.set_password(secret.expose());
        }
        info = info.set_redis_settings(settings);
        let client = Client::open(info).map_err(|e| PublishError::Config(e.to_string()))?;
        Ok(Self { client, display: credentials::redact_url(&config.url) })
    }

    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// A connection for `BLOCK`ing reads: its response timeout is longer than any block.
    pub(crate) async fn connect_blocking_reads(&self) -> Result<MultiplexedConnection, PublishError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(Duration::from_secs(30)));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// One connection attempt, bounded in time.
    pub(crate) async fn connect(&self) -> Result<MultiplexedConnection, PublishError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }
}

/// Runs the publisher until the queue is closed and drained. After `shutdown` fires, it gives
/// Redis at most `drain` to take what is left; the rest is counted as dropped (`shutdown`).
pub(crate) async fn run(
    target: RedisTarget,
    ctx: EntryContext,
    queue: Arc<PublishQueue>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        biased;
        () = deadline => {
            let n = queue.discard(DropReason::Shutdown);
            if n > 0 {
                tracing::warn!(stage = "publish", entries = n, "Local Redis did not take the last entries before the stop timeout; dropped.");
            }
        }
        () = publish_loop(&target, &ctx, &queue, &metrics) => {}
    }
}

async fn publish_loop(target: &RedisTarget, ctx: &EntryContext, queue: &PublishQueue, metrics: &Metrics) {
    let mut backoff = BACKOFF_INITIAL;
    let mut batch: Vec<Detections> = Vec::with_capacity(MAX_BATCH);
    let mut json = String::with_capacity(4096);
    loop {
        let mut conn = match target.connect().await {
            Ok(conn) => {
                tracing::info!(stage = "publish", redis = target.display(), "Connected to local Redis.");
                backoff = BACKOFF_INITIAL;
                conn
            }
            Err(e) => {
                metrics.redis_errors.inc();
                tracing::warn!(stage = "publish", redis = target.display(), error = %e, retry_ms = backoff.as_millis() as u64, "Local Redis unreachable; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            batch.clear();
            if !queue.next_batch(MAX_BATCH, &mut batch).await {
                return;
            }
            if let Err(e) = send_batch(&mut conn, ctx, &batch, &mut json).await {
                metrics.redis_errors.inc();
                // The pipeline may or may not have been applied: never resend a `*` XADD.
                for d in &batch {
                    d.camera.metrics.drop(DropReason::RedisError, 1);
                }
                tracing::warn!(stage = "publish", entries = batch.len(), error = %e, "XADD failed; entries counted as dropped, reconnecting.");
                break;
            }
        }
    }
}

async fn send_batch(
    conn: &mut MultiplexedConnection,
    ctx: &EntryContext,
    batch: &[Detections],
    json: &mut String,
) -> Result<(), PublishError> {
    let mut pipe = redis::pipe();
    let now = unix_micros();
    for d in batch {
        entry::add_xadd(&mut pipe, ctx, d, now - d.ts_us, json);
    }
    let _ids: Vec<redis::Value> = pipe.query_async(conn).await?;
    let done = unix_micros();
    for d in batch {
        d.camera.metrics.published.inc();
        d.camera.metrics.latency.observe((done - d.ts_us).max(0) as f64 / 1e6);
    }
    Ok(())
}

/// Wall-clock time, µs since the Unix epoch.
pub(crate) fn unix_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
