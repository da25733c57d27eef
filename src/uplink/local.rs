//! The uplink's side of the local Redis: the consumer group that follows each camera stream,
//! the confirmed mark, trimming behind it, the backlog budget and the start-up `XSETID`.
//!
//! Per camera, next to the stream `roadsight:{<site>:<cam>}:detections`, a hash
//! `roadsight:{<site>:<cam>}:uplink` holds `confirmed`, the last ID upstream confirmed. It is
//! written after the `XACK`. Neither goes in a `MULTI`: with the local Redis at `maxmemory`
//! (`noeviction`) Redis refuses every command queued in a transaction, while `XACK`, `XDEL`,
//! `XTRIM` and reads still work, and those are what make room again. A mark left behind by a
//! crash or a full Redis is safe: the entries after it are resent and upstream skips them as
//! duplicates (its function compares with its own last ID).

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

use super::function::{Entry, StreamId};

/// The consumer group and consumer the uplink reads with.
pub(crate) const GROUP: &str = "uplink";
const CONSUMER: &str = "roadsightd";

/// The uplink state hash of a camera stream (same hash tag, same slot).
pub(crate) fn state_key(stream_key: &str) -> String {
    match stream_key.strip_suffix(":detections") {
        Some(base) => format!("{base}:uplink"),
        None => format!("{stream_key}:uplink"),
    }
}

/// Creates the stream (if missing) and the group (if missing), reading from the beginning.
pub(crate) async fn ensure_group(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<()> {
    let created: RedisResult<()> =
        redis::cmd("XGROUP").arg("CREATE").arg(key).arg(GROUP).arg("0").arg("MKSTREAM").query_async(conn).await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        // A full Redis refuses the create before it looks for the group.
        Err(e) if e.code() == Some("OOM") && group_exists(conn, key).await? => Ok(()),
        other => other,
    }
}

async fn group_exists(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<bool> {
    let groups: Vec<Value> = match redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await {
        Ok(groups) => groups,
        Err(e) if e.code() == Some("ERR") => return Ok(false), // no such key
        Err(e) => return Err(e),
    };
    Ok(groups.into_iter().any(|g| flat_map(g).iter().any(|(k, v)| k == "name" && as_string(v).as_deref() == Some(GROUP))))
}

/// Whether the local Redis has reached its `maxmemory` (within `MEMORY_FULL_MARGIN`): new
/// `XADD`s fail there until something is deleted.
pub(crate) async fn memory_full(conn: &mut MultiplexedConnection) -> RedisResult<bool> {
    const MEMORY_FULL_MARGIN: u64 = 256 * 1024;
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let (used, max) = (field("used_memory"), field("maxmemory"));
    Ok(max > 0 && used + MEMORY_FULL_MARGIN >= max)
}

/// The last ID upstream confirmed, if any ever was.
pub(crate) async fn confirmed(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<Option<StreamId>> {
    let v: Option<String> = redis::cmd("HGET").arg(state_key(key)).arg("confirmed").query_async(conn).await?;
    Ok(v.and_then(|s| s.parse().ok()))
}

/// What one read gave for one stream: entries to forward, and IDs of pending entries trimmed
/// away meanwhile (they come back without fields and only need acknowledging).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub entries: Vec<Entry>,
    pub gone: Vec<StreamId>,
}

/// Reads through the group for `keys`: with `new`, entries never delivered (`>`), else a
/// previous run's delivered-but-unacknowledged ones (`0`); at most `count` per stream, waiting
/// up to `block_ms` when there is nothing. Returns one [`Batch`] per key, in `keys` order.
pub(crate) async fn read(
    conn: &mut MultiplexedConnection,
    keys: &[&str],
    new: bool,
    count: usize,
    block_ms: Option<u64>,
) -> RedisResult<Vec<Batch>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(GROUP).arg(CONSUMER).arg("COUNT").arg(count);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(keys);
    for _ in keys {
        cmd.arg(if new { ">" } else { "0" });
    }
    let reply: Value = cmd.query_async(conn).await?;
    let mut out: Vec<Batch> = keys.iter().map(|_| Batch::default()).collect();
    for (key, batch) in parse_streams(reply) {
        if let Some(i) = keys.iter().position(|k| k.as_bytes() == key.as_slice()) {
            out[i] = batch;
        }
    }
    Ok(out)
}

/// `[[key, [[id, [f, v, …] | nil], …]], …]` → per-key batches.
fn parse_streams(reply: Value) -> Vec<(Vec<u8>, Batch)> {
    let streams = match reply {
        Value::Array(streams) => streams.into_iter().filter_map(|s| match s {
            Value::Array(mut pair) if pair.len() == 2 => {
                let items = pair.pop()?;
                let key: Vec<u8> = redis::from_redis_value(pair.pop()?).unwrap_or_default();
                Some((key, items))
            }
            _ => None,
        }).collect(),
        // RESP3 servers answer with a map.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, items)| (redis::from_redis_value::<Vec<u8>>(k).unwrap_or_default(), items))
            .collect(),
        _ => Vec::new(),
    };
    streams.into_iter().map(|(key, items)| (key, parse_entries(items))).collect()
}

fn parse_entries(items: Value) -> Batch {
    let mut batch = Batch::default();
    let Value::Array(items) = items else { return batch };
    for item in items {
        let Value::Array(mut parts) = item else { continue };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let Some(id) = parts.pop().and_then(|v| redis::from_redis_value::<String>(v).ok()).and_then(|s| s.parse().ok())
        else {
            continue;
        };
        match fields {
            Some(Value::Array(kv)) => {
                // Move the bytes out of the reply rather than copying them.
                let mut fields = Vec::with_capacity(kv.len() / 2);
                let mut it = kv.into_iter().map(bytes);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let (Some(k), Some(v)) = (k, v) {
                        fields.push((k, v));
                    }
                }
                batch.entries.push(Entry { id, fields });
            }
            _ => batch.gone.push(id),
        }
    }
    batch
}

/// Acknowledges `ids`, trims the stream behind `trim_below` (approximately), then moves the
/// confirmed mark to `last`. With `acked_trim` (Redis ≥ 8.2) the trim also spares any entry a
/// consumer group has not acknowledged, as a second safety net. A full Redis refuses the mark
/// (`OOM`): it stays where it was until a later confirm, and the acknowledgement and the trim,
/// which make room, still happen.
pub(crate) async fn confirm(
    conn: &mut MultiplexedConnection,
    key: &str,
    ids: &[StreamId],
    last: StreamId,
    trim_below: Option<StreamId>,
    acked_trim: bool,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    if !ids.is_empty() {
        let xack = pipe.cmd("XACK").arg(key).arg(GROUP);
        for id in ids {
            xack.arg(id.to_string());
        }
        xack.ignore();
    }
    if let Some(floor) = trim_below {
        let trim = pipe.cmd("XTRIM").arg(key).arg("MINID").arg("~").arg(floor.to_string());
        if acked_trim {
            trim.arg("ACKED");
        }
        trim.ignore();
    }
    pipe.query_async::<()>(conn).await?;
    let marked: RedisResult<()> =
        redis::cmd("HSET").arg(state_key(key)).arg("confirmed").arg(last.to_string()).query_async(conn).await;
    match marked {
        Err(e) if e.code() == Some("OOM") => Ok(()),
        other => other,
    }
}

/// Whether the local server trims with `ACKED` (Redis 8.2 and later).
pub(crate) async fn supports_acked_trim(conn: &mut MultiplexedConnection) -> RedisResult<bool> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(info.lines().find_map(|l| l.strip_prefix("redis_version:")).is_some_and(|v| version_at_least(v.trim(), 8, 2)))
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// Acknowledges entries that need no forwarding (trimmed while pending).
pub(crate) async fn ack(conn: &mut MultiplexedConnection, key: &str, ids: &[StreamId]) -> RedisResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("XACK");
    cmd.arg(key).arg(GROUP);
    for id in ids {
        cmd.arg(id.to_string());
    }
    cmd.query_async::<()>(conn).await
}

/// Entries of `key` after `after` (exclusive), at most `count`, oldest first.
pub(crate) async fn range_after(
    conn: &mut MultiplexedConnection,
    key: &str,
    after: StreamId,
    count: usize,
) -> RedisResult<Vec<Entry>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(parse_entries(reply).entries)
}

/// Unforwarded entries: delivered-but-unacknowledged plus never delivered (`XINFO GROUPS`),
/// or an upper bound when Redis cannot tell.
pub(crate) async fn backlog(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<u64> {
    let groups: Vec<Value> = redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await?;
    for group in groups {
        let map = flat_map(group);
        if map.iter().any(|(k, v)| k == "name" && as_string(v).as_deref() == Some(GROUP)) {
            let get = |name: &str| map.iter().find(|(k, _)| k == name).and_then(|(_, v)| as_u64(v));
            let pending = get("pending").unwrap_or(0);
            // `lag` is nil when Redis cannot tell (after deletions): the stream's length is then
            // an upper bound (it also holds the retention window).
            return match get("lag") {
                Some(lag) => Ok(pending + lag),
                None => len(conn, key).await,
            };
        }
    }
    Ok(0)
}

/// Deletes up to `n` of the oldest entries after `after` and acknowledges them, a page at a
/// time; returns how many went. The last-generated ID is unchanged (`XDEL`): no ID is reused.
pub(crate) async fn drop_oldest(conn: &mut MultiplexedConnection, key: &str, after: StreamId, n: u64) -> RedisResult<u64> {
    const PAGE: u64 = 1_000;
    let (mut dropped, mut cursor) = (0, after);
    while dropped < n {
        let ids: Vec<StreamId> =
            range_after(conn, key, cursor, (n - dropped).min(PAGE) as usize).await?.into_iter().map(|e| e.id).collect();
        let Some(&last) = ids.last() else { break };
        // Not a `MULTI`: a full Redis refuses transactions, and this is what makes room. A
        // crash between the two leaves acknowledged entries that the next trim removes.
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(key).arg(GROUP).arg(&ids).ignore();
        pipe.cmd("XDEL").arg(key).arg(&ids).ignore();
        pipe.query_async::<()>(conn).await?;
        dropped += ids.len() as u64;
        cursor = last;
    }
    Ok(dropped)
}

/// Removes every entry below `id` (exactly, not `~`); returns how many went.
pub(crate) async fn trim_below(conn: &mut MultiplexedConnection, key: &str, id: StreamId) -> RedisResult<u64> {
    redis::cmd("XTRIM").arg(key).arg("MINID").arg("=").arg(id.to_string()).query_async(conn).await
}

/// Entries in the stream.
pub(crate) async fn len(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<u64> {
    redis::cmd("XLEN").arg(key).query_async(conn).await
}

/// The stream's last-generated ID (survives deletions), `None` if there is no stream.
pub(crate) async fn last_generated(conn: &mut MultiplexedConnection, key: &str) -> RedisResult<Option<StreamId>> {
    let info: RedisResult<Value> = redis::cmd("XINFO").arg("STREAM").arg(key).query_async(conn).await;
    let info = match info {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let map = flat_map(info);
    Ok(map.iter().find(|(k, _)| k == "last-generated-id").and_then(|(_, v)| as_string(v)).and_then(|s| s.parse().ok()))
}

/// Moves the stream's last ID forward to `id` (creating the stream if needed), so the next
/// `XADD *` cannot reuse an ID upstream already holds.
pub(crate) async fn set_last_id(conn: &mut MultiplexedConnection, key: &str, id: StreamId) -> RedisResult<()> {
    ensure_group(conn, key).await?;
    redis::cmd("XSETID").arg(key).arg(id.to_string()).query_async(conn).await
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        other => redis::from_redis_value(other).ok(),
    }
}

fn flat_map(v: Value) -> Vec<(String, Value)> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = as_string(&k) {
                    out.push((k, v));
                }
            }
            out
        }
        Value::Map(pairs) => pairs.into_iter().filter_map(|(k, v)| as_string(&k).map(|k| (k, v))).collect(),
        _ => Vec::new(),
    }
}

fn as_string(v: &Value) -> Option<String> {
    redis::from_redis_value::<String>(v.clone()).ok()
}

fn as_u64(v: &Value) -> Option<u64> {
    redis::from_redis_value::<u64>(v.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_trimming_needs_redis_8_2() {
        assert!(!version_at_least("7.0.15", 8, 2));
        assert!(!version_at_least("8.0.3", 8, 2));
        assert!(version_at_least("8.2.0", 8, 2));
        assert!(version_at_least("10.0.0", 8, 2));
    }

    #[test]
    fn state_key_shares_the_hash_tag() {
        assert_eq!(state_key("roadsight:{rsu-1:north}:detections"), "roadsight:{rsu-1:north}:uplink");
    }

    #[test]
    fn parses_entries_and_trimmed_pending_ids() {
        let entry = |id: &str, fields: Option<&[&str]>| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                match fields {
                    Some(f) => Value::Array(f.iter().map(|s| Value::BulkString(s.as_bytes().to_vec())).collect()),
                    None => Value::Nil,
                },
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"k".to_vec()),
            Value::Array(vec![entry("1-0", Some(&["v", "1", "n", "0"])), entry("2-0", None)]),
        ])]);
        let streams = parse_streams(reply);
        assert_eq!(streams.len(), 1);
        let (key, batch) = &streams[0];
        assert_eq!(key, b"k");
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(batch.entries[0].id.to_string(), "1-0");
        assert_eq!(batch.entries[0].fields[1], (b"n".to_vec(), b"0".to_vec()));
        assert_eq!(batch.gone.iter().map(ToString::to_string).collect::<Vec<_>>(), ["2-0"]);
    }
}
