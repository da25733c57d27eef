//! The outage budget: each camera's unforwarded entries stay within `backlog_entries`; past it
//! the oldest are deleted and counted. When the local Redis reaches its `maxmemory` first
//! (entries larger than it was sized for), the retention window of forwarded entries goes, so
//! that the publisher's `XADD`s succeed again as soon as forwarding resumes. Also keeps the
//! backlog and oldest-age gauges current and logs when a camera falls behind and when it has
//! caught up.

use redis::aio::MultiplexedConnection;

use super::UplinkError;
use super::forward::{Stream, local_err, local_err_on};
use super::function::StreamId;
use super::local;
use crate::publish::unix_micros;

/// A backlog past this many entries is worth a log line (and its end another).
const BEHIND_ENTRIES: u64 = 1_000;

pub(super) async fn enforce(local: &mut MultiplexedConnection, streams: &mut [Stream], budget: u64) -> Result<(), UplinkError> {
    let memory_full = local::memory_full(local).await.map_err(local_err)?;
    for s in streams.iter_mut() {
        if memory_full {
            give_up_retention(local, s).await?;
        } else {
            s.retention_given_up = false;
        }
        let mut backlog = local::backlog(local, &s.key).await.map_err(local_err_on(&s.key))?;
        if backlog > budget {
            backlog = shrink(local, s, budget).await?;
        }
        s.metrics.backlog.set(backlog as i64);
        let after = s.confirmed.unwrap_or(StreamId::ZERO);
        let oldest = local::range_after(local, &s.key, after, 1).await.map_err(local_err_on(&s.key))?;
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

/// Over budget: first give up the retention window of forwarded entries (they are upstream),
/// so the stream holds exactly the unforwarded ones; then delete the oldest of those, but never
/// one that may be in flight. Returns the backlog left.
async fn shrink(local: &mut MultiplexedConnection, s: &mut Stream, budget: u64) -> Result<u64, UplinkError> {
    if let Some(keep_from) = s.keep_from() {
        local::trim_below(local, &s.key, keep_from).await.map_err(local_err_on(&s.key))?;
    }
    let unforwarded = local::len(local, &s.key).await.map_err(local_err_on(&s.key))?;
    if unforwarded <= budget {
        return Ok(unforwarded);
    }
    let dropped = local::drop_oldest(local, &s.key, s.in_flight_until(), unforwarded - budget).await.map_err(local_err_on(&s.key))?;
    s.metrics.dropped.inc_by(dropped);
    tracing::warn!(camera = %s.camera, stage = "uplink", dropped, budget, "Backlog over budget: oldest unforwarded entries dropped.");
    Ok(unforwarded - dropped)
}

/// The local Redis is full: delete the forwarded entries kept for retention (they are upstream).
async fn give_up_retention(local: &mut MultiplexedConnection, s: &mut Stream) -> Result<(), UplinkError> {
    let Some(keep_from) = s.keep_from() else { return Ok(()) };
    let removed = local::trim_below(local, &s.key, keep_from).await.map_err(local_err_on(&s.key))?;
    if removed > 0 && !s.retention_given_up {
        s.retention_given_up = true;
        tracing::warn!(camera = %s.camera, stage = "uplink", removed, "Local Redis is at maxmemory: forwarded entries kept for retention deleted to make room (raise maxmemory or lower the backlog budget).");
    }
    Ok(())
}
