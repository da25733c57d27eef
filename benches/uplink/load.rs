//! The load: entries shaped like the publisher's (`src/publish/entry.rs`, schema 1, JSON `det`
//! of about 300 bytes) plus a `t0` field (send time, µs since the epoch); a bulk preload, a
//! producer paced at the cameras' frame rate, and the reply parsing shared by the reader and
//! the naive forwarder.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

/// The site of every stream key the bench writes.
pub(crate) const SITE: &str = "bench";

/// Four detections, as `write_det_json` writes them: 297 bytes.
const DET: &str = r#"[{"cls":"car","id":2,"conf":0.912,"box":[400.0,423.1,697.2,585.0]},{"cls":"car","id":2,"conf":0.874,"box":[812.4,401.9,1013.7,530.2]},{"cls":"person","id":0,"conf":0.655,"box":[120.5,388.0,161.3,502.8]},{"cls":"truck","id":7,"conf":0.512,"box":[1302.0,350.6,1688.1,610.4]}]"#;

/// Camera ids `cam0` … and their stream keys, as the daemon names them.
pub(crate) fn cameras(n: usize) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    let keys = ids.iter().map(|id| format!("roadsight:{{{SITE}:{id}}}:detections")).collect();
    (ids, keys)
}

/// Microseconds since the epoch: the clock `t0` is written in and read against.
pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A stream entry ID, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Id(pub u64, pub u64);

impl FromStr for Id {
    type Err = String;
    fn from_str(s: &str) -> Result<Id, String> {
        let (ms, seq) = s.split_once('-').ok_or_else(|| format!("not a stream ID: {s}"))?;
        Ok(Id(ms.parse().map_err(|_| s.to_owned())?, seq.parse().map_err(|_| s.to_owned())?))
    }
}

/// The `XADD` of entry `seq` of camera `cam` into `key`, sent at `t0`.
pub(crate) fn xadd(key: &str, cam: usize, seq: u64, t0: i64) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("MAXLEN").arg("~").arg(250_000).arg("*");
    cmd.arg("v").arg(1).arg("site").arg(SITE).arg("cam").arg(format!("cam{cam}"));
    cmd.arg("run").arg("01HZX3Q4M7K2V8N5").arg("seq").arg(seq).arg("ts").arg(t0).arg("clock").arg("ntp");
    cmd.arg("lat").arg(41_250).arg("inf").arg(18_734).arg("w").arg(1920).arg("h").arg(1080);
    cmd.arg("model").arg("centernet_mnv3_coco_512_u8").arg("n").arg(4).arg("det").arg(DET).arg("t0").arg(t0);
    cmd
}

/// Writes `n` entries round-robin over `keys`, pipelined 1,000 at a time (fast, not paced).
pub(crate) fn bulk(conn: &mut redis::Connection, keys: &[String], n: u64) {
    let mut seq = 0;
    while seq < n {
        let mut pipe = redis::pipe();
        for _ in 0..1_000.min(n - seq) {
            let cam = (seq % keys.len() as u64) as usize;
            pipe.add_command(xadd(&keys[cam], cam, seq, now_us())).ignore();
            seq += 1;
        }
        let () = pipe.query(conn).expect("bulk XADD");
    }
}

/// One entry a paced producer sent: which camera, the ID it got, when it was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub cam: usize,
    pub id: Id,
    pub t0: i64,
}

/// Sends one entry every `1/rate` s, round-robin over `keys`, one `XADD` at a time on one
/// connection, until `stop`; returns what it sent.
pub(crate) fn paced(url: &str, keys: &[String], rate: f64, stop: &std::sync::atomic::AtomicBool) -> Vec<Sent> {
    use std::sync::atomic::Ordering;
    let mut conn = redis::Client::open(url).unwrap().get_connection().expect("producer connects");
    let start = std::time::Instant::now();
    let mut sent = Vec::new();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let cam = (i % keys.len() as u64) as usize;
        let t0 = now_us();
        let id: String = xadd(&keys[cam], cam, 1_000_000_000 + i, t0).query(&mut conn).expect("paced XADD");
        sent.push(Sent { cam, id: id.parse().unwrap(), t0 });
        i += 1;
    }
    sent
}

/// A stream entry as read: its ID and field/value list in order.
pub(crate) type RawEntry = (String, Vec<Vec<u8>>);

/// `XREAD`/`XREADGROUP` reply (RESP2) → `(key, entries)` per stream; `Nil` → nothing.
pub(crate) fn parse_read(reply: Value) -> Vec<(String, Vec<RawEntry>)> {
    let text = |v: Value| match v {
        Value::BulkString(b) => String::from_utf8(b).unwrap_or_default(),
        Value::SimpleString(s) => s,
        _ => String::new(),
    };
    let Value::Array(streams) = reply else { return Vec::new() };
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        let Value::Array(pair) = stream else { continue };
        let mut pair = pair.into_iter();
        let (Some(key), Some(Value::Array(items))) = (pair.next(), pair.next()) else { continue };
        let entries = items
            .into_iter()
            .filter_map(|item| {
                let Value::Array(parts) = item else { return None };
                let mut parts = parts.into_iter();
                let id = text(parts.next()?);
                let Some(Value::Array(fields)) = parts.next() else { return None };
                let fields = fields.into_iter().map(|f| if let Value::BulkString(b) = f { b } else { Vec::new() });
                Some((id, fields.collect()))
            })
            .collect();
        out.push((text(key), entries));
    }
    out
}

/// The `t0` field of an entry, if any.
pub(crate) fn t0_of(fields: &[Vec<u8>]) -> Option<i64> {
    let at = fields.chunks_exact(2).position(|p| p[0] == b"t0")?;
    std::str::from_utf8(&fields[at * 2 + 1]).ok()?.parse().ok()
}

/// Sum of `XLEN` over `keys`.
pub(crate) fn total_len(conn: &mut redis::Connection, keys: &[String]) -> redis::RedisResult<u64> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("XLEN").arg(key);
    }
    let lens: Vec<u64> = pipe.query(conn)?;
    Ok(lens.iter().sum())
}

/// The last entry ID of each of `keys` (`0-0` for an empty or missing stream).
pub(crate) fn last_ids(conn: &mut redis::Connection, keys: &[String]) -> redis::RedisResult<Vec<Id>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(1);
    }
    let replies: Vec<Value> = pipe.query(conn)?;
    Ok(replies
        .into_iter()
        .map(|r| match r {
            Value::Array(mut items) if !items.is_empty() => match items.swap_remove(0) {
                Value::Array(mut parts) if !parts.is_empty() => match parts.swap_remove(0) {
                    Value::BulkString(b) => String::from_utf8_lossy(&b).parse().unwrap_or_default(),
                    _ => Id::default(),
                },
                _ => Id::default(),
            },
            _ => Id::default(),
        })
        .collect())
}
