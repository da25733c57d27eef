//! The forwarding loop: read each camera's new entries through the consumer group, append them
//! upstream in order, confirm locally; keep the backlog within its budget while upstream is away.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::function::{self, AppendOutcome, Entry, StreamId};
use super::upstream::Upstream;
use super::{Uplink, UplinkError, local};
use crate::backoff::Backoff;
use crate::publish::unix_micros;
use crate::telemetry::UplinkCameraMetrics;

/// How long one read waits for new entries when every camera is idle.
const READ_BLOCK_MS: u64 = 200;
/// How often the backlog budget and the backlog metrics are checked.
const BACKLOG_CHECK: Duration = Duration::from_secs(2);
/// How long a camera whose upstream stream was deleted waits before checking again.
const MISSING_PAUSE: Duration = Duration::from_secs(30);
/// A backlog past this many entries is worth a log line (and its end another).
const BEHIND_ENTRIES: u64 = 1_000;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// One camera stream's forwarding state.
struct Stream {
    camera: String,
    key: String,
    /// Last ID upstream confirmed (`None`: never forwarded, the upstream key may be created).
    confirmed: Option<StreamId>,
    /// Read from the group, not yet confirmed upstream: resent as they are after any failure.
    pending: Vec<Entry>,
    /// After a gap that local retention could not fill: write past it once, knowingly.
    accept_gap: bool,
    /// `prev` for the next append when it is not `confirmed` (healing a gap).
    prev_override: Option<StreamId>,
    paused_until: Option<Instant>,
    /// Pending entries of a previous run still to be read from the group.
    recovering: bool,
    /// The backlog is past [`BEHIND_ENTRIES`]: logged once when it starts and when it clears.
    behind: bool,
    metrics: UplinkCameraMetrics,
}

pub(super) async fn run(uplink: &Uplink) {
    let metrics = &uplink.metrics.uplink;
    let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
    let mut streams: Vec<Stream> = uplink
        .keys
        .iter()
        .map(|(camera, key)| Stream {
            camera: camera.clone(),
            key: key.clone(),
            confirmed: None,
            pending: Vec::new(),
            accept_gap: false,
            prev_override: None,
            paused_until: None,
            recovering: true,
            behind: false,
            metrics: metrics.camera(camera),
        })
        .collect();
    let mut first = true;
    loop {
        let Err(e) = session(uplink, &mut streams, &mut backoff, &mut first).await;
        metrics.errors.inc();
        let delay = backoff.next_delay();
        tracing::warn!(stage = "uplink", upstream = %uplink.target.display, error = %e, retry_ms = delay.as_millis() as u64, "Uplink interrupted; retrying.");
        // The outage is when the backlog grows: keep it within budget while waiting.
        if let Ok(mut local) = uplink.local.connect().await {
            if let Err(e) = enforce_backlog(&mut local, &mut streams, uplink.config.backlog_entries).await {
                tracing::debug!(stage = "uplink", error = %e, "Backlog check failed.");
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// One connected session; ends with the first error (pending entries are kept and resent).
async fn session(
    uplink: &Uplink,
    streams: &mut [Stream],
    backoff: &mut Backoff,
    first: &mut bool,
) -> Result<std::convert::Infallible, UplinkError> {
    let mut local = uplink.local.connect_blocking_reads().await.map_err(|e| UplinkError::Local(e.to_string()))?;
    let acked_trim = local::supports_acked_trim(&mut local).await.map_err(local_err)?;
    for s in streams.iter_mut() {
        local::ensure_group(&mut local, &s.key).await.map_err(local_err)?;
        s.confirmed = local::confirmed(&mut local, &s.key).await.map_err(local_err)?;
    }
    let mut up = uplink.target.connect().await?;
    let outcome = function::ensure_loaded(&mut up).await?;
    if !*first {
        uplink.metrics.uplink.reconnects.inc();
    }
    *first = false;
    tracing::info!(stage = "uplink", upstream = %uplink.target.display, library = ?outcome, "Connected upstream.");
    let mut last_backlog_check = Instant::now() - BACKLOG_CHECK;
    loop {
        if last_backlog_check.elapsed() >= BACKLOG_CHECK {
            enforce_backlog(&mut local, streams, uplink.config.backlog_entries).await?;
            last_backlog_check = Instant::now();
        }
        fill(&mut local, streams, uplink.config.batch).await?;
        for s in streams.iter_mut().filter(|s| !s.pending.is_empty()) {
            if s.paused_until.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            forward(uplink, &mut up, &mut local, s, acked_trim).await?;
            backoff.reset();
        }
    }
}

/// Gives every camera without pending entries its next batch: first a previous run's
/// unacknowledged entries, then new ones. When no camera has anything to send, waits (up to
/// [`READ_BLOCK_MS`]) on all streams at once, so a healthy link forwards each entry as it lands.
async fn fill(local: &mut MultiplexedConnection, streams: &mut [Stream], batch: usize) -> Result<(), UplinkError> {
    for s in streams.iter_mut().filter(|s| s.recovering && s.pending.is_empty()) {
        let [b] = <[local::Batch; 1]>::try_from(local::read(local, &[&s.key], false, batch, None).await.map_err(local_err)?)
            .map_err(|_| UplinkError::Local("XREADGROUP answered for another number of streams".into()))?;
        local::ack(local, &s.key, &b.gone).await.map_err(local_err)?;
        s.recovering = !b.entries.is_empty() || !b.gone.is_empty();
        s.pending = b.entries;
    }
    let idle: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].pending.is_empty() && !streams[i].recovering).collect();
    if idle.is_empty() {
        return Ok(());
    }
    let waiting = streams.iter().any(|s| !s.pending.is_empty() && !s.paused_until.is_some_and(|t| Instant::now() < t));
    let keys: Vec<&str> = idle.iter().map(|&i| streams[i].key.as_str()).collect();
    let block = (!waiting).then_some(READ_BLOCK_MS);
    let batches = local::read(local, &keys, true, batch, block).await.map_err(local_err)?;
    for (&i, b) in idle.iter().zip(batches) {
        local::ack(local, &streams[i].key, &b.gone).await.map_err(local_err)?;
        streams[i].pending = b.entries;
    }
    if block.is_none() && streams.iter().all(|s| s.pending.is_empty() || s.paused_until.is_some_and(|t| Instant::now() < t)) {
        // Only paused cameras have entries: do not spin.
        tokio::time::sleep(Duration::from_millis(READ_BLOCK_MS)).await;
    }
    Ok(())
}

/// Appends one camera's pending batch upstream and confirms it locally.
async fn forward(
    uplink: &Uplink,
    up: &mut Upstream,
    local: &mut MultiplexedConnection,
    s: &mut Stream,
    acked_trim: bool,
) -> Result<(), UplinkError> {
    let prev = s.prev_override.or(s.confirmed).unwrap_or(StreamId { ms: 0, seq: 0 });
    let create = s.confirmed.is_none();
    let started = Instant::now();
    let outcome = function::append(up, &s.key, prev, create, s.accept_gap, &s.pending).await?;
    uplink.metrics.uplink.rtt.observe(started.elapsed().as_secs_f64());
    match outcome {
        AppendOutcome::Appended { applied, duplicates, last } => {
            if uplink.config.wait_replicas > 0 {
                wait_replicas(uplink, up).await?;
            }
            let ids: Vec<StreamId> = s.pending.iter().map(|e| e.id).collect();
            let confirmed = s.pending.last().map_or(last, |e| e.id).max(last);
            let floor = retention_floor(confirmed, uplink.config.retention);
            local::confirm(local, &s.key, &ids, confirmed, floor, acked_trim).await.map_err(local_err)?;
            s.confirmed = Some(confirmed);
            s.pending.clear();
            s.accept_gap = false;
            s.prev_override = None;
            s.metrics.forwarded.inc_by(applied);
            s.metrics.duplicates.inc_by(duplicates);
            if duplicates > 0 {
                tracing::info!(camera = %s.camera, stage = "uplink", duplicates, "Upstream already held some entries; skipped.");
            }
        }
        AppendOutcome::Missing => {
            s.paused_until = Some(Instant::now() + MISSING_PAUSE);
            tracing::error!(camera = %s.camera, stage = "uplink", key = %s.key, "Upstream stream is missing (deleted?); not recreating it. Forwarding of this camera paused.");
        }
        AppendOutcome::Gap { upstream_last } => heal_gap(local, s, upstream_last).await?,
    }
    Ok(())
}

/// Upstream holds less than it confirmed (a failover lost writes). Resend what local retention
/// still holds after upstream's last ID; if that is not enough, write past the gap knowingly.
async fn heal_gap(local: &mut MultiplexedConnection, s: &mut Stream, upstream_last: StreamId) -> Result<(), UplinkError> {
    s.metrics.gaps.inc();
    let retained = local::range_after(local, &s.key, upstream_last, usize::MAX >> 1).await.map_err(local_err)?;
    let first_pending = s.pending.first().map(|e| e.id);
    let resend: Vec<Entry> = retained.into_iter().filter(|e| first_pending.is_none_or(|p| e.id < p)).collect();
    tracing::error!(camera = %s.camera, stage = "uplink", upstream_last = %upstream_last, confirmed = ?s.confirmed.map(|c| c.to_string()), resend = resend.len(), "Upstream is behind what it confirmed: resending what local retention holds.");
    if resend.is_empty() {
        s.accept_gap = true;
    }
    s.prev_override = Some(upstream_last);
    let mut pending = resend;
    pending.append(&mut s.pending);
    s.pending = pending;
    Ok(())
}

async fn wait_replicas(uplink: &Uplink, up: &mut Upstream) -> Result<(), UplinkError> {
    let acked: u32 = redis::cmd("WAIT")
        .arg(uplink.config.wait_replicas)
        .arg(uplink.config.wait_timeout.as_millis() as u64)
        .query_async(up)
        .await?;
    if acked < uplink.config.wait_replicas {
        return Err(UplinkError::Timeout("waiting for upstream replicas (WAIT)"));
    }
    Ok(())
}

/// Keeps each camera's unforwarded entries within `budget`: the oldest past it are deleted and
/// counted. Also refreshes the backlog and oldest-age gauges.
async fn enforce_backlog(local: &mut MultiplexedConnection, streams: &mut [Stream], budget: u64) -> Result<(), UplinkError> {
    for s in streams.iter_mut() {
        let backlog = local::backlog(local, &s.key).await.map_err(local_err)?;
        let after = s.confirmed.unwrap_or(StreamId { ms: 0, seq: 0 });
        if backlog > budget {
            let excess = (backlog - budget) as usize;
            let dropped = local::drop_oldest(local, &s.key, after, excess).await.map_err(local_err)?;
            s.pending.retain(|e| !dropped.contains(&e.id));
            s.metrics.dropped.inc_by(dropped.len() as u64);
            tracing::warn!(camera = %s.camera, stage = "uplink", dropped = dropped.len(), budget, "Backlog over budget: oldest unforwarded entries dropped.");
        }
        let backlog = backlog.min(budget);
        s.metrics.backlog.set(backlog as i64);
        let oldest = local::range_after(local, &s.key, after, 1).await.map_err(local_err)?;
        let age_ms = oldest.first().map_or(0, |e| (unix_micros() / 1000) - e.id.ms as i64).max(0);
        s.metrics.oldest_age_ms.set(age_ms);
        if !s.behind && backlog > BEHIND_ENTRIES {
            s.behind = true;
            tracing::warn!(camera = %s.camera, stage = "uplink", backlog, oldest_age_s = age_ms / 1000, "Uplink is behind: entries are waiting in local Redis.");
        } else if s.behind && backlog <= BEHIND_ENTRIES / 10 {
            s.behind = false;
            tracing::info!(camera = %s.camera, stage = "uplink", backlog, "Uplink caught up.");
        }
    }
    Ok(())
}

/// Entries older than `retention` behind the confirmed mark may be trimmed locally.
fn retention_floor(confirmed: StreamId, retention: Duration) -> Option<StreamId> {
    let ms = confirmed.ms.checked_sub(retention.as_millis() as u64)?;
    Some(StreamId { ms, seq: 0 })
}

fn local_err(e: redis::RedisError) -> UplinkError {
    UplinkError::Local(e.to_string())
}
