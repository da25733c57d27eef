//! The comparison: a forwarder as people write it, one entry per round trip (redis-rs, sync).
//!
//! ```text
//! loop {
//!     XREADGROUP GROUP naive bench COUNT 1 BLOCK 100 STREAMS <8 keys> > …   (local)
//!     for each entry: XADD <key> <same id> <fields…>                          (upstream)
//!                     XACK <key> naive <id>                                    (local)
//! }
//! ```
//!
//! One thread, one connection to each side; `COUNT 1` per stream, so one read may bring one
//! entry of each camera. No batching, no pipelining, no idempotence beyond Redis refusing an ID
//! that is not past the stream's last one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::load::parse_read;
use super::watch::Background;

const GROUP: &str = "naive";

/// Starts the naive forwarder over `keys`, from the beginning of each stream.
pub(crate) fn start(local_url: String, upstream_url: String, keys: Vec<String>) -> Background<u64> {
    let (ready, started) = std::sync::mpsc::channel();
    let forwarder = Background::spawn(move |stop| {
        let mut local = redis::Client::open(local_url).unwrap().get_connection().expect("naive: local");
        let mut up = redis::Client::open(upstream_url).unwrap().get_connection().expect("naive: upstream");
        for key in &keys {
            let created: redis::RedisResult<()> =
                redis::cmd("XGROUP").arg("CREATE").arg(key).arg(GROUP).arg("0").arg("MKSTREAM").query(&mut local);
            if let Err(e) = created {
                assert_eq!(e.code(), Some("BUSYGROUP"), "naive: XGROUP CREATE: {e}");
            }
        }
        let _ = ready.send(());
        let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
        let mut forwarded = 0;
        while !stop.load(Ordering::Relaxed) {
            let reply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg("bench")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&keys)
                .arg(&ids)
                .query(&mut local)
                .expect("naive: XREADGROUP");
            for (key, entries) in parse_read(reply) {
                for (id, fields) in entries {
                    let _: String = redis::cmd("XADD").arg(&key).arg(&id).arg(&fields).query(&mut up).expect("naive: XADD");
                    let _: u64 = redis::cmd("XACK").arg(&key).arg(GROUP).arg(&id).query(&mut local).expect("naive: XACK");
                    forwarded += 1;
                }
            }
        }
        forwarded
    });
    // The group exists before the caller starts counting or producing.
    started.recv_timeout(Duration::from_secs(10)).expect("the naive forwarder starts");
    forwarder
}
