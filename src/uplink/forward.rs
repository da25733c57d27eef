//! The forwarding loop: read each camera's new entries through the consumer group, append them
//! upstream in order, confirm locally. Per camera state lives in [`Stream`]; one camera's
//! trouble (a deleted upstream key, a refused call) pauses that camera only.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::function::{self, AppendOutcome, Entry, StreamId};
use super::upstream::Upstream;
use super::{Uplink, UplinkError, backlog, local};
use crate::backoff::Backoff;
use crate::telemetry::UplinkCameraMetrics;

/// How long one read waits for new entries when every camera is idle.
const READ_BLOCK: Duration = Duration::from_millis(200);
/// How often the backlog budget and the backlog metrics are checked.
const BACKLOG_CHECK: Duration = Duration::from_secs(2);
/// How long a camera whose upstream key is missing or taken by another writer waits.
const TROUBLE_PAUSE: Duration = Duration::from_secs(30);
/// Bytes of entries per upstream call: starts at the maximum, halves after a timeout (a slow
/// link), doubles back after each quick success ([`grown`]).
const MAX_CALL_BYTES: usize = 256 * 1024;
const MIN_CALL_BYTES: usize = 4 * 1024;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// A refused connection costs nothing: retry often, so a link that comes back after a long
/// outage is used within two seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One camera stream's forwarding state.
pub(super) struct Stream {
    pub camera: String,
    pub key: String,
    /// Last ID upstream confirmed (`None`: never forwarded, the upstream key may be created).
    pub confirmed: Option<StreamId>,
    /// Read, not yet confirmed upstream: resent as they are after any failure.
    pub pending: Vec<Entry>,
    /// Re-read the group's pending list (a previous session's unacknowledged entries) first.
    recovering: bool,
    /// Healing a gap: resend local entries after this ID, up to `gap_end`, before the rest.
    resend_from: Option<StreamId>,
    gap_end: StreamId,
    /// After a gap that local retention could not fill: write past it once, knowingly.
    accept_gap: bool,
    paused_until: Option<Instant>,
    /// Upstream's key was missing: re-read the local mark before the next try, so that an
    /// operator who deleted it (a new central server) lets the stream be created there.
    missing: bool,
    /// Per call size limit, adapted to the link.
    call_bytes: usize,
    /// Server errors on this camera's key: its own backoff.
    trouble: Backoff,
    /// The backlog is large: logged once when it starts and when it clears.
    pub behind: bool,
    /// The local Redis is full and this stream's retention window was given up: logged once.
    pub retention_given_up: bool,
    pub metrics: UplinkCameraMetrics,
}

impl Stream {
    fn paused(&self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() < t)
    }

    fn pause(&mut self, delay: Duration) {
        self.paused_until = Some(Instant::now() + delay);
    }

    /// The newest ID that may already be upstream without our knowing: nothing at or below it
    /// may be dropped for the backlog budget.
    pub(super) fn in_flight_until(&self) -> StreamId {
        let pending = self.pending.last().map(|e| e.id);
        self.confirmed.max(pending).max(self.resend_from.map(|_| self.gap_end)).unwrap_or(StreamId::ZERO)
    }

    /// Entries below this ID are upstream for certain: deleting them locally loses nothing.
    /// That is everything up to the confirmed mark, except while a gap is being healed: then
    /// only what was resent so far (the mark is past entries upstream lost).
    pub(super) fn keep_from(&self) -> Option<StreamId> {
        match self.resend_from {
            Some(resent) => Some(self.pending.first().map_or(resent.successor(), |e| e.id)),
            None => self.confirmed.map(StreamId::successor),
        }
    }
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
            recovering: true,
            resend_from: None,
            gap_end: StreamId::ZERO,
            accept_gap: false,
            paused_until: None,
            missing: false,
            call_bytes: MAX_CALL_BYTES,
            trouble: Backoff::new(Duration::from_secs(1), TROUBLE_PAUSE),
            behind: false,
            retention_given_up: false,
            metrics: metrics.camera(camera),
        })
        .collect();
    let mut first = true;
    loop {
        let Err(e) = session(uplink, &mut streams, &mut backoff, &mut first).await;
        metrics.errors.inc();
        let delay = backoff.next_delay();
        tracing::warn!(stage = "uplink", upstream = %uplink.target.display, error = %e, retry_ms = delay.as_millis() as u64, "Uplink interrupted; retrying.");
        // An outage is when the backlog grows: keep it within budget while waiting.
        if let Ok(mut local) = uplink.local.connect().await
            && let Err(e) = backlog::enforce(&mut local, &mut streams, uplink.config.backlog_entries).await
        {
            tracing::debug!(stage = "uplink", error = %e, "Backlog check failed.");
        }
        tokio::time::sleep(delay).await;
    }
}

/// One connected session; ends with the first connection-level error (pending entries are
/// kept and resent by the next session).
async fn session(
    uplink: &Uplink,
    streams: &mut [Stream],
    backoff: &mut Backoff,
    first: &mut bool,
) -> Result<std::convert::Infallible, UplinkError> {
    let mut local = uplink.local.connect_blocking_reads().await.map_err(|e| UplinkError::Local(e.to_string()))?;
    let acked_trim = local::supports_acked_trim(&mut local).await.map_err(local_err)?;
    for s in streams.iter_mut() {
        local::ensure_group(&mut local, &s.key).await.map_err(local_err_on(&s.key))?;
        s.confirmed = local::confirmed(&mut local, &s.key).await.map_err(local_err_on(&s.key))?;
        // Acknowledgements lost with a local Redis restart leave stale pending entries: read
        // the pending list again each session (already-forwarded ones are skipped upstream).
        s.recovering = s.pending.is_empty() && s.resend_from.is_none();
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
            backlog::enforce(&mut local, streams, uplink.config.backlog_entries).await?;
            last_backlog_check = Instant::now();
        }
        let waited = fill(&mut local, streams, uplink.config.batch).await?;
        // Cameras are independent: their calls go out together (the connections multiplex),
        // so one round costs about one round trip, not one per camera. Within a camera, one
        // call at a time keeps the order.
        let calls: Vec<_> = streams
            .iter_mut()
            .filter(|s| !s.pending.is_empty() && !s.paused())
            .map(|s| {
                let (mut up, mut local) = (up.clone(), local.clone());
                async move { forward(uplink, &mut up, &mut local, s, acked_trim).await }
            })
            .collect();
        let sent = !calls.is_empty();
        for result in futures_util::future::join_all(calls).await {
            result?;
        }
        if sent {
            backoff.reset();
        }
        if !waited && !sent {
            // Nothing to read and nothing sendable (every camera with entries is paused, or
            // there are no cameras): do not spin.
            tokio::time::sleep(READ_BLOCK).await;
        }
    }
}

/// Gives every camera without pending entries its next batch: gap resends first, then a
/// previous session's unacknowledged entries, then new ones. When no camera has anything to
/// send, waits on all streams at once, so a healthy link forwards each entry as it lands.
/// Returns whether it waited.
async fn fill(local: &mut MultiplexedConnection, streams: &mut [Stream], batch: usize) -> Result<bool, UplinkError> {
    for s in streams.iter_mut().filter(|s| s.pending.is_empty()) {
        if let Some(from) = s.resend_from {
            let mut entries = local::range_after(local, &s.key, from, batch).await.map_err(local_err_on(&s.key))?;
            entries.retain(|e| e.id <= s.gap_end);
            match entries.last() {
                Some(last) => s.resend_from = Some(last.id),
                None => {
                    s.resend_from = None;
                    s.recovering = true;
                }
            }
            s.pending = entries;
        }
        if s.recovering && s.pending.is_empty() {
            let b = local::read(local, &[&s.key], false, batch, None).await.map_err(local_err_on(&s.key))?.pop().unwrap_or_default();
            local::ack(local, &s.key, &b.gone).await.map_err(local_err_on(&s.key))?;
            s.recovering = !b.entries.is_empty() || !b.gone.is_empty();
            s.pending = b.entries;
        }
    }
    let idle: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].pending.is_empty() && !streams[i].recovering).collect();
    if idle.is_empty() {
        return Ok(false);
    }
    let sendable = streams.iter().any(|s| !s.pending.is_empty() && !s.paused());
    let keys: Vec<&str> = idle.iter().map(|&i| streams[i].key.as_str()).collect();
    let block = (!sendable).then_some(READ_BLOCK.as_millis() as u64);
    let batches = local::read(local, &keys, true, batch, block).await.map_err(local_err)?;
    for (&i, b) in idle.iter().zip(batches) {
        local::ack(local, &streams[i].key, &b.gone).await.map_err(local_err_on(&streams[i].key))?;
        streams[i].pending = b.entries;
    }
    Ok(block.is_some())
}

/// Appends the head of one camera's pending entries (up to its call size) upstream and
/// confirms it locally. Connection-level errors end the session; anything else pauses this
/// camera only.
async fn forward(
    uplink: &Uplink,
    up: &mut Upstream,
    local: &mut MultiplexedConnection,
    s: &mut Stream,
    acked_trim: bool,
) -> Result<(), UplinkError> {
    if s.missing {
        s.confirmed = local::confirmed(local, &s.key).await.map_err(local_err_on(&s.key))?;
        s.missing = false;
    }
    let n = call_len(&s.pending, s.call_bytes);
    // While resending into a gap, upstream is knowingly behind `confirmed`: no gap check.
    let prev = if s.resend_from.is_some() { StreamId::ZERO } else { s.confirmed.unwrap_or(StreamId::ZERO) };
    let create = s.confirmed.is_none();
    let started = Instant::now();
    let outcome = match function::append(up, &s.key, prev, create, s.accept_gap, &s.pending[..n]).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_timeout() => {
            s.call_bytes = (s.call_bytes / 2).max(MIN_CALL_BYTES);
            return Err(UplinkError::Upstream(e));
        }
        // READONLY: the server was demoted by a failover that left client connections open
        // (a virtual IP or DNS name moved); a new connection finds the new primary.
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.code() == Some("READONLY") => {
            return Err(UplinkError::Upstream(e));
        }
        Err(e) => {
            // A refusal about this key (WRONGTYPE, TRYAGAIN, NOPERM…): this camera waits.
            let delay = s.trouble.next_delay();
            s.pause(delay);
            uplink.metrics.uplink.errors.inc();
            tracing::warn!(camera = %s.camera, stage = "uplink", error = %e, retry_ms = delay.as_millis() as u64, "Upstream refused this camera's batch; retrying later.");
            return Ok(());
        }
    };
    uplink.metrics.uplink.rtt.observe(started.elapsed().as_secs_f64());
    match outcome {
        AppendOutcome::Appended { applied, duplicates, .. } => {
            if uplink.config.wait_replicas > 0 {
                wait_replicas(uplink, up, &s.key).await?;
            }
            let sent: Vec<Entry> = s.pending.drain(..n).collect();
            let ids: Vec<StreamId> = sent.iter().map(|e| e.id).collect();
            // Our own last entry, never upstream's last ID: that may belong to another writer.
            let confirmed = ids.last().copied().max(s.confirmed).unwrap_or(StreamId::ZERO);
            let mut floor = retention_floor(confirmed, uplink.config.retention);
            if s.resend_from.is_some() {
                floor = floor.zip(s.keep_from()).map(|(floor, keep)| floor.min(keep));
            }
            local::confirm(local, &s.key, &ids, confirmed, floor, acked_trim).await.map_err(local_err_on(&s.key))?;
            s.confirmed = Some(confirmed);
            s.accept_gap = false;
            s.call_bytes = grown(s.call_bytes, started.elapsed());
            s.trouble.reset();
            s.metrics.forwarded.inc_by(applied);
            s.metrics.duplicates.inc_by(duplicates);
            if duplicates > 0 {
                tracing::info!(camera = %s.camera, stage = "uplink", duplicates, "Upstream already held some entries; skipped.");
            }
        }
        AppendOutcome::Missing => {
            s.pause(TROUBLE_PAUSE);
            s.missing = true;
            uplink.metrics.uplink.errors.inc();
            tracing::error!(
                camera = %s.camera,
                stage = "uplink",
                key = %s.key,
                mark = %local::state_key(&s.key),
                "Upstream stream is missing (deleted?); not recreating it. Forwarding of this camera paused; \
                 to have it created there (a new central server), delete the local mark."
            );
        }
        AppendOutcome::Conflict { upstream_last, id } => {
            s.pause(TROUBLE_PAUSE);
            uplink.metrics.uplink.errors.inc();
            tracing::error!(camera = %s.camera, stage = "uplink", key = %s.key, id = %id, upstream_last = %upstream_last, "Upstream holds later IDs this box never sent (another writer, or a clock ahead); not skipping ours. Forwarding of this camera paused.");
        }
        AppendOutcome::Gap { upstream_last } => heal_gap(local, s, upstream_last).await?,
    }
    Ok(())
}

/// The call size after a success that took `took`: doubled while calls are quick (a quarter of
/// the response timeout or less), else kept, so that on a slow link it settles below the
/// timeout instead of alternating between a size that fits and one that times out (each
/// timeout ends the session and resends the call).
fn grown(bytes: usize, took: Duration) -> usize {
    if took <= super::upstream::RESPONSE_TIMEOUT / 4 { (bytes * 2).min(MAX_CALL_BYTES) } else { bytes }
}

/// How many head entries fit in `bytes` (at least one).
fn call_len(pending: &[Entry], bytes: usize) -> usize {
    let mut total = 0;
    let n = pending
        .iter()
        .take_while(|e| {
            total += e.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 32;
            total <= bytes
        })
        .count();
    n.max(1).min(pending.len())
}

/// Upstream holds less than it confirmed (a failover lost writes). Resend, page by page, what
/// local retention still holds after upstream's last ID; with nothing retained, write past the
/// gap knowingly. Either way it is counted and logged for an operator.
async fn heal_gap(local: &mut MultiplexedConnection, s: &mut Stream, upstream_last: StreamId) -> Result<(), UplinkError> {
    s.metrics.gaps.inc();
    let retained = local::range_after(local, &s.key, upstream_last, 1).await.map_err(local_err_on(&s.key))?;
    let gap_end = s.confirmed.unwrap_or(StreamId::ZERO);
    let fillable = retained.first().is_some_and(|e| e.id <= gap_end);
    tracing::error!(camera = %s.camera, stage = "uplink", upstream_last = %upstream_last, confirmed = %gap_end, fillable, "Upstream is behind what it confirmed: resending what local retention holds.");
    if fillable {
        s.resend_from = Some(upstream_last);
        s.gap_end = gap_end;
        // The pending entries stay in the group's pending list and are read again after.
        s.pending.clear();
    } else {
        s.accept_gap = true;
    }
    Ok(())
}

async fn wait_replicas(uplink: &Uplink, up: &mut Upstream, key: &str) -> Result<(), UplinkError> {
    let wanted = uplink.config.wait_replicas;
    let acked = up.wait_replicas(key, wanted, uplink.config.wait_timeout.as_millis() as u64).await?;
    if acked < wanted {
        return Err(UplinkError::Timeout("waiting for upstream replicas (WAIT)"));
    }
    Ok(())
}

/// Entries older than `retention` behind the confirmed mark may be trimmed locally.
fn retention_floor(confirmed: StreamId, retention: Duration) -> Option<StreamId> {
    let ms = confirmed.ms.checked_sub(retention.as_millis() as u64)?;
    Some(StreamId { ms, seq: 0 })
}

/// A local Redis error about the stream `key`, naming it.
pub(super) fn local_err_on(key: &str) -> impl FnOnce(redis::RedisError) -> UplinkError + '_ {
    move |e| UplinkError::Local(format!("{key}: {e}"))
}

pub(super) fn local_err(e: redis::RedisError) -> UplinkError {
    UplinkError::Local(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, bytes: usize) -> Entry {
        Entry { id: StreamId::new(ms, 0), fields: vec![(b"det".to_vec(), vec![b'x'; bytes])] }
    }

    #[test]
    fn calls_are_cut_by_bytes_but_carry_at_least_one_entry() {
        let pending: Vec<Entry> = (0..10).map(|i| entry(i, 1000)).collect();
        assert_eq!(call_len(&pending, 3 * 1040), 3);
        assert_eq!(call_len(&pending, 10), 1);
        assert_eq!(call_len(&pending, usize::MAX / 2), 10);
    }

    #[test]
    fn the_call_size_grows_only_after_quick_calls() {
        let quick = Duration::from_millis(50);
        assert_eq!(grown(MIN_CALL_BYTES, quick), 2 * MIN_CALL_BYTES);
        assert_eq!(grown(MAX_CALL_BYTES, quick), MAX_CALL_BYTES);
        // A 2-second call on a link that just timed out at twice the size: stay.
        assert_eq!(grown(64 * 1024, Duration::from_secs(2)), 64 * 1024);
    }

    #[test]
    fn retention_floor_is_behind_the_mark() {
        let floor = retention_floor(StreamId::new(700_000, 3), Duration::from_secs(600)).unwrap();
        assert_eq!(floor, StreamId::new(100_000, 0));
        assert_eq!(retention_floor(StreamId::new(5, 0), Duration::from_secs(1)), None);
    }
}
