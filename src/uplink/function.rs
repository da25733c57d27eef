//! The upstream side of the uplink: the `roadsight` Redis Functions library and its calls.
//!
//! Each camera stream is copied upstream with the IDs the local Redis gave its entries, so the
//! centre sees exactly what the box saw. `roadsight_append` makes that copy safe to retry:
//!
//! - **Idempotent by ID.** An entry whose ID is at or below the upstream stream's
//!   last-generated-id is skipped and counted as a duplicate. A batch whose reply was lost, or
//!   one re-read after a crash before `XACK`, can be sent again without a second copy landing.
//!   The last-generated-id survives `XDEL` and `XTRIM`, so trimming upstream never makes an old
//!   ID look new. Entries are applied in order and the call is atomic, so no entry `k` is lost
//!   while `k + 1` lands (which a plain pipeline of `XADD`s allows).
//! - **Never recreates a stream.** A missing key is [`AppendOutcome::Missing`] unless the caller
//!   says `create` (first forward of a camera): an operator who deleted a stream upstream is
//!   told, not overruled.
//! - **Reports gaps.** `prev` is the ID the caller believes upstream holds last. If upstream is
//!   behind it (upstream lost writes: a failover to a lagging replica, a restore from backup),
//!   writing on would hide the hole, so the call returns [`AppendOutcome::Gap`] and writes
//!   nothing unless the caller accepts the gap.
//!
//! A function rather than `EVALSHA`: Redis persists and replicates functions with the data set,
//! so a failover or restart never answers `NOSCRIPT`. Every call names exactly one key, so it
//! works on Redis Cluster (`FCALL` is routed by that key); `FUNCTION LOAD` is sent by redis-rs's
//! cluster client to every primary.

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult, Value};

/// Source of the `roadsight` library, loaded with `FUNCTION LOAD`.
pub const LIBRARY: &str = include_str!("roadsight.lua");

/// Version of [`LIBRARY`] (`VERSION` in the Lua source); newer daemons carry higher numbers.
pub const LIBRARY_VERSION: i64 = 3;

/// A Redis stream entry ID, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: below every entry; the `prev` of a stream never forwarded.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The ID `ms-seq`.
    #[must_use]
    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The smallest ID above this one.
    #[must_use]
    pub const fn successor(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId { ms: self.ms.saturating_add(1), seq: 0 },
        }
    }
}

/// A string that is not a stream ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream ID {0:?}: expected <ms>-<seq> or <ms>, decimal")]
pub struct ParseStreamIdError(pub String);

impl FromStr for StreamId {
    type Err = ParseStreamIdError;

    /// Parses `ms-seq`, or a bare `ms` as `ms-0` (as `XADD` and `XRANGE` read it).
    fn from_str(s: &str) -> Result<StreamId, ParseStreamIdError> {
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        match (number(ms), number(seq)) {
            (Some(ms), Some(seq)) => Ok(StreamId { ms, seq }),
            _ => Err(ParseStreamIdError(s.to_owned())),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl redis::ToRedisArgs for StreamId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

impl redis::ToSingleRedisArg for StreamId {}

impl redis::FromRedisValue for StreamId {
    fn from_redis_value(v: Value) -> Result<StreamId, redis::ParsingError> {
        let text = String::from_redis_value(v)?;
        text.parse().map_err(|e: ParseStreamIdError| e.to_string().into())
    }
}

/// One stream entry: its ID and its field/value pairs in order (values may be binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The ID the local Redis gave the entry.
    pub id: StreamId,
    /// Field/value pairs, in the order they were written.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What [`ensure_loaded`] found upstream and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The library was absent and is now loaded.
    Loaded,
    /// Our version was already there; nothing sent.
    Current,
    /// An older version was replaced by ours.
    Upgraded { from: i64 },
    /// A newer daemon loaded a newer version; kept as it is (its `roadsight_append` keeps the
    /// contract of ours).
    Newer { upstream: i64 },
}

/// What `roadsight_append` did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// `applied` entries written, `duplicates` skipped (ID at or below upstream's last);
    /// `last` is upstream's last ID now: the caller's `prev` for the next batch.
    Appended { applied: u64, duplicates: u64, last: StreamId },
    /// The key does not exist upstream and `create` was not given; nothing written.
    Missing,
    /// Upstream's last ID is below `prev` and the gap was not accepted; nothing written.
    Gap { upstream_last: StreamId },
    /// `id` is above `prev` and at or below upstream's last ID, yet upstream does not hold it:
    /// someone else wrote that ID range (a second box with the same keys, a clock ahead).
    /// Skipping would lose the entry; nothing written.
    Conflict { upstream_last: StreamId, id: StreamId },
}

/// Makes sure upstream runs our library, or a newer one: probes `roadsight_version` and loads
/// [`LIBRARY`] with `FUNCTION LOAD REPLACE` when it is absent or older.
///
/// On a cluster connection the probe reaches one primary and the load every primary; a primary
/// that still lacks the library later (added to the cluster without it, or flushed) is repaired
/// by [`append`] on first use.
///
/// # Errors
/// Connection errors, and the server's refusal to load (e.g. an ACL user without `FUNCTION`).
pub async fn ensure_loaded<C: ConnectionLike + Send>(conn: &mut C) -> RedisResult<LoadOutcome> {
    let probe: RedisResult<i64> =
        redis::cmd("FCALL_RO").arg("roadsight_version").arg(0).query_async(conn).await;
    let found = match probe {
        Ok(version) => Some(version),
        Err(e) if is_function_missing(&e) => None,
        Err(e) => return Err(e),
    };
    match found {
        Some(version) if version > LIBRARY_VERSION => Ok(LoadOutcome::Newer { upstream: version }),
        Some(LIBRARY_VERSION) => Ok(LoadOutcome::Current),
        _ => {
            redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(LIBRARY).exec_async(conn).await?;
            Ok(found.map_or(LoadOutcome::Loaded, |from| LoadOutcome::Upgraded { from }))
        }
    }
}

/// Appends `entries` (strictly increasing IDs) to the stream `key` upstream, skipping those at
/// or below its last ID; `prev` is the ID the caller believes upstream holds last (`ZERO` if
/// none). `create` allows creating a missing key; `accept_gap` writes although upstream is
/// behind `prev`.
///
/// # Errors
/// Connection errors (the batch may or may not have been applied: send it again), and the
/// function's refusal of malformed input (IDs not increasing, an entry without fields).
pub async fn append<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    prev: StreamId,
    create: bool,
    accept_gap: bool,
    entries: &[Entry],
) -> RedisResult<AppendOutcome> {
    let mode = match (create, accept_gap) {
        (true, true) => "create,gap",
        (true, false) => "create",
        (false, true) => "gap",
        (false, false) => "",
    };
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("roadsight_append").arg(1).arg(key).arg(prev).arg(mode);
    for entry in entries {
        cmd.arg(entry.id).arg(entry.fields.len());
        for (field, value) in &entry.fields {
            cmd.arg(field).arg(value);
        }
    }
    let reply: Value = call_with_repair(conn, &cmd).await?;
    parse_append_reply(&reply).ok_or_else(|| {
        RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "roadsight_append gave an unexpected reply",
            format!("{reply:?}"),
        ))
    })
}

/// Upstream's last-generated-id of `key` (kept through `XDEL`/`XTRIM`), or `None` when the key
/// does not exist.
///
/// # Errors
/// Connection errors; `WRONGTYPE` when `key` is not a stream.
pub async fn last_id<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> RedisResult<Option<StreamId>> {
    let mut cmd = redis::cmd("FCALL_RO");
    cmd.arg("roadsight_last").arg(1).arg(key);
    call_with_repair(conn, &cmd).await
}

/// Runs `cmd`; if the server lacks the function, loads the library without `REPLACE` (so a
/// newer one elsewhere is never downgraded) and runs it once more. Safe: a missing function
/// wrote nothing.
async fn call_with_repair<C, T>(conn: &mut C, cmd: &redis::Cmd) -> RedisResult<T>
where
    C: ConnectionLike + Send,
    T: redis::FromRedisValue,
{
    match cmd.query_async(conn).await {
        Err(e) if is_function_missing(&e) => {
            tracing::warn!(error = %e, "Upstream lacks the roadsight library; loading it again.");
            let load = redis::cmd("FUNCTION").arg("LOAD").arg(LIBRARY).exec_async(conn).await;
            match load {
                Err(e) if !e.detail().is_some_and(|d| d.contains("already exists")) => return Err(e),
                _ => {}
            }
            cmd.query_async(conn).await
        }
        result => result,
    }
}

fn is_function_missing(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail().is_some_and(|d| d.contains("Function not found"))
}

fn parse_append_reply(reply: &Value) -> Option<AppendOutcome> {
    let Value::Array(items) = reply else { return None };
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let id = |v: &Value| text(v)?.parse::<StreamId>().ok();
    let count = |v: &Value| match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    match (text(items.first()?)?.as_str(), &items[1..]) {
        ("ok", [applied, duplicates, last]) => Some(AppendOutcome::Appended {
            applied: count(applied)?,
            duplicates: count(duplicates)?,
            last: id(last)?,
        }),
        ("missing", []) => Some(AppendOutcome::Missing),
        ("gap", [last]) => Some(AppendOutcome::Gap { upstream_last: id(last)? }),
        ("conflict", [last, at]) => Some(AppendOutcome::Conflict { upstream_last: id(last)?, id: id(at)? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_bare_ids() {
        assert_eq!("1700000000000-7".parse(), Ok(StreamId::new(1_700_000_000_000, 7)));
        assert_eq!("42".parse(), Ok(StreamId::new(42, 0)));
        assert_eq!("0-0".parse(), Ok(StreamId::ZERO));
        let max = format!("{m}-{m}", m = u64::MAX);
        assert_eq!(max.parse(), Ok(StreamId::new(u64::MAX, u64::MAX)));
    }

    #[test]
    fn rejects_what_is_not_an_explicit_id() {
        for bad in ["", "-", "1-", "-1", "1-2-3", "*", "1-*", "+1-2", " 1-2", "a-1", "18446744073709551616-0"]
        {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn orders_by_ms_then_seq_numerically() {
        let ids: Vec<StreamId> =
            ["9-0", "10-0", "10-2", "10-10", "11"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(StreamId::new(10, 10).to_string(), "10-10");
    }

    #[test]
    fn lua_version_matches_library_version() {
        let line = LIBRARY.lines().find(|l| l.starts_with("local VERSION = ")).unwrap();
        assert_eq!(line["local VERSION = ".len()..].trim().parse::<i64>(), Ok(LIBRARY_VERSION));
        assert!(LIBRARY.starts_with("#!lua name=roadsight\n"));
    }

    /// The uplink runs these in spawned tasks.
    #[allow(dead_code)]
    fn calls_are_send<C: ConnectionLike + Send>(conn: &mut C) {
        fn send<T: Send>(_: T) {}
        send(ensure_loaded(conn));
        send(append(conn, "k", StreamId::ZERO, false, false, &[]));
        send(last_id(conn, "k"));
    }

    #[test]
    fn reads_the_three_append_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let ok = Value::Array(vec![bulk("ok"), Value::Int(2), Value::Int(1), bulk("5-1")]);
        let last = StreamId::new(5, 1);
        assert_eq!(
            parse_append_reply(&ok),
            Some(AppendOutcome::Appended { applied: 2, duplicates: 1, last })
        );
        assert_eq!(parse_append_reply(&Value::Array(vec![bulk("missing")])), Some(AppendOutcome::Missing));
        let gap = Value::Array(vec![bulk("gap"), bulk("5-1")]);
        assert_eq!(parse_append_reply(&gap), Some(AppendOutcome::Gap { upstream_last: last }));
        assert_eq!(parse_append_reply(&Value::Array(vec![bulk("ok")])), None);
        let conflict = Value::Array(vec![bulk("conflict"), bulk("5-1"), bulk("4-0")]);
        assert_eq!(
            parse_append_reply(&conflict),
            Some(AppendOutcome::Conflict { upstream_last: last, id: StreamId::new(4, 0) })
        );
    }
}
