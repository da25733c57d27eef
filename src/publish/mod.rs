//! Publish: the third stage. A tokio task takes results from the [`PublishQueue`] and writes
//! one `XADD` per processed frame to the camera's stream in the local Redis, oldest first, one
//! command at a time: a broken connection leaves at most the one entry in flight unconfirmed,
//! and the command buffers are reused from entry to entry, on a connection of its own that
//! allocates nothing per entry (`link.rs`). (One at a time costs a round trip per
//! entry, tens of µs on the local socket, against hundreds of entries per second at most.) When
//! Redis is down the queue absorbs results up to its size (then drops the oldest, counted) while
//! the task reconnects with capped backoff.

mod entry;
mod link;
mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::credentials::{self, Secret};
use crate::frame::Detections;
use crate::telemetry::{DropReason, LogThrottle, Metrics, PublishedStages};

use entry::XaddWriter;
pub(crate) use entry::{EntryContext, stream_key};
pub use link::LinkError;
use link::{Link, LinkTarget, Reply};
pub(crate) use queue::PublishQueue;

/// Entries taken from the queue at once at most.
const MAX_BATCH: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Errors of the publish stage.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The Redis URL or its credential is unusable; nothing will ever connect. `field` is the
    /// config key to fix.
    #[error("field `{field}`: {message}")]
    Config { field: &'static str, message: String },
    /// Redis refused or dropped the connection; the caller reconnects.
    #[error("local Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The publisher's own connection failed or was refused.
    #[error("local Redis: {0}")]
    Link(#[from] LinkError),
}

/// How to reach the local Redis.
pub(crate) struct RedisTarget {
    client: Client,
    /// The publisher's connection (see `link.rs`).
    link: LinkTarget,
    /// For log lines: the URL without credentials.
    display: String,
}

impl RedisTarget {
    /// Builds the client from the config; the password comes from the named credential.
    pub(crate) fn new(config: &crate::config::RedisConfig, credentials_dir: Option<&std::path::Path>) -> Result<Self, PublishError> {
        let bad = |field, e: &dyn std::fmt::Display| PublishError::Config { field, message: e.to_string() };
        let mut info = config.url.as_str().into_connection_info().map_err(|e| bad("redis.url", &e))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(name) = &config.credential {
            let secret: Secret = credentials::read(name, credentials_dir).map_err(|e| bad("redis.credential", &e))?;
            settings = settings.set_password(secret.expose());
        }
        info = info.set_redis_settings(settings);
        let link = LinkTarget::new(&info).map_err(|e| bad("redis.url", &e))?;
        let client = Client::open(info).map_err(|e| bad("redis.url", &e))?;
        Ok(Self { client, link, display: credentials::redact_url(&config.url) })
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

    /// The publisher's connection: one attempt, bounded in time.
    pub(crate) async fn link(&self) -> Result<Link, PublishError> {
        Ok(Link::connect(&self.link, CONNECT_TIMEOUT, RESPONSE_TIMEOUT).await?)
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
/// Redis at most `drain` to take what is left; whatever Redis has not confirmed by then (queued
/// or in flight) is counted as dropped (`shutdown`).
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
    let mut batch: Vec<Detections> = Vec::with_capacity(MAX_BATCH);
    let drained = tokio::select! {
        biased;
        () = deadline => false,
        () = publish_loop(&target, &ctx, &queue, &metrics, &mut batch) => true,
    };
    if !drained {
        // `batch` holds what was taken but not confirmed when the deadline struck.
        for d in batch.drain(..) {
            d.camera.metrics.drop(DropReason::Shutdown, 1);
        }
        let n = queue.discard(DropReason::Shutdown);
        tracing::warn!(stage = "publish", queued = n, "Local Redis did not take the last entries before the stop timeout; dropped.");
    }
}

async fn publish_loop(
    target: &RedisTarget,
    ctx: &EntryContext,
    queue: &PublishQueue,
    metrics: &Metrics,
    batch: &mut Vec<Detections>,
) {
    let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
    let mut writer = XaddWriter::new();
    let refused_log = LogThrottle::new(Duration::from_secs(10));
    let mut refusals_since = 0u64;
    loop {
        let mut conn = match target.link().await {
            Ok(conn) => {
                tracing::info!(stage = "publish", redis = target.display(), "Connected to local Redis.");
                conn
            }
            Err(e) => {
                metrics.redis_errors.inc();
                let delay = backoff.next_delay();
                tracing::warn!(stage = "publish", redis = target.display(), error = %e, retry_ms = delay.as_millis() as u64, "Local Redis unreachable; retrying.");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        loop {
            if !queue.next_batch(MAX_BATCH, batch).await {
                return;
            }
            match send_batch(&mut conn, &mut writer, ctx, batch).await {
                Ok(Sent::All { rejected: 0 }) => backoff.reset(),
                Ok(Sent::NotYet(reply)) => {
                    // Redis is loading its data, running a long script, or has lost its
                    // primary: the entry was not applied. Keep it and the rest, in order.
                    metrics.redis_errors.inc();
                    queue.put_back(batch);
                    let delay = backoff.next_delay();
                    tracing::warn!(stage = "publish", reply = %reply, retry_ms = delay.as_millis() as u64, "Local Redis is not taking writes yet; entries kept, retrying.");
                    tokio::time::sleep(delay).await;
                }
                Ok(Sent::All { rejected }) => {
                    // Error replies (OOM under `noeviction`, NOPERM, WRONGTYPE on one camera's
                    // key): each refused entry was counted `rejected` and is not sent again,
                    // so there is nothing to spin on. No pause either: a pause would hold back
                    // every other camera's entries (and overflow the queue) for one refusal.
                    metrics.redis_errors.inc();
                    backoff.reset();
                    refusals_since += rejected as u64;
                    if let Some(batches) = refused_log.admit(Instant::now()) {
                        tracing::warn!(stage = "publish", rejected = refusals_since, unlogged_batches = batches, "Local Redis refused entries; counted as dropped (rejected).");
                        refusals_since = 0;
                    }
                }
                Err(e) => {
                    metrics.redis_errors.inc();
                    let delay = backoff.next_delay();
                    if conn.sent_whole() {
                        // The entry in flight may or may not have been applied: never resend
                        // a `*` XADD. Those behind it were not sent: back to the queue (its
                        // size and drop-oldest rule apply), for the next connection.
                        let lost = batch.remove(0);
                        lost.camera.metrics.drop(DropReason::RedisError, 1);
                        tracing::warn!(stage = "publish", camera = %lost.camera.id, seq = lost.seq, error = %e, retry_ms = delay.as_millis() as u64, "XADD failed; the entry in flight is counted as dropped, reconnecting.");
                    } else {
                        // The command never left whole (the connection was already closed, or
                        // the write failed): Redis did not run it, so it is sent again.
                        tracing::warn!(stage = "publish", error = %e, retry_ms = delay.as_millis() as u64, "Local Redis connection lost before the XADD was sent; entries kept, reconnecting.");
                    }
                    queue.put_back(batch);
                    // A Redis that accepts connections and then drops them must not cost an
                    // entry, or a spin, per attempt.
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
    }
}

/// How a batch went.
enum Sent {
    /// Every entry answered; this many were refused with an error reply (counted `rejected`).
    All { rejected: usize },
    /// Redis answered "not yet" (see [`not_yet`]) to the entry now at the front of the batch:
    /// it and those behind it were not applied.
    NotYet(String),
}

/// Error replies that mean "retry later" rather than "never": the entry is kept.
fn not_yet(reply: &str) -> bool {
    ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"].iter().any(|code| reply.strip_prefix(code).is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')))
}

/// Sends the entries of `batch` one at a time, oldest first, each removed once Redis has
/// answered it, so that `batch` only ever holds unconfirmed entries (the shutdown deadline may
/// cut this short anywhere). On a transport error, or no answer in time, the entry in flight
/// is left at the front of `batch`.
async fn send_batch(
    conn: &mut Link,
    writer: &mut XaddWriter,
    ctx: &EntryContext,
    batch: &mut Vec<Detections>,
) -> Result<Sent, PublishError> {
    let mut rejected = 0;
    while let Some(d) = batch.first() {
        let cmd = writer.xadd(ctx, d, unix_micros() - d.ts_us);
        let reply = conn.request(cmd).await.map_err(LinkError::from)?;
        let done = unix_micros();
        match reply {
            Reply::Error(e) if not_yet(e) => return Ok(Sent::NotYet(e.to_owned())),
            Reply::Error(e) => {
                rejected += 1;
                d.camera.metrics.drop(DropReason::Rejected, 1);
                tracing::debug!(camera = %d.camera.id, seq = d.seq, error = %e, "XADD refused.");
            }
            _ => {
                let latency = Duration::from_micros((done - d.ts_us).max(0) as u64);
                let stages = PublishedStages {
                    publish: d.handed_over.elapsed(),
                    overhead: d.arrived.elapsed().saturating_sub(Duration::from_micros(d.inference_us)),
                };
                d.camera.metrics.record_published(latency, stages, d.objects.iter().map(|o| o.class));
            }
        }
        // At most MAX_BATCH entries shift down: cheaper than a deque's bookkeeping here.
        batch.remove(0);
    }
    Ok(Sent::All { rejected })
}

/// Wall-clock time, µs since the Unix epoch.
pub(crate) fn unix_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::not_yet;

    #[test]
    fn not_yet_replies_are_told_from_refusals() {
        for reply in ["LOADING Redis is loading the dataset in memory", "BUSY Redis is busy running a script.", "MASTERDOWN Link with MASTER is down", "TRYAGAIN"] {
            assert!(not_yet(reply), "{reply}");
        }
        for reply in ["OOM command not allowed when used memory > 'maxmemory'.", "NOPERM no permissions", "WRONGTYPE Operation against a key", "BUSYKEY Target key name already exists.", "ERR"] {
            assert!(!not_yet(reply), "{reply}");
        }
    }
}
