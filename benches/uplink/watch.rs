//! What upstream sees, from the bench's side: a reader that records each entry's arrival
//! (`XREAD BLOCK` on every camera key; latency = arrival − `t0`), and a poller that records
//! every 10 ms how far each camera stream has got (for the outage, where the reader would
//! have to swallow the whole backlog). Both ride out upstream being down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::load::{Id, last_ids, now_us, parse_read, t0_of};

/// A background thread that runs until [`Background::finish`] and returns its record.
pub(crate) struct Background<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Background<T> {
    pub(crate) fn spawn(f: impl FnOnce(&AtomicBool) -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        Background { stop, handle: Some(std::thread::spawn(move || f(&flag))) }
    }

    pub(crate) fn finish(mut self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("bench thread panicked")
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connect(url: &str) -> Option<redis::Connection> {
    redis::Client::open(url).ok()?.get_connection_with_timeout(Duration::from_millis(200)).ok()
}

/// Reads every new entry of `keys` upstream as it lands; returns `(t0, latency µs)` per entry
/// that carries `t0`. `received` counts entries read.
pub(crate) fn reader(url: String, keys: Vec<String>, received: Arc<std::sync::atomic::AtomicU64>) -> Background<Vec<(i64, i64)>> {
    Background::spawn(move |stop| {
        let mut last: Vec<String> = keys.iter().map(|_| "0-0".to_owned()).collect();
        let mut out = Vec::new();
        let mut conn = None;
        while !stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                conn = connect(&url);
                if conn.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            };
            let reply = redis::cmd("XREAD").arg("COUNT").arg(1_000).arg("BLOCK").arg(100).arg("STREAMS").arg(&keys).arg(&last).query(c);
            let Ok(reply) = reply else {
                conn = None;
                continue;
            };
            let arrived = now_us();
            for (key, entries) in parse_read(reply) {
                let Some(i) = keys.iter().position(|k| *k == key) else { continue };
                received.fetch_add(entries.len() as u64, Ordering::Relaxed);
                for (id, fields) in entries {
                    if let Some(t0) = t0_of(&fields) {
                        out.push((t0, arrived - t0));
                    }
                    last[i] = id;
                }
            }
        }
        out
    })
}

/// One poll: when (µs since the epoch, after the reply) and each camera's last ID upstream.
pub(crate) type Sample = (i64, Vec<Id>);

/// Polls the last ID of every camera stream upstream every 10 ms; successful polls go to
/// `timeline` as they come (the scenario watches it), failed ones are retried.
pub(crate) fn poller(url: String, keys: Vec<String>, timeline: Arc<Mutex<Vec<Sample>>>) -> Background<()> {
    Background::spawn(move |stop| {
        let mut conn = None;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
            if conn.is_none() {
                conn = connect(&url);
            }
            let Some(c) = conn.as_mut() else { continue };
            match last_ids(c, &keys) {
                Ok(ids) => timeline.lock().unwrap().push((now_us(), ids)),
                Err(_) => conn = None,
            }
        }
    })
}

/// When each entry showed up upstream, from the poll timeline (entries arrive in order per
/// camera, so an entry is there once its camera's last ID reached its ID): the first sample
/// at or after its send time that covers it; `None` if none did.
pub(crate) fn arrival(timeline: &[Sample], cam: usize, id: Id, t0: i64) -> Option<i64> {
    let from = timeline.partition_point(|(t, _)| *t < t0);
    timeline[from..].iter().find(|(_, ids)| ids[cam] >= id).map(|(t, _)| *t)
}
