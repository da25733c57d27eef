//! Where the forwarding time goes: the upstream side alone, driven by the bench with the
//! entries roadsightd just forwarded, into fresh upstream servers, in batches of 500 (the
//! uplink's default), one call in flight at a time as the uplink does:
//!
//! - plain `XADD <key> <id> …` pipelined, the least any forwarder has to have upstream do;
//! - `FCALL roadsight_append` (the library from `src/uplink/roadsight.lua`, or the file named by
//!   `UPLINK_BENCH_LUA`, to try a change without rebuilding the daemon), the uplink's call.
//!
//! Only the upstream calls are timed; reading the batches from local Redis is not.

use std::time::{Duration, Instant};

use super::load::{RawEntry, parse_read};
use super::procs::{RedisServer, repo};

const BATCH: usize = 500;

/// Entries per second upstream took them: `(plain XADD, roadsight_append)`.
pub(crate) fn upstream_rates(local: &RedisServer, keys: &[String]) -> (f64, f64) {
    let mut lconn = local.connect().unwrap();
    let xadd = {
        let up = RedisServer::upstream();
        let mut conn = up.connect().unwrap();
        timed(&mut lconn, keys, |key, _, batch| {
            let mut pipe = redis::pipe();
            for (id, fields) in batch {
                pipe.cmd("XADD").arg(key).arg(id).arg(fields).ignore();
            }
            let started = Instant::now();
            let () = pipe.query(&mut conn).expect("XADD upstream");
            started.elapsed()
        })
    };
    let fcall = {
        let up = RedisServer::upstream();
        let mut conn = up.connect().unwrap();
        let path = std::env::var_os("UPLINK_BENCH_LUA").map_or_else(|| repo().join("src/uplink/roadsight.lua"), Into::into);
        let library = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let () = redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(library).query(&mut conn).expect("FUNCTION LOAD");
        timed(&mut lconn, keys, |key, prev, batch| {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg("roadsight_append").arg(1).arg(key).arg(prev).arg(if prev == "0-0" { "create" } else { "" });
            for (id, fields) in batch {
                cmd.arg(id).arg(fields.len() / 2).arg(fields);
            }
            let started = Instant::now();
            let reply: redis::Value = cmd.query(&mut conn).expect("FCALL roadsight_append");
            let elapsed = started.elapsed();
            assert!(matches!(&reply, redis::Value::Array(a) if a.first() == Some(&redis::Value::BulkString(b"ok".to_vec()))), "{reply:?}");
            elapsed
        })
    };
    (xadd, fcall)
}

/// Reads every entry of `keys` from local in batches of [`BATCH`] and hands each batch to
/// `send(key, previous last ID, batch)`, which returns the time its upstream call took.
fn timed(local: &mut redis::Connection, keys: &[String], mut send: impl FnMut(&str, &str, &[RawEntry]) -> Duration) -> f64 {
    let (mut total, mut n) = (Duration::ZERO, 0usize);
    for key in keys {
        let mut after = "0-0".to_owned();
        loop {
            let reply = redis::cmd("XREAD").arg("COUNT").arg(BATCH).arg("STREAMS").arg(key).arg(&after).query(local).unwrap();
            let Some((_, batch)) = parse_read(reply).pop() else { break };
            if batch.is_empty() {
                break;
            }
            total += send(key, &after, &batch);
            n += batch.len();
            after = batch.last().unwrap().0.clone();
        }
    }
    n as f64 / total.as_secs_f64()
}
